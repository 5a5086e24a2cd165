# -*- coding: utf-8 -*-
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Backup artifacts: names, atomic publication, checksums, manifests and verification.

Internal to the fleet_telemetry.dr collection: not a public API, it may change without notice.

An artifact (docs/backup.md, "Artifacts and formats") is one dump file, or one ``pg_dump -Fd`` directory, plus a JSON
manifest beside it named ``<artifact>`` + ``MANIFEST_SUFFIX``. The manifest is written last and is the
commit marker: an artifact without a readable manifest whose checksum matches is not a backup for
retention, "latest" or offsite copies. Hand-made backups of the runbook (plain ``.sql``, no manifest)
are recognised (``kind: runbook``) so that restore can decide to accept them.

Publication is atomic: bytes go to ``.<final name>.partial-<random>`` in the destination (``O_EXCL``,
mode 0600), are fsynced, renamed to the final name without ever replacing an existing entry
(``renameat2(RENAME_NOREPLACE)`` where the kernel and file system offer it, else check-then-rename),
and the directory is fsynced. Every failure removes the temporary entry, so nothing is ever left under
a final name and no partial garbage stays behind (short of the process being killed with SIGKILL, in
which case only a dot-file named ``*.partial-*`` remains, which every listing here ignores).

Memory stays flat: files are hashed and copied in fixed-size chunks, never read whole.

Directory digest (``sha256_directory``): every regular file below the directory is listed by its path
relative to the directory (``/``-separated, as bytes), the list is sorted bytewise, and the digest is
the SHA-256 of the concatenated lines ``<sha256 hex of the file>  <relative path>\\n`` -- exactly the
output of ``sha256sum``. Directories only contribute through their files; symlinks and special files
are refused. For file names without backslashes or newlines (pg_dump writes ``toc.dat`` and
``<n>.dat[.gz|.zst]``) a shell reproduces it::

    cd X.dir && find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum

It imports nothing from the collection but the error base class, and must keep compiling on Python 3.8.
"""

from __future__ import annotations

import ctypes
import datetime
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError

ARTIFACT_FORMAT_VERSION = 1
MANIFEST_SUFFIX = '.manifest.json'
PARTIAL_MARKER = '.partial-'
CHUNK_SIZE = 1024 * 1024
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
# A manifest lists row counts, not data: anything bigger is not one of ours.
MANIFEST_MAX_SIZE = 16 * 1024 * 1024

PLAIN = 'plain'
CUSTOM = 'custom'
DIRECTORY = 'directory'
DUMP_FORMATS = (PLAIN, CUSTOM, DIRECTORY)
COMPRESSIONS = ('none', 'gzip', 'zstd')
TRANSPORTS = ('compose', 'direct')

KIND_ARTIFACT = 'artifact'
KIND_RUNBOOK = 'runbook'
KIND_UNKNOWN = 'unknown'

NAME_TIME_FORMAT = '%Y-%m-%d_%H-%M-%S'
TIMESTAMP_FORMAT = '%Y-%m-%dT%H:%M:%SZ'

# The tail of every plain pg_dump output; 16.10/17.6 and later add ``\unrestrict <key>`` after it.
PLAIN_TRAILER = b'-- PostgreSQL database dump complete'
PLAIN_TRAILER_WINDOW = 64 * 1024

_EXTENSIONS = {
    (PLAIN, 'none'): '.sql',
    (PLAIN, 'gzip'): '.sql.gz',
    (PLAIN, 'zstd'): '.sql.zst',
}
_FORMAT_EXTENSIONS = {CUSTOM: '.dump', DIRECTORY: '.dir'}
_NAME_RE = re.compile(
    r'\A(?P<prefix>[^/]+?)_(?P<stamp>\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})(?:_(?P<seq>[2-9]|[1-9][0-9]+))?'
    r'(?P<ext>\.sql|\.sql\.gz|\.sql\.zst|\.dump|\.dir)\Z')
_EXTENSION_FORMATS = {
    '.sql': (PLAIN, 'none'),
    '.sql.gz': (PLAIN, 'gzip'),
    '.sql.zst': (PLAIN, 'zstd'),
    '.dump': (CUSTOM, None),
    '.dir': (DIRECTORY, None),
}
_PREFIX_RE = re.compile(r'\A[A-Za-z0-9][A-Za-z0-9_.-]*\Z')
_SHA256_RE = re.compile(r'\A[0-9a-f]{64}\Z')
_FINGERPRINT_RE = re.compile(r'\Av[0-9]+:[0-9a-f]{16,}\Z')
_TIMESTAMP_RE = re.compile(r'\A(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,6})?(Z|\+00:00)\Z')
_SECRET_WORDS = ('password', 'passwd', 'secret', 'token', 'credential', 'private')

REQUIRED_FIELDS = (
    'format_version', 'collection_version', 'file', 'dump_format', 'compression', 'size', 'sha256',
    'database', 'server_version', 'pg_dump_version', 'started_at', 'finished_at', 'row_counts',
    'counted_tables', 'transport',
)
OPTIONAL_FIELDS = ('compression_level', 'snapshot_id', 'key_fingerprint', 'cipher', 'host', 'source')
MANIFEST_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS

_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


class ArtifactError(FleetDrError):
    """Base class of every error raised here; the message is one sentence an operator can act on."""

    code = 'artifact_error'


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


class ManifestError(ArtifactError):
    """A manifest is missing, unreadable, not JSON or invalid. ``problems`` lists what is wrong."""

    def __init__(self, message, problems=None):
        super().__init__(message)
        self.problems = list(problems or [message])


class ManifestMissingError(ManifestError):
    """The manifest file does not exist."""


# --------------------------------------------------------------------------------------------
# Names and time stamps
# --------------------------------------------------------------------------------------------

def _utc(moment):
    """Return ``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def utc_now():
    """Return the current time as an aware UTC datetime."""
    return datetime.datetime.now(datetime.timezone.utc)


