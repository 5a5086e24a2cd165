# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a backup contains: exact counts under concurrent writes, the runbook's restore, check mode."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'backup.yml')
DB_NAME = 'telemetry_db'
DB_USER = 'challengeuser'

RUNBOOK_NAME = re.compile(r'\Abackup_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}\.sql\Z')
DECOMPRESSORS = {'none': None, 'gzip': ['gzip', '-dc'], 'zstd': ['zstd', '-q', '-dc']}


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as fileobj:
        for chunk in iter(lambda: fileobj.read(1024 * 1024), b''):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(result):
    with open(result['manifest_path']) as fileobj:
        return json.load(fileobj)


def succeeded(rc, result, err=''):
    assert rc == 0 and not result.get('failed'), 'the backup failed: %s\n%s' % (json.dumps(result, indent=1)[-4000:], err[-2000:])


@pytest.fixture
def scratch_database(stack):
    """An empty database on the shared stack to restore into; dropped by the finalizer."""
    name = 'restore_%s' % os.urandom(4).hex()
    stack.psql('CREATE DATABASE %s;' % name, database='postgres')
    yield name
    stack.psql('DROP DATABASE IF EXISTS %s WITH (FORCE);' % name, database='postgres')


def run(argv, **kwargs):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, timeout=600, **kwargs)


def backup_entries(directory):
    """Names in a backup directory, without the lock files that BackupLock keeps by design."""
    return sorted(name for name in os.listdir(directory) if not (name.startswith('.') and name.endswith('.lock')))


def restore(stack, manifest, artifact, database):
    """Restore a plain or custom artifact into ``database`` inside the stack's container, stopping at the first error."""
    if manifest['dump_format'] == 'custom':
        argv = ['docker', 'exec', '-i', stack.container, 'pg_restore', '--exit-on-error', '-U', DB_USER, '-d', database]
    else:
        assert manifest['dump_format'] == 'plain', 'this test restores plain and custom artifacts'
        argv = stack.psql_argv(database) + ['--single-transaction']
    decompress = DECOMPRESSORS[manifest['compression']] if manifest['dump_format'] == 'plain' else None
    with open(artifact, 'rb') as source:
        if decompress is None:
            proc = run(argv, stdin=source)
        else:
            with subprocess.Popen(decompress, stdin=source, stdout=subprocess.PIPE) as producer:
                proc = run(argv, stdin=producer.stdout)
            assert producer.returncode == 0, '%s failed' % decompress[0]
    stderr = proc.stderr.decode('utf-8', 'replace')
    assert proc.returncode == 0, 'restore failed: %s' % stderr[-4000:]
    assert 'ERROR' not in stderr, stderr[-4000:]


