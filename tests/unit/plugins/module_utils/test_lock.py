# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import multiprocessing
import os
import re
import socket
import time

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _lock as lk

HOLDER_RE = (r'^another backup of telemetry_db is running: pid (?P<pid>[0-9]+) \(user [^)]+\) on host (?P<host>\S+) '
             r'since (?P<since>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z); wait for it or stop it$')


@pytest.mark.parametrize('name, expected', [
    ('telemetry_db', '.telemetry_db.lock'),
    ('pg_logical_backup-telemetry_db', '.pg_logical_backup-telemetry_db.lock'),
    ('weird/db name', '.weird_db_name.lock'),
])
def test_lock_path(tmp_path, name, expected):
    assert lk.lock_path(str(tmp_path), name) == str(tmp_path / expected)


def test_lock_path_needs_a_name(tmp_path):
    with pytest.raises(ValueError):
        lk.lock_path(str(tmp_path), '')


def test_lock_writes_holder_and_releases(tmp_path):
    lock = lk.BackupLock(str(tmp_path), 'telemetry_db')
    with lock:
        assert lock.locked
        holder = json.loads((tmp_path / '.telemetry_db.lock').read_text())
        assert holder['pid'] == os.getpid()
        assert holder['host'] == socket.gethostname()
        assert holder['uid'] == os.getuid()
        assert holder['purpose'] == 'backup of telemetry_db'
        assert set(holder) == {'pid', 'host', 'user', 'uid', 'started_at', 'purpose'}
        assert os.stat(lock.path).st_mode & 0o777 == 0o600
    assert not lock.locked
    assert (tmp_path / '.telemetry_db.lock').read_bytes() == b''
    with lk.BackupLock(str(tmp_path), 'telemetry_db'):
        pass
    lock.release()


def test_lock_contention_in_process(tmp_path):
    with lk.BackupLock(str(tmp_path), 'telemetry_db'):
        with pytest.raises(lk.LockHeldError) as caught:
            lk.BackupLock(str(tmp_path), 'telemetry_db').acquire()
        match = re.match(HOLDER_RE, str(caught.value))
        assert match, str(caught.value)
        assert int(match.group('pid')) == os.getpid()
        assert caught.value.holder['pid'] == os.getpid()
        assert caught.value.path == str(tmp_path / '.telemetry_db.lock')
        with lk.BackupLock(str(tmp_path), 'other_db'):
            pass
    with lk.BackupLock(str(tmp_path), 'telemetry_db'):
        pass


def test_holder_purpose_shows_in_contender_message(tmp_path):
    with lk.BackupLock(str(tmp_path), 'telemetry_db', purpose='restore of telemetry_db'):
        with pytest.raises(lk.LockHeldError, match='^another restore of telemetry_db is running: pid '):
            lk.BackupLock(str(tmp_path), 'telemetry_db').acquire()


def test_lock_timeout_waits_then_fails(tmp_path):
    with lk.BackupLock(str(tmp_path), 'telemetry_db'):
        started = time.monotonic()
        with pytest.raises(lk.LockHeldError):
            lk.BackupLock(str(tmp_path), 'telemetry_db', timeout=0.3, poll_interval=0.05).acquire()
        assert time.monotonic() - started >= 0.3


def test_acquire_twice_on_one_object(tmp_path):
    with lk.BackupLock(str(tmp_path), 'telemetry_db') as lock:
        with pytest.raises(lk.LockError, match='already held by this process'):
            lock.acquire()


def test_stale_lock_file_does_not_block(tmp_path):
    stale = {'pid': 999999, 'host': 'gone', 'user': 'x', 'uid': 0, 'started_at': '2020-01-01T00:00:00Z', 'purpose': 'backup of telemetry_db'}
    (tmp_path / '.telemetry_db.lock').write_text(json.dumps(stale))
    with lk.BackupLock(str(tmp_path), 'telemetry_db') as lock:
        assert lk.read_holder(lock.path)['pid'] == os.getpid()


def test_missing_directory(tmp_path):
    with pytest.raises(lk.LockError, match='the directory .* does not exist'):
        lk.BackupLock(str(tmp_path / 'nope'), 'telemetry_db').acquire()


@pytest.mark.parametrize('holder, expected', [
    ({}, 'another backup of db is running (its details are not recorded yet); wait for it or stop it'),
    ({'pid': 12, 'host': 'h', 'started_at': 'T'}, 'another backup of db is running: pid 12 on host h since T; wait for it or stop it'),
    ({'pid': 12, 'host': 'h', 'user': 'u', 'started_at': 'T', 'purpose': 'restore of db'},
     'another restore of db is running: pid 12 (user u) on host h since T; wait for it or stop it'),
    ({'pid': 12}, 'another backup of db is running: pid 12 on host unknown since an unknown time; wait for it or stop it'),
])
def test_describe_holder(holder, expected):
    assert lk.describe_holder(holder, 'backup of db') == expected


