# -*- coding: utf-8 -*-
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Atomic publication of artifacts: the destination check, file-system helpers and the atomic writers.

Internal to fleet_telemetry.dr: not a public API, it may change without notice.

Publication is atomic: bytes go to ``.<final name>.partial-<random>`` in the destination (``O_EXCL``,
mode 0600), are fsynced, renamed to the final name without ever replacing an existing entry
(``renameat2(RENAME_NOREPLACE)`` where the kernel and file system offer it, else check-then-rename),
and the directory is fsynced. Every failure removes the temporary entry, so nothing is ever left under
a final name and no partial garbage stays behind (short of the process being killed with SIGKILL, in
which case only a dot-file named ``*.partial-*`` remains, which every listing ignores: ``_artifact.is_partial_name``).

It imports only ``_artifact`` and ``_digest`` from the collection, and must keep compiling on Python 3.8.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import secrets
import shutil
import stat

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import PARTIAL_MARKER, ArtifactError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._digest import CHUNK_SIZE, _hash_open_file, directory_digest

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700

_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


class DestinationError(ArtifactError):
    """The backup destination cannot hold artifacts (missing, not a directory, not writable)."""


class DestinationMissingError(DestinationError):
    """The backup destination does not exist."""


class DestinationNotDirectoryError(DestinationError):
    """The backup destination is a file, a device or something else that is not a directory."""


class DestinationNotWritableError(DestinationError):
    """The backup destination is a directory this process cannot create files in."""


class NoSpaceError(ArtifactError):
    """The file system ran out of space (or quota) while writing; nothing was left behind."""

    code = 'disk_full'


class ArtifactExistsError(ArtifactError):
    """The final name is already taken; artifacts are never overwritten."""


# --------------------------------------------------------------------------------------------
# Destination
# --------------------------------------------------------------------------------------------

def _describe_type(mode):
    if stat.S_ISREG(mode):
        return 'a regular file'
    if stat.S_ISCHR(mode):
        return 'a character device'
    if stat.S_ISBLK(mode):
        return 'a block device'
    if stat.S_ISFIFO(mode):
        return 'a named pipe'
    if stat.S_ISSOCK(mode):
        return 'a socket'
    return 'not a directory'


def check_destination(path, option='backup_dir'):
    """Check that ``path`` is an existing directory this process can create files in; return its real path.

    Symlinks to directories are followed and accepted. A device, or a symlink to one, is refused: an
    atomic writer would otherwise replace it with a file (OFFLINE.md). ``option`` is the setting named
    in the messages. Raises a ``DestinationError`` subclass.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise DestinationMissingError('backup destination %s is a dangling symlink to %s: fix the link or choose another %s'
                                          % (path, os.readlink(path), option)) from None
        raise DestinationMissingError('backup destination %s does not exist: create it or choose another %s' % (path, option)) from None
    except NotADirectoryError:
        raise DestinationMissingError('backup destination %s does not exist (a parent is not a directory): choose another %s'
                                      % (path, option)) from None
    except PermissionError:
        raise DestinationNotWritableError('backup destination %s cannot be reached by uid %d (permission denied on a parent): '
                                          'fix the permissions or choose another %s' % (path, os.geteuid(), option)) from None
    if not stat.S_ISDIR(info.st_mode):
        via = ''
        if os.path.islink(path):
            via = ' (through the symlink to %s)' % os.path.realpath(path)
        kind = _describe_type(info.st_mode)
        if kind == 'not a directory':
            raise DestinationNotDirectoryError('backup destination %s%s is not a directory: choose a directory for %s' % (path, via, option))
        raise DestinationNotDirectoryError('backup destination %s%s is %s, not a directory: choose a directory for %s' % (path, via, kind, option))
    if not os.access(path, os.W_OK | os.X_OK):
        raise DestinationNotWritableError('backup destination %s is not writable by uid %d: chown or choose another %s'
                                          % (path, os.geteuid(), option))
    return os.path.realpath(path)


# --------------------------------------------------------------------------------------------
# Low-level file system helpers
# --------------------------------------------------------------------------------------------

def _load_renameat2():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_renameat2 = _load_renameat2()


def _exists_error(dst):
    return ArtifactExistsError('%s already exists: artifacts are never overwritten; move it away or run again for a new name' % dst)


def rename_noreplace(src, dst):
    """Rename ``src`` to ``dst``, raising ``ArtifactExistsError`` if ``dst`` exists; never replaces anything.

    Atomic with ``renameat2(RENAME_NOREPLACE)`` (Linux 3.15+, glibc 2.28+, most local file systems).
    Elsewhere it checks and then renames; the backup lock closes that window between our own runs.
    """
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise _exists_error(dst)
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), src)
    if os.path.lexists(dst):
        raise _exists_error(dst)
    os.rename(src, dst)


def fsync_directory(path):
    """fsync a directory so that entries created or renamed in it survive a crash; ignored where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _is_no_space(exc):
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _no_space_error(directory, written):
    return NoSpaceError('no space left on %s after writing %d bytes; free space or choose another backup_dir' % (directory, written))


