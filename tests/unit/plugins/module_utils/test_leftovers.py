# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import multiprocessing
import os

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _leftovers
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _lock

OURS = [
    '.backup_2026-01-31_02-00-05.sql.zst.partial-0a1b2c3d4e5f',
    '.backup_2026-01-31_02-00-05.sql.zst.manifest.json.partial-0a1b2c3d4e5f',
    '.safety_2026-01-31_02-00-05_2.dump.partial-ffffffffffff',
]
NOT_OURS = [
    '.notes.txt.partial-0a1b2c3d4e5f',
    'backup_2026-01-31_02-00-05.sql.zst',
    'backup_2026-01-31_02-00-05.sql.zst.manifest.json',
    '.backup-telemetry_db.lock',
    '.restore-telemetry_db.lease.json',
    'partial-notes',
]


def _populate(directory):
    for name in OURS + NOT_OURS:
        (directory / name).write_bytes(b'x')
    (directory / '.backup_2026-01-31_02-00-06.dir.partial-abcabcabcabc').mkdir()
    (directory / '.backup_2026-01-31_02-00-06.dir.partial-abcabcabcabc' / 'toc.dat').write_bytes(b'x')


def test_only_the_collection_s_temporary_entries_are_found_and_removed(tmp_path):
    _populate(tmp_path)
    entries, reason = _leftovers.stale_partials(str(tmp_path))
    assert reason is None
    assert entries == sorted(OURS + ['.backup_2026-01-31_02-00-06.dir.partial-abcabcabcabc'])
    removed = _leftovers.remove_entries(str(tmp_path), entries)
    assert removed == [str(tmp_path / name) for name in entries]
    assert sorted(os.listdir(tmp_path)) == sorted(NOT_OURS)


def test_a_missing_directory_has_no_leftovers(tmp_path):
    assert _leftovers.stale_partials(str(tmp_path / 'missing')) == ([], None)


def _hold(path, name, ready, release):
    with _lock.BackupLock(path, name):
        ready.set()
        release.wait(30)


def test_nothing_is_removed_while_another_backup_holds_its_lock(tmp_path):
    _populate(tmp_path)
    own = _lock.lock_path(str(tmp_path), 'backup-telemetry_db')
    ctx = multiprocessing.get_context('fork')
    ready, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_hold, args=(str(tmp_path), 'backup-other_db', ready, release))
    other.start()
    try:
        assert ready.wait(10)
        entries, reason = _leftovers.stale_partials(str(tmp_path), own)
        assert entries == []
        assert reason == ('another backup holds %s, so its temporary files are left for a later run'
                          % _lock.lock_path(str(tmp_path), 'backup-other_db'))
    finally:
        release.set()
        other.join(10)
    assert len(_leftovers.stale_partials(str(tmp_path), own)[0]) == 4


def test_the_run_s_own_lock_does_not_count_as_busy(tmp_path):
    _populate(tmp_path)
    with _lock.BackupLock(str(tmp_path), 'backup-telemetry_db') as held:
        entries, reason = _leftovers.stale_partials(str(tmp_path), held.path)
        assert reason is None and len(entries) == 4
        # Check mode passes no lock of its own: a running backup of any database keeps the entries.
        assert _leftovers.stale_partials(str(tmp_path))[0] == []