@pytest.mark.parametrize('content, expected', [(b'', {}), (b'{', {}), (b'[1]', {}), (b'\xff', {}), (b'{"pid": 5}', {'pid': 5})])
def test_read_holder(tmp_path, content, expected):
    (tmp_path / 'l').write_bytes(content)
    assert lk.read_holder(str(tmp_path / 'l')) == expected
    assert lk.read_holder(str(tmp_path / 'missing')) == {}


def _hold(directory, ready, release):
    with lk.BackupLock(directory, 'telemetry_db'):
        ready.set()
        release.wait(30)


def _try(directory, queue):
    try:
        with lk.BackupLock(directory, 'telemetry_db'):
            queue.put(('acquired', os.getpid()))
    except lk.LockHeldError as exc:
        queue.put(('held', str(exc)))


def _context():
    return multiprocessing.get_context('fork')


def test_lock_contention_between_processes(tmp_path):
    ctx = _context()
    ready, release, queue = ctx.Event(), ctx.Event(), ctx.Queue()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        contender = ctx.Process(target=_try, args=(str(tmp_path), queue))
        contender.start()
        contender.join(10)
        outcome, message = queue.get(timeout=10)
        assert outcome == 'held'
        match = re.match(HOLDER_RE, message)
        assert match, message
        assert int(match.group('pid')) == holder.pid
        assert match.group('host') == socket.gethostname()
        with pytest.raises(lk.LockHeldError):
            lk.BackupLock(str(tmp_path), 'telemetry_db').acquire()
    finally:
        release.set()
        holder.join(10)
    with lk.BackupLock(str(tmp_path), 'telemetry_db'):
        pass


def _hold_and_die(directory, ready):
    lock = lk.BackupLock(directory, 'telemetry_db')
    lock.acquire()
    ready.set()
    time.sleep(60)


def test_lock_of_a_killed_process_is_free(tmp_path):
    ctx = _context()
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_and_die, args=(str(tmp_path), ready))
    holder.start()
    assert ready.wait(10)
    with pytest.raises(lk.LockHeldError):
        lk.BackupLock(str(tmp_path), 'telemetry_db').acquire()
    holder.kill()
    holder.join(10)
    assert lk.read_holder(str(tmp_path / '.telemetry_db.lock'))['pid'] == holder.pid
    with lk.BackupLock(str(tmp_path), 'telemetry_db') as lock:
        assert lk.read_holder(lock.path)['pid'] == os.getpid()


def test_lease_is_refused_to_another_token_until_it_expires(tmp_path):
    directory = str(tmp_path)
    lease, changed = lk.acquire_lease(directory, 'restore-telemetry_db', 'run-a', 3600, 'restore of telemetry_db', now=1000.0)
    assert changed and lease['token'] == 'run-a' and lease['expires'] == 4600.0
    with open(lk.lease_path(directory, 'restore-telemetry_db')) as fileobj:
        assert json.load(fileobj)['token'] == 'run-a'
    assert oct(os.stat(lk.lease_path(directory, 'restore-telemetry_db')).st_mode & 0o777) == '0o600'
    with pytest.raises(lk.LockHeldError) as info:
        lk.acquire_lease(directory, 'restore-telemetry_db', 'run-b', 3600, 'restore of telemetry_db', now=2000.0)
    message = str(info.value)
    assert message.startswith('another restore of telemetry_db is running: started ')
    assert 'host %s' % socket.gethostname() in message
    assert lk.lease_path(directory, 'restore-telemetry_db') in message
    assert info.value.holder['token'] == 'run-a'
    # After its ttl, an abandoned lease is taken over.
    lease, changed = lk.acquire_lease(directory, 'restore-telemetry_db', 'run-b', 3600, 'restore of telemetry_db', now=4601.0)
    assert changed and lease['token'] == 'run-b'


def test_a_lease_s_stage_is_kept_shown_to_contenders_and_reported_when_taken_over(tmp_path):
    directory = str(tmp_path)
    lk.acquire_lease(directory, 'restore-db', 'run-a', 60, 'restore of db', now=1000.0)
    lk.acquire_lease(directory, 'restore-db', 'run-a', 60, 'restore of db', now=1010.0, stage='after down -v; safety dump /b/s.sql.zst')
    renewed, dummy = lk.acquire_lease(directory, 'restore-db', 'run-a', 60, 'restore of db', now=1020.0)
    assert renewed['stage'] == 'after down -v; safety dump /b/s.sql.zst' and 'abandoned' not in renewed
    with pytest.raises(lk.LockHeldError) as info:
        lk.acquire_lease(directory, 'restore-db', 'run-b', 60, 'restore of db', now=1030.0)
    assert ', at step "after down -v; safety dump /b/s.sql.zst", lease until ' in str(info.value)
    assert str(info.value).endswith('its lease ends then (remove %s to go on now)' % lk.lease_path(directory, 'restore-db'))
    taken, changed = lk.acquire_lease(directory, 'restore-db', 'run-b', 60, 'restore of db', now=1081.0)
    assert changed and taken['token'] == 'run-b' and 'stage' not in taken
    assert taken['abandoned']['stage'] == 'after down -v; safety dump /b/s.sql.zst'
    assert taken['abandoned']['purpose'] == 'restore of db' and 'token' not in taken['abandoned']
    with open(lk.lease_path(directory, 'restore-db')) as fileobj:
        assert 'abandoned' not in json.load(fileobj)


