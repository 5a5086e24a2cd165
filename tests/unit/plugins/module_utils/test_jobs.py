# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _jobs
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _lock

JID = 'j123456789012.4242'
WRAPPER_ARGV = ['/usr/bin/python3', '/root/.ansible/tmp/ansible-tmp-1/async_wrapper.py', 'j123456789012', '21600',
                '/root/.ansible/tmp/ansible-tmp-1/AnsiballZ_pg_logical_backup.py', '_']


@pytest.fixture
def proc(tmp_path):
    """A stand-in for /proc: ``add(pid, argv)`` makes a process."""
    root = tmp_path / 'proc'
    root.mkdir()
    (root / 'self').mkdir()

    def add(pid, argv):
        (root / str(pid)).mkdir()
        (root / str(pid) / 'cmdline').write_bytes(b'\0'.join(a.encode() for a in argv) + b'\0')
    add.root = str(root)
    return add


@pytest.fixture
def async_dir(tmp_path):
    directory = tmp_path / 'async'
    directory.mkdir()

    def write(data):
        (directory / JID).write_text(json.dumps(data))
    write.path = str(directory)
    return write


RUNNING = {'started': True, 'finished': False, 'ansible_job_id': JID}


def test_wrapper_pids_finds_the_job_s_wrappers_only(proc):
    proc(100, WRAPPER_ARGV)
    proc(101, WRAPPER_ARGV)
    proc(102, WRAPPER_ARGV[:2] + ['j999999999999'] + WRAPPER_ARGV[3:])
    proc(103, ['/usr/bin/python3', '/root/.ansible/tmp/ansible-tmp-1/AnsiballZ_pg_logical_backup.py'])
    proc(104, ['sleep', 'j123456789012'])
    assert _jobs.wrapper_pids(JID, proc.root) == [100, 101]


def test_wrapper_pids_is_none_without_proc(tmp_path):
    assert _jobs.wrapper_pids(JID, str(tmp_path / 'missing')) is None


def test_a_running_job_is_unfinished(proc, async_dir):
    async_dir(RUNNING)
    proc(100, WRAPPER_ARGV)
    result = _jobs.job_status(async_dir.path, JID, 'backup of db', proc=proc.root)
    assert result == {'started': True, 'finished': False, 'ansible_job_id': JID, 'results_file': async_dir.path + '/' + JID}


def test_without_proc_a_job_counts_as_running(tmp_path, async_dir):
    async_dir(RUNNING)
    assert _jobs.job_status(async_dir.path, JID, proc=str(tmp_path / 'missing'))['finished'] is False


def test_an_ended_job_returns_its_own_result(proc, async_dir):
    async_dir({'changed': True, 'path': '/b/backup.sql.zst', 'size': 4096})
    result = _jobs.job_status(async_dir.path, JID, proc=proc.root)
    assert result == {'changed': True, 'path': '/b/backup.sql.zst', 'size': 4096, 'finished': True, 'ansible_job_id': JID}


def test_a_job_whose_wrappers_are_gone_is_dead(proc, async_dir):
    async_dir(RUNNING)
    result = _jobs.job_status(async_dir.path, JID, 'backup of telemetry_db', 'nothing was published', proc=proc.root)
    assert result['failed'] and result['finished'] and result['dead']
    assert result['error_code'] == 'job_died'
    assert result['msg'].startswith('the backup of telemetry_db (job %s) is no longer running but never reported a result' % JID)
    assert 'Nothing was published.' in result['msg']


def test_a_job_that_ends_while_it_is_looked_at_is_not_dead(proc, async_dir, monkeypatch):
    async_dir(RUNNING)

    def ended_meanwhile(jid, proc_root):
        async_dir({'changed': False, 'msg': 'done'})
        return []
    monkeypatch.setattr(_jobs, 'wrapper_pids', ended_meanwhile)
    result = _jobs.job_status(async_dir.path, JID, proc=proc.root)
    assert result == {'changed': False, 'msg': 'done', 'finished': True, 'ansible_job_id': JID}


def test_a_missing_job_file_is_named(proc, async_dir):
    result = _jobs.job_status(async_dir.path, JID, 'restore of db', proc=proc.root)
    assert result['failed'] and result['finished'] and result['error_code'] == 'job_missing'
    assert 'has no job file %s/%s' % (async_dir.path, JID) in result['msg']


def _hold(path, ready, release):
    with _lock.BackupLock(path, 'backup-db'):
        ready.set()
        release.wait(30)


def test_a_dead_job_names_the_module_that_still_holds_its_lock(tmp_path, proc, async_dir):
    async_dir(RUNNING)
    ctx = multiprocessing.get_context('fork')
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        lock = _lock.lock_path(str(tmp_path), 'backup-db')
        result = _jobs.job_status(async_dir.path, JID, 'backup of db', lock=lock, proc=proc.root)
        assert result['dead']
        assert 'Pid %d still holds the lock %s' % (holder.pid, lock) in result['msg']
        assert 'kill %d' % holder.pid in result['msg']
    finally:
        release.set()
        holder.join(10)
    result = _jobs.job_status(async_dir.path, JID, 'backup of db', lock=lock, proc=proc.root)
    assert 'Nothing holds its lock %s any more, so a rerun can start now.' % lock in result['msg']


