# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._lock import acquire_lease, lease_path
from ansible_collections.fleet_telemetry.dr.plugins.modules import job_status
from ansible_collections.fleet_telemetry.dr.tests.unit.support.module_harness import run_main

JID = 'j123456789012.4242'


def _job(tmp_path, data):
    directory = tmp_path / 'async'
    directory.mkdir()
    (directory / JID).write_text(json.dumps(data))
    return str(directory)


def _lease(tmp_path, token='run-a'):
    return {'directory': str(tmp_path), 'run': 'restore', 'database': 'telemetry_db', 'token': token, 'ttl': 900}


def test_the_job_s_own_result_is_nested_untouched(tmp_path):
    async_dir = _job(tmp_path, {'changed': True, 'path': str(tmp_path), 'size': 12345})
    outcome, result = run_main(job_status.main, {'jid': JID, 'async_dir': async_dir})
    assert outcome == 'exit' and result['changed'] is False
    # exit_json's path info would have overwritten a directory's size at the top level; nested, it stays.
    assert result['job_result'] == {'changed': True, 'path': str(tmp_path), 'size': 12345, 'finished': True, 'ansible_job_id': JID}


def test_each_poll_renews_the_lease_of_the_run(tmp_path):
    async_dir = _job(tmp_path, {'started': True, 'finished': False})
    lease, dummy = acquire_lease(str(tmp_path), 'restore-telemetry_db', 'run-a', 900, 'restore of telemetry_db', now=1000.0)
    outcome, result = run_main(job_status.main, {'jid': JID, 'async_dir': async_dir, 'lease': _lease(tmp_path)})
    assert outcome == 'exit' and result['job_result']['dead'], result
    with open(lease_path(str(tmp_path), 'restore-telemetry_db')) as fileobj:
        renewed = json.load(fileobj)
    assert renewed['expires'] > lease['expires'] and renewed['started_at'] == lease['started_at']
    assert 'lease_problem' not in result['job_result']


def test_a_lease_another_run_holds_is_reported_not_taken(tmp_path):
    async_dir = _job(tmp_path, {'changed': False, 'msg': 'done'})
    acquire_lease(str(tmp_path), 'restore-telemetry_db', 'run-b', 900, 'restore of telemetry_db')
    outcome, result = run_main(job_status.main, {'jid': JID, 'async_dir': async_dir, 'lease': _lease(tmp_path)})
    assert outcome == 'exit' and result['job_result']['msg'] == 'done'
    assert result['job_result']['lease_problem'].startswith(
        'the lease %s could not be renewed: another restore of telemetry_db is running' % lease_path(str(tmp_path), 'restore-telemetry_db'))


def test_check_mode_renews_nothing(tmp_path):
    async_dir = _job(tmp_path, {'changed': False})
    outcome, result = run_main(job_status.main, {'jid': JID, 'async_dir': async_dir, 'lease': _lease(tmp_path)}, check_mode=True)
    assert outcome == 'exit' and not (tmp_path / '.restore-telemetry_db.lease.json').exists()
