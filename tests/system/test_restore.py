# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""playbooks/restore.yml against a real scratch stack ("production" here), through real ansible-playbook runs.

Round trip (backup.yml, then restore.yml into the recreated stack), a runbook-made backup, and the cases that must fail
safely: after each of them production's data is what it was before (row counts of every table and a checksum of every
photo, read with psql), and - when the failure came before ``down -v`` - production's container is the same one.
"""

from __future__ import annotations

import binascii
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from conftest import COMMAND_TIMEOUT, HOST, PYTHON, REPO_ROOT, ComposeStack, checked, job_processes, run, secret_forms, sigkill

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import decrypt

BACKUP_PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'backup.yml')
RESTORE_PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'restore.yml')
SEED_ARGS = ['--size', 'tiny', '--random-seed', '20261201']
PHOTO_CHECKSUM = "SELECT count(*) || ':' || md5(string_agg(md5(data), ',' ORDER BY id)) FROM photo;"


class Production(object):
    """The scratch stack a restore replaces, with its own inventory (the role's variables) and backup directory."""

    def __init__(self, stack, ansible, workdir):
        self.stack = stack
        self.ansible = ansible
        self.workdir = workdir
        self.backup_dir = os.path.join(workdir, 'backups')
        os.makedirs(self.backup_dir, mode=0o700)
        self.inventory = os.path.join(workdir, 'inventory.json')
        self.variables = {
            'ansible_connection': 'local', 'ansible_python_interpreter': PYTHON,
            'fleet_dr_project_src': stack.directory, 'fleet_dr_project_name': stack.project,
            'fleet_dr_backup_dir': self.backup_dir, 'fleet_dr_encryption_key': stack.key_hex,
            'backup_poll_interval': 1, 'restore_poll_interval': 1, 'restore_recovery_playbook': RESTORE_PLAYBOOK,
            # The restore tests keep their module's backups (several a day) for the whole module; retention has its own
            # tests (test_offsite.py), which turn it back on.
            'backup_retention': False,
        }
        self.write_inventory()

    def write_inventory(self, **overrides):
        variables = dict(self.variables, **overrides)
        with open(os.open(self.inventory + '.tmp', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as fileobj:
            json.dump({'all': {'children': {'telemetry_db': {'hosts': {HOST: {}}, 'vars': variables}}}}, fileobj)
        os.rename(self.inventory + '.tmp', self.inventory)

    def playbook(self, playbook, *extra):
        """``ansible-playbook -i <inventory> <playbook> <extra>``, in the environment compose needs for the stack."""
        return run([self.ansible.playbook, '-i', self.inventory, playbook] + list(extra), cwd=self.workdir,
                   env=self.ansible.env(self.stack.env), timeout=COMMAND_TIMEOUT)

    def command(self, command_line):
        """Run a command line as an operator would paste it (the recovery command of a failure message)."""
        argv = shlex.split(command_line)
        assert argv[0] == 'ansible-playbook', command_line
        return run([self.ansible.playbook] + argv[1:], cwd=self.workdir, env=self.ansible.env(self.stack.env), timeout=COMMAND_TIMEOUT)

    def start_restore(self, *extra):
        """restore.yml in the background; finish with ``communicate()``."""
        return subprocess.Popen([self.ansible.playbook, '-i', self.inventory, RESTORE_PLAYBOOK] + list(extra), cwd=self.workdir,
                                env=self.ansible.env(self.stack.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def restore(self, *extra):
        return self.playbook(RESTORE_PLAYBOOK, *extra)

    def backup(self, *extra):
        proc = self.playbook(BACKUP_PLAYBOOK, *extra)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        return newest_artifact(self.backup_dir)

    def refresh(self):
        """Find the db container again (a restore recreates it)."""
        self.stack.container = self.stack.compose('ps', '-q', 'db').stdout.strip() or None
        return self.stack.container

    def state(self):
        """Production's data as psql sees it: every table's row count and a checksum of every photo."""
        assert self.refresh(), 'production has no db container'
        tables = self.stack.user_tables()
        return {'counts': self.stack.counts(tables), 'photos': self.stack.psql(PHOTO_CHECKSUM)}

    def photos(self):
        rows = self.stack.psql("SELECT id, encode(data, 'hex') FROM photo ORDER BY id;").splitlines()
        return [(int(i), binascii.unhexlify(h)) for i, h in (row.split('|') for row in rows)]


def newest_artifact(directory):
    paths = sorted(p for p in glob.glob(os.path.join(directory, '*')) if not p.endswith('.manifest.json') and not os.path.isdir(p))
    assert paths, 'no artifact in %s' % directory
    return max(paths, key=os.path.getmtime)


def tree(directory):
    """Every path below ``directory`` with its size and mtime."""
    found = []
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            found.append((path, os.path.getsize(path), os.path.getmtime(path)))
    return sorted(found)


def output(proc):
    return proc.stdout + proc.stderr


def failure_message(proc, task='Stop with what failed and how to get back'):
    """The msg of one of the role's final failure tasks (by default "Stop with what failed and how to get back")."""
    text = output(proc)
    marker = 'TASK [fleet_telemetry.dr.restore : %s]' % task
    assert marker in text, 'the run did not end in the role\'s failure task:\n%s' % text[-6000:]
    prefix = 'fatal: [%s]: FAILED! => ' % HOST
    for line in text[text.index(marker):].splitlines():
        if line.startswith(prefix):
            return json.loads(line[len(prefix):])['msg']
    raise AssertionError('no failure line after the failure task:\n%s' % text[-6000:])


def task_status(proc, task):
    """The status word (ok, changed, skipping, fatal ...) of the role's task ``task`` in the run's output."""
    text = output(proc)
    marker = 'TASK [fleet_telemetry.dr.restore : %s]' % task
    assert marker in text, 'no task %s in the output:\n%s' % (task, text[-6000:])
    for line in text[text.index(marker) + len(marker):].splitlines():
        if line.endswith(': [%s]' % HOST) or ': [%s]' % HOST in line:
            return line.split(':', 1)[0]
    raise AssertionError('no status line after %s' % marker)


def reports(production):
    paths = sorted(glob.glob(os.path.join(production.backup_dir, 'reports', 'restore_*.json')), key=os.path.getmtime)
    return [json.load(open(p)) for p in paths]


@pytest.fixture(scope='module')
def production(tmp_path_factory, request, ansible):
    workdir = str(tmp_path_factory.mktemp('restoreprod'))
    stack = ComposeStack(workdir, 'restore')
    request.addfinalizer(stack.down)
    stack.up()
    stack.seed(SEED_ARGS)
    return Production(stack, ansible, workdir)


@pytest.fixture(scope='module')
def plain_backup(production):
    """An uncompressed plain backup of production, taken with backup.yml (the runbook's file name)."""
    path = production.backup('-e', 'backup_compression=none')
    assert path.endswith('.sql'), path
    return path


def damaged_copy(production, source, name, damage, with_manifest=True):
    """A damaged copy of ``source`` (and its manifest) in a directory of its own."""
    directory = os.path.join(production.workdir, 'damaged-' + name)
    os.makedirs(directory)
    target = os.path.join(directory, os.path.basename(source))
    shutil.copy2(source, target)
    if with_manifest:
        shutil.copy2(source + '.manifest.json', target + '.manifest.json')
    damage(target)
    return target


def truncate_at_line(path):
    """Cut the dump at the line boundary in the middle of the photo data (the trap of OFFLINE.md)."""
    with open(path, 'rb') as fileobj:
        data = fileobj.read()
    copy_at = data.index(b'COPY public.photo ')
    cut = data.index(b'\n', copy_at + (len(data) - copy_at) // 3) + 1
    with open(path, 'wb') as fileobj:
        fileobj.write(data[:cut])


def flip_photo_byte(path):
    """Flip one hex digit inside the first photo's data (the dump stays valid SQL)."""
    with open(path, 'rb') as fileobj:
        data = bytearray(fileobj.read())
    first_row = data.index(b'\n', data.index(b'COPY public.photo ')) + 1
    pos = data.index(b'\\\\x', first_row) + 3 + 100
    data[pos] = ord('0') if data[pos] != ord('0') else ord('1')
    with open(path, 'wb') as fileobj:
        fileobj.write(bytes(data))


def alter_manifest_counts(path):
    manifest_path = path + '.manifest.json'
    with open(manifest_path) as fileobj:
        manifest = json.load(fileobj)
    manifest['row_counts']['photo'] += 1
    with open(manifest_path, 'w') as fileobj:
        json.dump(manifest, fileobj)


def runbook_dump(production, name='runbook'):
    """The seed runbook's backup: ``docker-compose exec -T db pg_dump -U challengeuser telemetry_db > backup_....sql``."""
    directory = os.path.join(production.workdir, name)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, 'backup_2026-12-01_03-00-00.sql')
    with open(path, 'wb') as fileobj:
        proc = subprocess.run(production.stack.compose_cmd + ['-p', production.stack.project, 'exec', '-T', 'db', 'pg_dump', '-U',
                                                              'challengeuser', 'telemetry_db'],
                              cwd=production.stack.directory, env=production.stack.env, stdout=fileobj, stderr=subprocess.PIPE,
                              timeout=COMMAND_TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr
    return path


def assert_untouched(production, before, container):
    """Production's data equals ``before`` and its container is the same one (nothing was removed)."""
    assert production.state() == before
    assert production.stack.container == container, 'production\'s container was replaced'


# --------------------------------------------------------------------------------------------
# Restores that must work
# --------------------------------------------------------------------------------------------

def test_round_trip(production, plain_backup):
    """backup.yml, then restore.yml of the newest backup: the stack is recreated, every count and photo is back.

    With the password given (as the demo inventory does) the restore's psql runs on the host, over the new container's
    address (restore_client=auto)."""
    compressed = production.backup()
    before = production.state()
    container = production.stack.container
    production.write_inventory(fleet_dr_db_password=production.stack.password)
    try:
        proc = production.restore('-e', 'restore_confirm=true')
    finally:
        production.write_inventory()
    assert proc.returncode == 0, output(proc)[-6000:]
    after = production.state()
    assert production.stack.container != container, 'the stack was not recreated'
    assert after == before
    manifest = json.load(open(compressed + '.manifest.json'))
    for table, count in manifest['row_counts'].items():
        assert after['counts'][table] == count
    photos = production.photos()
    assert len(photos) == before['counts']['photo'] > 0
    for dummy, data in photos:
        decrypt(production.stack.key, data)

    report = reports(production)[-1]
    assert report['status'] == 'passed'
    assert report['artifact']['path'] == compressed, 'the newest backup was not the one restored'
    assert report['photos']['checked'] == report['photos']['total'] == len(photos) and report['photos']['failed'] == 0
    assert report['rto_seconds'] > 0
    assert report['restore_client']['used'] == 'host', report['restore_client']
    assert all(t['ok'] for t in report['tables']) and set(manifest['row_counts']) <= set(t['table'] for t in report['tables'])
    safety = report['safety_dump']['path']
    assert os.path.dirname(safety) == os.path.join(production.backup_dir, 'safety')
    assert os.path.basename(safety).startswith('safety_') and os.path.exists(safety + '.manifest.json')
    assert json.load(open(safety + '.manifest.json'))['row_counts'] == before['counts']
    assert 'restored and verified telemetry_db from %s' % compressed in output(proc)
    if os.environ.get('FLEET_DR_SHOW'):
        print(output(proc)[-8000:])


def test_a_second_restore_while_one_runs_is_refused(production, plain_backup):
    """Two restores of one database at once: the second is refused before it touches anything, naming the running one;
    the first completes and verifies; the lease is gone afterwards."""
    lease = os.path.join(production.backup_dir, '.restore-telemetry_db.lease.json')
    first = production.start_restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(lease) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.exists(lease), 'the first restore never took its lease'
        holder = json.load(open(lease))
        second = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup)
        assert first.poll() is None, 'the first restore ended before the second was refused: the test proves nothing'
    finally:
        out, err = first.communicate(timeout=COMMAND_TIMEOUT)
    assert second.returncode != 0
    msg = failure_message(second)
    assert 'another restore of telemetry_db is running' in msg and holder['started_at'] in msg and lease in msg, msg
    assert 'Nothing was changed' in msg, msg
    assert first.returncode == 0, (out + err)[-6000:]
    assert 'restored and verified telemetry_db from %s' % plain_backup in out
    assert not os.path.exists(lease), 'the lease was not given up'
    manifest = json.load(open(plain_backup + '.manifest.json'))
    assert all(production.state()['counts'][table] == count for table, count in manifest['row_counts'].items())


def test_a_backup_while_a_restore_holds_its_lease_is_refused(production):
    """A restore's lease (taken by another run's token) in the backup directory: backup.yml writes nothing and says why."""
    from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _lock
    listing = sorted(p for p in os.listdir(production.backup_dir) if not p.startswith('.'))
    _lock.acquire_lease(production.backup_dir, 'restore-telemetry_db', 'another-run', 600, 'restore of telemetry_db')
    try:
        proc = production.playbook(BACKUP_PLAYBOOK)
    finally:
        assert _lock.release_lease(production.backup_dir, 'restore-telemetry_db', 'another-run')
    assert proc.returncode != 0
    assert 'a backup of telemetry_db is refused while a restore of it runs' in output(proc), output(proc)[-4000:]
    assert '"error_code": "lock_held"' in output(proc), output(proc)[-4000:]
    assert sorted(p for p in os.listdir(production.backup_dir) if not p.startswith('.')) == listing


def test_newest_is_never_a_safety_dump(production):
    """After a restore its safety dump is the newest file under the backup directory, yet the newest backup is picked."""
    newest_backup = newest_artifact(production.backup_dir)
    safety = sorted(glob.glob(os.path.join(production.backup_dir, 'safety', 'safety_*')), key=os.path.getmtime)
    assert safety and os.path.getmtime(safety[-1]) > os.path.getmtime(newest_backup)
    proc = production.restore('--check')
    assert proc.returncode == 0, output(proc)[-6000:]
    assert 'would restore %s' % newest_backup in output(proc)


def test_runbook_backup_restores_and_verifies(production):
    before = production.state()
    path = runbook_dump(production)
    proc = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + path)
    assert proc.returncode == 0, output(proc)[-6000:]
    assert production.state() == before
    report = reports(production)[-1]
    assert report['status'] == 'passed' and report['artifact']['path'] == path
    assert all(t['ok'] and t['source'] == 'dump' for t in report['tables']), report['tables']
    # No password in this inventory: the restore went through docker exec, and the report says why.
    assert report['restore_client']['used'] == 'container' and 'no password' in report['restore_client']['reason']


def test_check_mode_changes_nothing(production, plain_backup):
    before = production.state()
    container = production.stack.container
    listing = tree(production.backup_dir)
    proc = production.restore('--check', '-e', 'restore_confirm=true')
    assert proc.returncode == 0, output(proc)[-6000:]
    assert 'check mode: would restore' in output(proc)
    # A real run recreates the containers after down -v, so check mode reports the two starts as changes.
    assert task_status(proc, 'Remove the stack and its volumes (down -v)') == 'changed'
    assert task_status(proc, 'Start the database service and wait until it answers') == 'changed'
    assert task_status(proc, 'Start the rest of the stack') == 'changed'
    assert task_status(proc, 'Renew the restore lease before down -v (the preflight and the safety dump took part of its ttl)') == 'ok'
    assert task_status(proc, 'Renew the restore lease before the restore') == 'ok'
    assert_untouched(production, before, container)
    assert tree(production.backup_dir) == listing


# --------------------------------------------------------------------------------------------
# Restores that must fail, leaving production as it was
# --------------------------------------------------------------------------------------------

BROKEN = [
    ('truncated', truncate_at_line, True, 'does not verify'),
    ('truncated-runbook', truncate_at_line, False, 'trailer'),
    ('flipped', flip_photo_byte, True, 'does not verify'),
    ('flipped-runbook', flip_photo_byte, False, 'photo'),
    ('manifest-counts', alter_manifest_counts, True, 'the manifest says'),
]


@pytest.mark.parametrize('name, damage, with_manifest, expected', BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_artifact_is_refused(production, plain_backup, name, damage, with_manifest, expected):
    before = production.state()
    container = production.stack.container
    source = plain_backup if with_manifest else runbook_dump(production, 'runbook-' + name)
    broken = damaged_copy(production, source, name, damage, with_manifest)
    proc = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + broken)
    assert proc.returncode != 0
    msg = failure_message(proc)
    assert expected in msg and 'Nothing was changed' in msg, msg
    assert_untouched(production, before, container)


@pytest.mark.parametrize('variables, expected', [
    ({'fleet_dr_encryption_key': os.urandom(32).hex()}, 'fleet_dr_encryption_key'),
    ({'fleet_dr_cipher': 'fernet'}, 'cipher'),
], ids=['wrong-key', 'wrong-cipher'])
def test_wrong_key_or_cipher_is_refused(production, plain_backup, variables, expected):
    before = production.state()
    container = production.stack.container
    production.write_inventory(**variables)
    try:
        proc = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup)
    finally:
        production.write_inventory()
    assert proc.returncode != 0
    msg = failure_message(proc)
    assert 'key preflight' in msg and 'Nothing was changed' in msg, msg
    assert expected.replace('fleet_dr_', '') in msg, msg
    assert_untouched(production, before, container)
    # The key preflight ran while the safety dump did: that dump ended, or the failure stopped it; none outlives the play.
    job = job_processes('AnsiballZ_pg_logical_backup.py')
    assert not job['wrapper'] and not job['module'], job


def test_no_confirmation_is_refused(production, plain_backup):
    before = production.state()
    container = production.stack.container
    proc = production.restore('-e', 'restore_artifact=' + plain_backup)
    assert proc.returncode != 0
    msg = failure_message(proc)
    assert 'restore_confirm' in msg and 'set restore_confirm=true' in msg and 'Nothing was changed' in msg, msg
    assert_untouched(production, before, container)
    # A survey answer "false" is no confirmation either.
    proc = production.restore('-e', 'restore_artifact=' + plain_backup, '-e', 'restore_confirm=false')
    assert proc.returncode != 0 and 'restore_confirm' in failure_message(proc)
    assert_untouched(production, before, container)


def test_unreachable_target_is_refused_while_its_volume_exists(production, plain_backup):
    """The database container is stopped: no safety dump can be taken and its volume holds data, so nothing is removed."""
    before = production.state()
    container = production.stack.container
    checked(['docker', 'stop', '-t', '5', container], 'docker stop')
    try:
        proc = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup)
        assert proc.returncode != 0
        msg = failure_message(proc)
        assert 'does not answer' in msg and 'restore_unreachable=force' in msg and 'Nothing was changed' in msg, msg
        proc = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup, '-e', 'restore_unreachable=stop')
        assert proc.returncode != 0 and 'restore_unreachable=stop' in failure_message(proc)
    finally:
        checked(['docker', 'start', container], 'docker start')
        production.stack.wait_healthy()
    assert_untouched(production, before, container)


def test_custom_backup_restores_while_the_database_is_down(production):
    """A custom-format backup, production's database stopped (a restore after a disaster): the preflight reads the
    archive's table of contents in a throw-away container of the service's image, and the restore goes on."""
    before = production.state()
    artifact = production.backup('-e', 'backup_format=custom', '-e', 'backup_compression=none')
    assert artifact.endswith('.dump'), artifact
    container = production.stack.container
    checked(['docker', 'stop', '-t', '5', container], 'docker stop')
    try:
        proc = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + artifact, '-e', 'restore_unreachable=force')
    finally:
        if run(['docker', 'ps', '-aq', '--filter', 'id=' + container]).stdout.strip():
            checked(['docker', 'start', container], 'docker start')
    assert proc.returncode == 0, output(proc)[-6000:]
    production.refresh()
    production.stack.wait_healthy()
    assert production.state() == before


