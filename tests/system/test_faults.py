# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The backup's fault matrix, through real ``ansible-playbook playbooks/backup.yml`` runs against the shared scratch stack.

Processes are killed with SIGKILL at random moments of the dump, one kind at a time and together, as a crash, a reboot or
the OOM killer would: the async job's wrappers, the module, the host's pg_dump, zstd. The Docker daemon is restarted and
the database is stopped in the middle of a dump. Each case asserts that the play ends (no wait outlives its job), that
the failure is one sentence and not a traceback, that nothing unverified is ever published, and that the next backup
succeeds and removes what the killed ones left.

The random moments come from a seeded generator (FLEET_DR_FAULT_SEED, printed on failure) so that a failure can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time

import pytest

from conftest import DB_NAME, HOST, PYTHON, REPO_ROOT, job_processes, processes, run, sigkill

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import is_partial_name
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._verification import verify_artifact
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._lock import lock_file_held, lock_path

BACKUP_PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'backup.yml')
SEED = int(os.environ.get('FLEET_DR_FAULT_SEED', '20261206'))
# A dead job must end the play within one poll (1 s here) plus ansible's own time: 60 s is the bound, and a hang
# (the 6-hour wait this replaces) shows up as a timeout.
PLAY_DEADLINE = 60


class BackupPlay(object):
    """backup.yml runs against the shared stack, with the role's variables in an inventory file (no secret in argv)."""

    def __init__(self, stack, ansible, workdir, backup_dir):
        self.stack = stack
        self.ansible = ansible
        self.workdir = workdir
        self.backup_dir = backup_dir
        self.inventory = os.path.join(workdir, 'inventory.json')
        variables = {
            'ansible_connection': 'local', 'ansible_python_interpreter': PYTHON,
            'fleet_dr_project_src': stack.directory, 'fleet_dr_project_name': stack.project,
            'fleet_dr_db_password': stack.password, 'fleet_dr_backup_dir': backup_dir, 'backup_poll_interval': 1,
        }
        with open(os.open(self.inventory, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), 'w') as fileobj:
            json.dump({'all': {'children': {'telemetry_db': {'hosts': {HOST: {}}, 'vars': variables}}}}, fileobj)

    def start(self):
        return subprocess.Popen([self.ansible.playbook, '-i', self.inventory, BACKUP_PLAYBOOK], cwd=self.workdir,
                                env=self.ansible.env(self.stack.env, json_output=True), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)

    def run(self):
        proc = self.start()
        out, err = proc.communicate(timeout=600)
        return proc.returncode, out, err

    @property
    def lock(self):
        return lock_path(self.backup_dir, 'backup-%s' % DB_NAME)

    def wait_lock_free(self, timeout=180):
        """An orphaned module (its wrappers killed) still finishes its backup: wait for it, bounded."""
        deadline = time.monotonic() + timeout
        while lock_file_held(self.lock, 'backup') is not None:
            assert time.monotonic() < deadline, 'the backup lock %s is still held %d s later' % (self.lock, timeout)
            time.sleep(0.2)


def task_result(out, name):
    """The host's result of the last task whose name contains ``name``, from the json callback's output."""
    doc = json.loads(out[out.index('{'):])
    found = None
    for play in doc['plays']:
        for task in play['tasks']:
            if name in task['task']['name'] and HOST in task['hosts']:
                found = task['hosts'][HOST]
    return found


def entries(directory):
    return sorted(os.listdir(directory))


def published(directory):
    return [os.path.join(directory, name) for name in entries(directory)
            if not name.startswith('.') and not name.endswith('.manifest.json')]


@pytest.fixture
def play(stack, ansible, tmp_path):
    backup_dir = str(tmp_path / 'backups')
    os.makedirs(backup_dir, mode=0o700)
    yield BackupPlay(stack, ansible, str(tmp_path), backup_dir)
    shutil.rmtree(backup_dir, ignore_errors=True)


