# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""DR drills through real ansible-playbook runs of playbooks/dr_drill.yml against a real scratch "production" stack.

A backup is taken with playbooks/backup.yml; then drills of it pass (exact counts, every photo decrypts,
JSON/Markdown/JUnit reports, a history of two rows with the trend), drills of a damaged backup and with a
wrong key fail and say so in JUnit, and every drill leaves production as it was (same container, volume
and counts) and nothing of its scratch project behind: no container, volume, network or directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import REPO_ROOT, CmdlineScanner, _stack, run, secret_forms

DRILL = os.path.join(REPO_ROOT, 'playbooks', 'dr_drill.yml')
BACKUP = os.path.join(REPO_ROOT, 'playbooks', 'backup.yml')
TABLES = ['audit_log', 'gps_telemetry', 'gyroscope_telemetry', 'photo', 'recognition_result', 'vehicle']
SCRATCH_LABEL = 'fleet_telemetry.dr.scratch_of'


class Site(object):
    """The production stack of this module, its backup directory, the drill's directories and the vars file."""

    def __init__(self, stack, ansible, base):
        self.stack = stack
        self.ansible = ansible
        self.base = base
        self.backup_dir = os.path.join(base, 'backups')
        self.report_dir = os.path.join(base, 'reports')
        self.work_dir = os.path.join(base, 'work')
        self.scratch_project = stack.project + '_drill'
        os.makedirs(self.backup_dir, 0o700)

    def vars_file(self, name, **extra):
        """A 0600 vars file with the drill's variables (the key travels here, never in argv or the environment)."""
        values = {'fleet_dr_project_src': self.stack.directory, 'fleet_dr_project_name': self.stack.project,
                  'fleet_dr_backup_dir': self.backup_dir, 'fleet_dr_encryption_key': self.stack.key_hex,
                  'dr_drill_work_dir': self.work_dir, 'dr_drill_report_dir': self.report_dir, 'backup_poll_interval': 1}
        values.update(extra)
        path = os.path.join(self.base, name)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as fileobj:
            json.dump(values, fileobj)
        return path

    def playbook(self, playbook, vars_name='vars.json', args=(), json_output=False, **extra):
        env = self.stack.env
        if json_output:
            # What AWX reads of set_stats: the json callback prints it with show_custom_stats.
            env['ANSIBLE_SHOW_CUSTOM_STATS'] = 'true'
        return self.ansible.run_playbook(playbook, ['-e', '@' + self.vars_file(vars_name, **extra)] + list(args), env=env,
                                         json_output=json_output)

    def production_state(self):
        """What must not change: the db container's id, start time and volume mounts, and the row counts."""
        proc = run(['docker', 'inspect', '--format', '{{.Id}} {{.State.StartedAt}} {{.State.Running}} {{range .Mounts}}{{.Type}}:{{.Source}},{{end}}',
                    self.stack.container])
        assert proc.returncode == 0, proc.stderr
        container_id, started, running, mounts = proc.stdout.split()
        container = [container_id, started, running, sorted(mount for mount in mounts.split(',') if mount)]
        return {'container': container, 'counts': self.stack.counts(TABLES), 'volumes': self.project_objects(self.stack.project)}

    @staticmethod
    def project_objects(project, label='com.docker.compose.project'):
        """Containers, volumes and networks with ``label=project``."""
        found = {}
        for kind, argv in (('containers', ['docker', 'ps', '-a', '-q']), ('volumes', ['docker', 'volume', 'ls', '-q']),
                           ('networks', ['docker', 'network', 'ls', '-q'])):
            proc = run(argv + ['--filter', 'label=%s=%s' % (label, project)])
            assert proc.returncode == 0, proc.stderr
            found[kind] = sorted(proc.stdout.split())
        return found

    def lease_path(self):
        return os.path.join(self.backup_dir, '.drill-telemetry_db.lease.json')

    def scratch_leftovers(self):
        by_project = self.project_objects(self.scratch_project)
        by_label = self.project_objects(self.stack.project, label=SCRATCH_LABEL)
        leftovers = dict((kind, by_project[kind] + by_label[kind]) for kind in by_project)
        leftovers['directory'] = os.path.exists(os.path.join(self.work_dir, self.scratch_project))
        return leftovers


NOTHING_LEFT = {'containers': [], 'volumes': [], 'networks': [], 'directory': False}


