# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The compose_project module as Ansible runs it, with only the command runner replaced."""

from __future__ import annotations

from unittest import mock

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _compose
from ansible_collections.fleet_telemetry.dr.plugins.modules import compose_project
from ansible_collections.fleet_telemetry.dr.tests.unit.plugins.module_utils.test_compose import SECRET, FakeDocker
from ansible_collections.fleet_telemetry.dr.tests.unit.support.module_harness import run_main


def run_module(args, fake, check_mode=False):
    with mock.patch.object(_compose, 'run', fake), mock.patch.object(_compose.time, 'sleep'):
        return run_main(compose_project.main, args, check_mode)


@pytest.fixture
def src(tmp_path):
    (tmp_path / 'docker-compose.yml').write_text('services: {db: {image: postgres:15}}\n')
    return str(tmp_path)


def test_present_db_only_with_wait(src):
    fake = FakeDocker()
    how, result = run_module({'project_src': src, 'project_name': 'telemetry', 'services': ['db'], 'wait': True,
                              'env': {'POSTGRES_PASSWORD': SECRET}}, fake)
    assert how == 'exit', result
    assert result['changed'] is True
    assert result['cmd'] == ['docker-compose', '-p', 'telemetry', 'up', '-d', 'db']
    assert isinstance(result['ready_seconds'], float)
    assert [c['service'] for c in result['containers']] == ['db']
    assert SECRET not in repr(result)
    assert not any(SECRET in ' '.join(call) for call in fake.calls)


def test_absent_check_mode(src):
    fake = FakeDocker(containers={'db': 'running'})
    how, result = run_module({'project_src': src, 'project_name': 'telemetry', 'state': 'absent', 'remove_volumes': True}, fake,
                             check_mode=True)
    assert how == 'exit' and result['changed'] is True
    assert result['volumes_removed'] == ['telemetry_db_data']
    assert fake.containers == {'db': 'running'}


def test_missing_compose_file_fails_no_project(tmp_path):
    fake = FakeDocker()
    how, result = run_module({'project_src': str(tmp_path)}, fake)
    assert how == 'fail' and result['error_code'] == 'no_project'
    assert result['changed'] is False


def test_not_ready_fails_with_partial_result(src):
    fake = FakeDocker(ready_after=10 ** 9)
    clock = iter(range(0, 10 ** 6, 1))
    with mock.patch.object(_compose.time, 'monotonic', lambda: float(next(clock))):
        how, result = run_module({'project_src': src, 'project_name': 'telemetry', 'services': ['db'], 'wait': True,
                                  'wait_timeout': 3}, fake)
    assert how == 'fail' and result['error_code'] == 'not_ready'
    assert result['changed'] is True
    assert 'docker logs' in result['msg']


def test_bad_wait_timeout(src):
    how, result = run_module({'project_src': src, 'wait_timeout': 0}, FakeDocker())
    assert how == 'fail' and result['error_code'] == 'bad_option'


def test_env_is_no_log():
    assert compose_project.argument_spec()['env']['no_log'] is True
