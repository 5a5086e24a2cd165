# -*- coding: utf-8 -*-
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Checksums of artifacts: the SHA-256 of a file and the combined SHA-256 of a directory artifact.

Internal to fleet_telemetry.dr: not a public API, it may change without notice.

Memory stays flat: files are hashed and copied in fixed-size chunks, never read whole.

Directory digest (``sha256_directory``): every regular file below the directory is listed by its path
relative to the directory (``/``-separated, as bytes), the list is sorted bytewise, and the digest is
the SHA-256 of the concatenated lines ``<sha256 hex of the file>  <relative path>\\n`` -- exactly the
output of ``sha256sum``. Directories only contribute through their files; symlinks and special files
are refused. For file names without backslashes or newlines (pg_dump writes ``toc.dat`` and
``<n>.dat[.gz|.zst]``) a shell reproduces it::

    cd X.dir && find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum

It imports nothing from the collection but ``ArtifactError`` (``_artifact``), and must keep compiling on Python 3.8.
"""

from __future__ import annotations

import hashlib
import os

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import ArtifactError

CHUNK_SIZE = 1024 * 1024


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