class Drill(object):
    """A finished drill: rc, output, the production state around it, leftovers and the report files."""

    def __init__(self, site, proc, before, after):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.before = before
        self.after = after
        self.leftovers = site.scratch_leftovers()
        self.report = None
        names = sorted(name for name in os.listdir(site.report_dir) if name.endswith('.json')) if os.path.isdir(site.report_dir) else []
        self.reports = names

    def report_paths(self, site, name):
        base = os.path.join(site.report_dir, name[:-len('.json')])
        return base + '.json', base + '.md', base + '.xml'


def _drill(site, json_output=False, vars_name='vars.json', args=(), **extra):
    before = site.production_state()
    known = set(os.listdir(site.report_dir)) if os.path.isdir(site.report_dir) else set()
    proc = site.playbook(DRILL, vars_name, args, json_output=json_output, **extra)
    drill = Drill(site, proc, before, site.production_state())
    new = sorted(name for name in drill.reports if name not in known)
    drill.report = drill.report_paths(site, new[-1]) if new else None
    return drill


@pytest.fixture(scope='module')
def site(tmp_path_factory, request, ansible):
    stack = _stack(tmp_path_factory, request, 'drill', ['--size', 'tiny'])
    base = str(tmp_path_factory.mktemp('drillsite'))
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    site = Site(stack, ansible, base)
    proc = site.playbook(BACKUP)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    site.artifact = sorted(name for name in os.listdir(site.backup_dir) if name.endswith('.sql.zst'))[-1]
    return site


@pytest.fixture(scope='module')
def two_drills(site):
    """Two drills of the backup; the second with the json callback, for its set_stats, and through docker exec."""
    first = _drill(site)
    second = _drill(site, json_output=True, dr_drill_restore_client='container')
    return first, second


def _load(drill):
    json_path, md_path, xml_path = drill.report
    with open(json_path) as fileobj:
        document = json.load(fileobj)
    with open(md_path) as fileobj:
        markdown = fileobj.read()
    return document, markdown, ET.parse(xml_path).getroot()


def test_a_drill_passes_with_exact_counts_and_every_photo(site, two_drills):
    first = two_drills[0]
    assert first.rc == 0, first.output[-6000:]
    document, dummy, dummy2 = _load(first)
    production = site.stack.counts(TABLES)
    assert document['status'] == 'passed' and document['kind'] == 'drill'
    assert dict((row['table'], row['actual']) for row in document['tables']) == production
    assert all(row['ok'] and row['expected'] == row['actual'] for row in document['tables'])
    assert document['photos']['checked'] == document['photos']['total'] == production['photo'] > 0
    assert document['photos']['failed'] == 0
    assert os.path.basename(document['artifact']['path']) == site.artifact
    assert document['target']['project_name'] == site.scratch_project
    assert document['rto_seconds'] > 0 and document['rpo_seconds'] > 0
    assert 'report %s' % first.report[1] in first.output
    # The host's psql reached the scratch container with the scratch database's own password (restore_client=auto).
    assert document['restore_client']['used'] == 'host', document['restore_client']


def test_a_drill_through_docker_exec_verifies_the_same(two_drills):
    first, second = (_load(drill)[0] for drill in two_drills)
    assert second['status'] == 'passed' and second['restore_client'] == {'used': 'container', 'reason': 'restore_client=container'}
    assert second['tables'] == first['tables'] and second['photos'] == first['photos']


def test_the_junit_report_has_a_passing_case_per_step(two_drills):
    dummy, dummy2, junit = _load(two_drills[0])
    suite = junit.find('testsuite')
    cases = suite.findall('testcase')
    assert [case.get('name') for case in cases] == ['take the drill lease', 'select the artifact', 'plan the scratch stack', 'start the scratch stack',
                                                    'restore and verify', 'tear down the scratch stack']
    assert suite.get('failures') == '0' and all(case.find('failure') is None for case in cases)


def test_two_drills_two_history_rows_and_the_trend_shows_both(site, two_drills):
    first, second = two_drills
    assert second.rc == 0, second.output[-6000:]
    history = os.path.join(site.report_dir, 'drill_history.jsonl')
    with open(history) as fileobj:
        rows = [json.loads(line) for line in fileobj if line.strip()]
    names = [os.path.basename(drill.report[0])[:-len('.json')] for drill in two_drills]
    assert [row['name'] for row in rows] == names
    assert all(row['status'] == 'passed' and row['counts'] == site.stack.counts(TABLES) for row in rows)
    dummy, markdown, dummy2 = _load(second)
    assert '## Trend (last 2 drills)' in markdown
    trend = [line for line in markdown.splitlines() if line.startswith('| 20') and '| passed |' in line]
    assert len(trend) == 2
    assert 'RTO `' in markdown