def wait_for(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError('timed out waiting for %s' % what)


@pytest.mark.parametrize('dump_client', ['container', 'host'])
def test_concurrent_inserts_restore_to_the_manifest_counts(stack, ansible, backup_dir, compose_backup_args, audit_inserter, scratch_database,
                                                           dump_client):
    """Rows inserted into audit_log while the dump runs are neither in the counts nor in the dump: restored == manifest.

    Both places pg_dump runs in: inside the container (docker exec), and on the host over the container's address (the
    default when a password is given), which joins the snapshot the counting session exported just the same."""
    tables = ['photo', 'audit_log', 'gps_telemetry']
    extra = {'dump_client': dump_client}
    if dump_client == 'host':
        extra['db_password'] = stack.password
    before = stack.counts(['audit_log'])['audit_log']
    with audit_inserter(stack) as inserter:
        wait_for(lambda: stack.counts(['audit_log'])['audit_log'] > before, 'the first concurrent inserts')
        rc, result, err = ansible.module(compose_backup_args(stack, backup_dir, count_tables=tables, **extra), env=stack.env)
        time.sleep(0.3)
        inserter.stop()
    succeeded(rc, result, err)
    assert result['dump_client']['used'] == dump_client, result['dump_client']
    manifest = read_manifest(result)
    counted = manifest['row_counts']
    assert counted == result['row_counts']
    assert sorted(counted) == sorted(tables)
    assert manifest['snapshot_id'], 'the counts must come from an exported snapshot'
    assert sha256_of(result['path']) == manifest['sha256'] == result['sha256']

    live = stack.counts(['audit_log'])['audit_log']
    # Writes really overlapped the backup: the inserter committed rows between the start and the end of the run...
    during = int(stack.psql("SELECT count(*) FROM audit_log WHERE actor = '%s' AND at > '%s' AND at < '%s';"
                            % (inserter.ACTOR, manifest['started_at'], manifest['finished_at'])))
    assert during > 0, 'no insert committed while the backup ran: the test proves nothing'
    # ...and the counts were taken in between: after the first inserts, before the last ones.
    assert before < counted['audit_log'] < live

    restore(stack, manifest, result['path'], scratch_database)
    restored = stack.counts(tables, database=scratch_database)
    assert restored == counted, 'restored counts %s differ from the manifest %s' % (restored, counted)
    assert restored['audit_log'] != live


def test_plain_artifact_restores_with_the_runbook_command(small_stack, ansible, backup_dir, compose_backup_args):
    """An uncompressed plain artifact has the runbook's name and restores with its exact cat | docker-compose exec -T db psql."""
    tables = small_stack.user_tables()
    before = small_stack.counts(tables)
    assert before['photo'] > 0 and before['audit_log'] > 0
    rc, result, err = ansible.module(compose_backup_args(small_stack, backup_dir, format='plain', compression='none', count_all_tables=True),
                                     env=small_stack.env)
    succeeded(rc, result, err)
    manifest = read_manifest(result)
    name = os.path.basename(result['path'])
    assert RUNBOOK_NAME.match(name), name
    assert manifest['row_counts'] == before

    small_stack.recreate()
    assert small_stack.counts(['photo', 'audit_log']) == {'photo': 0, 'audit_log': 0}, 'down -v did not give an empty database'

    # The runbook's command, word for word, in the project directory where the runbook keeps its dumps; the
    # project name comes from COMPOSE_PROJECT_NAME in the environment.
    shutil.copy2(result['path'], os.path.join(small_stack.directory, name))
    command = 'cat %s | %s exec -T db psql -U challengeuser -d telemetry_db' % (shlex.quote(name), ' '.join(small_stack.compose_cmd))
    proc = run(['bash', '-o', 'pipefail', '-c', command], cwd=small_stack.directory, env=small_stack.env)
    stderr = proc.stderr.decode('utf-8', 'replace')
    assert proc.returncode == 0, stderr[-4000:]
    assert 'ERROR' not in stderr, stderr[-4000:]
    assert small_stack.counts(sorted(manifest['row_counts'])) == manifest['row_counts']


def _check_mode_vars(stack, tmp_path, backup_dir):
    path = tmp_path / 'check-vars.json'
    path.write_text(json.dumps({'fleet_dr_hosts': 'telemetry_db', 'fleet_dr_project_src': stack.directory,
                                'fleet_dr_project_name': stack.project, 'fleet_dr_backup_dir': backup_dir,
                                'fleet_dr_db_name': DB_NAME, 'backup_poll_interval': 1}))
    return str(path)


def test_check_mode_writes_nothing(stack, ansible, backup_dir, tmp_path):
    """ansible-playbook --check backup.yml reports the artifact it would write and leaves backup_dir empty."""
    proc = ansible.run_playbook(PLAYBOOK, ['--check', '-e', '@' + _check_mode_vars(stack, tmp_path, backup_dir)], env=stack.env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert 'would write %s/backup_' % backup_dir in proc.stdout
    assert os.listdir(backup_dir) == [], 'check mode wrote %s' % os.listdir(backup_dir)


def test_check_mode_does_not_create_the_backup_dir(stack, ansible, tmp_path):
    """--check on a host that has no backup_dir yet neither creates it nor fails."""
    backup_dir = str(tmp_path / 'not-yet')
    proc = ansible.run_playbook(PLAYBOOK, ['--check', '-e', '@' + _check_mode_vars(stack, tmp_path, backup_dir)], env=stack.env)
    assert not os.path.exists(backup_dir)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_a_backup_whose_name_is_taken_in_its_second_takes_the_next_sequence(stack, ansible, backup_dir, compose_backup_args):
    """Every name of the next half minute is already taken (as by another backup of the same second): the backup succeeds
    as ``<name>_2``, and what was there is untouched."""
    start = datetime.datetime.now(datetime.timezone.utc)
    taken = {}
    for offset in range(30):
        name = 'backup_%s.dump' % (start + datetime.timedelta(seconds=offset)).strftime('%Y-%m-%d_%H-%M-%S')
        taken[name] = b'not a backup %d' % offset
        with open(os.path.join(backup_dir, name), 'wb') as fileobj:
            fileobj.write(taken[name])
    rc, result, err = ansible.module(compose_backup_args(stack, backup_dir, format='custom', compression='none',
                                                         count_tables=['photo']), env=stack.env)
    succeeded(rc, result, err)
    name = os.path.basename(result['path'])
    assert name.endswith('_2.dump') and name[:-len('_2.dump')] + '.dump' in taken, name
    for other, content in taken.items():
        with open(os.path.join(backup_dir, other), 'rb') as fileobj:
            assert fileobj.read() == content
    assert read_manifest(result)['file'] == name


def test_a_second_run_adds_an_artifact_and_keeps_the_first(stack, ansible, backup_dir, compose_backup_args):
    """Two backups in a row, with no pause (they may start in the same second): two artifacts with manifests, the first
    unchanged."""
    args = compose_backup_args(stack, backup_dir, format='custom', compression='none', count_tables=['photo'])
    rc, first, err = ansible.module(args, env=stack.env)
    succeeded(rc, first, err)
    digest = sha256_of(first['path'])
    rc, second, err = ansible.module(args, env=stack.env)
    succeeded(rc, second, err)
    assert second['path'] != first['path']
    assert sha256_of(first['path']) == digest == first['sha256']
    names = [os.path.basename(result[key]) for result in (first, second) for key in ('path', 'manifest_path')]
    assert backup_entries(backup_dir) == sorted(names)
