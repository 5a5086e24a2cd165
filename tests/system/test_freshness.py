# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""playbooks/backup_freshness.yml on real artifacts: backups taken by backup.yml of a real stack and copied to S3 (moto on
loopback) and to a backup server (a real sshd on loopback), drills run by dr_drill.yml, one that passed and one that failed,
then the freshness check fresh, stale, without a backup, after the failed drill and with an offsite copy that lags or is
missing; each metrics file it writes is parsed.

Stale and lagging are made with thresholds below the real ages (the artifacts are minutes old, and never altered); a backup
that waits for its copy is a real backup.yml run without targets into a copy of the backup directory.

Run: ``python -m pytest -q -p no:cacheprovider tests/system/test_freshness.py`` (as root, with Docker).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import COMMAND_TIMEOUT, HOST, REPO_ROOT, run
# test_offsite's production: a stack whose backups are copied to S3 (moto) and to a backup server (a real sshd).
from test_offsite import BUCKET, DRILL_PLAYBOOK, PREFIX, moto, production, remote_dir, s3_target, sshd  # pylint: disable=unused-import
from test_restore import BACKUP_PLAYBOOK, newest_artifact, output

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import parse_timestamp
from ansible_collections.fleet_telemetry.dr.tests.support import moto_server as moto_support
from ansible_collections.fleet_telemetry.dr.tests.unit.plugins.module_utils.test_freshness import client_samples, parsed_samples

PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'backup_freshness.yml')
CHECK_TASK = 'Check the newest backups, their offsite copies and the last drill, and write the metrics'
DB = 'telemetry_db'
TARGETS = ['offsite-s3', 'backup-server']


@pytest.fixture(scope='module')
def backed_up(production):
    """One backup.yml run, copied to S3, and one dr_drill.yml run that passed (from the S3 copy): the local artifact."""
    path = production.backup()
    proc = production.playbook(DRILL_PLAYBOOK)
    assert proc.returncode == 0, output(proc)[-6000:]
    return path


def freshness(production, *extra):
    """backup_freshness.yml with the json callback: ``(proc, the check task's result)``."""
    proc = run([production.ansible.playbook, '-i', production.inventory, PLAYBOOK] + list(extra), cwd=production.workdir,
               env=production.ansible.env(production.stack.env, json_output=True), timeout=COMMAND_TIMEOUT)
    try:
        doc = json.loads(proc.stdout[proc.stdout.index('{'):])
    except ValueError:
        raise AssertionError('no JSON in the output of ansible-playbook:\n%s' % output(proc)[-6000:]) from None
    tasks = [task for task in doc['plays'][0]['tasks'] if task['task']['name'] == CHECK_TASK]
    assert tasks, output(proc)[-6000:]
    return proc, tasks[0]['hosts'][HOST]


def codes(result):
    return [(problem['code'], problem['database'], problem['target']) for problem in result['problems']]


def read_metrics(path):
    """The samples of the metrics file after the strict check (and promtool where installed); its text."""
    with open(path) as handle:
        text = handle.read()
    return parsed_samples(text), text


def epoch(stamp):
    return parse_timestamp(stamp).timestamp()


def manifest_of(path):
    with open(path + '.manifest.json') as handle:
        return json.load(handle)