def test_the_drill_publishes_set_stats(two_drills):
    second = two_drills[1]
    doc = json.loads(second.output[second.output.index('{'):second.output.rindex('}') + 1])
    stats = doc['global_custom_stats']
    assert stats['fleet_dr_drill_status'] == 'passed'
    assert stats['fleet_dr_drill_report'] == second.report[1]
    assert stats['fleet_dr_drill_report_junit'] == second.report[2]
    assert float(stats['fleet_dr_drill_rto_seconds']) > 0


@pytest.mark.parametrize('index', [0, 1])
def test_production_is_untouched_and_nothing_is_left(two_drills, index):
    drill = two_drills[index]
    assert drill.after == drill.before
    assert drill.after['container'][2] == 'true'
    assert drill.leftovers == NOTHING_LEFT


def _damaged_copy(site, name):
    """A copy of the backup (and its manifest) in another directory with one byte flipped in the middle of the dump."""
    directory = os.path.join(site.base, name)
    os.makedirs(directory, 0o700)
    src = os.path.join(site.backup_dir, site.artifact)
    dst = os.path.join(directory, site.artifact)
    shutil.copy2(src, dst)
    shutil.copy2(src + '.manifest.json', dst + '.manifest.json')
    with open(dst, 'r+b') as fileobj:
        fileobj.seek(os.path.getsize(dst) // 2)
        byte = fileobj.read(1)
        fileobj.seek(-1, os.SEEK_CUR)
        fileobj.write(bytes([byte[0] ^ 0x01]))
    return dst


@pytest.fixture(scope='module')
def flipped_drill(site, two_drills):  # pylint: disable=unused-argument
    return _drill(site, dr_drill_artifact=_damaged_copy(site, 'flipped'))


@pytest.fixture(scope='module')
def wrong_key_drill(site, flipped_drill):  # pylint: disable=unused-argument
    return _drill(site, vars_name='wrong.json', fleet_dr_encryption_key=os.urandom(32).hex())


def test_a_drill_of_a_flipped_byte_fails_and_says_so_in_junit(flipped_drill):
    assert flipped_drill.rc != 0
    document, markdown, junit = _load(flipped_drill)
    assert document['status'] == 'failed' and document['failed_step'] == 'select the artifact'
    assert 'sha256 mismatch' in document['msg']
    suite = junit.find('testsuite')
    assert suite.get('failures') == '1'
    failed = [case.get('name') for case in suite.findall('testcase') if case.find('failure') is not None]
    assert failed == ['select the artifact']
    assert '| status | FAILED |' in markdown


def test_a_drill_with_the_wrong_key_fails_after_the_scratch_stack_was_up(wrong_key_drill):
    assert wrong_key_drill.rc != 0
    document, dummy, junit = _load(wrong_key_drill)
    assert document['status'] == 'failed' and document['failed_step'] == 'restore and verify'
    assert document['error_code'] == 'wrong_key'
    steps = dict((step['name'], step['ok']) for step in document['steps'])
    assert steps['start the scratch stack'] is True and steps['tear down the scratch stack'] is True
    failed = [case.get('name') for case in junit.find('testsuite').findall('testcase') if case.find('failure') is not None]
    assert failed == ['restore and verify']


@pytest.mark.parametrize('name', ['flipped_drill', 'wrong_key_drill'])
def test_a_failed_drill_leaves_production_and_nothing_else(request, name):
    drill = request.getfixturevalue(name)
    assert drill.after == drill.before
    assert drill.leftovers == NOTHING_LEFT


def test_failed_drills_are_in_the_history_too(site, wrong_key_drill):  # pylint: disable=unused-argument
    with open(os.path.join(site.report_dir, 'drill_history.jsonl')) as fileobj:
        rows = [json.loads(line) for line in fileobj if line.strip()]
    assert [row['status'] for row in rows] == ['passed', 'passed', 'failed', 'failed']


def test_check_mode_touches_nothing(site, wrong_key_drill):  # pylint: disable=unused-argument
    reports = sorted(os.listdir(site.report_dir))
    before = site.production_state()
    proc = site.playbook(DRILL, args=['--check'])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert 'would restore %s/%s into the scratch project %s' % (site.backup_dir, site.artifact, site.scratch_project) in proc.stdout
    assert sorted(os.listdir(site.report_dir)) == reports
    assert site.production_state() == before
    assert site.scratch_leftovers() == NOTHING_LEFT


class ScratchPasswordWatcher(object):
    """Reads the POSTGRES_PASSWORD of the scratch container while it exists (to look for it in the output afterwards)."""

    def __init__(self, container_name):
        self.container_name = container_name
        self.password = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set() and self.password is None:
            proc = run(['docker', 'inspect', '--format', '{{range .Config.Env}}{{println .}}{{end}}', self.container_name], timeout=60)
            for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
                if line.startswith('POSTGRES_PASSWORD='):
                    self.password = line.split('=', 1)[1]
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=60)