def _temp_name(final_name):
    return '.%s%s%s' % (final_name, PARTIAL_MARKER, secrets.token_hex(6))


def _check_final_name(name):
    if not name or name in ('.', '..') or '/' in name or '\0' in name:
        raise ValueError('artifact name %r must be a plain file name' % (name,))
    if name.startswith('.'):
        raise ValueError('artifact name %r must not start with a dot (dot files are reserved for temporary entries)' % (name,))


# --------------------------------------------------------------------------------------------
# Atomic writers
# --------------------------------------------------------------------------------------------

class AtomicArtifactWriter:
    """Write one artifact file under a temporary name and publish it atomically.

    ::

        with AtomicArtifactWriter(backup_dir, name) as writer:
            for chunk in stream:
                writer.write(chunk)
            result = writer.commit()     # {'path', 'name', 'size', 'sha256'}

    Leaving the block without ``commit()``, or with an exception, aborts: the temporary file is closed
    and removed. A full disk (``ENOSPC``/``EDQUOT``) raises ``NoSpaceError`` after cleaning up.
    ``commit()`` refuses to replace an existing entry (``ArtifactExistsError``).

    When a child process writes the bytes instead (``temp_path``, or ``fileno()`` as its stdout),
    call ``sync_from_disk()`` before ``commit()`` to hash what it wrote.

    ``replace=True`` is for documents that are rewritten whole (reports, histories), never for
    artifacts: ``commit()`` then atomically replaces an existing regular file of that name; anything
    else under the name (a directory, a device, a symlink) is still refused.
    """

    def __init__(self, directory, name, mode=FILE_MODE, chunk_size=CHUNK_SIZE, replace=False):
        _check_final_name(name)
        self.directory = check_destination(directory)
        self.name = name
        self.path = os.path.join(self.directory, name)
        self.mode = mode
        self.chunk_size = chunk_size
        self.replace = replace
        self.size = 0
        self.committed = False
        self.aborted = False
        self._digest = hashlib.sha256()
        self._check_target()
        self.temp_path, self._fh = self._create_temp()

    def _check_target(self):
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not self.replace:
            raise _exists_error(self.path)
        if not stat.S_ISREG(info.st_mode):
            kind = 'a symlink' if stat.S_ISLNK(info.st_mode) else 'a directory' if stat.S_ISDIR(info.st_mode) else _describe_type(info.st_mode)
            raise ArtifactExistsError('%s is %s, not a regular file: it is never replaced; move it away or choose another name' % (self.path, kind))

    def _create_temp(self):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_CLOEXEC', 0) | getattr(os, 'O_NOFOLLOW', 0)
        for dummy in range(8):
            temp_path = os.path.join(self.directory, _temp_name(self.name))
            try:
                fd = os.open(temp_path, flags, FILE_MODE)
            except FileExistsError:
                continue
            except OSError as exc:
                if _is_no_space(exc):
                    raise _no_space_error(self.directory, 0) from None
                raise ArtifactError('cannot create a temporary file in %s: %s' % (self.directory, exc.strerror)) from None
            try:
                os.fchmod(fd, FILE_MODE)
            except OSError:
                os.close(fd)
                os.unlink(temp_path)
                raise
            return temp_path, os.fdopen(fd, 'wb', buffering=0)
        raise ArtifactError('cannot create a unique temporary file in %s' % self.directory)

    @property
    def sha256(self):
        """Hex SHA-256 of the bytes written so far."""
        return self._digest.hexdigest()

    def fileno(self):
        """The file descriptor of the temporary file, e.g. for a child process's stdout."""
        return self._fh.fileno()

    def _check_open(self):
        if self.committed or self.aborted:
            raise ArtifactError('the writer of %s is already %s' % (self.path, 'committed' if self.committed else 'aborted'))

    def _fail(self, exc, action):
        written = self.size
        self.abort()
        if _is_no_space(exc):
            return _no_space_error(self.directory, written)
        return ArtifactError('%s %s failed after %d bytes: %s' % (action, self.temp_path, written, exc.strerror or exc))

    def write(self, chunk):
        """Append ``chunk`` (bytes-like) to the artifact and to its checksum; return its length."""
        self._check_open()
        view = memoryview(chunk).cast('B')
        length = len(view)
        offset = 0
        try:
            while offset < length:
                count = self._fh.write(view[offset:])
                if count is None:
                    count = 0
                offset += count
        except OSError as exc:
            self.size += offset
            raise self._fail(exc, 'writing') from None
        self._digest.update(view)
        self.size += length
        return length

    def write_from(self, source, chunk_size=None):
        """Copy the binary stream ``source`` (e.g. a pipe) to the artifact in fixed-size chunks; return the byte count."""
        buf = bytearray(chunk_size or self.chunk_size)
        view = memoryview(buf)
        copied = 0
        readinto = getattr(source, 'readinto', None)
        while True:
            if readinto is not None:
                count = readinto(buf)
                data = view[:count] if count else None
            else:
                data = source.read(len(buf))
                count = len(data) if data else 0
            if not count:
                return copied
            self.write(data)
            copied += count

    def sync_from_disk(self):
        """Recompute size and checksum from the temporary file, after something else wrote into it; return both.

        Later ``write()`` calls append and keep the checksum right.
        """
        self._check_open()
        try:
            self._fh.flush()
            with open(self.temp_path, 'rb', buffering=0) as fileobj:
                self._digest, self.size = _hash_open_file(fileobj, self.chunk_size)
        except OSError as exc:
            raise self._fail(exc, 'reading back') from None
        return self.sha256, self.size

    def commit(self):
        """Flush, fsync, publish under the final name and fsync the directory; return ``{path, name, size, sha256}``."""
        self._check_open()
        sha256 = self.sha256
        try:
            self._fh.flush()
            if self.mode != FILE_MODE:
                os.fchmod(self._fh.fileno(), self.mode)
            os.fsync(self._fh.fileno())
            self._fh.close()
        except OSError as exc:
            raise self._fail(exc, 'flushing') from None
        try:
            if self.replace:
                self._check_target()
                os.replace(self.temp_path, self.path)
            else:
                rename_noreplace(self.temp_path, self.path)
        except ArtifactExistsError:
            self.abort()
            raise
        except OSError as exc:
            raise self._fail(exc, 'publishing') from None
        self.committed = True
        fsync_directory(self.directory)
        return {'path': self.path, 'name': self.name, 'size': self.size, 'sha256': sha256}

    def abort(self):
        """Close and remove the temporary file. Safe to call more than once; a committed artifact stays."""
        if self.committed or self.aborted:
            return
        self.aborted = True
        try:
            self._fh.close()
        except OSError:
            pass
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.abort()
        return False