def test_fresh_backups_pass_and_the_metrics_say_so(production, backed_up, moto, remote_dir, tmp_path):
    textfile = str(tmp_path / 'textfile')
    os.makedirs(textfile)
    metrics_file = os.path.join(textfile, 'fleet_dr.prom')
    proc, result = freshness(production, '-e', 'freshness_metrics_file=' + metrics_file)
    assert proc.returncode == 0, output(proc)[-6000:]
    assert result['ok'] is True and result['problems'] == []
    name, manifest = os.path.basename(backed_up), manifest_of(backed_up)
    facts = result['databases'][DB]
    assert facts['backup']['name'] == name and facts['backup']['sha256'] == manifest['sha256']
    assert facts['backup']['row_counts'] == manifest['row_counts'] and 0 <= facts['backup']['age_seconds'] < 3600
    assert [(o['target'], o['backup']['name'], o['lag_seconds']) for o in facts['offsite']] == [(target, name, 0) for target in TARGETS]
    assert facts['drill']['status'] == 'passed' and facts['drill']['rto_seconds'] > 0
    # Both places hold the copy the check named, seen by an independent path: boto3, and the backup server's directory.
    assert moto.client('s3').head_object(Bucket=BUCKET, Key=PREFIX + name)['ContentLength'] == manifest['size']
    assert os.path.getsize(os.path.join(remote_dir, name)) == manifest['size']

    samples, text = read_metrics(metrics_file)
    db = (('database', DB),)
    assert samples[('fleet_dr_backup_last_success_timestamp_seconds', db)] == epoch(manifest['started_at'])
    assert samples[('fleet_dr_backup_size_bytes', db)] == manifest['size']
    assert samples[('fleet_dr_backup_rows', (('database', DB), ('table', 'photo')))] == manifest['row_counts']['photo']
    for target in TARGETS:
        assert samples[('fleet_dr_offsite_last_success_timestamp_seconds', (('database', DB), ('target', target)))] == epoch(manifest['started_at'])
    assert samples[('fleet_dr_drill_success', db)] == 1
    assert samples[('fleet_dr_drill_rto_seconds', db)] == facts['drill']['rto_seconds']
    assert samples[('fleet_dr_freshness_ok', ())] == 1
    assert oct(os.stat(metrics_file).st_mode & 0o777) == '0o644'
    assert os.listdir(textfile) == ['fleet_dr.prom']
    assert client_samples(text) == samples


def test_check_mode_writes_no_metrics(production, backed_up, tmp_path):
    path = str(tmp_path / 'check.prom')
    proc, result = freshness(production, '--check', '-e', 'freshness_metrics_file=' + path)
    assert proc.returncode == 0 and result['ok'] is True, output(proc)[-4000:]
    assert not os.path.exists(path)


def test_a_stale_backup_fails_and_the_metrics_are_still_written(production, backed_up, tmp_path):
    path = str(tmp_path / 'stale.prom')
    proc, result = freshness(production, '-e', 'freshness_max_backup_age=1s', '-e', 'freshness_metrics_file=' + path)
    assert proc.returncode != 0
    assert codes(result) == [('backup_stale', DB, None)] and result['error_code'] == 'not_fresh'
    assert result['msg'].startswith('%s: the newest verified backup, %s, is ' % (DB, os.path.basename(backed_up)))
    assert 'older than max_backup_age (1.0 s)' in result['msg']
    samples, dummy = read_metrics(path)
    assert samples[('fleet_dr_freshness_ok', ())] == 0
    assert samples[('fleet_dr_freshness_problems', (('code', 'backup_stale'),))] == 1


def test_no_backup_fails_and_names_the_directory(production, backed_up, tmp_path):
    empty = str(tmp_path / 'empty')
    os.makedirs(empty)
    history = os.path.join(production.backup_dir, 'drill-reports', 'drill_history.jsonl')
    proc, result = freshness(production, '-e', 'fleet_dr_backup_dir=' + empty, '-e', 'freshness_drill_history=' + history,
                             '-e', 'freshness_metrics_file=' + str(tmp_path / 'none.prom'))
    assert proc.returncode != 0
    assert codes(result) == [('backup_missing', DB, None)]
    assert result['problems'][0]['msg'] == ('%s: no verified backup in %s: run playbooks/backup.yml and check that its schedule runs '
                                            'and succeeds' % (DB, empty))
    # The offsite copies are still reported: the host lost its backups, not the bucket nor the backup server.
    assert [offsite['backup']['name'] for offsite in result['databases'][DB]['offsite']] == [os.path.basename(backed_up)] * 2
    samples, dummy = read_metrics(str(tmp_path / 'none.prom'))
    assert samples[('fleet_dr_backup_last_success_timestamp_seconds', (('database', DB),))] == 0