def test_custom_backup_is_read_and_restored_by_the_host_pg_restore(production):
    """With the password the host's pg_dump writes a custom archive itself (seekable), the key preflight reads its table
    of contents and photos with the host's pg_restore from the file itself (not streamed into docker exec), and the
    restore runs there too, with jobs."""
    production.write_inventory(fleet_dr_db_password=production.stack.password)
    try:
        artifact = production.backup('-e', 'backup_format=custom', '-e', 'backup_compression=none')
        before = production.state()
        proc = run([production.ansible.playbook, '-i', production.inventory, RESTORE_PLAYBOOK, '-e', 'restore_confirm=true',
                    '-e', 'restore_artifact=' + artifact], cwd=production.workdir,
                   env=production.ansible.env(production.stack.env, json_output=True), timeout=COMMAND_TIMEOUT)
    finally:
        production.write_inventory()
    assert proc.returncode == 0, output(proc)[-6000:]
    doc = json.loads(proc.stdout[proc.stdout.index('{'):])
    tasks = [task for play in doc['plays'] for task in play['tasks'] if 'Key preflight' in task['task']['name']]
    assert tasks, [task['task']['name'] for play in doc['plays'] for task in play['tasks']]
    preflight = tasks[0]['hosts'][HOST]
    assert preflight['restore_client']['used'] == 'host', preflight.get('restore_client')
    assert preflight['preflight']['photos_checked'] > 0 and preflight['preflight']['photo_source'] == 'pg_restore -a -t photo'
    production.refresh()
    assert production.state() == before
    report = reports(production)[-1]
    assert report['status'] == 'passed' and report['artifact']['path'] == artifact
    assert report['restore_client']['used'] == 'host', report['restore_client']


