# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The state of a background (``async``) job, with what ``async_status`` cannot tell: that the job is dead.

Internal to the fleet_telemetry.dr collection: not a public API, it may change without notice.

ansible-core's ``async_wrapper`` writes ``<async_dir>/<jid>`` as ``{"started": true, "finished": false}`` and rewrites it
with the module's result when the module ends. Two processes carry the job meanwhile, both with the wrapper's command
line ``... async_wrapper.py <jid without its .pid> <time limit> <module> ...``: a watcher and the process that runs the
module and writes the result. If both die (a kill of the process group, the OOM killer, a reboot), the file says
"unfinished" for ever and ``async_status`` reports it running until the job's time limit. Here a job whose file says
unfinished while no wrapper process is left is dead, and the answer says so in one sentence.

A wrapper that outlives a module killed on its own writes a Python traceback as the result; that is turned into a
sentence too. Nothing here writes anything.
This file imports nothing from the collection but ``_lock`` and must keep compiling on Python 3.8.
"""

from __future__ import annotations

import json
import os
import signal
import time

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._lock import LockError, lock_file_held

PROC = '/proc'
WRAPPER = 'async_wrapper'


def read_job(path):
    """The job file at ``path`` as a dict; None when it is missing; {} while it is being written or unreadable."""
    try:
        with open(path) as fileobj:
            data = json.loads(fileobj.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _cmdline(pid_dir):
    try:
        with open(os.path.join(pid_dir, 'cmdline'), 'rb') as fileobj:
            return fileobj.read().split(b'\0')
    except OSError:
        return []


def wrapper_pids(jid, proc=PROC):
    """The pids of the ``async_wrapper`` processes of job ``jid``; None when ``proc`` cannot be read (then nobody knows)."""
    launch_id = os.fsencode(jid.rsplit('.', 1)[0])
    try:
        entries = os.listdir(proc)
    except OSError:
        return None
    pids = []
    for entry in entries:
        if not entry.isdigit():
            continue
        argv = _cmdline(os.path.join(proc, entry))
        for index, arg in enumerate(argv[:-1]):
            if WRAPPER.encode() in os.path.basename(arg) and argv[index + 1] == launch_id:
                pids.append(int(entry))
                break
    return sorted(pids)


def _lock_sentence(lock):
    """What the lock a dead job's module held says now: a module still running without its wrapper, or free."""
    if not lock:
        return ''
    try:
        held = lock_file_held(lock, 'job')
    except LockError:
        return ''
    if held:
        pid = held.holder.get('pid', 'unknown')
        return (' Pid %s still holds the lock %s: that is the job\'s module, running on without the job that started it, so '
                'this play cannot see how it ends; wait for it to end (a rerun is refused until then) or stop it with kill %s'
                % (pid, lock, pid))
    return ' Nothing holds its lock %s any more, so a rerun can start now.' % lock


def dead_job(job, jid, leftovers='', lock=None):
    """The failed result of a job that ended without a result."""
    msg = ('the %s (job %s) is no longer running but never reported a result: its processes were killed (a kill of its process '
           'group, the OOM killer or a reboot).' % (job, jid))
    if leftovers:
        msg += ' %s%s.' % (leftovers[:1].upper(), leftovers[1:].rstrip('.'))
    msg += _lock_sentence(lock)
    return {'failed': True, 'finished': True, 'started': True, 'dead': True, 'ansible_job_id': jid, 'msg': msg,
            'error_code': 'job_died'}


def _last_line(text):
    lines = [line.strip() for line in (text or '').splitlines() if line.strip()]
    return lines[-1][:300] if lines else ''


def translate_wrapper_failure(data, job, leftovers=''):
    """Turn the results ``async_wrapper`` writes itself (a traceback when the module died, a timeout) into a sentence.

    Results the module wrote are returned unchanged.
    """
    msg = data.get('msg')
    if not data.get('failed') or not isinstance(msg, str):
        return data
    if msg == 'Timeout exceeded' and 'child_pid' in data:
        sentence = 'the %s ran longer than its time limit and was killed (the role\'s *_timeout setting sets the limit)' % job
        code = 'job_timeout'
    elif msg.startswith('Traceback') and 'cmd' in data:
        detail = _last_line(data.get('stderr'))
        sentence = ('the %s module process ended without a result: it was killed (kill -9, the OOM killer) or crashed%s'
                    % (job, ' (its last words: %s)' % detail if detail else ''))
        code = 'job_died'
    else:
        return data
    if leftovers:
        sentence += '; ' + leftovers.rstrip('.')
    result = {key: value for key, value in data.items() if key not in ('cmd', 'data', 'outdata', 'stderr', 'msg')}
    result.update(msg=sentence, error_code=code, finished=True)
    return result