def test_a_failed_drill_fails_with_its_step_and_report(production, backed_up, tmp_path):
    reports = str(tmp_path / 'reports')
    history = os.path.join(reports, 'drill_history.jsonl')
    wrong_key = os.urandom(32).hex()
    # A key, even a wrong one, travels in a vars file, never on a command line.
    vars_file = str(tmp_path / 'wrong-key.json')
    with open(os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), 'w') as handle:
        json.dump({'fleet_dr_encryption_key': wrong_key, 'dr_drill_report_dir': reports, 'dr_drill_history': history}, handle)
    proc = production.playbook(DRILL_PLAYBOOK, '-e', '@' + vars_file)
    assert proc.returncode != 0, output(proc)[-4000:]
    assert wrong_key not in output(proc)
    proc, result = freshness(production, '-e', 'freshness_drill_history=' + history, '-e', 'freshness_metrics_file=' + str(tmp_path / 'd.prom'))
    assert proc.returncode != 0
    assert codes(result) == [('drill_failed', DB, None)]
    drill = result['databases'][DB]['drill']
    assert drill['status'] == 'failed' and drill['failed_step'] and drill['msg']
    assert 'failed at step %s: %s' % (drill['failed_step'], drill['msg']) in result['msg']
    assert drill['report'] == os.path.join(reports, drill['name'] + '.md') and os.path.isfile(drill['report'])
    samples, dummy = read_metrics(str(tmp_path / 'd.prom'))
    assert samples[('fleet_dr_drill_success', (('database', DB),))] == 0


def test_a_backup_that_waits_for_its_copy_lags_and_an_empty_target_is_missing(production, backed_up, moto, tmp_path):
    # A copy of the backup directory, and a real backup into it with no target: it is not in the bucket.
    copy = str(tmp_path / 'backups')
    shutil.copytree(production.backup_dir, copy)
    proc = production.playbook(BACKUP_PLAYBOOK, '-e', json.dumps({'fleet_dr_backup_dir': copy, 'fleet_dr_offsite_targets': []}))
    assert proc.returncode == 0, output(proc)[-4000:]
    waiting = os.path.basename(newest_artifact(copy))
    assert waiting != os.path.basename(backed_up)
    targets = [s3_target(moto), s3_target(moto, name='empty-prefix', prefix='nothing-here/')]
    common = ['-e', json.dumps({'fleet_dr_backup_dir': copy, 'fleet_dr_offsite_targets': targets,
                                'freshness_metrics_file': str(tmp_path / 'lag.prom')})]

    # Within max_offsite_lag the copy is still under way: only the empty target is a problem.
    proc, result = freshness(production, *common)
    assert codes(result) == [('offsite_missing', DB, 'empty-prefix')], output(proc)[-4000:]
    offsite = result['databases'][DB]['offsite'][0]
    assert offsite['waiting'] == waiting and offsite['backup']['name'] == os.path.basename(backed_up)

    proc, result = freshness(production, *(common + ['-e', 'freshness_max_offsite_lag=1s']))
    assert proc.returncode != 0
    assert codes(result) == [('offsite_lagging', DB, 'offsite-s3'), ('offsite_missing', DB, 'empty-prefix')]
    assert result['problems'][0]['msg'].startswith('%s: %s has waited ' % (DB, waiting))
    samples, dummy = read_metrics(str(tmp_path / 'lag.prom'))
    lagging = (('database', DB), ('target', 'offsite-s3'))
    assert samples[('fleet_dr_offsite_lag_seconds', lagging)] > 0
    assert samples[('fleet_dr_offsite_last_success_timestamp_seconds', (('database', DB), ('target', 'empty-prefix')))] == 0


def test_no_aws_secret_in_a_verbose_run(production, backed_up, tmp_path):
    proc = run([production.ansible.playbook, '-vvv', '-i', production.inventory, PLAYBOOK, '-e', 'freshness_metrics_file=' + str(tmp_path / 'v.prom')],
               cwd=production.workdir, env=production.ansible.env(production.stack.env), timeout=COMMAND_TIMEOUT)
    assert proc.returncode == 0, output(proc)[-4000:]
    assert moto_support.SECRET_KEY not in output(proc)
