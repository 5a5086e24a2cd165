# -*- coding: utf-8 -*-
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Verification of artifacts, and listing, selection and removal of the artifacts in a backup directory.

Internal to fleet_telemetry.dr: not a public API, it may change without notice.

An artifact (docs/backup.md, "Artifacts and formats") is one dump file, or one ``pg_dump -Fd`` directory, plus a JSON
manifest beside it named ``<artifact>`` + ``MANIFEST_SUFFIX``. The manifest is written last and is the
commit marker: an artifact without a readable manifest whose checksum matches is not a backup for
retention, "latest" or offsite copies. Hand-made backups of the runbook (plain ``.sql``, no manifest)
are recognised (``kind: runbook``) so that restore can decide to accept them.

An artifact encrypted with age (``.age``, manifest ``encryption: age``) is verified without its identity, which the
database host does not hold: its checksum and size against the manifest and its age header (``_age.header_problem``);
its table of contents and plain trailer are behind the encryption (the restore checks them after ``age -d``).

It imports from the collection only ``_artifact``, ``_digest``, ``_atomic``, ``_manifest`` and ``_age``, and must keep
compiling on Python 3.8.
"""

from __future__ import annotations

import os
import shutil

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import (
    CUSTOM,
    DIRECTORY,
    DUMP_FORMATS,
    MANIFEST_SUFFIX,
    PLAIN,
    ArtifactError,
    artifact_path_of_manifest,
    manifest_path,
    parse_artifact_name,
    parse_timestamp,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._age import header_problem, is_encrypted
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._atomic import fsync_directory
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._digest import CHUNK_SIZE, artifact_digest
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._manifest import (
    ManifestError,
    ManifestMissingError,
    _is_int,
    read_manifest,
    validate_manifest,
)

KIND_ARTIFACT = 'artifact'
KIND_RUNBOOK = 'runbook'
KIND_UNKNOWN = 'unknown'

# The tail of every plain pg_dump output; 16.10/17.6 and later add ``\unrestrict <key>`` after it.
PLAIN_TRAILER = b'-- PostgreSQL database dump complete'
PLAIN_TRAILER_WINDOW = 64 * 1024


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


def is_encrypted_artifact(path, manifest=None):
    """Whether the artifact at ``path`` is age-encrypted: its manifest says so; without one, its name (``.age``) or its
    first bytes do. The one answer to that question for the backup's verification and the restore."""
    if os.path.isdir(path):
        return False
    if manifest is not None:
        return manifest.get('encryption') == 'age'
    parsed = parse_artifact_name(path)
    return bool(parsed and parsed['encrypted']) or is_encrypted(path)


def verify_artifact(path, toc_runner=None, require_manifest=True, chunk_size=CHUNK_SIZE):
    """Verify the artifact at ``path`` and return a result dict; never raises for a damaged artifact.

    Result keys: ``path``, ``manifest_path``, ``kind`` (``artifact`` with a manifest, ``runbook`` for a
    manifest-less ``.sql`` file, else ``unknown``), ``ok``, ``problems`` (sentences, most telling first),
    ``sha256`` and ``size`` (actual, None when unreadable), ``manifest`` (dict or None), ``dump_format``,
    ``toc_tables`` (``schema.table`` of TABLE DATA entries, None when no TOC was read), ``encrypted`` (bool).

    The checksum is the real check: ``pg_restore -l`` exits 0 on a truncated custom archive. For custom
    and directory formats ``toc_runner(path) -> (rc, stdout, stderr)`` (the real one runs
    ``pg_restore -l``) must read the TOC and every table of the manifest's ``row_counts`` must appear in
    it as TABLE DATA. An uncompressed plain dump must end with pg_dump's completion trailer. An artifact encrypted with
    age must start with a well-formed age header; its TOC and trailer are not read (``toc_runner`` is not called).

    A missing manifest is a problem unless ``require_manifest`` is false; for a runbook backup the
    problem says so and callers (restore) can accept ``kind == 'runbook'`` knowingly.
    """
    path = path.rstrip('/') or path
    mpath = manifest_path(path)
    result = {
        'path': path, 'manifest_path': mpath, 'kind': KIND_UNKNOWN, 'ok': False, 'problems': [],
        'sha256': None, 'size': None, 'manifest': None, 'dump_format': None, 'toc_tables': None, 'encrypted': False,
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
        result['encrypted'] = bool(manifest and manifest.get('encryption') == 'age')
        problems.insert(0, 'file missing: %s does not exist' % path)
        return result
    encrypted = result['encrypted'] = is_encrypted_artifact(path, manifest)

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

    if encrypted:
        if result['sha256'] is not None:
            problem = header_problem(path)
            if problem:
                problems.append('not a valid age file: %s' % problem)
        result['ok'] = not problems
        return result

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


# --------------------------------------------------------------------------------------------
# Removal
# --------------------------------------------------------------------------------------------

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
