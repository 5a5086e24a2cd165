# -*- coding: utf-8 -*-
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""An advisory lock so that two backups of one database do not overlap, and leases so that two restores, or a backup
and a restore, of one database do not overlap.

Internal to the fleet_telemetry.dr collection: not a public API, it may change without notice.

``BackupLock(directory, name)`` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<directory>/.<name>.lock``
and writes who holds it (pid, host, user, uid, started_at, purpose; never a secret) into that file as
JSON. A second taker gets ``LockHeldError`` naming the holder. The kernel drops the lock when the
holder's process ends, however it ends, so a lock file left behind by a dead process never blocks; the
file is truncated on release and never unlinked (unlinking would let two processes lock two different
inodes of the same name).

flock is per host (and per NFS server on Linux): it keeps two runs on one host apart, which is what the
backup needs. A restore spans many processes, so it holds a lease (``acquire_lease``, below) named
``restore-<database>`` in the backup directory instead; a backup into that directory refuses to start while a
live one exists (``restore_in_progress``), so it never dumps a database that a restore has emptied or
half-restored. (The restore's own safety dump goes to the ``safety`` subdirectory, where no lease lives.)
It imports nothing from the collection but the error base class, and must keep compiling on Python 3.8.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import getpass
import json
import os
import re
import socket
import time

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError

LOCK_SUFFIX = '.lock'
_NAME_RE = re.compile(r'[^A-Za-z0-9_.-]')
_HOLDER_MAX_SIZE = 64 * 1024
# The holder writes its details right after locking; a contender that reads an empty file waits this long.
_HOLDER_READ_RETRIES = 5
_HOLDER_READ_PAUSE = 0.02


class LockError(FleetDrError):
    """The lock cannot be taken; the message is one sentence an operator can act on."""

    code = 'lock_error'


class LockHeldError(LockError):
    """Another live process holds the lock. ``holder`` is its recorded details (dict, possibly empty)."""

    code = 'lock_held'

    def __init__(self, message, holder=None, path=None):
        super().__init__(message, holder=holder or {}, path=path)
        self.holder = holder or {}
        self.path = path


def lock_path(directory, name):
    """Return the lock file path for ``name`` in ``directory``; characters unsafe in file names become ``_``."""
    if not name:
        raise ValueError('a lock needs a name')
    return os.path.join(directory, '.%s%s' % (_NAME_RE.sub('_', name), LOCK_SUFFIX))


def _current_user():
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):
        return 'uid %d' % os.getuid()


def holder_info(purpose):
    """Return the details this process records when it takes a lock."""
    return {
        'pid': os.getpid(),
        'host': socket.gethostname(),
        'user': _current_user(),
        'uid': os.getuid(),
        'started_at': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
        'purpose': purpose,
    }