def test_failure_after_down_v_is_recovered_from_the_safety_dump(production, plain_backup):
    """The database does not become ready within restore_wait_timeout=3 after down -v: the message names the safety dump and
    the command that restores it; running that command brings production's data back.

    An init script that sleeps makes the fresh database slow to start whatever the machine's speed: init scripts run only
    on an empty data directory, so production's running database never reads it, only the one ``up -d db`` creates."""
    before = production.state()
    slow_init = os.path.join(production.stack.directory, 'schema', '00_slow_first_start.sh')
    with open(slow_init, 'w') as fileobj:
        fileobj.write('sleep 20\n')
    try:
        proc = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup, '-e', 'restore_wait_timeout=3')
    finally:
        os.remove(slow_init)
    assert proc.returncode != 0, output(proc)[-6000:]
    msg = failure_message(proc)
    assert 'start the database' in msg and 'not ready' in msg, msg
    assert 'The database was already removed' in msg, msg
    command = recovery_command(msg)
    assert command.endswith('-e restore_confirm=true -e restore_unreachable=force'), command
    safety = shlex.split(command)[shlex.split(command).index('-e') + 1].split('=', 1)[1]
    assert os.path.dirname(safety) == os.path.join(production.backup_dir, 'safety') and os.path.exists(safety)
    report = reports(production)[-1]
    assert report['status'] == 'failed' and report['safety_dump']['path'] == safety and command in report['recovery']

    # Let the new, empty database finish its first start: the recovery run's safety check must not meet the entrypoint's
    # temporary init server, whose dump would break off when it stops (that run would then stop safely and ask for a rerun).
    production.refresh()
    production.stack.wait_healthy()
    recovered = production.command(command)
    assert recovered.returncode == 0, output(recovered)[-6000:]
    assert production.state() == before