def format_timestamp(moment):
    """Return ``moment`` as ISO 8601 UTC with second precision, e.g. ``2026-01-31T02:00:05Z``."""
    return _utc(moment).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text):
    """Return the aware UTC datetime of an ISO 8601 UTC string (``Z`` or ``+00:00``, optional fraction).

    Raises ValueError for anything else, including other offsets: manifests are always UTC.
    """
    match = _TIMESTAMP_RE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError('%r is not an ISO 8601 UTC time stamp such as 2026-01-31T02:00:05Z' % (text,))
    moment = datetime.datetime.strptime(match.group(1), '%Y-%m-%dT%H:%M:%S')
    if match.group(2):
        moment = moment.replace(microsecond=int(match.group(2)[1:].ljust(6, '0')))
    return moment.replace(tzinfo=datetime.timezone.utc)


def _check_choice(value, choices, what):
    if value not in choices:
        raise ValueError('%s %r is not supported; choose one of %s' % (what, value, ', '.join(choices)))


def artifact_extension(dump_format, compression='none'):
    """Return the file name extension of an artifact: ``.sql``, ``.sql.gz``, ``.sql.zst``, ``.dump`` or ``.dir``.

    Custom and directory archives compress inside the archive, so their extension does not change.
    """
    _check_choice(dump_format, DUMP_FORMATS, 'dump format')
    _check_choice(compression, COMPRESSIONS, 'compression')
    if dump_format == PLAIN:
        return _EXTENSIONS[(PLAIN, compression)]
    return _FORMAT_EXTENSIONS[dump_format]


def artifact_name(started_at, dump_format=PLAIN, compression='none', prefix='backup'):
    """Return the artifact name for a dump started at ``started_at`` (converted to UTC; naive means UTC).

    A plain uncompressed dump gets the runbook's exact name, ``backup_YYYY-MM-DD_HH-MM-SS.sql``.
    """
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ValueError('artifact prefix %r is not usable; use letters, digits, "_", "." and "-", starting with a letter or digit' % (prefix,))
    return '%s_%s%s' % (prefix, _utc(started_at).strftime(NAME_TIME_FORMAT), artifact_extension(dump_format, compression))


