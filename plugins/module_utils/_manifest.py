# -*- coding: utf-8 -*-
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Manifests of artifacts: their fields, and building, validating, reading and writing them.

Internal to fleet_telemetry.dr: not a public API, it may change without notice.

A manifest is the JSON file beside an artifact (``_artifact.manifest_path``) that describes it: format, size and
checksum, database and versions, when the dump started and finished, the row counts. ``write_manifest`` publishes it
atomically and never replaces one; ``validate_manifest`` lists what is wrong, one sentence each.

It imports from the collection only ``_artifact`` (names, time stamps, ``ArtifactError``) and ``_atomic`` (the
atomic writer), and must keep compiling on Python 3.8.
"""

from __future__ import annotations

import datetime
import json
import os
import re

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import (
    COMPRESSIONS,
    DUMP_FORMATS,
    ENCRYPTED_SUFFIX,
    ArtifactError,
    format_timestamp,
    manifest_path,
    parse_timestamp,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._atomic import FILE_MODE, AtomicArtifactWriter

ARTIFACT_FORMAT_VERSION = 1
# A manifest lists row counts, not data: anything bigger is not one of ours.
MANIFEST_MAX_SIZE = 16 * 1024 * 1024
TRANSPORTS = ('compose', 'direct')

_SHA256_RE = re.compile(r'\A[0-9a-f]{64}\Z')
_FINGERPRINT_RE = re.compile(r'\Av[0-9]+:[0-9a-f]{16,}\Z')
_RECIPIENT_FINGERPRINT_RE = re.compile(r'\Asha256:[0-9a-f]{16}\Z')
ENCRYPTIONS = ('age',)
_SECRET_WORDS = ('password', 'passwd', 'secret', 'token', 'credential', 'private')

REQUIRED_FIELDS = (
    'format_version', 'collection_version', 'file', 'dump_format', 'compression', 'size', 'sha256',
    'database', 'server_version', 'pg_dump_version', 'started_at', 'finished_at', 'row_counts',
    'counted_tables', 'transport',
)
OPTIONAL_FIELDS = ('compression_level', 'snapshot_id', 'key_fingerprint', 'cipher', 'host', 'source', 'encryption', 'recipients')
MANIFEST_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS


class ManifestError(ArtifactError):
    """A manifest is missing, unreadable, not JSON or invalid. ``problems`` lists what is wrong."""

    def __init__(self, message, problems=None):
        super().__init__(message)
        self.problems = list(problems or [message])


class ManifestMissingError(ManifestError):
    """The manifest file does not exist."""


def build_manifest(**fields):
    """Return a manifest dict (docs/backup.md, "Artifacts and formats") from keyword fields; raise ManifestError if it is invalid.

    Fields (required unless marked optional):

    - ``format_version`` (int, set here), ``collection_version`` (str);
    - ``file`` (the artifact's base name), ``dump_format`` (plain|custom|directory),
      ``compression`` (none|gzip|zstd), ``compression_level`` (optional int);
    - ``size`` (bytes; for a directory the sum of its files), ``sha256`` (hex; for a directory the
      combined digest of the ``_digest`` module docstring);
    - ``database``, ``server_version``, ``pg_dump_version`` (str);
    - ``started_at``, ``finished_at`` (ISO 8601 UTC, ``Z``; fractions of a second allowed);
    - ``snapshot_id`` (optional str, the exported snapshot the dump and the counts share);
    - ``row_counts`` ({table: int >= 0}, bare or ``schema.table`` names), ``counted_tables`` (the same
      names as a list);
    - ``key_fingerprint`` (optional, ``_photo_crypto.key_fingerprint``), ``cipher`` (optional str);
    - ``transport``: ``compose`` or ``direct``, or a mapping of scalars with that name under the key
      ``transport`` plus secret-free connection facts (project, service, host, port, user...);
    - ``host`` (optional str, the machine that ran the backup), ``source`` (optional mapping of scalars);
    - ``encryption`` (optional, ``age`` when the artifact is encrypted with age: its name then ends in ``.age``) and
      ``recipients`` (with it, the ``_age.recipient_fingerprint`` of each recipient: ``sha256:<16 hex>``; the public keys
      themselves stay in the inventory, the identities off the database host).

    Keys that look like secrets (password, secret, token, credential, private) are refused anywhere
    they are checked.

    ``format_version`` is set here. ``started_at``/``finished_at`` may be datetimes (converted to UTC
    strings). ``counted_tables`` defaults to the sorted keys of ``row_counts``. Optional fields
    (``compression_level``, ``snapshot_id``, ``key_fingerprint``, ``cipher``, ``host``, ``source``, ``encryption``,
    ``recipients``) default to None. Unknown field names raise ValueError, so a typo never goes unnoticed.
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


def _validate_encryption(problems, manifest):
    """``encryption`` and ``recipients`` agree with each other, the format and the file name."""
    method, recipients = manifest.get('encryption'), manifest.get('recipients')
    name = manifest.get('file')
    if method is None:
        if recipients is not None:
            problems.append('recipients are listed but encryption is not set')
        if isinstance(name, str) and name.endswith(ENCRYPTED_SUFFIX):
            problems.append('file %s ends in %s but encryption is not set' % (name, ENCRYPTED_SUFFIX))
        return
    if method not in ENCRYPTIONS:
        problems.append('encryption %r is not one of %s' % (method, ', '.join(ENCRYPTIONS)))
        return
    if (not isinstance(recipients, list) or not recipients
            or not all(isinstance(r, str) and _RECIPIENT_FINGERPRINT_RE.match(r) for r in recipients)):
        problems.append('recipients must list the fingerprint (sha256:<16 hex>) of each age recipient')
    if manifest.get('dump_format') == 'directory':
        problems.append('a directory archive cannot be encrypted with age')
    if isinstance(name, str) and not name.endswith(ENCRYPTED_SUFFIX):
        problems.append('an artifact encrypted with age must be named *%s, not %s' % (ENCRYPTED_SUFFIX, name))


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
    _validate_encryption(problems, manifest)
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