def test_lease_renewal_by_its_token_is_no_change_and_keeps_the_start(tmp_path):
    first, dummy = lk.acquire_lease(str(tmp_path), 'x', 'run-a', 60, 'restore', now=10.0)
    again, changed = lk.acquire_lease(str(tmp_path), 'x', 'run-a', 60, 'restore', now=20.0)
    assert not changed
    assert again['started_at'] == first['started_at'] and again['expires'] == 80.0


def test_lease_release_only_by_its_token(tmp_path):
    directory = str(tmp_path)
    lk.acquire_lease(directory, 'x', 'run-a', 60, 'restore')
    assert lk.release_lease(directory, 'x', 'run-b') is False
    assert os.path.exists(lk.lease_path(directory, 'x'))
    assert lk.release_lease(directory, 'x', 'run-a', check_mode=True) is True
    assert os.path.exists(lk.lease_path(directory, 'x'))
    assert lk.release_lease(directory, 'x', 'run-a') is True
    assert not os.path.exists(lk.lease_path(directory, 'x'))
    assert lk.release_lease(directory, 'x', 'run-a') is False


def test_lease_check_mode_writes_nothing_but_refuses_a_held_lease(tmp_path):
    directory = str(tmp_path)
    dummy, changed = lk.acquire_lease(directory, 'x', 'run-a', 60, 'restore', check_mode=True)
    assert changed and not os.path.exists(lk.lease_path(directory, 'x'))
    lk.acquire_lease(directory, 'x', 'run-a', 60, 'restore')
    with pytest.raises(lk.LockHeldError):
        lk.acquire_lease(directory, 'x', 'run-b', 60, 'restore', check_mode=True)


def test_restore_in_progress_only_while_a_live_restore_lease_exists(tmp_path):
    directory = str(tmp_path)
    assert lk.restore_in_progress(directory, 'telemetry_db') is None
    lk.acquire_lease(directory, lk.lease_name('restore', 'telemetry_db'), 'run-a', 3600, 'restore of telemetry_db', now=1000.0)
    held = lk.restore_in_progress(directory, 'telemetry_db', now=2000.0)
    assert isinstance(held, lk.LockHeldError) and held.holder['token'] == 'run-a'
    message = str(held)
    assert message.startswith('a backup of telemetry_db is refused while a restore of it runs')
    assert 'another restore of telemetry_db is running' in message
    assert lk.lease_path(directory, 'restore-telemetry_db') in message
    # Another database's lease, or an expired one, does not stop the backup.
    assert lk.restore_in_progress(directory, 'other_db', now=2000.0) is None
    assert lk.restore_in_progress(directory, 'telemetry_db', now=4601.0) is None


def test_lease_is_refused_and_not_kept_while_an_excluded_lock_is_held(tmp_path):
    directory = str(tmp_path)
    with lk.BackupLock(directory, 'backup-telemetry_db', purpose='backup of telemetry_db to /x'):
        for check_mode in (True, False):
            with pytest.raises(lk.LockHeldError) as info:
                lk.acquire_lease(directory, 'restore-telemetry_db', 'run-a', 60, 'restore', check_mode=check_mode,
                                 exclude_locks=['backup-telemetry_db'])
            assert str(info.value).startswith('another backup of telemetry_db to /x is running: pid %d' % os.getpid())
            assert not os.path.exists(lk.lease_path(directory, 'restore-telemetry_db'))
    lease, changed = lk.acquire_lease(directory, 'restore-telemetry_db', 'run-a', 60, 'restore', exclude_locks=['backup-telemetry_db'])
    assert changed and os.path.exists(lk.lease_path(directory, 'restore-telemetry_db'))
    # The probe of the free lock leaves it free and its holder details empty.
    assert lk.read_holder(lk.lock_path(directory, 'backup-telemetry_db')) == {}


def test_lease_in_check_mode_creates_no_file(tmp_path):
    directory = str(tmp_path)
    lease, changed = lk.acquire_lease(directory, 'restore-telemetry_db', 'run-a', 60, 'restore', check_mode=True,
                                      exclude_locks=['backup-telemetry_db'])
    assert changed and lease['token'] == 'run-a'
    assert lk.release_lease(directory, 'restore-telemetry_db', 'run-a', check_mode=True) is False
    assert os.listdir(directory) == []
    lk.acquire_lease(directory, 'restore-telemetry_db', 'run-a', 60, 'restore')
    with pytest.raises(lk.LockHeldError):
        lk.acquire_lease(directory, 'restore-telemetry_db', 'run-b', 60, 'restore', check_mode=True)
    assert lk.acquire_lease(directory, 'restore-telemetry_db', 'run-a', 60, 'restore', check_mode=True)[1] is False