def free_artifact_name(directory, started_at, dump_format=PLAIN, compression='none', prefix='backup'):
    """Return the first name for a dump started at ``started_at`` that no entry (artifact or manifest) of ``directory`` holds.

    That is ``artifact_name(...)`` (the runbook's name) when it is free, else the same name with ``_2``, ``_3``, ...
    before the extension: two backups that start within one second both get a name, and neither replaces the other.
    Call it under the backup's lock; the atomic rename still refuses a name taken by anything else meanwhile.
    """
    base = artifact_name(started_at, dump_format, compression, prefix)
    ext = artifact_extension(dump_format, compression)
    stem = base[:-len(ext)]
    name, seq = base, 1
    while os.path.lexists(os.path.join(directory, name)) or os.path.lexists(os.path.join(directory, name + MANIFEST_SUFFIX)):
        seq += 1
        name = '%s_%d%s' % (stem, seq, ext)
    return name


def parse_artifact_name(name):
    """Return ``{prefix, started_at, dump_format, compression}`` for a name made by ``artifact_name``, else None.

    ``compression`` is None for custom and directory archives (the name does not say).
    """
    match = _NAME_RE.match(os.path.basename(name.rstrip('/')))
    if not match:
        return None
    started_at = datetime.datetime.strptime(match.group('stamp'), NAME_TIME_FORMAT).replace(tzinfo=datetime.timezone.utc)
    dump_format, compression = _EXTENSION_FORMATS[match.group('ext')]
    return {'prefix': match.group('prefix'), 'started_at': started_at, 'dump_format': dump_format, 'compression': compression,
            'sequence': int(match.group('seq') or 1)}


def is_partial_name(name):
    """Tell whether ``name`` is a temporary entry of an unfinished (or killed) write."""
    base = os.path.basename(name)
    return base.startswith('.') and PARTIAL_MARKER in base


def manifest_path(path):
    """Return the manifest path of the artifact at ``path`` (a directory artifact ``X.dir`` gets ``X.dir.manifest.json``)."""
    path = path.rstrip('/') or path
    if path.endswith(MANIFEST_SUFFIX):
        return path
    return path + MANIFEST_SUFFIX


def artifact_path_of_manifest(path):
    """Return the artifact path that the manifest at ``path`` describes."""
    if not path.endswith(MANIFEST_SUFFIX):
        raise ValueError('%s is not a manifest path (it does not end with %s)' % (path, MANIFEST_SUFFIX))
    return path[:-len(MANIFEST_SUFFIX)]


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
# Hashing
# --------------------------------------------------------------------------------------------

def _hash_open_file(fileobj, chunk_size=CHUNK_SIZE, digest=None):
    """Feed ``fileobj`` into ``digest`` (a new sha256 by default); return ``(digest object, size)``."""
    digest = hashlib.sha256() if digest is None else digest
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    size = 0
    while True:
        count = fileobj.readinto(buf)
        if not count:
            break
        digest.update(view[:count])
        size += count
    return digest, size


def sha256_file(path, chunk_size=CHUNK_SIZE):
    """Return the hex SHA-256 of the file at ``path``, read in ``chunk_size`` pieces (flat memory)."""
    return file_digest(path, chunk_size)[0]


def file_digest(path, chunk_size=CHUNK_SIZE):
    """Return ``(sha256 hex, size in bytes)`` of the file at ``path``, both from the same single read."""
    with open(path, 'rb', buffering=0) as fileobj:
        digest, size = _hash_open_file(fileobj, chunk_size)
    return digest.hexdigest(), size


def _directory_files(path):
    """Return the sorted relative paths (bytes) of the regular files below ``path``; refuse anything else."""
    root = os.fsencode(path)
    found = []
    pending = [b'']
    while pending:
        rel_dir = pending.pop()
        with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as entries:
            for entry in entries:
                rel = rel_dir + b'/' + entry.name if rel_dir else entry.name
                if entry.is_symlink():
                    raise ArtifactError('directory artifact %s contains the symlink %s; a dump directory holds regular files only'
                                        % (path, os.fsdecode(rel)))
                if entry.is_dir(follow_symlinks=False):
                    pending.append(rel)
                elif entry.is_file(follow_symlinks=False):
                    found.append(rel)
                else:
                    raise ArtifactError('directory artifact %s contains the special file %s; a dump directory holds regular files only'
                                        % (path, os.fsdecode(rel)))
    found.sort()
    return found