def job_status(async_dir, jid, job='job', leftovers='', lock=None, proc=PROC):
    """The result of the job ``jid``: its own result once it ended, ``finished: false`` while it runs, a failure when dead."""
    path = os.path.join(async_dir, jid)
    data = read_job(path)
    if data is None:
        return {'failed': True, 'finished': True, 'started': True, 'ansible_job_id': jid, 'error_code': 'job_missing',
                'msg': 'the %s (job %s) has no job file %s: it was removed, or the host rebooted with %s on a temporary file system'
                       % (job, jid, path, async_dir)}
    if not _ended(data):
        if wrapper_pids(jid, proc) != []:
            return {'started': True, 'finished': False, 'ansible_job_id': jid, 'results_file': path}
        # The wrapper writes the result, then exits: read once more before calling a job dead that has just ended.
        data = read_job(path) or {}
        if not _ended(data):
            return dead_job(job, jid, leftovers, lock)
    data.setdefault('ansible_job_id', jid)
    data['finished'] = True
    return translate_wrapper_failure(data, job, leftovers)


def wait_for_job(async_dir, jid, wait, job='job', leftovers='', lock=None, proc=PROC, interval=0.25, sleep=time.sleep,
                 clock=time.monotonic):
    """``job_status``, read again every ``interval`` seconds for up to ``wait`` seconds while the job runs: the answer comes
    as soon as the job ends (or dies), not at the caller's next poll."""
    deadline = clock() + max(wait, 0)
    while True:
        state = job_status(async_dir, jid, job, leftovers, lock, proc)
        remaining = deadline - clock()
        if state.get('finished') or remaining <= 0:
            return state
        sleep(min(interval, remaining))


def _ended(data):
    """The wrapper's first write is ``{"started": .., "finished": false}``; its last is the module's result (no ``started``)."""
    return bool(data) and (bool(data.get('finished')) or 'started' not in data)


def _alive(pid, proc=PROC):
    """Whether ``pid`` runs (a zombie, ended but not yet reaped by its parent, does not)."""
    try:
        with open(os.path.join(proc, str(pid), 'stat')) as fileobj:
            return fileobj.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def _signal_groups(pids, signum):
    own = os.getpgrp()
    for pid in pids:
        try:
            group = os.getpgid(pid)
            # The wrappers run in groups of their own; never signal the group of the caller.
            if group == own:
                os.kill(pid, signum)
            else:
                os.killpg(group, signum)
        except (ProcessLookupError, PermissionError):
            continue


def stop_job(async_dir, jid, job='job', proc=PROC, grace=10.0, sleep=time.sleep, clock=time.monotonic):
    """Stop the job ``jid``: SIGTERM to the process groups of its wrappers (the module and what it runs are in one of
    them), SIGKILL to what is left after ``grace`` seconds. Returns the result of the task."""
    pids = wrapper_pids(jid, proc) or []
    if not pids:
        state = job_status(async_dir, jid, job, proc=proc)
        return {'changed': False, 'finished': True, 'stopped': [], 'ansible_job_id': jid,
                'msg': 'the %s (job %s) is not running' % (job, jid) + ('' if state.get('dead') else ': it had ended')}
    _signal_groups(pids, signal.SIGTERM)
    deadline = clock() + grace
    while any(_alive(pid, proc) for pid in pids) and clock() < deadline:
        sleep(0.2)
    left = [pid for pid in pids if _alive(pid, proc)]
    _signal_groups(left, signal.SIGKILL)
    return {'changed': True, 'finished': True, 'stopped': pids, 'ansible_job_id': jid,
            'msg': 'stopped the %s (job %s): its processes %s were terminated%s' % (
                job, jid, ', '.join(str(pid) for pid in pids), ' (%s killed after %d s)' % (left, grace) if left else '')}
