# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The restore_plan module as Ansible runs it (it runs no command: nothing to replace)."""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.plugins.modules import restore_plan
from ansible_collections.fleet_telemetry.dr.tests.unit.plugins.module_utils.test_restore_plan import SAFETY, STARTED, UP, results
from ansible_collections.fleet_telemetry.dr.tests.unit.support.module_harness import run_main


def test_safety_stage_take():
    how, result = run_main(restore_plan.main, {'stage': 'safety', 'db_check': {'changed': True}, 'volumes': ['v']})
    assert how == 'exit' and result['take'] is True and result['changed'] is False and result['msg'] == result['note']


def test_safety_stage_refusal():
    how, result = run_main(restore_plan.main, {'stage': 'safety', 'db_check': UP, 'volumes': ['v']})
    assert how == 'fail' and result['error_code'] == 'unreachable' and 'restore_unreachable=force' in result['msg']


def test_report_stage_failed_run():
    res = results(restore={'failed': True, 'msg': 'the dump is incomplete'}, up_all={})
    how, result = run_main(restore_plan.main, {'stage': 'report', 'results': res, 'started_at': STARTED, 'failed': True,
                                               'failed_task': 'Restore - wait for it', 'failed_msg': 'the dump is incomplete',
                                               'inventory': 'inv.yml', 'limit': 'h', 'backup_dir': '/b'})
    assert how == 'exit' and result['status'] == 'failed' and result['changed'] is False
    assert SAFETY in result['msg'] and 'restore_confirm=true' in result['recovery']
    assert result['report_dir'] == '/b/reports'


def test_report_stage_check_mode():
    how, result = run_main(restore_plan.main, {'stage': 'report', 'results': results(), 'started_at': STARTED, 'confirmed': True},
                           check_mode=True)
    assert how == 'exit' and result['msg'].startswith('check mode: would restore')


def test_report_stage_needs_started_at():
    how, result = run_main(restore_plan.main, {'stage': 'report', 'results': {}})
    assert how == 'fail' and 'started_at' in result['msg']


def test_report_stage_bad_started_at():
    how, result = run_main(restore_plan.main, {'stage': 'report', 'results': {}, 'started_at': 'yesterday'})
    assert how == 'fail' and result['error_code'] == 'bad_option'