def directory_digest(path, chunk_size=CHUNK_SIZE, fsync=False):
    """Return ``(combined sha256 hex, total size of the files)`` of a directory artifact (see the module docstring).

    With ``fsync`` every file is fsynced while it is read (used before publishing a directory).
    """
    combined = hashlib.sha256()
    total = 0
    root = os.fsencode(path)
    for rel in _directory_files(path):
        with open(os.path.join(root, rel), 'rb', buffering=0) as fileobj:
            digest, size = _hash_open_file(fileobj, chunk_size)
            if fsync:
                os.fsync(fileobj.fileno())
        combined.update(digest.hexdigest().encode('ascii') + b'  ' + rel + b'\n')
        total += size
    return combined.hexdigest(), total


def sha256_directory(path, chunk_size=CHUNK_SIZE):
    """Return the combined hex SHA-256 of the directory artifact at ``path`` (see the module docstring)."""
    return directory_digest(path, chunk_size)[0]


def artifact_digest(path, chunk_size=CHUNK_SIZE):
    """Return ``(sha256 hex, size)`` of an artifact, file or directory."""
    if os.path.isdir(path):
        return directory_digest(path, chunk_size)
    return file_digest(path, chunk_size)


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


def remove_artifact(path):
    """Remove an artifact (file or directory) and its manifest, manifest first; return the paths removed."""
    removed = []
    mpath = manifest_path(path)
    for target in (mpath, path.rstrip('/') or path):
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        else:
            try:
                os.unlink(target)
            except FileNotFoundError:
                continue
        removed.append(target)
    if removed:
        fsync_directory(os.path.dirname(os.path.abspath(mpath)))
    return removed


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------

def build_manifest(**fields):
    """Return a manifest dict (docs/backup.md, "Artifacts and formats") from keyword fields; raise ManifestError if it is invalid.

    Fields (required unless marked optional):

    - ``format_version`` (int, set here), ``collection_version`` (str);
    - ``file`` (the artifact's base name), ``dump_format`` (plain|custom|directory),
      ``compression`` (none|gzip|zstd), ``compression_level`` (optional int);
    - ``size`` (bytes; for a directory the sum of its files), ``sha256`` (hex; for a directory the
      combined digest of the module docstring);
    - ``database``, ``server_version``, ``pg_dump_version`` (str);
    - ``started_at``, ``finished_at`` (ISO 8601 UTC, ``Z``; fractions of a second allowed);
    - ``snapshot_id`` (optional str, the exported snapshot the dump and the counts share);
    - ``row_counts`` ({table: int >= 0}, bare or ``schema.table`` names), ``counted_tables`` (the same
      names as a list);
    - ``key_fingerprint`` (optional, ``_photo_crypto.key_fingerprint``), ``cipher`` (optional str);
    - ``transport``: ``compose`` or ``direct``, or a mapping of scalars with that name under the key
      ``transport`` plus secret-free connection facts (project, service, host, port, user...);
    - ``host`` (optional str, the machine that ran the backup), ``source`` (optional mapping of scalars).

    Keys that look like secrets (password, secret, token, credential, private) are refused anywhere
    they are checked.

    ``format_version`` is set here. ``started_at``/``finished_at`` may be datetimes (converted to UTC
    strings). ``counted_tables`` defaults to the sorted keys of ``row_counts``. Optional fields
    (``compression_level``, ``snapshot_id``, ``key_fingerprint``, ``cipher``, ``host``, ``source``)
    default to None. Unknown field names raise ValueError, so a typo never goes unnoticed.
    """
    unknown = sorted(set(fields) - set(MANIFEST_FIELDS))
    if unknown:
        raise ValueError('unknown manifest field(s): %s' % ', '.join(unknown))
    manifest = dict.fromkeys(OPTIONAL_FIELDS)
    manifest.update(fields)
    manifest['format_version'] = ARTIFACT_FORMAT_VERSION
    for key in ('started_at', 'finished_at'):
        if isinstance(manifest.get(key), datetime.datetime):
            manifest[key] = format_timestamp(manifest[key])
    if manifest.get('counted_tables') is None and isinstance(manifest.get('row_counts'), dict):
        manifest['counted_tables'] = sorted(manifest['row_counts'])
    problems = validate_manifest(manifest)
    if problems:
        raise ManifestError('the manifest is invalid: %s' % problems[0], problems)
    return manifest


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _looks_secret(key):
    lowered = str(key).lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _validate_scalar_dict(problems, manifest, field):
    value = manifest.get(field)
    if value is None:
        return
    if not isinstance(value, dict):
        problems.append('%s must be a mapping' % field)
        return
    for key, item in value.items():
        if _looks_secret(key):
            problems.append('%s.%s looks like a secret; manifests must not carry secrets' % (field, key))
        elif item is not None and not isinstance(item, (str, int, float, bool)):
            problems.append('%s.%s must be a string, number or boolean' % (field, key))