def recovery_command(msg):
    return msg[msg.index('to bring it back run: ') + len('to bring it back run: '):msg.index(' (with the same variables')]


def test_artifact_broken_after_down_v_is_recovered_from_the_safety_dump(production, plain_backup):
    """The artifact is damaged while the stack is being recreated (after the preflight proved it, after down -v): the restore
    step's own checksum check refuses it, the message names the safety dump, and its command brings the data back."""
    before = production.state()
    container = production.stack.container
    artifact = damaged_copy(production, plain_backup, 'late', lambda path: None)
    proc = production.start_restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + artifact)
    try:
        deadline = time.monotonic() + 300
        while run(['docker', 'ps', '-aq', '--filter', 'id=' + container]).stdout.strip() and proc.poll() is None:
            assert time.monotonic() < deadline, 'down -v did not happen'
            time.sleep(0.1)
        flip_photo_byte(artifact)
    finally:
        out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
    assert proc.returncode != 0, out[-4000:]
    msg = failure_message(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert 'restore and verify' in msg and 'does not verify' in msg and 'The database was already removed' in msg, msg
    production.refresh()
    production.stack.wait_healthy()
    recovered = production.command(recovery_command(msg))
    assert recovered.returncode == 0, output(recovered)[-6000:]
    assert production.state() == before


def _wait_for_job(proc, script, timeout=300):
    """Wait until the restore's async job running ``script`` is up; return its processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        job = job_processes(script)
        if job['module']:
            return job
        time.sleep(0.02)
    raise AssertionError('no %s job came up (rc=%s)' % (script, proc.poll()))


def _finish(proc, timeout=120):
    """The output of a started run that must end on its own (a dead job is noticed at the next poll)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError('the restore did not end within %d s of the kill' % timeout) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill_job(job):
    killed = sigkill(job['wrapper'] + job['module'] + job['zstd'])
    assert killed, job
    return killed


def test_a_restore_whose_safety_dump_is_killed_stops_before_down_v(production, plain_backup):
    """kill -9 of the safety dump's job (its wrappers, the module and zstd): the wait notices the dead job, the restore stops
    before down -v, production is untouched, and the next run is not blocked."""
    before = production.state()
    container = production.stack.container
    proc = production.start_restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup)
    _kill_job(_wait_for_job(proc, 'AnsiballZ_pg_logical_backup.py'))
    done = _finish(proc)
    assert done.returncode != 0
    msg = failure_message(done)
    assert 'safety dump' in msg and 'is no longer running but never reported a result' in msg, msg
    assert 'Nothing was changed' in msg and 'Traceback' not in output(done), msg
    assert_untouched(production, before, container)
    again = production.restore('--check')
    assert again.returncode == 0, output(again)[-4000:]


