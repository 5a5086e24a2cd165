# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The restore_safety and restore_report actions as Ansible runs them: on the controller, from registered results only."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.fleet_telemetry.dr.plugins.action.restore_report import ActionModule as Report
from ansible_collections.fleet_telemetry.dr.plugins.action.restore_safety import ActionModule as Safety
from ansible_collections.fleet_telemetry.dr.tests.unit.plugins.module_utils.test_restore_plan import SAFETY, STARTED, UP, results
from ansible_collections.fleet_telemetry.dr.tests.unit.support.action_harness import run_action


def test_safety_take():
    result = run_action(Safety, {'db_check': {'changed': True}, 'volumes': ['v']})
    assert result['take'] is True and result['changed'] is False and result['msg'] == result['note'] and not result.get('failed')


def test_safety_refusal():
    result = run_action(Safety, {'db_check': UP, 'volumes': ['v']})
    assert result['failed'] and result['error_code'] == 'unreachable' and 'restore_unreachable=force' in result['msg']


def test_report_failed_run():
    res = results(restore={'failed': True, 'msg': 'the dump is incomplete'}, up_all={})
    result = run_action(Report, {'results': res, 'started_at': STARTED, 'failed': True,
                                 'failed_task': 'Restore - wait for it', 'failed_msg': 'the dump is incomplete',
                                 'inventory': 'inv.yml', 'limit': 'h', 'backup_dir': '/b'})
    assert result['status'] == 'failed' and result['changed'] is False and not result.get('failed')
    assert SAFETY in result['msg'] and 'restore_confirm=true' in result['recovery']
    assert result['report_dir'] == '/b/reports'


def test_report_check_mode():
    result = run_action(Report, {'results': results(), 'started_at': STARTED, 'confirmed': True},
                        check_mode=True)
    assert result['msg'].startswith('check mode: would restore')


def test_report_needs_started_at():
    with pytest.raises(AnsibleActionFail, match='started_at'):
        run_action(Report, {'results': results()})


def test_report_bad_started_at():
    result = run_action(Report, {'results': results(), 'started_at': 'yesterday'})
    assert result['failed'] and result['error_code'] == 'bad_option' and result['msg'].startswith('started_at: ')


def test_report_refuses_results_that_do_not_name_the_steps():
    res = results()
    del res['up_db']
    res['up'] = {}
    result = run_action(Report, {'results': res, 'started_at': STARTED})
    assert result['failed'] and result['error_code'] == 'bad_option'
    assert result['msg'].endswith('; missing up_db; unknown up'), result['msg']


def test_report_reads_the_steps_the_role_registered():
    registered = {'_restore_artifact': {'path': '/b/backup.sql', 'kind': 'artifact'}, '_restore_down': {'changed': True},
                  '_restore_result': {'failed': True, 'msg': 'the dump is incomplete'}, '_other': {'failed': True}}
    result = run_action(Report, {'started_at': STARTED, 'failed': True, 'failed_msg': 'the dump is incomplete',
                                 'backup_dir': '/b'}, task_vars=registered)
    assert result['status'] == 'failed' and result['data']['failed_step'] == 'restore and verify'
    assert 'The database was already removed' in result['msg']