def transport_name(transport):
    """Return ``compose`` or ``direct`` from a manifest's transport (a name, or a mapping with a ``transport`` key)."""
    if isinstance(transport, dict):
        return transport.get('transport')
    return transport


def _validate_transport(problems, transport):
    if transport is None:
        return
    if isinstance(transport, dict):
        _validate_scalar_dict(problems, {'transport': transport}, 'transport')
    elif not isinstance(transport, str):
        problems.append('transport must be a name or a mapping with a transport key')
        return
    name = transport_name(transport)
    if name not in TRANSPORTS:
        problems.append('transport %r is not one of %s' % (name, ', '.join(TRANSPORTS)))


def validate_manifest(manifest):
    """Return the list of problems of ``manifest`` (empty when valid), each one sentence.

    Unknown extra fields are accepted (a newer collection may add some); a newer ``format_version`` is not.
    """
    if not isinstance(manifest, dict):
        return ['the manifest is not a JSON object']
    problems = []
    missing = [field for field in REQUIRED_FIELDS if manifest.get(field) is None]
    if missing:
        problems.append('missing field(s): %s' % ', '.join(missing))
    version = manifest.get('format_version')
    if version is not None and (not _is_int(version) or version < 1 or version > ARTIFACT_FORMAT_VERSION):
        problems.append('format_version %r is not supported (this collection reads up to %d); upgrade fleet_telemetry.dr'
                        % (version, ARTIFACT_FORMAT_VERSION))
    for field in ('collection_version', 'database', 'server_version', 'pg_dump_version'):
        value = manifest.get(field)
        if value is not None and (not isinstance(value, str) or not value):
            problems.append('%s must be a non-empty string' % field)
    name = manifest.get('file')
    if name is not None and (not isinstance(name, str) or not name or '/' in name or name.startswith('.')):
        problems.append('file must be the artifact\'s base name, got %r' % (name,))
    for field, choices in (('dump_format', DUMP_FORMATS), ('compression', COMPRESSIONS)):
        value = manifest.get(field)
        if value is not None and value not in choices:
            problems.append('%s %r is not one of %s' % (field, value, ', '.join(choices)))
    _validate_transport(problems, manifest.get('transport'))
    level = manifest.get('compression_level')
    if level is not None and not _is_int(level):
        problems.append('compression_level must be an integer or null')
    size = manifest.get('size')
    if size is not None and (not _is_int(size) or size < 0):
        problems.append('size must be a non-negative integer')
    digest = manifest.get('sha256')
    if digest is not None and (not isinstance(digest, str) or not _SHA256_RE.match(digest)):
        problems.append('sha256 must be 64 lowercase hexadecimal characters')
    times = {}
    for field in ('started_at', 'finished_at'):
        value = manifest.get(field)
        if value is None:
            continue
        try:
            times[field] = parse_timestamp(value)
        except ValueError:
            problems.append('%s %r is not an ISO 8601 UTC time stamp such as 2026-01-31T02:00:05Z' % (field, value))
    if len(times) == 2 and times['finished_at'] < times['started_at']:
        problems.append('finished_at is before started_at')
    counts = manifest.get('row_counts')
    if counts is not None:
        if not isinstance(counts, dict):
            problems.append('row_counts must map table names to row counts')
        else:
            bad = sorted(str(table) for table, count in counts.items() if not _is_int(count) or count < 0)
            if bad:
                problems.append('row_counts of %s must be non-negative integers' % ', '.join(bad))
    tables = manifest.get('counted_tables')
    if tables is not None:
        if not isinstance(tables, list) or not all(isinstance(table, str) for table in tables):
            problems.append('counted_tables must be a list of table names')
        elif isinstance(counts, dict) and set(tables) != set(counts):
            problems.append('counted_tables and the tables of row_counts differ')
    for field in ('snapshot_id', 'cipher', 'host'):
        value = manifest.get(field)
        if value is not None and not isinstance(value, str):
            problems.append('%s must be a string or null' % field)
    fingerprint = manifest.get('key_fingerprint')
    if fingerprint is not None and (not isinstance(fingerprint, str) or not _FINGERPRINT_RE.match(fingerprint)):
        problems.append('key_fingerprint must look like v1:<hex>, as _photo_crypto.key_fingerprint returns')
    _validate_scalar_dict(problems, manifest, 'source')
    secret_fields = sorted(str(key) for key in manifest if _looks_secret(key))
    if secret_fields:
        problems.append('field(s) %s look like secrets; manifests must not carry secrets' % ', '.join(secret_fields))
    return problems


