# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What killed backups leave in a backup directory, and removing it. Internal to fleet_telemetry.dr.

A backup writes ``.<artifact name>.partial-<random>`` (and the same for its manifest) and renames it when it is complete.
A backup killed with SIGKILL (the OOM killer, a reboot, kill -9) leaves that entry behind. The next backup into the
directory removes such entries while it holds its own lock, and only when no other backup's lock in the directory is held
(one of another database may be writing its own entry right now). Only entries whose name is the temporary name of one of
the collection's artifacts or manifests are ever touched.
"""

from __future__ import annotations

import os
import shutil

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import (
    MANIFEST_SUFFIX,
    PARTIAL_MARKER,
    artifact_path_of_manifest,
    is_partial_name,
    parse_artifact_name,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._lock import LOCK_SUFFIX, LockError, lock_file_held


def _final_name(entry):
    """The artifact name a temporary entry was for, or None when it is not one of ours."""
    if not is_partial_name(entry):
        return None
    final = entry[1:entry.index(PARTIAL_MARKER)]
    if final.endswith(MANIFEST_SUFFIX):
        final = artifact_path_of_manifest(final)
    return final if parse_artifact_name(final) else None


def partial_entries(directory):
    """The sorted temporary entries of the collection's unfinished writes in ``directory`` (names, not paths)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(name for name in names if _final_name(name))


def busy_locks(directory, own_lock=None):
    """The lock files in ``directory``, other than ``own_lock``, that a live process holds."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    busy = []
    for name in sorted(names):
        path = os.path.join(directory, name)
        if not (name.startswith('.') and name.endswith(LOCK_SUFFIX)) or path == own_lock:
            continue
        try:
            if lock_file_held(path, 'backup'):
                busy.append(path)
        except LockError:
            busy.append(path)
    return busy


def stale_partials(directory, own_lock=None):
    """``(entries, reason)``: the temporary entries no live backup writes, or ``([], why none can be removed now)``.

    Call it holding ``own_lock``, the lock of this run's backup: then none of the entries is being written by a backup of
    the same database, and with no other lock held, by no backup at all.
    """
    entries = partial_entries(directory)
    if not entries:
        return [], None
    busy = busy_locks(directory, own_lock)
    if busy:
        return [], 'another backup holds %s, so its temporary files are left for a later run' % busy[0]
    return entries, None


def remove_entries(directory, entries):
    """Remove the temporary ``entries`` of ``directory`` (files or directories); return the paths removed."""
    removed = []
    for name in entries:
        path = os.path.join(directory, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed
