# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Bringing a backup back from an offsite target: the newest complete artifact, downloaded into a staging directory with
its checksum computed while it is written. Internal to fleet_telemetry.dr: not a public API.

Only complete artifacts count (the artifact and its manifest, the manifest valid). A download whose bytes do not hash to
the manifest's checksum is removed and reported in ``rejected``, and the next newest is tried, as the local selection
does. The staging copy is written under a temporary name and published with its manifest, so the restore reads it as it
reads a local backup.
"""

from __future__ import annotations

import json
import os
import shutil

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import manifest_path, parse_artifact_name, parse_timestamp
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._atomic import AtomicArtifactWriter, NoSpaceError, check_destination
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._digest import sha256_file
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._manifest import (
    MANIFEST_MAX_SIZE,
    ManifestError,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import (
    OffsiteError,
    artifact_names,
    manifest_name,
)


def manifest_at(target, name):
    """Return ``(manifest or None, problem or None)`` of the artifact ``name`` at ``target``."""
    try:
        data = target.get_bytes(manifest_name(name), MANIFEST_MAX_SIZE)
        manifest = json.loads(data.decode('utf-8'))
    except OffsiteError as exc:
        return None, 'the manifest is unreadable: %s' % exc
    except (UnicodeDecodeError, ValueError) as exc:
        return None, 'the manifest is not valid JSON (%s)' % exc
    problems = validate_manifest(manifest)
    if problems:
        return None, 'the manifest is invalid: %s' % problems[0]
    return manifest, None


def complete_artifacts(target, database=None):
    """The complete artifacts at ``target`` (optionally of ``database``), newest first: ``{name, manifest, started_at}``.

    An artifact without its manifest, or whose manifest does not read or validate, is not a backup and is left out.
    """
    entries = []
    for name in artifact_names(target.list_names()):
        manifest, problem = manifest_at(target, name)
        if problem or manifest.get('file') != name:
            continue
        if database is not None and manifest['database'] != database:
            continue
        parsed = parse_artifact_name(name)
        entries.append({'name': name, 'manifest': manifest, 'started_at': parse_timestamp(manifest['started_at']),
                        'sequence': parsed['sequence'] if parsed else 1})
    entries.sort(key=lambda entry: (entry['started_at'], entry['sequence'], entry['name']), reverse=True)
    return entries


def space_problem(staging_dir, size, disk_usage=shutil.disk_usage):
    """A sentence when ``staging_dir`` has not room for ``size`` bytes (and 64 MiB to spare), else None."""
    free = disk_usage(staging_dir).free
    need = size + (64 << 20)
    if free >= need:
        return None
    return ('the staging directory %s has %d MiB free, and the backup needs %d MiB: free space there or set another '
            'staging directory' % (staging_dir, free >> 20, need >> 20))


def _kept_copy(path, manifest):
    """True when ``path`` is this very backup, downloaded and verified by an earlier run (kept after its restore failed):
    a regular file with the same manifest, hashing to the manifest's checksum."""
    if os.path.islink(path) or not os.path.isfile(path) or os.path.islink(manifest_path(path)):
        return False
    try:
        return read_manifest(path) == manifest and sha256_file(path) == manifest['sha256']
    except (ManifestError, OSError):
        return False


def download_artifact(target, entry, staging_dir):
    """Download ``entry`` (from ``complete_artifacts``) into ``staging_dir`` with its manifest; return the local path.

    The sha256 is computed while writing; on a mismatch nothing is published and OffsiteError (``offsite_mismatch``) says so.
    A verified copy of the same backup already there (an earlier restore from it failed, and kept it) is used as it is;
    anything else under its name is refused (``offsite_staging_taken``).
    """
    name, manifest = entry['name'], entry['manifest']
    path = os.path.join(staging_dir, name)
    if _kept_copy(path, manifest):
        return path
    problem = space_problem(staging_dir, manifest['size'])
    if problem:
        raise NoSpaceError(problem)
    if os.path.lexists(path) or os.path.lexists(manifest_path(path)):
        raise OffsiteError('the staging directory already holds %s: remove it (it is a copy from an earlier run), then run '
                           'again' % path, code='offsite_staging_taken')
    with AtomicArtifactWriter(staging_dir, name) as writer:
        target.download(name, writer)
        if writer.sha256 != manifest['sha256']:
            raise OffsiteError('%s at %s hashes to %s, not to its manifest\'s %s: the copy at the target is damaged'
                               % (name, target.label, writer.sha256, manifest['sha256']), code='offsite_mismatch')
        writer.commit()
    write_manifest(path, manifest)
    return path


def fetch_newest(target, staging_dir, database=None, name=None, check_mode=False):
    """Download the newest complete artifact whose bytes verify (or the one named ``name``) into ``staging_dir``.

    Returns ``{'path', 'name', 'manifest', 'rejected': [{name, msg}], 'candidates'}``; ``path`` is None in check mode
    (nothing is downloaded) and when nothing verifies. A damaged newer copy is reported in ``rejected``.
    """
    staging_dir = check_destination(staging_dir, option='staging_dir')
    entries = complete_artifacts(target, database)
    if name is not None:
        entries = [entry for entry in entries if entry['name'] == name]
    result = {'path': None, 'name': None, 'manifest': None, 'rejected': [], 'candidates': len(entries)}
    for entry in entries:
        if check_mode:
            return dict(result, name=entry['name'], manifest=entry['manifest'])
        try:
            path = download_artifact(target, entry, staging_dir)
        except OffsiteError as exc:
            if exc.code != 'offsite_mismatch':
                raise
            result['rejected'].append({'name': entry['name'], 'msg': str(exc)})
            continue
        return dict(result, path=path, name=entry['name'], manifest=entry['manifest'])
    return result
