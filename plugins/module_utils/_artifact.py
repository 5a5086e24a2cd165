# -*- coding: utf-8 -*-
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Backup artifacts: names, dump formats and UTC time stamps, and ``ArtifactError``, the base of the artifact errors.

Internal to fleet_telemetry.dr: not a public API, it may change without notice.

An artifact's name says its prefix, when its dump started (UTC, to the second, ``_2``, ``_3``, ... when the name is
taken), its format and whether it is encrypted with age (``.age`` after the format's extension:
``backup_<stamp>.sql.zst.age``; ``artifact_name``, ``free_artifact_name``, ``parse_artifact_name``); its manifest lies
beside it (``manifest_path``). Time stamps are aware UTC datetimes, written as ISO 8601 with ``Z`` (``utc_now``,
``format_timestamp``, ``parse_timestamp``).

The rest of the artifact code builds on this file; import each name from the file that defines it: ``_digest``
(checksums of files and directory artifacts), ``_atomic`` (destination check and atomic publication), ``_manifest``
(manifest fields; build, validate, read and write) and ``_verification`` (verification of an artifact; listing,
selection and removal of the artifacts in a backup directory).

It imports nothing from the collection but the error base class, and must keep compiling on Python 3.8.
"""

from __future__ import annotations

import datetime
import os
import re

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError

MANIFEST_SUFFIX = '.manifest.json'
PARTIAL_MARKER = '.partial-'

PLAIN = 'plain'
CUSTOM = 'custom'
DIRECTORY = 'directory'
DUMP_FORMATS = (PLAIN, CUSTOM, DIRECTORY)
COMPRESSIONS = ('none', 'gzip', 'zstd')
# Appended to the extension of an artifact encrypted with age (``_age``); a directory archive is never encrypted.
ENCRYPTED_SUFFIX = '.age'

NAME_TIME_FORMAT = '%Y-%m-%d_%H-%M-%S'
TIMESTAMP_FORMAT = '%Y-%m-%dT%H:%M:%SZ'

_EXTENSIONS = {
    (PLAIN, 'none'): '.sql',
    (PLAIN, 'gzip'): '.sql.gz',
    (PLAIN, 'zstd'): '.sql.zst',
}
_FORMAT_EXTENSIONS = {CUSTOM: '.dump', DIRECTORY: '.dir'}
_NAME_RE = re.compile(
    r'\A(?P<prefix>[^/]+?)_(?P<stamp>\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})(?:_(?P<seq>[2-9]|[1-9][0-9]+))?'
    r'(?P<ext>\.sql|\.sql\.gz|\.sql\.zst|\.dump|\.dir)(?P<age>\.age)?\Z')
_EXTENSION_FORMATS = {
    '.sql': (PLAIN, 'none'),
    '.sql.gz': (PLAIN, 'gzip'),
    '.sql.zst': (PLAIN, 'zstd'),
    '.dump': (CUSTOM, None),
    '.dir': (DIRECTORY, None),
}
_PREFIX_RE = re.compile(r'\A[A-Za-z0-9][A-Za-z0-9_.-]*\Z')
_TIMESTAMP_RE = re.compile(r'\A(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,6})?(Z|\+00:00)\Z')


class ArtifactError(FleetDrError):
    """Base class of every artifact error (``_atomic``, ``_manifest``, ...); the message is one sentence an operator can act on."""

    code = 'artifact_error'


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


def clear_name(path):
    """The name of an artifact without its ``.age`` suffix (``backup.sql.zst.age`` -> ``backup.sql.zst``)."""
    path = path.rstrip('/') or path
    return path[:-len(ENCRYPTED_SUFFIX)] if path.endswith(ENCRYPTED_SUFFIX) else path


def artifact_extension(dump_format, compression='none', encrypted=False):
    """Return the file name extension of an artifact: ``.sql``, ``.sql.gz``, ``.sql.zst``, ``.dump`` or ``.dir``.

    Custom and directory archives compress inside the archive, so their extension does not change. ``encrypted``
    appends ``.age`` (``.sql.zst.age``); a directory archive cannot be encrypted (ValueError).
    """
    _check_choice(dump_format, DUMP_FORMATS, 'dump format')
    _check_choice(compression, COMPRESSIONS, 'compression')
    if encrypted and dump_format == DIRECTORY:
        raise ValueError('a directory archive cannot be encrypted with age; use format plain or custom')
    suffix = ENCRYPTED_SUFFIX if encrypted else ''
    if dump_format == PLAIN:
        return _EXTENSIONS[(PLAIN, compression)] + suffix
    return _FORMAT_EXTENSIONS[dump_format] + suffix


def artifact_name(started_at, dump_format=PLAIN, compression='none', prefix='backup', encrypted=False):
    """Return the artifact name for a dump started at ``started_at`` (converted to UTC; naive means UTC).

    A plain uncompressed dump gets the runbook's exact name, ``backup_YYYY-MM-DD_HH-MM-SS.sql``; ``encrypted``
    appends ``.age``.
    """
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ValueError('artifact prefix %r is not usable; use letters, digits, "_", "." and "-", starting with a letter or digit' % (prefix,))
    return '%s_%s%s' % (prefix, _utc(started_at).strftime(NAME_TIME_FORMAT), artifact_extension(dump_format, compression, encrypted))


def free_artifact_name(directory, started_at, dump_format=PLAIN, compression='none', prefix='backup', encrypted=False):
    """Return the first name for a dump started at ``started_at`` that no entry (artifact or manifest) of ``directory`` holds.

    That is ``artifact_name(...)`` (the runbook's name) when it is free, else the same name with ``_2``, ``_3``, ...
    before the extension: two backups that start within one second both get a name, and neither replaces the other.
    Call it under the backup's lock; the atomic rename still refuses a name taken by anything else meanwhile.
    """
    base = artifact_name(started_at, dump_format, compression, prefix, encrypted)
    ext = artifact_extension(dump_format, compression, encrypted)
    stem = base[:-len(ext)]
    name, seq = base, 1
    while os.path.lexists(os.path.join(directory, name)) or os.path.lexists(os.path.join(directory, name + MANIFEST_SUFFIX)):
        seq += 1
        name = '%s_%d%s' % (stem, seq, ext)
    return name


def parse_artifact_name(name):
    """Return ``{prefix, started_at, dump_format, compression, sequence, encrypted}`` for a name made by ``artifact_name``.

    None when it is not one. ``compression`` is None for custom and directory archives (the name does not say);
    ``encrypted`` is True for a name ending in ``.age`` (``.dir.age`` is not a name this collection makes).
    """
    match = _NAME_RE.match(os.path.basename(name.rstrip('/')))
    if not match or (match.group('age') and match.group('ext') == '.dir'):
        return None
    started_at = datetime.datetime.strptime(match.group('stamp'), NAME_TIME_FORMAT).replace(tzinfo=datetime.timezone.utc)
    dump_format, compression = _EXTENSION_FORMATS[match.group('ext')]
    return {'prefix': match.group('prefix'), 'started_at': started_at, 'dump_format': dump_format, 'compression': compression,
            'sequence': int(match.group('seq') or 1), 'encrypted': bool(match.group('age'))}


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