def _wait_for_dump(play, proc, timeout=120):
    """Wait until the async dump has written bytes into its temporary file; return the job's processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        partial = [name for name in entries(play.backup_dir) if is_partial_name(name)]
        if partial and os.path.getsize(os.path.join(play.backup_dir, partial[0])) > 0:
            return job_processes()
        time.sleep(0.02)
    raise AssertionError('the dump never started writing (rc=%s)' % proc.poll())


# What each kind of kill must end with: the error codes of the wait's failure.
KILLS = {
    'module': {'job_died'},                       # the wrapper writes a traceback: turned into one sentence
    'wrapper': {'job_died'},                      # the job cannot report; the orphaned module goes on and publishes
    'pg_dump': {'dump_failed'},
    'zstd': {'dump_failed'},
    'module+wrapper': {'job_died'},               # a kill of the process group, a reboot
    'everything': {'job_died'},
}
ORDER = ['module', 'wrapper', 'pg_dump', 'zstd', 'module+wrapper', 'everything', 'module', 'pg_dump', 'zstd', 'module+wrapper']


def _kill(kind, job, stack):
    if kind == 'pg_dump':
        return stack.kill_processes('pg_dump')
    if kind == 'everything':
        return sigkill(job['wrapper'] + job['module'] + job['zstd']) + stack.kill_processes('pg_dump')
    return sigkill(sum((job[part] for part in kind.split('+')), []))


def test_random_kills_of_a_backup_leave_only_verified_artifacts_and_the_next_backup_cleans_up(play, stack):
    rng = random.Random(SEED)
    outcomes = []
    partial_seen = set()
    attempts = 0
    while len([outcome for outcome in outcomes if outcome[2]]) < len(ORDER):
        kind = ORDER[len([outcome for outcome in outcomes if outcome[2]])]
        attempts += 1
        assert attempts <= 2 * len(ORDER), 'the dumps ended before the kills too often: %s' % outcomes
        proc = play.start()
        try:
            _wait_for_dump(play, proc)
            time.sleep(rng.uniform(0, 0.2))
            killed = _kill(kind, job_processes(), stack)
            out, err = proc.communicate(timeout=PLAY_DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError('attempt %d (%s, seed %d): the play did not end within %d s of the kill' % (attempts, kind, SEED, PLAY_DEADLINE))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        context = 'attempt %d, kill of %s (pids %s), seed %d' % (attempts, kind, killed, SEED)
        wait = task_result(out, 'Wait for the dump')
        outcomes.append((kind, wait and wait.get('error_code'), killed))
        if wait and not wait.get('failed'):
            # The dump (or the part of the job that was killed) had ended: a good backup.
            assert wait['verified'], context
            outcomes[-1] = (kind, None, [])
        else:
            assert killed, context + ': the backup failed but nothing was killed: ' + json.dumps(wait)[-2000:]
            assert proc.returncode != 0, context
            assert wait is not None, '%s: no wait result:\n%s' % (context, out[-3000:])
            assert wait['error_code'] in KILLS[kind], '%s: %s' % (context, json.dumps(wait)[-2000:])
            assert 'Traceback' not in wait['msg'] and 'Traceback' not in out, '%s: %s' % (context, wait['msg'])
            assert wait['msg'].count('\n') == 0, wait['msg']
            if wait['error_code'] == 'job_died':
                assert 'backup of %s' % DB_NAME in wait['msg'], wait['msg']
        play.wait_lock_free()
        partial_seen.update(name for name in entries(play.backup_dir) if is_partial_name(name))
        for path in published(play.backup_dir):
            result = verify_artifact(path)
            assert result['ok'], '%s: a published artifact does not verify: %s' % (context, result['problems'])
    assert partial_seen, 'no kill left a temporary file: the cleanup is not exercised (%s)' % outcomes

    rc, out, err = play.run()
    assert rc == 0, (out + err)[-4000:]
    result = task_result(out, 'Wait for the dump')
    assert result['verified'] and result['leftovers_removed'], result
    assert set(os.path.basename(path) for path in result['leftovers_removed']) <= partial_seen
    assert not [name for name in entries(play.backup_dir) if is_partial_name(name)], entries(play.backup_dir)
    for path in published(play.backup_dir):
        assert verify_artifact(path)['ok'], path
    assert lock_file_held(play.lock, 'backup') is None


def test_a_backup_with_the_database_stopped_halfway_fails_clearly_and_the_next_one_succeeds(play, stack):
    proc = play.start()
    try:
        _wait_for_dump(play, proc)
        stop = run(['docker', 'stop', '-t', '5', stack.container], timeout=120)
        assert stop.returncode == 0, stop.stderr
        out, err = proc.communicate(timeout=PLAY_DEADLINE)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        assert run(['docker', 'start', stack.container], timeout=120).returncode == 0
        stack.wait_healthy()
    assert proc.returncode != 0
    wait = task_result(out, 'Wait for the dump')
    assert wait['failed'] and wait['error_code'] in ('dump_failed', 'db_down', 'container_down'), wait
    assert 'Traceback' not in wait['msg'], wait['msg']
    assert entries(play.backup_dir) == ['.backup-%s.lock' % DB_NAME], entries(play.backup_dir)
    rc, out, err = play.run()
    assert rc == 0, (out + err)[-4000:]
    assert [verify_artifact(path)['ok'] for path in published(play.backup_dir)] == [True]


def _dockerd_pids():
    return [pid for pid, dummy, argv in processes() if os.path.basename(argv[0]) == 'dockerd']


def restart_docker():
    """Stop the Docker daemon and start it again (systemd's unit when there is one, else as scripts/setup.sh does);
    then start again the containers that were running. Returns the ids of those containers."""
    running = run(['docker', 'ps', '-q'], timeout=60).stdout.split()
    if run(['systemctl', 'is-active', '--quiet', 'docker'], timeout=60).returncode == 0:
        assert run(['systemctl', 'restart', 'docker'], timeout=300).returncode == 0
    else:
        pids = _dockerd_pids()
        assert pids, 'no dockerd process to restart'
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 120
        while _dockerd_pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _dockerd_pids(), 'dockerd did not stop'
        with open('/var/log/fleet-dr-dockerd.log', 'ab') as log:
            subprocess.Popen(['dockerd'], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while run(['docker', 'info'], timeout=60).returncode != 0:
        assert time.monotonic() < deadline, 'dockerd did not come back'
        time.sleep(0.5)
    if running:
        run(['docker', 'start'] + running, timeout=300)
    return running


def test_a_docker_daemon_restart_during_a_backup_fails_clearly_and_the_next_one_succeeds(play, stack):
    proc = play.start()
    try:
        _wait_for_dump(play, proc)
        restart_docker()
        out, err = proc.communicate(timeout=PLAY_DEADLINE + 120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stack.wait_healthy()
    assert proc.returncode != 0, out[-3000:]
    wait = task_result(out, 'Wait for the dump')
    assert wait['failed'] and wait['error_code'] in ('dump_failed', 'db_down', 'container_down', 'no_docker'), wait
    assert 'Traceback' not in wait['msg'], wait['msg']
    assert not [name for name in entries(play.backup_dir) if is_partial_name(name)], entries(play.backup_dir)
    assert published(play.backup_dir) == []
    rc, out, err = play.run()
    assert rc == 0, (out + err)[-4000:]
    assert [verify_artifact(path)['ok'] for path in published(play.backup_dir)] == [True]
