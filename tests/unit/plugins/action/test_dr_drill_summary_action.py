# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The dr_drill_summary action as Ansible runs it: on the controller, from the results of the drill's steps."""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.plugins.action.dr_drill_summary import ActionModule
from ansible_collections.fleet_telemetry.dr.tests.unit.support.action_harness import run_action


def _step(start, end, **extra):
    """A registered result with the times every module returns (seconds after 00:01:40 UTC on 1970-01-01)."""
    stamp = '1970-01-01T00:%02d:%06.3fZ'
    return dict(extra, started_at=stamp % divmod(start, 60), finished_at=stamp % divmod(end, 60))


def _results():
    return {'lease': _step(100, 100.5), 'artifact': _step(100.5, 101.5), 'stack': _step(101.5, 102), 'up': _step(102, 110),
            'restore': _step(110, 130.5), 'down': _step(131, 133), 'cleanup': _step(133, 134)}


def test_the_steps_own_times_give_rto_and_steps():
    result = run_action(ActionModule, {'results': _results(), 'teardown': {'ok': True, 'msg': 'nothing left'}, 'backup_dir': '/b'})
    assert not result.get('failed') and result['changed'] is False and result['status'] == 'passed'
    assert result['report_name'] == 'drill_1970-01-01_00-01-40' and result['report_dir'] == '/b/drill-reports'
    assert result['history_path'] == '/b/drill-reports/drill_history.jsonl'
    assert result['data']['rto_seconds'] == 30.5
    assert [step['seconds'] for step in result['data']['steps']] == [0.5, 1.0, 0.5, 8.0, 20.5, 3.0]


def test_a_failed_step_has_no_end_and_is_reported_not_raised():
    results = {'lease': _step(1, 2), 'artifact': _step(2, 3, failed=True, msg='no artifact verifies'), 'stack': {'skipped': True}}
    args = {'results': results, 'failure': {'msg': 'no artifact verifies'}, 'report_dir': '/r'}
    result = run_action(ActionModule, args, check_mode=True)
    assert not result.get('failed') and result['status'] == 'failed'
    assert result['data']['failed_step'] == 'select the artifact' and result['msg'] == 'no artifact verifies'


def test_times_must_be_iso_8601():
    result = run_action(ActionModule, {'results': {'lease': {'started_at': 'noon'}}, 'backup_dir': '/b'})
    assert result['failed'] and result['error_code'] == 'bad_option' and "'noon'" in result['msg']


def test_the_steps_are_the_drill_s_own():
    result = run_action(ActionModule, {'results': dict(_results(), unknown={}), 'backup_dir': '/b'})
    assert result['failed'] and result['error_code'] == 'bad_option' and result['msg'].startswith('results holds unknown')


def test_without_the_lease_s_start_or_a_directory_for_the_report():
    result = run_action(ActionModule, {'results': {}, 'backup_dir': '/b'})
    assert result['failed'] and result['error_code'] == 'bad_option' and 'started_at' in result['msg']
    result = run_action(ActionModule, {'results': _results()})
    assert result['failed'] and result['error_code'] == 'bad_option' and 'fleet_dr_backup_dir' in result['msg']


def test_the_steps_the_role_registered_are_read_when_no_results_are_given():
    registered = dict(('_dr_drill_%s' % key, value) for key, value in _results().items())
    result = run_action(ActionModule, {'teardown': {'ok': True}, 'backup_dir': '/b'}, task_vars=registered)
    assert result['status'] == 'passed' and result['data']['rto_seconds'] == 30.5