def test_a_restore_killed_after_down_v_is_recovered_from_the_safety_dump(production, plain_backup):
    """kill -9 of the restore step's job after down -v: the play says the database was removed and how to bring the safety
    dump back, and that command brings production's data back."""
    before = production.state()
    proc = production.start_restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup)
    _kill_job(_wait_for_job(proc, 'AnsiballZ_pg_restore_verify.py'))
    done = _finish(proc)
    assert done.returncode != 0
    msg = failure_message(done)
    assert 'restore and verify' in msg and 'is no longer running but never reported a result' in msg, msg
    assert 'The database was already removed' in msg, msg
    report = reports(production)[-1]
    assert report['status'] == 'failed' and recovery_command(msg) in report['recovery']
    production.refresh()
    production.stack.wait_healthy()
    recovered = production.command(recovery_command(msg))
    assert recovered.returncode == 0, output(recovered)[-6000:]
    assert production.state() == before


def test_a_whole_restore_killed_after_down_v_is_named_by_the_next_one(production, plain_backup):
    """kill -9 of ansible-playbook and of the restore's job after down -v (a reboot of the controller and the host): the
    lease, renewed at every poll, ends restore_lease_ttl later; until then a restore is refused, naming the step; the next
    restore takes it over, says where the killed one was and which safety dump it took, and restores; that safety dump
    brings back the data from before the killed restore."""
    before = production.state()
    lease_file = os.path.join(production.backup_dir, '.restore-telemetry_db.lease.json')
    killed = subprocess.Popen([production.ansible.playbook, '-i', production.inventory, RESTORE_PLAYBOOK, '-e', 'restore_confirm=true',
                               '-e', 'restore_artifact=' + plain_backup, '-e', 'restore_lease_ttl=15'],
                              cwd=production.workdir, env=production.ansible.env(production.stack.env), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        job = _wait_for_job(killed, 'AnsiballZ_pg_restore_verify.py')
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(60)
    _kill_job(job)
    lease = json.load(open(lease_file))
    assert lease['stage'].startswith('restore of %s after down -v; safety dump ' % plain_backup), lease
    safety = lease['stage'].rsplit('safety dump ', 1)[1]
    assert os.path.dirname(safety) == os.path.join(production.backup_dir, 'safety') and os.path.exists(safety), safety

    refused = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup)
    assert refused.returncode != 0
    assert 'at step "restore of %s after down -v' % plain_backup in failure_message(refused)
    time.sleep(max(0.0, lease['expires'] - time.time()) + 0.5)

    proc = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup)
    assert proc.returncode == 0, output(proc)[-6000:]
    assert 'taken over from a restore of telemetry_db started %s' % lease['started_at'] in output(proc), output(proc)[-6000:]
    assert 'safety dump %s' % safety in output(proc)
    counts = json.load(open(plain_backup + '.manifest.json'))['row_counts']
    assert all(production.state()['counts'][table] == count for table, count in counts.items())
    back = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + safety)
    assert back.returncode == 0, output(back)[-6000:]
    assert production.state() == before


