# -*- coding: utf-8 -*-
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Retention applied: list the backups of a place in the input shape of ``_retention``, and delete what a plan says.

Internal to fleet_telemetry.dr: not a public API, it may change without notice.

``local_backups`` lists a backup directory (or the ``safety/`` directory of restore's safety dumps, prefix ``safety``),
``target_backups`` an offsite target; ``apply_plan`` deletes a plan's deletions through a remover, ``local_remover`` or
``target_remover``. Each removal deletes the manifest first, then the artifact: once the manifest is gone the artifact
is no longer a backup for anything (retention, "latest", offsite copies), so a removal cut short leaves at worst a file
without a manifest (a leftover), never a manifest that promises a backup which is gone.

"Verified" here is cheap: the manifest reads and validates, describes this artifact, and the artifact's size equals the
manifest's. Checksumming every old backup each night would take too long; the newest backup was fully verified (checksum
and table of contents) by the backup run that made it, and retention protects it by name.

It imports from the collection only the artifact modules, ``_offsite.target``, ``_offsite.fetch`` (``manifest_at``) and ``_retention``, and must keep compiling
on Python 3.8.
"""

from __future__ import annotations

import datetime
import os

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import (
    ArtifactError,
    format_timestamp,
    parse_artifact_name,
    parse_timestamp,
    utc_now,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._digest import _directory_files
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.fetch import manifest_at
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import (
    OffsiteError,
    OffsiteLockedError,
    artifact_names,
    manifest_name,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._verification import list_artifacts, remove_artifact


# --------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------

def _local_size(path):
    """The size of a local artifact: the file's, or the sum of a directory artifact's files (as in its manifest)."""
    if os.path.isdir(path):
        root = os.fsencode(path)
        return sum(os.stat(os.path.join(root, rel)).st_size for rel in _directory_files(path))
    return os.stat(path).st_size


def size_problem(name, manifest, size):
    """The problem of an artifact against its (valid) manifest, judged by name and size only; None when it matches."""
    if manifest.get('file') != name:
        return 'the manifest describes %s, not %s' % (manifest.get('file'), name)
    if size is None:
        return 'the artifact %s is missing' % name
    if size != manifest['size']:
        return 'size mismatch: the manifest says %s bytes, the artifact has %s' % (manifest['size'], size)
    return None


def _entry(name, started_at, problem, locked=False, path=None):
    """A backup in the input shape of ``_retention.plan_retention``, plus ``problem`` (why it is not verified, or None)."""
    entry = {'name': name, 'started_at': started_at, 'verified': problem is None, 'locked': locked, 'problem': problem}
    if path is not None:
        entry['path'] = path
    return entry


def local_backups(backup_dir, database=None, prefix=None):
    """Return the backups of the local ``backup_dir`` in ``plan_retention``'s input shape (plus ``path`` and ``problem``).

    Only artifacts with a readable, valid manifest are listed (``_verification.list_artifacts``): files without one
    (hand-made dumps, leftovers) are not backups this collection manages, and are left alone. ``database`` filters on the
    manifest's database, ``prefix`` on the name's prefix (``safety`` for restore's safety dumps in ``<backup_dir>/safety``;
    names that do not parse never match a prefix). ``verified`` is the cheap check of the module docstring. A directory
    that does not exist holds no backups.
    """
    if not os.path.isdir(backup_dir):
        return []
    entries = (local_entry(artifact, prefix) for artifact in list_artifacts(backup_dir, database))
    return [entry for entry in entries if entry is not None]


def local_entry(artifact, prefix=None):
    """One artifact of ``_verification.list_artifacts`` in ``local_backups``'s shape; None when its name lacks ``prefix``."""
    parsed = parse_artifact_name(artifact['name'])
    if prefix is not None and (parsed is None or parsed['prefix'] != prefix):
        return None
    try:
        size = _local_size(artifact['path'])
    except (OSError, ArtifactError) as exc:
        problem = 'the artifact is unreadable: %s' % (exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
    else:
        problem = size_problem(artifact['name'], artifact['manifest'], size)
    return _entry(artifact['name'], artifact['started_at'], problem, path=artifact['path'])


def _is_locked(stat, now):
    """Whether Object Lock forbids deleting an object of that ``stat`` at ``now``."""
    locked_until = stat.get('locked_until')
    return bool(stat.get('legal_hold')) or (locked_until is not None and locked_until > now)


def _target_backup(target, name, now, database):
    """One complete artifact at ``target`` in ``plan_retention``'s input shape, None when of another ``database``."""
    manifest, problem = manifest_at(target, name)
    if manifest is None:
        return _entry(name, None, problem)
    if database is not None and manifest['database'] != database:
        return None
    started_at = parse_timestamp(manifest['started_at'])
    try:
        stat = target.stat(name)
    except OffsiteError as exc:
        return _entry(name, started_at, 'the artifact cannot be examined: %s' % exc)
    problem = size_problem(name, manifest, stat['size'] if stat else None)
    return _entry(name, started_at, problem, locked=bool(stat) and _is_locked(stat, now))


def target_backups(target, database=None, now=None):
    """Return the complete artifacts at ``target`` (an ``OffsiteTarget``) in ``plan_retention``'s input shape (plus ``problem``).

    Complete means the object and its manifest are both listed (``artifact_names``). The manifest is read and validated;
    ``verified`` is the cheap check of the module docstring (size from ``stat``); ``locked`` says that Object Lock holds the
    artifact at ``now`` (default: the current time): a retain-until date after ``now``, or a legal hold. An artifact whose
    manifest cannot be read is listed unverified and undated, so that retention keeps it untouched, even when ``database``
    is given (its database is unknown); ``database`` filters the others on the manifest's database. A failing listing
    raises the target's ``OffsiteError``.
    """
    now = utc_now() if now is None else now
    backups = []
    for name in artifact_names(target.list_names()):
        backup = _target_backup(target, name, now, database)
        if backup is not None:
            backups.append(backup)
    return backups


# --------------------------------------------------------------------------------------------
# Removal
# --------------------------------------------------------------------------------------------

def local_remover(backup_dir):
    """Return ``remove(name)`` for the local ``backup_dir``: ``_verification.remove_artifact`` (manifest first, then the artifact)."""
    def remove(name):
        return remove_artifact(os.path.join(backup_dir, name))
    return remove


def target_remover(target):
    """Return ``remove(name)`` for ``target``: delete ``manifest_name(name)`` first, then ``name``."""
    def remove(name):
        target.delete(manifest_name(name))
        target.delete(name)
        return [manifest_name(name), name]
    return remove


def lock_extensions(plan, days_by_kind):
    """``[(name, until)]``: the kept backups whose retention class (weekly, monthly, as their reasons say) asks for a longer
    Object Lock (``days_by_kind``: ``{'weekly': days, 'monthly': days}``, 0 for none) than the copy got."""
    wanted = []
    for entry in plan.get('keep', []):
        kinds = set(reason.split(':', 1)[0] for reason in entry['reasons'])
        days = max([days_by_kind.get(kind) or 0 for kind in kinds] + [0])
        if days and entry.get('started_at'):
            wanted.append((entry['name'], parse_timestamp(entry['started_at']) + datetime.timedelta(days=days)))
    return wanted


def extend_locks(target, mode, wanted):
    """Extend the Object Lock of each ``(name, until)`` of ``wanted``, its manifest first; return the names extended."""
    extended = []
    for name, until in wanted:
        changed = target.extend_lock(manifest_name(name), mode, until)
        if target.extend_lock(name, mode, until) or changed:
            extended.append({'name': name, 'locked_until': format_timestamp(until)})
    return extended


def apply_plan(plan, remove):
    """Delete the deletions of ``plan`` with ``remove(name)``; return ``{'deleted', 'locked', 'errors'}``.

    ``deleted`` holds the plan's entries that were removed; ``locked`` the plan's locked entries (never tried) plus those the
    target refused with ``OffsiteLockedError`` (with ``msg``); ``errors`` one ``{'name', 'msg'}`` per removal that failed. A
    failure never stops the others. Nothing else is touched: check mode does not call this, it shows ``retention_diff``.
    """
    result = {'deleted': [], 'locked': [dict(entry) for entry in plan.get('locked', [])], 'errors': []}
    for entry in plan.get('delete', []):
        try:
            remove(entry['name'])
        except OffsiteLockedError as exc:
            result['locked'].append(dict(entry, msg=str(exc)))
        except (FleetDrError, OSError) as exc:
            msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            result['errors'].append({'name': entry['name'], 'msg': 'could not delete %s: %s' % (entry['name'], msg)})
        else:
            result['deleted'].append(dict(entry))
    return result