def test_no_secret_in_the_vvvv_output_or_the_reports(site, wrong_key_drill):  # pylint: disable=unused-argument
    known = set(os.listdir(site.report_dir))
    # Every process's argv while the drill runs: neither secret, and no POSTGRES_PASSWORD=<value> (the scratch password).
    needles = secret_forms(site.stack.password, site.stack.key) + ['POSTGRES_PASSWORD=']
    with ScratchPasswordWatcher(site.scratch_project + '_db') as watcher:
        # The restore's own psql: on the host, over the scratch container's address (restore_client=auto), its password in the environment.
        with CmdlineScanner(needles, ['psql', '-h', 'ON_ERROR_STOP=1', '-f']) as scanner:
            proc = site.playbook(DRILL, args=['-vvvv'])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert watcher.password, 'the scratch container was never seen: the scan proves nothing'
    assert scanner.seen, 'the argv scan never saw the restore running (%d scans)' % scanner.scans
    assert scanner.leaks == []
    forms = secret_forms(site.stack.password, site.stack.key) + [watcher.password]
    assert len(output) > 10000
    assert [form for form in forms if form in output] == []
    new = sorted(set(os.listdir(site.report_dir)) - known)
    assert len(new) == 3, new
    for name in new + ['drill_history.jsonl']:
        with open(os.path.join(site.report_dir, name)) as fileobj:
            text = fileobj.read()
        assert [form for form in forms if form in text] == [], name
    assert site.scratch_leftovers() == NOTHING_LEFT