def manifest_bytes(manifest):
    """Return the canonical JSON encoding of a manifest (sorted keys, two-space indent, final newline)."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + '\n').encode('utf-8')


def write_manifest(path, manifest, mode=FILE_MODE):
    """Validate and atomically write ``manifest`` beside the artifact ``path``; return the manifest path.

    ``path`` may be the artifact path or the manifest path. An existing manifest is never replaced.
    """
    problems = validate_manifest(manifest)
    if problems:
        raise ManifestError('refusing to write an invalid manifest: %s' % problems[0], problems)
    target = manifest_path(path)
    with AtomicArtifactWriter(os.path.dirname(os.path.abspath(target)), os.path.basename(target), mode=mode) as writer:
        writer.write(manifest_bytes(manifest))
        writer.commit()
    return target


def read_manifest(path):
    """Return the manifest (dict) of the artifact ``path`` (or at the manifest path ``path``); not validated.

    Raises ``ManifestMissingError`` when it does not exist, ``ManifestError`` when it is unreadable,
    too big, not JSON or not a JSON object.
    """
    target = manifest_path(path)
    try:
        with open(target, 'rb') as fileobj:
            data = fileobj.read(MANIFEST_MAX_SIZE + 1)
    except FileNotFoundError:
        raise ManifestMissingError('manifest missing: %s does not exist' % target) from None
    except OSError as exc:
        raise ManifestError('manifest unreadable: %s: %s' % (target, exc.strerror or exc)) from None
    if len(data) > MANIFEST_MAX_SIZE:
        raise ManifestError('manifest unreadable: %s is larger than %d bytes' % (target, MANIFEST_MAX_SIZE))
    try:
        manifest = json.loads(data.decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError('manifest unreadable: %s is not valid JSON (%s)' % (target, exc)) from None
    if not isinstance(manifest, dict):
        raise ManifestError('manifest unreadable: %s is not a JSON object' % target)
    return manifest


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------

def parse_toc_tables(toc_text):
    """Return the sorted ``schema.table`` names of the TABLE DATA entries in ``pg_restore -l`` output.

    A TOC line reads ``<id>; <tableoid> <oid> TABLE DATA <schema> <name> <owner>``; comment lines start with ``;``.
    """
    return sorted(set(table for dummy, table in toc_data_entries(toc_text)))


def toc_data_entries(toc_text):
    """Yield ``(dump id, 'schema.table')`` of each TABLE DATA entry of ``pg_restore -l`` output; the id is a string."""
    for line in toc_text.splitlines():
        line = line.strip()
        if not line or line.startswith(';'):
            continue
        head, sep, rest = line.partition(' TABLE DATA ')
        if not sep or ';' not in head:
            continue
        words = rest.split(' ')
        if len(words) < 3:
            continue
        yield head.split(';', 1)[0].strip(), '%s.%s' % (words[0], ' '.join(words[1:-1]))


def _table_in_toc(table, toc_tables):
    """A qualified ``schema.table`` must match exactly; a bare name matches that table in any schema."""
    if '.' in table:
        return table in toc_tables
    return any(entry.split('.', 1)[1] == table for entry in toc_tables)


def _has_plain_trailer(path):
    with open(path, 'rb') as fileobj:
        fileobj.seek(0, os.SEEK_END)
        end = fileobj.tell()
        fileobj.seek(max(0, end - PLAIN_TRAILER_WINDOW))
        return PLAIN_TRAILER in fileobj.read(PLAIN_TRAILER_WINDOW)


def _first_line(text, limit=300):
    for line in (text or '').splitlines():
        line = line.strip()
        if line:
            return line[:limit]
    return ''


def _guess_format(path, is_dir):
    if is_dir:
        return DIRECTORY
    parsed = parse_artifact_name(path)
    if parsed:
        return parsed['dump_format']
    if path.endswith('.sql'):
        return PLAIN
    return None


def _guess_compression(path):
    parsed = parse_artifact_name(path)
    if parsed:
        return parsed['compression']
    return 'none' if path.endswith('.sql') else None


def verify_artifact(path, toc_runner=None, require_manifest=True, chunk_size=CHUNK_SIZE):
    """Verify the artifact at ``path`` and return a result dict; never raises for a damaged artifact.

    Result keys: ``path``, ``manifest_path``, ``kind`` (``artifact`` with a manifest, ``runbook`` for a
    manifest-less ``.sql`` file, else ``unknown``), ``ok``, ``problems`` (sentences, most telling first),
    ``sha256`` and ``size`` (actual, None when unreadable), ``manifest`` (dict or None), ``dump_format``,
    ``toc_tables`` (``schema.table`` of TABLE DATA entries, None when no TOC was read).

    The checksum is the real check: ``pg_restore -l`` exits 0 on a truncated custom archive. For custom
    and directory formats ``toc_runner(path) -> (rc, stdout, stderr)`` (the real one runs
    ``pg_restore -l``) must read the TOC and every table of the manifest's ``row_counts`` must appear in
    it as TABLE DATA. An uncompressed plain dump must end with pg_dump's completion trailer.

    A missing manifest is a problem unless ``require_manifest`` is false; for a runbook backup the
    problem says so and callers (restore) can accept ``kind == 'runbook'`` knowingly.
    """
    path = path.rstrip('/') or path
    mpath = manifest_path(path)
    result = {
        'path': path, 'manifest_path': mpath, 'kind': KIND_UNKNOWN, 'ok': False, 'problems': [],
        'sha256': None, 'size': None, 'manifest': None, 'dump_format': None, 'toc_tables': None,
    }
    problems = result['problems']
    exists = os.path.lexists(path)
    is_dir = exists and os.path.isdir(path)

    manifest = None
    try:
        manifest = read_manifest(mpath)
    except ManifestMissingError as exc:
        if exists and not is_dir and path.endswith('.sql'):
            result['kind'] = KIND_RUNBOOK
            if require_manifest:
                problems.append('no manifest: a hand-made backup; its checksum cannot be verified')
        elif require_manifest:
            problems.append(str(exc))
    except ManifestError as exc:
        problems.append(str(exc))
    if manifest is not None:
        result['kind'] = KIND_ARTIFACT
        result['manifest'] = manifest
        problems.extend('manifest invalid: %s' % problem for problem in validate_manifest(manifest))

    if not exists:
        problems.insert(0, 'file missing: %s does not exist' % path)
        return result

    dump_format = manifest.get('dump_format') if manifest and manifest.get('dump_format') in DUMP_FORMATS else _guess_format(path, is_dir)
    result['dump_format'] = dump_format
    if dump_format == DIRECTORY and not is_dir:
        problems.append('the manifest says directory format but %s is not a directory' % path)
    elif dump_format in (PLAIN, CUSTOM) and is_dir:
        problems.append('the manifest says %s format but %s is a directory' % (dump_format, path))
    if manifest and isinstance(manifest.get('file'), str) and manifest['file'] != os.path.basename(path):
        problems.append('the manifest describes %s, not %s' % (manifest['file'], os.path.basename(path)))

    try:
        result['sha256'], result['size'] = artifact_digest(path, chunk_size)
    except (OSError, ArtifactError) as exc:
        problems.insert(0, 'file unreadable: %s' % (exc.strerror if isinstance(exc, OSError) and exc.strerror else exc))
    if manifest and result['sha256'] is not None:
        expected_size, expected_sha = manifest.get('size'), manifest.get('sha256')
        mismatches = []
        if _is_int(expected_size) and expected_size != result['size']:
            mismatches.append('size mismatch: manifest says %s bytes, file has %s' % (expected_size, result['size']))
        if isinstance(expected_sha, str) and expected_sha != result['sha256']:
            mismatches.append('sha256 mismatch: manifest says %s, file has %s' % (expected_sha, result['sha256']))
        problems[0:0] = mismatches

    compression = manifest.get('compression') if manifest else _guess_compression(path)
    if dump_format == PLAIN and compression == 'none' and not is_dir and result['sha256'] is not None:
        if not _has_plain_trailer(path):
            problems.append('plain dump is incomplete: it does not end with pg_dump\'s "PostgreSQL database dump complete" trailer')

    if dump_format in (CUSTOM, DIRECTORY) and toc_runner is not None:
        rc, out, err = toc_runner(path)
        if rc != 0:
            problems.append('table of contents unreadable: %s' % (_first_line(err) or _first_line(out) or 'pg_restore exited with %d' % rc))
        else:
            toc_tables = parse_toc_tables(out or '')
            result['toc_tables'] = toc_tables
            counts = manifest.get('row_counts') if manifest else None
            if isinstance(counts, dict):
                absent = sorted(table for table in counts if not _table_in_toc(str(table), toc_tables))
                if absent:
                    problems.append('table of contents has no data for %s listed in the manifest' % ', '.join(absent))

    result['ok'] = not problems
    return result


# --------------------------------------------------------------------------------------------
# Listing and selection
# --------------------------------------------------------------------------------------------

def _sort_key(entry):
    # Manifests made from datetimes keep whole seconds: within one second, the name's sequence (_2, _3, ...) orders.
    parsed = parse_artifact_name(entry['name'])
    return (entry['started_at'], parsed['sequence'] if parsed else 1, entry['name'])


def list_artifacts(backup_dir, database=None):
    """Return the artifacts in ``backup_dir`` that have a readable, valid manifest, newest first.

    Each entry: ``path``, ``name``, ``manifest_path``, ``manifest``, ``database``, ``started_at``
    (aware datetime, from the manifest). Temporary ``*.partial-*`` entries, dot files, manifests that
    do not read or validate, and manifests whose artifact is gone are skipped; no checksum is computed
    (see ``newest_verified``). ``database`` filters on the manifest's database.
    """
    entries = []
    with os.scandir(backup_dir) as scan:
        names = sorted(entry.name for entry in scan)
    for name in names:
        if name.startswith('.') or not name.endswith(MANIFEST_SUFFIX):
            continue
        mpath = os.path.join(backup_dir, name)
        path = artifact_path_of_manifest(mpath)
        if not os.path.lexists(path):
            continue
        try:
            manifest = read_manifest(mpath)
        except ManifestError:
            continue
        if validate_manifest(manifest):
            continue
        if database is not None and manifest['database'] != database:
            continue
        entries.append({
            'path': path, 'name': os.path.basename(path), 'manifest_path': mpath, 'manifest': manifest,
            'database': manifest['database'], 'started_at': parse_timestamp(manifest['started_at']),
        })
    entries.sort(key=_sort_key, reverse=True)
    return entries


def newest_verified(backup_dir, database=None, toc_runner=None, chunk_size=CHUNK_SIZE):
    """Pick the newest artifact of ``database`` in ``backup_dir`` whose checksum (and TOC) verify.

    Returns ``{'selected': <verify_artifact result or None>, 'rejected': [<results of newer artifacts that failed>]}``.
    Checksums are recomputed, newest first, until one verifies.
    """
    rejected = []
    for entry in list_artifacts(backup_dir, database):
        result = verify_artifact(entry['path'], toc_runner=toc_runner, chunk_size=chunk_size)
        if result['ok']:
            return {'selected': result, 'rejected': rejected}
        rejected.append(result)
    return {'selected': None, 'rejected': rejected}