def test_a_full_disk_during_the_safety_dump_stops_before_down_v(production, plain_backup):
    """The safety directory fills up once the safety dump's job has started (another writer takes the space after the
    role's free-space check): the dump fails, leaves nothing, and the restore stops before down -v."""
    before = production.state()
    container = production.stack.container
    safety = os.path.join(production.backup_dir, 'safety')
    kept = os.path.join(production.workdir, 'safety-kept')
    if os.path.exists(safety):
        os.rename(safety, kept)
    os.makedirs(safety, mode=0o700)
    assert run(['mount', '-t', 'tmpfs', '-o', 'size=256m,mode=0700', 'tmpfs', safety]).returncode == 0
    filler = os.path.join(safety, 'filler')
    try:
        proc = production.start_restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup)
        _wait_for_job(proc, 'AnsiballZ_pg_logical_backup.py')
        subprocess.run(['dd', 'if=/dev/zero', 'of=' + filler, 'bs=1M'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False, timeout=120)
        done = _finish(proc)
        left = sorted(os.listdir(safety))
    finally:
        run(['umount', safety])
        os.rmdir(safety)
        if os.path.exists(kept):
            os.rename(kept, safety)
    assert done.returncode != 0
    msg = failure_message(done)
    # The dump of this small database is quick: the full disk is met by the dump's own free-space check or by its writes.
    assert 'safety dump' in msg and ('no space left' in msg or 'MiB free' in msg) and 'Nothing was changed' in msg, msg
    assert left == ['.backup-telemetry_db.lock', 'filler'], left
    assert_untouched(production, before, container)
    again = production.restore('--check')
    assert again.returncode == 0, output(again)[-4000:]


def test_a_backup_and_a_restore_started_at_the_same_moment_never_overlap(production, plain_backup):
    """backup.yml and restore.yml started together: one of them is refused, naming the other, or they ran one after the
    other; production ends verified; the one refused succeeds when run again."""
    backup = subprocess.Popen([production.ansible.playbook, '-i', production.inventory, BACKUP_PLAYBOOK], cwd=production.workdir,
                              env=production.ansible.env(production.stack.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    restore = production.start_restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup)
    backup_done, restore_done = _finish(backup, COMMAND_TIMEOUT), _finish(restore, COMMAND_TIMEOUT)
    backup_refused = 'a backup of telemetry_db is refused while a restore of it runs' in output(backup_done)
    restore_refused = restore_done.returncode != 0 and 'another backup of telemetry_db' in output(restore_done)
    assert backup_done.returncode == 0 or backup_refused, output(backup_done)[-4000:]
    assert restore_done.returncode == 0 or restore_refused, output(restore_done)[-4000:]
    if not (backup_refused or restore_refused):
        manifest = json.load(open(newest_artifact(production.backup_dir) + '.manifest.json'))
        report = reports(production)[-1]
        assert manifest['finished_at'] < report['started_at'] or manifest['started_at'] > report['finished_at'], (manifest, report)
    counts = json.load(open(plain_backup + '.manifest.json'))['row_counts']
    if restore_done.returncode == 0:
        assert all(production.state()['counts'][table] == count for table, count in counts.items())
    if restore_refused:
        assert 'Nothing was changed' in failure_message(restore_done)
        assert production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup).returncode == 0
    if backup_refused:
        production.backup()


def test_report_write_failure_after_a_good_restore_is_no_rollback(production, plain_backup):
    """The report directory cannot be created (its parent is a file): the restore itself passed, so the run fails on the
    report alone, says the database was restored and never offers a way back; the lease is given up."""
    before = production.state()
    blocker = os.path.join(production.workdir, 'not-a-directory')
    with open(blocker, 'w') as fileobj:
        fileobj.write('a file where the report directory\'s parent should be\n')
    proc = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup,
                              '-e', 'restore_report_dir=' + os.path.join(blocker, 'reports'))
    assert proc.returncode != 0
    msg = failure_message(proc, 'Stop when the report of a good restore could not be written')
    assert 'restored and verified telemetry_db from %s' % plain_backup in msg and 'could not be written' in msg, msg
    assert 'already removed' not in msg and 'to bring it back' not in msg, msg
    assert not os.path.exists(os.path.join(production.backup_dir, '.restore-telemetry_db.lease.json'))
    assert production.state() == before


def test_no_secret_in_verbose_output_or_reports(production, plain_backup):
    """db password and ENCRYPTION_KEY: not in -vvvv output of a restore over the direct transport, nor in the reports."""
    production.write_inventory(fleet_dr_transport='direct', fleet_dr_db_host='127.0.0.1', fleet_dr_db_port=production.stack.port,
                               fleet_dr_db_password=production.stack.password)
    try:
        proc = production.restore('-vvvv', '-e', 'restore_confirm=true', '-e', 'restore_artifact=' + plain_backup)
    finally:
        production.write_inventory()
    assert proc.returncode == 0, output(proc)[-6000:]
    text = output(proc)
    files = []
    for pattern in ('reports/*', 'safety/*'):
        for path in glob.glob(os.path.join(production.backup_dir, pattern)):
            if path.endswith(('.json', '.md', '.xml', '.jsonl')):
                files.append((path, open(path, encoding='utf-8', errors='replace').read()))
    assert files
    for form in secret_forms(production.stack.password, production.stack.key):
        assert form not in text, 'a secret is in the -vvvv output'
        for path, content in files:
            assert form not in content, 'a secret is in %s' % path