def _parse_holder(data):
    try:
        holder = json.loads(data.decode('utf-8'))
    except (UnicodeDecodeError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def read_holder(path):
    """Return the holder details recorded in the lock file at ``path`` ({} when empty, missing or garbled).

    The details may be those of a process that has ended; only a failed flock proves someone holds it.
    """
    try:
        with open(path, 'rb') as fileobj:
            return _parse_holder(fileobj.read(_HOLDER_MAX_SIZE))
    except OSError:
        return {}


def describe_holder(holder, purpose):
    """Return the sentence of a ``LockHeldError``: who holds the lock and what to do."""
    what = holder.get('purpose') or purpose
    if not holder.get('pid'):
        return 'another %s is running (its details are not recorded yet); wait for it or stop it' % what
    user = ' (user %s)' % holder['user'] if holder.get('user') else ''
    return 'another %s is running: pid %s%s on host %s since %s; wait for it or stop it' % (
        what, holder.get('pid'), user, holder.get('host', 'unknown'), holder.get('started_at', 'an unknown time'))


def _held_error(path, purpose):
    """The ``LockHeldError`` of the held lock file ``path``: its holder's details, read again while still empty."""
    holder = {}
    for attempt in range(_HOLDER_READ_RETRIES):
        holder = read_holder(path)
        if holder.get('pid'):
            break
        if attempt + 1 < _HOLDER_READ_RETRIES:
            time.sleep(_HOLDER_READ_PAUSE)
    return LockHeldError(describe_holder(holder, purpose), holder, path)


class BackupLock:
    """Exclusive advisory lock ``<directory>/.<name>.lock``; a context manager.

    ::

        with BackupLock(backup_dir, 'telemetry_db', purpose='backup of telemetry_db'):
            ...

    ``timeout`` (seconds) keeps retrying a held lock that long before raising ``LockHeldError``; the
    default 0 fails at once. ``purpose`` defaults to ``backup of <name>`` and shows in the message
    that a contender gets.
    """

    def __init__(self, directory, name, purpose=None, timeout=0.0, poll_interval=0.5):
        self.directory = directory
        self.name = name
        self.path = lock_path(directory, name)
        self.purpose = purpose or 'backup of %s' % name
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.holder = None
        self._fd = None

    @property
    def locked(self):
        """True while this object holds the lock."""
        return self._fd is not None

    def _open(self):
        flags = os.O_RDWR | os.O_CREAT | getattr(os, 'O_CLOEXEC', 0) | getattr(os, 'O_NOFOLLOW', 0)
        try:
            return os.open(self.path, flags, 0o600)
        except FileNotFoundError:
            raise LockError('cannot create the lock file %s: the directory %s does not exist' % (self.path, self.directory)) from None
        except OSError as exc:
            raise LockError('cannot create the lock file %s: %s; check the permissions of %s'
                            % (self.path, exc.strerror or exc, self.directory)) from None

    def _held_error(self):
        return _held_error(self.path, self.purpose)

    def acquire(self):
        """Take the lock or raise ``LockHeldError`` (after ``timeout``) / ``LockError``; return self."""
        if self._fd is not None:
            raise LockError('the lock %s is already held by this process' % self.path)
        fd = self._open()
        deadline = time.monotonic() + max(0.0, self.timeout)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise LockError('cannot lock %s: %s' % (self.path, exc.strerror or exc)) from None
            if time.monotonic() >= deadline:
                error = self._held_error()
                os.close(fd)
                raise error
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())) or 0.01)
        self._fd = fd
        self.holder = holder_info(self.purpose)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(self.holder, sort_keys=True).encode('utf-8') + b'\n')
        except OSError:
            # The lock itself is held; missing details only make a contender's message vaguer.
            pass
        return self

    def release(self):
        """Drop the lock (truncating the holder details). Safe to call when not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, exc_type, exc, tb):
        self.release()
        return False


# A lease spans a whole play (several module runs, each its own process), which a flock cannot: the
# holder's details and a token are written to ``<directory>/.<name>.lease.json`` under the flock above,
# and a lease older than its ttl counts as abandoned (a killed play never released it).
LEASE_SUFFIX = '.lease.json'


def lease_path(directory, name):
    """Return the lease file path for ``name`` in ``directory``."""
    return lock_path(directory, name)[:-len(LOCK_SUFFIX)] + LEASE_SUFFIX


def _epoch(now):
    return now if now is not None else time.time()


def lease_problem(lease, token, now=None):
    """Why ``lease`` (a dict read from a lease file, or {}) stops ``token`` from taking it, or None."""
    if not lease.get('token') or lease['token'] == token:
        return None
    if float(lease.get('expires', 0)) <= _epoch(now):
        return None
    return lease


def describe_lease(lease, path):
    """The sentence a contender gets: who holds the lease, since when, at which step, and when an abandoned one ends."""
    user = ' (user %s)' % lease['user'] if lease.get('user') else ''
    stage = ', at step "%s"' % lease['stage'] if lease.get('stage') else ''
    return ('another %s is running: started %s on host %s%s%s, lease until %s; wait for it, or if that run was killed, its '
            'lease ends then (remove %s to go on now)'
            % (lease.get('purpose', 'run'), lease.get('started_at', 'at an unknown time'), lease.get('host', 'unknown'), user,
               stage, lease.get('expires_at', 'an unknown time'), path))


ABANDONED_FIELDS = ('purpose', 'started_at', 'host', 'user', 'stage', 'expires_at')


def abandoned_lease(current, token):
    """The details of a lease of another run that ``token`` takes over (it had expired: that run was killed), or None."""
    if not current.get('token') or current['token'] == token:
        return None
    return dict((key, current[key]) for key in ABANDONED_FIELDS if key in current)


def _read_lease(path):
    try:
        with open(path, 'rb') as fileobj:
            return _parse_holder(fileobj.read(_HOLDER_MAX_SIZE))
    except FileNotFoundError:
        return {}


RUNS = ('restore', 'drill')


def backup_lock_name(database):
    """The name of the lock a backup of ``database`` holds while it runs (``backup-<db>``)."""
    return 'backup-%s' % database


def lease_name(run, database):
    """The name of the lease a ``run`` (one of RUNS) of ``database`` holds: ``restore-<db>`` or ``drill-<db>``."""
    if run not in RUNS:
        raise ValueError('unknown run %r (one of %s)' % (run, ', '.join(RUNS)))
    return '%s-%s' % (run, database)


def lease_excludes(run, database):
    """The locks another process must not hold while the lease of ``run`` is taken: a restore never overlaps a backup."""
    return [backup_lock_name(database)] if run == 'restore' else []


def restore_in_progress(directory, database, now=None):
    """``LockHeldError`` naming the restore when a live restore lease of ``database`` is in ``directory``, else None.

    Read without the lease's flock (a lease file is replaced by a rename, so a reader sees a whole one or none), so a
    check-mode run creates no lock file.
    """
    path = lease_path(directory, lease_name('restore', database))
    held = lease_problem(read_holder(path), None, now)
    if not held:
        return None
    return LockHeldError('a backup of %s is refused while a restore of it runs (it would save an emptied or half-restored '
                         'database): %s' % (database, describe_lease(held, path)), held, path)


def _write_lease(path, lease):
    tmp = '%s.%d.tmp' % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, 'O_NOFOLLOW', 0), 0o600)
    try:
        os.write(fd, json.dumps(lease, sort_keys=True).encode('utf-8') + b'\n')
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def lock_is_held(directory, name):
    """``LockHeldError`` naming the holder when another process holds the flock ``name`` in ``directory``, else None.

    Nothing is created or written: the file is opened read-only (a missing one means nobody holds it), and a free lock
    is taken and dropped at once."""
    return lock_file_held(lock_path(directory, name), 'backup of %s' % name)


def lock_file_held(path, purpose):
    """``LockHeldError`` naming the holder when another process holds the flock of the file ``path``, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_CLOEXEC', 0) | getattr(os, 'O_NOFOLLOW', 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LockError('cannot read the lock file %s: %s' % (path, exc.strerror or exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise LockError('cannot lock %s: %s' % (path, exc.strerror or exc)) from None
        return _held_error(path, purpose)
    finally:
        os.close(fd)
    return None


