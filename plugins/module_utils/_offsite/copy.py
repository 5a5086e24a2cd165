# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Copying a local artifact to an offsite target: idempotent, never overwriting, verified by reading back, manifest last.
Internal to fleet_telemetry.dr: not a public API.

``copy_artifact`` decides from what the target already holds:

- the artifact and its manifest, with the same checksum: nothing to copy (a rerun);
- a manifest with another checksum, or an object of the artifact's name with other bytes: refused
  (``OffsiteConflictError``), never overwritten;
- the artifact without its manifest, with the same bytes (a run stopped before its manifest): the manifest is added;
- nothing: the artifact is uploaded (hashed while it is read), read back and hashed, then the manifest is written.

The local bytes must hash to the manifest's checksum: a local artifact damaged since its backup is not copied.
"""

from __future__ import annotations

import datetime
import json
import os
import time

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._manifest import (
    MANIFEST_MAX_SIZE,
    manifest_path,
    read_manifest,
    validate_manifest,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import (
    OffsiteConflictError,
    OffsiteError,
    OffsiteMismatchError,
    manifest_name,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import format_timestamp, parse_timestamp


def local_artifact(path):
    """``(name, manifest, manifest bytes)`` of the local file artifact ``path``; an OffsiteError names what is wrong."""
    path = path.rstrip('/') or path
    if os.path.isdir(path):
        raise OffsiteError('%s is a directory-format artifact: offsite copies take one file; back up with format plain '
                           'or custom to copy it offsite' % path, code='offsite_directory')
    if not os.path.isfile(path):
        raise OffsiteError('%s is not an artifact file: give the path of a backup made by fleet_telemetry.dr' % path,
                           code='offsite_no_artifact')
    manifest = read_manifest(path)
    problems = validate_manifest(manifest)
    if not problems and manifest['file'] != os.path.basename(path):
        problems = ['it describes %s' % manifest['file']]
    if problems:
        raise OffsiteError('the manifest of %s is invalid (%s): only verified backups go offsite' % (path, problems[0]),
                           code='offsite_bad_manifest')
    with open(manifest_path(path), 'rb') as handle:
        data = handle.read(MANIFEST_MAX_SIZE + 1)
    return os.path.basename(path), manifest, data


def lock_for(manifest, mode, days):
    """The Object Lock ``(mode, retain-until)`` of an artifact: ``days`` after its snapshot time; None without a mode."""
    if not mode or not days:
        return None
    return mode, parse_timestamp(manifest['started_at']) + datetime.timedelta(days=days)


def remote_manifest(target, name):
    """The manifest (dict) the target holds for the artifact ``name``, or None when it holds none."""
    if target.stat(manifest_name(name)) is None:
        return None
    data = target.get_bytes(manifest_name(name), MANIFEST_MAX_SIZE)
    try:
        manifest = json.loads(data.decode('utf-8'))
    except (UnicodeDecodeError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _conflict(target, name, what):
    return OffsiteConflictError(
        '%s already holds %s under the name %s: it is not this backup, and is never overwritten; find out what wrote it, '
        'or copy to another prefix or directory' % (target.label, what, name))


def _existing(target, name, manifest):
    """What the target holds of this artifact: 'complete', 'without_manifest' or None (nothing); raise on a conflict."""
    theirs = remote_manifest(target, name)
    if theirs is not None:
        if theirs.get('sha256') != manifest['sha256'] or theirs.get('size') != manifest['size']:
            raise _conflict(target, name, 'another backup (its manifest has another checksum)')
        found = target.stat(name)
        if found is None or found['size'] != manifest['size']:
            raise _conflict(target, name, 'a manifest whose artifact is missing or of another size')
        return 'complete'
    found = target.stat(name)
    if found is None:
        return None
    if found['size'] != manifest['size'] or target.hash_object(name)[0] != manifest['sha256']:
        raise _conflict(target, name, 'an object with other content')
    return 'without_manifest'


def _read_back(target, name, manifest):
    """Hash the object where it lies (or downloaded); a copy that differs is removed (it is not a backup) and refused."""
    digest, size = target.hash_object(name)
    if digest == manifest['sha256'] and size == manifest['size']:
        return
    fate = ('it was removed, and no manifest was written; copy it again' if _discard(target, name) else
            'no manifest was written, and it could not be removed (Object Lock?): delete it once it can be, then copy again')
    raise OffsiteMismatchError('read back from %s, %s hashes to %s (%d bytes), not to the backup\'s %s (%d bytes): the copy is '
                               'not a backup; %s' % (target.label, name, digest, size, manifest['sha256'], manifest['size'], fate))


def copy_artifact(target, path, lock_mode=None, lock_days=0, check_mode=False, progress=None, clock=time.monotonic):
    """Copy the artifact at ``path`` (with its manifest) to ``target``; return the copy's record for results and reports.

    The record: ``target`` (its label), ``location``, ``name``, ``size``, ``sha256``, ``status`` (``copied``,
    ``manifest_added``, ``present``, or ``would_copy`` in check mode), ``copied`` (bool), ``verified`` (bool),
    ``locked_until`` and ``upload_seconds``/``verify_seconds``.
    """
    name, manifest, manifest_data = local_artifact(path)
    record = {'target': target.label, 'kind': target.kind, 'location': target.location(name), 'name': name,
              'size': manifest['size'], 'sha256': manifest['sha256'], 'copied': False, 'verified': False,
              'locked_until': None, 'upload_seconds': 0.0, 'verify_seconds': 0.0}
    lock = lock_for(manifest, lock_mode, lock_days)
    if lock:
        record['locked_until'] = format_timestamp(lock[1])
    state = _existing(target, name, manifest)
    if state == 'complete':
        return dict(record, status='present', verified=True)
    if check_mode:
        return dict(record, status='would_add_manifest' if state else 'would_copy')
    if state is None:
        started = clock()
        sent = target.put_file(path, name, manifest['size'], progress=progress, lock=lock)
        record['upload_seconds'] = round(clock() - started, 3)
        if sent != manifest['sha256']:
            _discard(target, name)
            raise OffsiteMismatchError(
                'the local artifact %s hashes to %s, not to its manifest\'s %s: it changed or was damaged since the backup, '
                'so it was not copied; take a new backup' % (path, sent, manifest['sha256']))
    started = clock()
    _read_back(target, name, manifest)
    record['verify_seconds'] = round(clock() - started, 3)
    target.put_bytes(manifest_name(name), manifest_data, lock=lock)
    return dict(record, status='copied' if state is None else 'manifest_added', copied=True, verified=True)


def _discard(target, name):
    """Remove an upload that is not a backup (so that the next run copies again); True when it is gone. A failure to remove
    it is not worse than what the caller reports."""
    try:
        target.delete(name)
    except OffsiteError:
        return False
    return True
