# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._lock import BackupLock, backup_lock_name
from ansible_collections.fleet_telemetry.dr.plugins.modules import run_lease
from ansible_collections.fleet_telemetry.dr.tests.unit.support.module_harness import run_main


def _run(tmp_path, token, check_mode=False, **extra):
    args = {'directory': str(tmp_path), 'run': 'restore', 'database': 'telemetry_db', 'token': token}
    args.update(extra)
    return run_main(run_lease.main, args, check_mode)


def test_take_renew_refuse_and_give_up(tmp_path):
    outcome, result = _run(tmp_path, 'run-a')
    assert outcome == 'exit' and result['changed'] is True and result['lease']['token'] == 'run-a'
    assert result['path'] == str(tmp_path / '.restore-telemetry_db.lease.json') and os.path.exists(result['path'])
    outcome, result = _run(tmp_path, 'run-a')
    assert outcome == 'exit' and result['changed'] is False
    outcome, result = _run(tmp_path, 'run-b')
    assert outcome == 'fail' and result['error_code'] == 'lock_held'
    assert 'another restore of telemetry_db is running' in result['msg'] and result['holder']['token'] == 'run-a'
    outcome, result = _run(tmp_path, 'run-b', state='absent')
    assert outcome == 'exit' and result['changed'] is False
    outcome, result = _run(tmp_path, 'run-a', state='absent')
    assert outcome == 'exit' and result['changed'] is True and not os.path.exists(result['path'])


def test_check_mode_takes_nothing(tmp_path):
    outcome, result = _run(tmp_path, 'run-a', check_mode=True)
    assert outcome == 'exit' and result['changed'] is True and not os.path.exists(result['path'])


def test_a_missing_directory_is_lock_error(tmp_path):
    outcome, result = _run(tmp_path / 'missing', 'run-a')
    assert outcome == 'fail' and result['error_code'] == 'lock_error'
    assert str(tmp_path / 'missing') in result['msg']


def test_a_restore_lease_is_refused_while_a_backup_of_the_database_runs(tmp_path):
    """The module names the backup's lock itself (the name pg_logical_backup takes), so no caller can misspell it."""
    with BackupLock(str(tmp_path), backup_lock_name('telemetry_db'), purpose='backup of telemetry_db to /x'):
        outcome, result = _run(tmp_path, 'run-a')
        assert outcome == 'fail' and result['error_code'] == 'lock_held', result
        outcome, result = _run(tmp_path, 'run-a', run='drill')
        assert outcome == 'exit' and result['path'] == str(tmp_path / '.drill-telemetry_db.lease.json'), result


def test_taking_over_a_killed_run_s_lease_says_where_that_run_was(tmp_path):
    # A ttl of 0: the lease has expired by the time the next run looks, as a killed run's lease after its ttl.
    outcome, result = _run(tmp_path, 'run-a', ttl=0, stage='after down -v; safety dump /b/safety/safety_x.sql.zst')
    assert outcome == 'exit' and result['lease']['stage'] == 'after down -v; safety dump /b/safety/safety_x.sql.zst'
    outcome, result = _run(tmp_path, 'run-b')
    assert outcome == 'exit' and result['lease']['abandoned']['stage'].startswith('after down -v')
    assert 'taken over from a restore of telemetry_db started ' in result['msg']
    assert 'that did not end (it was killed), at step "after down -v; safety dump /b/safety/safety_x.sql.zst"' in result['msg']
