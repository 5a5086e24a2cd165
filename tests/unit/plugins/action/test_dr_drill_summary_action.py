# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The dr_drill_summary action as Ansible runs it: on the controller, from the drill's marks and results."""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.plugins.action.dr_drill_summary import ActionModule
from ansible_collections.fleet_telemetry.dr.tests.unit.support.action_harness import run_action


def test_marks_as_strings_give_rto_and_steps():
    marks = {'started': '100', 'leased': '100.5', 'selected': '101.5', 'planned': '102', 'up': 110, 'verified': '130.5', 'teardown_started': '131',
             'torn_down': '134'}
    result = run_action(ActionModule, {'marks': marks, 'teardown': {'ok': True, 'msg': 'nothing left'}, 'backup_dir': '/b'})
    assert not result.get('failed') and result['changed'] is False and result['status'] == 'passed'
    assert result['report_name'] == 'drill_1970-01-01_00-01-40' and result['report_dir'] == '/b/drill-reports'
    assert result['history_path'] == '/b/drill-reports/drill_history.jsonl'
    assert result['data']['rto_seconds'] == 30.5
    assert [step['seconds'] for step in result['data']['steps']] == [0.5, 1.0, 0.5, 8.0, 20.5, 3.0]


def test_failure_is_reported_not_raised():
    args = {'marks': {'started': 1, 'leased': 2}, 'failure': {'msg': 'no artifact verifies'}, 'report_dir': '/r'}
    result = run_action(ActionModule, args, check_mode=True)
    assert not result.get('failed') and result['status'] == 'failed'
    assert result['data']['failed_step'] == 'select the artifact' and result['msg'] == 'no artifact verifies'


def test_marks_must_be_numbers():
    result = run_action(ActionModule, {'marks': {'started': 'noon'}})
    assert result['failed'] and result['error_code'] == 'bad_option'


def test_without_a_directory_for_the_report():
    result = run_action(ActionModule, {'marks': {'started': 1}})
    assert result['failed'] and result['error_code'] == 'bad_option' and 'fleet_dr_backup_dir' in result['msg']