class AtomicDirectoryArtifact:
    """Build a directory artifact (``pg_dump -Fd``) under a temporary name and publish it atomically.

    ::

        with AtomicDirectoryArtifact(backup_dir, name) as artifact:
            run pg_dump -Fd -f artifact.temp_path ...   # or artifact.write_file('toc.dat', chunks)
            result = artifact.commit()                  # {'path', 'name', 'size', 'sha256'}

    Write into ``temp_path``, never ``path``: ``path`` is the final name, which must not exist until
    ``commit()``. ``temp_path`` is created empty (mode 0700), which ``pg_dump -Fd`` accepts; ``sha256``
    and ``size`` are set by ``commit()``, as with ``AtomicArtifactWriter``. ``commit()`` fsyncs every
    file while computing the directory digest, fsyncs the directories, renames without replacing and
    fsyncs the parent. Abort or an exception removes the whole temporary tree.
    """

    def __init__(self, directory, name, chunk_size=CHUNK_SIZE):
        _check_final_name(name)
        self.directory = check_destination(directory)
        self.name = name
        self.path = os.path.join(self.directory, name)
        self.chunk_size = chunk_size
        self.committed = False
        self.aborted = False
        self.written = 0
        self.sha256 = None
        self.size = None
        if os.path.lexists(self.path):
            raise _exists_error(self.path)
        for dummy in range(8):
            temp_path = os.path.join(self.directory, _temp_name(name))
            try:
                os.mkdir(temp_path, DIRECTORY_MODE)
            except FileExistsError:
                continue
            except OSError as exc:
                if _is_no_space(exc):
                    raise _no_space_error(self.directory, 0) from None
                raise ArtifactError('cannot create a temporary directory in %s: %s' % (self.directory, exc.strerror)) from None
            self.temp_path = temp_path
            break
        else:
            raise ArtifactError('cannot create a unique temporary directory in %s' % self.directory)

    def _check_open(self):
        if self.committed or self.aborted:
            raise ArtifactError('the directory artifact %s is already %s' % (self.path, 'committed' if self.committed else 'aborted'))

    def _fail(self, exc, action):
        self.abort()
        if _is_no_space(exc):
            return _no_space_error(self.directory, self.written)
        return ArtifactError('%s %s failed after %d bytes: %s' % (action, self.temp_path, self.written, exc.strerror or exc))

    def write_file(self, relpath, chunks):
        """Write the iterable of byte chunks to ``relpath`` inside the temporary directory; return its size."""
        self._check_open()
        parts = relpath.split('/')
        if relpath.startswith('/') or any(part in ('', '.', '..') for part in parts):
            raise ValueError('%r is not a relative path inside the artifact' % (relpath,))
        target = os.path.join(self.temp_path, *parts)
        size = 0
        try:
            if len(parts) > 1:
                os.makedirs(os.path.dirname(target), DIRECTORY_MODE, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_CLOEXEC', 0) | getattr(os, 'O_NOFOLLOW', 0)
            with os.fdopen(os.open(target, flags, FILE_MODE), 'wb', buffering=0) as fileobj:
                for chunk in chunks:
                    view = memoryview(chunk).cast('B')
                    offset = 0
                    while offset < len(view):
                        count = fileobj.write(view[offset:]) or 0
                        offset += count
                        self.written += count
                    size += len(view)
        except OSError as exc:
            raise self._fail(exc, 'writing') from None
        return size

    def commit(self):
        """fsync, digest and publish the directory; return ``{path, name, size, sha256}``."""
        self._check_open()
        try:
            sha256, size = directory_digest(self.temp_path, self.chunk_size, fsync=True)
            for dirpath, dummy, dummy2 in os.walk(self.temp_path):
                fsync_directory(dirpath)
        except ArtifactError:
            self.abort()
            raise
        except OSError as exc:
            raise self._fail(exc, 'syncing') from None
        try:
            rename_noreplace(self.temp_path, self.path)
        except ArtifactExistsError:
            self.abort()
            raise
        except OSError as exc:
            raise self._fail(exc, 'publishing') from None
        self.committed = True
        self.sha256, self.size = sha256, size
        fsync_directory(self.directory)
        return {'path': self.path, 'name': self.name, 'size': size, 'sha256': sha256}

    def abort(self):
        """Remove the temporary directory tree. Safe to call more than once; a committed artifact stays."""
        if self.committed or self.aborted:
            return
        self.aborted = True
        shutil.rmtree(self.temp_path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.abort()
        return False