def acquire_lease(directory, name, token, ttl, purpose, check_mode=False, now=None, exclude_locks=(), stage=None):
    """Take (or renew) the lease ``name`` for ``token``; return ``(lease, changed)``. ``LockHeldError`` when another
    live token holds it, or when another process holds one of the flocks ``exclude_locks`` (for a restore, the
    backup's ``backup-<db>``: checked after the lease is written, while a backup checks for the lease after taking that
    flock, so one of the two always sees the other). In check mode nothing is written, and no lock file is created:
    the lease that would be taken is returned.

    ``stage`` (a few words, never a secret) says where the run is; a contender's refusal shows it, and so does the
    returned lease's ``abandoned`` (the expired lease of a killed run that this one takes over)."""
    path = lease_path(directory, name)
    if check_mode:
        current = _read_lease(path)
        _refuse_held(current, token, path, now)
        busy = _busy_lock(directory, exclude_locks)
        if busy:
            raise busy
        return _with_abandoned(_new_lease(current, token, ttl, purpose, now, stage), current, token), current.get('token') != token
    with _lease_failures(path), BackupLock(directory, name, purpose=purpose, timeout=10):
        current = _read_lease(path)
        _refuse_held(current, token, path, now)
        lease = _new_lease(current, token, ttl, purpose, now, stage)
        _write_lease(path, lease)
        lease = _with_abandoned(lease, current, token)
    busy = _busy_lock(directory, exclude_locks)
    if busy:
        if current.get('token') != token:
            release_lease(directory, name, token)
        raise busy
    return lease, current.get('token') != token


@contextlib.contextmanager
def _lease_failures(path):
    """A lease that cannot be read or written (permissions, a missing directory) is a ``LockError`` naming it."""
    try:
        yield
    except LockHeldError:
        raise
    except (LockError, OSError) as exc:
        raise LockError('cannot take the lease %s: %s' % (path, exc.strerror if isinstance(exc, OSError) and exc.strerror else exc),
                        path=path) from None


def _refuse_held(current, token, path, now):
    held = lease_problem(current, token, now)
    if held:
        raise LockHeldError(describe_lease(held, path), held, path)


def _busy_lock(directory, names):
    """The ``LockHeldError`` of the first of the flocks ``names`` another process holds, else None."""
    for lock_name in names:
        busy = lock_is_held(directory, lock_name)
        if busy:
            return busy
    return None


def _new_lease(current, token, ttl, purpose, now, stage=None):
    epoch = _epoch(now)
    lease = holder_info(purpose)
    lease.update(token=token, expires=epoch + ttl,
                 expires_at=datetime.datetime.fromtimestamp(epoch + ttl, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'))
    if current.get('token') == token:
        lease['started_at'] = current.get('started_at', lease['started_at'])
        if stage is None and current.get('stage'):
            stage = current['stage']
    if stage:
        lease['stage'] = stage
    return lease


def _with_abandoned(lease, current, token):
    abandoned = abandoned_lease(current, token)
    return dict(lease, abandoned=abandoned) if abandoned else lease


def release_lease(directory, name, token, check_mode=False):
    """Give up the lease ``name`` when ``token`` holds it; return True when it was (or would be) removed."""
    path = lease_path(directory, name)
    if check_mode:
        return _read_lease(path).get('token') == token
    with _lease_failures(path), BackupLock(directory, name, timeout=10):
        if _read_lease(path).get('token') != token:
            return False
        os.unlink(path)
        return True