def test_the_leftovers_of_a_killed_drill_are_removed_by_the_next_one(site, wrong_key_drill):  # pylint: disable=unused-argument
    """SIGKILL of ansible-playbook once the scratch container exists: no always section ran; the next drill cleans up."""
    argv = [site.ansible.playbook, '-i', site.ansible.inventory, DRILL, '-e', '@' + site.vars_file('killed.json')]
    proc = subprocess.Popen(argv, cwd=site.ansible.workdir, env=site.ansible.env(site.stack.env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and not site.scratch_leftovers()['containers']:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    left = site.scratch_leftovers()
    assert left['containers'] and left['directory'], 'the drill was not killed while its scratch stack existed: %s' % left
    # The killed drill's lease outlives it: the next drill is refused and leaves the leftovers alone, until the lease
    # file named in the message is removed (what an operator does once sure that the other drill is dead).
    refused = _drill(site)
    assert refused.rc != 0 and 'another drill of telemetry_db is running' in refused.output, refused.output[-4000:]
    assert site.scratch_leftovers() == left
    lease = site.lease_path()
    assert lease in refused.output and os.path.exists(lease)
    os.unlink(lease)
    drill = _drill(site)
    assert drill.rc == 0, drill.output[-6000:]
    assert 'removed the leftovers of an earlier drill' in drill.output
    assert drill.leftovers == NOTHING_LEFT
    assert drill.after == drill.before


def _corrupt_photo_with_a_valid_checksum(path):
    """Flip one bit of the first photo's ciphertext in a plain dump, then make size and sha256 of the manifest match.

    The checksum can no longer catch it and the row counts are unchanged: only decrypting the photo (AES-GCM's tag) can.
    """
    with open(path, 'rb') as fileobj:
        dump = bytearray(fileobj.read())
    copy = dump.index(b'\nCOPY public.photo ')
    row = dump.index(b'\n', copy + 1) + 1
    data = dump.index(b'\\\\x', row) + 3 + 64
    dump[data] = ord('0') if dump[data] != ord('0') else ord('1')
    with open(path, 'wb') as fileobj:
        fileobj.write(dump)
    with open(path + '.manifest.json') as fileobj:
        manifest = json.load(fileobj)
    manifest.update(size=len(dump), sha256=hashlib.sha256(dump).hexdigest())
    with open(path + '.manifest.json', 'w') as fileobj:
        json.dump(manifest, fileobj)


def test_a_photo_damaged_behind_a_valid_checksum_fails_the_drill(site, wrong_key_drill):  # pylint: disable=unused-argument
    plain_dir = os.path.join(site.base, 'plain')
    os.makedirs(plain_dir, 0o700)
    proc = site.playbook(BACKUP, 'plain.json', fleet_dr_backup_dir=plain_dir, backup_compression='none')
    assert proc.returncode == 0, proc.stdout[-4000:]
    artifact = os.path.join(plain_dir, sorted(name for name in os.listdir(plain_dir) if name.endswith('.sql'))[-1])
    _corrupt_photo_with_a_valid_checksum(artifact)
    drill = _drill(site, dr_drill_artifact=artifact)
    assert drill.rc != 0
    document, dummy, junit = _load(drill)
    assert document['status'] == 'failed' and document['failed_step'] == 'restore and verify'
    assert document['error_code'] in ('photo_corrupt', 'verify_failed'), document
    failed = [case.get('name') for case in junit.find('testsuite').findall('testcase') if case.find('failure') is not None]
    assert failed == ['restore and verify']
    assert drill.after == drill.before
    assert drill.leftovers == NOTHING_LEFT


def test_a_second_drill_while_one_runs_is_refused_and_leaves_the_first_alone(site):
    """Two drills at once: the second fails with lock_held naming the first, before touching its scratch stack; the first passes."""
    known = set(os.listdir(site.report_dir))
    before = site.production_state()
    argv = [site.ansible.playbook, '-i', site.ansible.inventory, DRILL, '-e', '@' + site.vars_file('first.json')]
    first = subprocess.Popen(argv, cwd=site.ansible.workdir, env=site.ansible.env(site.stack.env), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None and not os.path.exists(site.lease_path()):
            time.sleep(0.1)
        assert first.poll() is None and os.path.exists(site.lease_path()), 'the first drill never took its lease'
        with open(site.lease_path()) as fileobj:
            lease = json.load(fileobj)
        second = site.playbook(DRILL, 'second.json')
        first_output, dummy = first.communicate(timeout=900)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=60)
    second_output = second.stdout + second.stderr
    assert second.returncode != 0, second_output[-6000:]
    assert 'another drill of telemetry_db is running: started %s' % lease['started_at'] in second_output
    assert first.returncode == 0, first_output[-6000:]
    new = sorted(name for name in set(os.listdir(site.report_dir)) - known if name.endswith('.json'))
    documents = []
    for name in new:
        with open(os.path.join(site.report_dir, name)) as fileobj:
            documents.append(json.load(fileobj))
    outcomes = sorted((doc['status'], doc.get('failed_step'), doc.get('error_code')) for doc in documents)
    assert outcomes == [('failed', 'take the drill lease', 'lock_held'), ('passed', None, None)], outcomes
    passed = [doc for doc in documents if doc['status'] == 'passed'][0]
    assert passed['photos']['failed'] == 0 and all(row['ok'] for row in passed['tables'])
    assert not os.path.exists(site.lease_path())
    assert site.scratch_leftovers() == NOTHING_LEFT
    assert site.production_state() == before


def test_check_mode_fails_when_no_artifact_verifies(site):
    """--check tells the truth: nothing to drill in the backup directory fails the check run too, and writes nothing."""
    empty = os.path.join(site.base, 'empty')
    os.makedirs(empty, 0o700)
    reports = sorted(os.listdir(site.report_dir)) if os.path.isdir(site.report_dir) else []
    proc = site.playbook(DRILL, 'empty.json', args=['--check'], fleet_dr_backup_dir=empty)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-4000:]
    assert 'the DR drill would fail at task Select the artifact' in output
    assert (sorted(os.listdir(site.report_dir)) if os.path.isdir(site.report_dir) else []) == reports
    assert site.scratch_leftovers() == NOTHING_LEFT


def test_a_runbook_dump_without_manifest_can_be_drilled_when_named(site):
    """The runbook's own backup (plain pg_dump, no manifest), named with dr_drill_artifact: restored and verified by its COPY counts."""
    directory = os.path.join(site.base, 'runbook')
    os.makedirs(directory, 0o700)
    path = os.path.join(directory, 'backup_2026-12-01_03-00-00.sql')
    with open(path, 'wb') as fileobj:
        proc = subprocess.run(['docker', 'exec', site.stack.container, 'pg_dump', '-U', 'challengeuser', 'telemetry_db'], stdout=fileobj,
                              stderr=subprocess.PIPE, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    assert not os.path.exists(path + '.manifest.json')
    drill = _drill(site, vars_name='runbook.json', dr_drill_artifact=path)
    assert drill.rc == 0, drill.output[-6000:]
    document, dummy, dummy2 = _load(drill)
    assert document['status'] == 'passed' and document['artifact']['path'] == path
    assert dict((row['table'], row['actual']) for row in document['tables']) == site.stack.counts(TABLES)
    assert document['photos']['checked'] == document['photos']['total'] > 0 and document['photos']['failed'] == 0
    assert document['rpo_seconds'] is None
    assert drill.after == drill.before
    assert drill.leftovers == NOTHING_LEFT