def test_a_killed_module_is_one_sentence_not_a_traceback(proc, async_dir):
    async_dir({'failed': True, 'cmd': '/root/.ansible/tmp/x/AnsiballZ_pg_logical_backup.py', 'data': '',
               'stderr': 'something\nKilled\n', 'ansible_job_id': JID,
               'msg': 'Traceback (most recent call last):\n  File "async_wrapper.py"\njson.decoder.JSONDecodeError: Expecting value'})
    result = _jobs.job_status(async_dir.path, JID, 'backup of telemetry_db', 'nothing was published', proc=proc.root)
    assert result == {
        'failed': True, 'finished': True, 'ansible_job_id': JID, 'error_code': 'job_died',
        'msg': 'the backup of telemetry_db module process ended without a result: it was killed (kill -9, the OOM killer) or '
               'crashed (its last words: Killed); nothing was published'}


def test_a_job_over_its_time_limit_is_one_sentence(proc, async_dir):
    async_dir({'failed': True, 'msg': 'Timeout exceeded', 'child_pid': 77, 'ansible_job_id': JID})
    result = _jobs.job_status(async_dir.path, JID, 'restore of db', proc=proc.root)
    assert result['error_code'] == 'job_timeout' and result['failed'] and result['finished']
    assert result['msg'].startswith('the restore of db ran longer than its time limit and was killed')


def test_a_module_s_own_failure_is_kept_as_it_is(proc, async_dir):
    own = {'failed': True, 'msg': 'pg_dump was killed (rc=-9) before the dump was complete; nothing was published',
           'error_code': 'dump_failed'}
    async_dir(dict(own))
    result = _jobs.job_status(async_dir.path, JID, proc=proc.root)
    assert result == dict(own, finished=True, ansible_job_id=JID)


def _fake_wrapper():
    """A process whose command line is a wrapper's of JID, in a session of its own, with a child in its group."""
    code = 'import subprocess, sys, time; subprocess.Popen(["sleep", "60"]); time.sleep(60)'
    return subprocess.Popen([sys.executable, '-c', code, 'async_wrapper.py', JID.rsplit('.', 1)[0], '60', 'module.py', '_'],
                            start_new_session=True)


def _live_members(group, deadline=10.0):
    """The processes of process group ``group`` that still run (zombies, which this machine's init may reap late, do not)."""
    end = time.monotonic() + deadline
    while True:
        live = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % entry) as fileobj:
                    fields = fileobj.read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group and fields[0] != 'Z':
                live.append(int(entry))
        if not live or time.monotonic() > end:
            return live
        time.sleep(0.05)


def test_stop_terminates_the_job_s_process_groups(async_dir):
    async_dir(RUNNING)
    wrapper = _fake_wrapper()
    try:
        deadline = time.monotonic() + 10
        while not _jobs.wrapper_pids(JID) and time.monotonic() < deadline:
            time.sleep(0.05)
        group = os.getpgid(wrapper.pid)
        result = _jobs.stop_job(async_dir.path, JID, 'backup of db')
        assert result['changed'] and result['stopped'] == [wrapper.pid]
        assert result['msg'].startswith('stopped the backup of db (job %s): its processes %d were terminated' % (JID, wrapper.pid))
        assert wrapper.wait(10) == -signal.SIGTERM
        assert _live_members(group) == [], 'a process of the job\'s group still runs'
    finally:
        if wrapper.poll() is None:
            os.killpg(wrapper.pid, signal.SIGKILL)
    after = _jobs.job_status(async_dir.path, JID, 'backup of db')
    assert after['dead']
    again = _jobs.stop_job(async_dir.path, JID, 'backup of db')
    assert not again['changed'] and again['msg'] == 'the backup of db (job %s) is not running' % JID


class FakeClock(object):
    """A clock that sleep() moves on, and that runs ``at[t]`` once the time reaches t."""

    def __init__(self, at=None):
        self.now = 0.0
        self.sleeps = []
        self.at = dict(at or {})

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds
        for when in sorted(self.at):
            if self.now >= when:
                self.at.pop(when)()


def test_wait_for_job_answers_as_soon_as_the_job_ends(async_dir, proc):
    proc(100, WRAPPER_ARGV)
    async_dir(RUNNING)
    clock = FakeClock(at={1.0: lambda: async_dir({'rc': 0, 'msg': 'done'})})
    state = _jobs.wait_for_job(async_dir.path, JID, 5, proc=proc.root, sleep=clock.sleep, clock=clock)
    assert state['finished'] is True and state['msg'] == 'done'
    # Seen at the first read after the end, not at the end of the 5 s.
    assert clock.now == pytest.approx(1.0)
    assert max(clock.sleeps) <= 0.25


def test_wait_for_job_answers_running_when_the_wait_is_over(async_dir, proc):
    proc(100, WRAPPER_ARGV)
    async_dir(RUNNING)
    clock = FakeClock()
    state = _jobs.wait_for_job(async_dir.path, JID, 2, proc=proc.root, sleep=clock.sleep, clock=clock)
    assert state['finished'] is False
    assert clock.now == pytest.approx(2.0)


def test_wait_for_job_with_no_wait_reads_once(async_dir, proc):
    proc(100, WRAPPER_ARGV)
    async_dir(RUNNING)
    clock = FakeClock()
    state = _jobs.wait_for_job(async_dir.path, JID, 0, proc=proc.root, sleep=clock.sleep, clock=clock)
    assert state['finished'] is False and clock.sleeps == []


def test_wait_for_job_notices_a_death_within_the_wait(async_dir, proc):
    proc(100, WRAPPER_ARGV)
    async_dir(RUNNING)

    def kill():
        import shutil
        shutil.rmtree(os.path.join(proc.root, '100'))
    clock = FakeClock(at={0.5: kill})
    state = _jobs.wait_for_job(async_dir.path, JID, 5, job='backup of db', proc=proc.root, sleep=clock.sleep, clock=clock)
    assert state['error_code'] == 'job_died' and state['finished'] is True
    assert clock.now == pytest.approx(0.5)
