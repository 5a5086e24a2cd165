# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""playbooks/awx_configure.yml, checked without an AWX server (none can run here; it has not run against a live one).

Ansible loads the playbook with the settings of examples/awx/awx_configure.yml and templates every task's arguments
(tests/unit/support/playbook_calls.py): the rrule lookups run, and each awx.awx call is validated against the argument
spec that the awx.awx module itself builds. The survey and the credential type are checked against the roles' own
argument specs.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.util
import json
import os
from unittest import mock

import pytest
import yaml

from ansible.module_utils import basic
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.testing import patch_module_args
from ansible.parsing.dataloader import DataLoader

from ansible_collections.fleet_telemetry.dr.tests.unit.support import ansible_cli

pytestmark = pytest.mark.skipif(not ansible_cli.has_collection('awx.awx'), reason='awx.awx (bundled by the ansible package) is not installed')

PLAYBOOK = 'playbooks/awx_configure.yml'
EXAMPLE = 'examples/awx/awx_configure.yml'
SECRETS = {'fleet_dr_awx_secrets': {'db_password': 'pw', 'encryption_key': '00' * 32, 'aws_access_key': 'AKIDEXAMPLE',
                                    'aws_secret_key': 'secret'}}
AWX_MODULES = {'credential_type', 'credential', 'execution_environment', 'notification_template', 'job_template', 'schedule',
               'workflow_job_template'}


def load(path):
    """A YAML file of the checkout, read as Ansible reads it (the playbook has !unsafe values)."""
    return DataLoader().load_from_file(os.path.join(ansible_cli.REPO_ROOT, path))


def play_calls(tmp_path, **settings):
    """The module calls of the playbook with the example's settings, the secrets above and ``settings`` on top."""
    pytest.importorskip('pytz', reason='pytz, which awx.awx.schedule_rrule needs, is not installed (requirements-test.txt)')
    extra = tmp_path / 'extra.yml'
    extra.write_text(json.dumps(dict(SECRETS, **settings)))
    result = ansible_cli.run(os.path.join(ansible_cli.REPO_ROOT, 'tests', 'unit', 'support', 'playbook_calls.py'),
                             PLAYBOOK, EXAMPLE, str(extra))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope='module')
def calls(tmp_path_factory):
    return play_calls(tmp_path_factory.mktemp('awx'))


def calls_of(calls, module):
    return [call for call in calls if call['action'] == 'awx.awx.' + module and not call['skipped']]


class _Captured(Exception):
    pass


def module_spec(module):
    """The keyword arguments awx.awx.<module> passes to AnsibleModule: its whole argument spec, the connection options
    included, and its mutually_exclusive / required_* rules. No request is made: the module stops there."""
    main = importlib.import_module('ansible_collections.awx.awx.plugins.modules.' + module).main

    def capture(self, *args, **kwargs):
        raise _Captured(kwargs)

    with mock.patch.object(basic.AnsibleModule, '__init__', capture), patch_module_args({}):
        with pytest.raises(_Captured) as captured:
            main()
    return captured.value.args[0]


def validation_errors(module, args):
    spec = module_spec(module)
    validator = ArgumentSpecValidator(spec['argument_spec'], **{key: spec[key] for key in (
        'mutually_exclusive', 'required_together', 'required_one_of', 'required_if', 'required_by') if spec.get(key)})
    return validator.validate(args).error_messages


def test_the_playbook_passes_ansible_playbooks_syntax_check():
    result = ansible_cli.run('playbook', '--syntax-check', PLAYBOOK, '-e', '@' + EXAMPLE)
    assert result.returncode == 0, result.stderr


def test_every_awx_call_is_valid_for_its_modules_argument_spec(calls):
    awx_calls = [call for call in calls if call['action'].startswith('awx.awx.') and not call['skipped']]
    assert {call['action'].split('.')[-1] for call in awx_calls} == AWX_MODULES
    errors = ['%s: %s' % (call['task'], error) for call in awx_calls
              for error in validation_errors(call['action'].split('.')[-1], call['args'])]
    assert errors == []
    # Every call reaches the AWX of the settings, through the play's module_defaults.
    assert {call['args']['controller_host'] for call in awx_calls} == {load(EXAMPLE)['fleet_dr_awx_host']}


def test_a_wrong_argument_is_caught_by_the_same_validation(calls):
    args = dict(calls_of(calls, 'schedule')[0]['args'], enabled='sometimes')
    assert any('enabled' in error for error in validation_errors('schedule', args))


@pytest.mark.parametrize('settings, expected', [
    ({}, {'nightly backup': 'DTSTART;TZID=UTC:20261207T020000 RRULE:FREQ=DAILY;INTERVAL=1',
          'weekly DR drill': 'DTSTART;TZID=UTC:20261213T040000 RRULE:FREQ=WEEKLY;BYDAY=SU;INTERVAL=1',
          'hourly backup freshness': 'DTSTART;TZID=UTC:20261207T020000 RRULE:FREQ=HOURLY;INTERVAL=1'}),
    ({'fleet_dr_awx_timezone': 'Europe/Lisbon', 'fleet_dr_awx_backup_start': '2027-01-04 23:30:00',
      'fleet_dr_awx_drill_day': 'wednesday', 'fleet_dr_awx_drill_start': '2027-01-06 05:15:00'},
     {'nightly backup': 'DTSTART;TZID=Europe/Lisbon:20270104T233000 RRULE:FREQ=DAILY;INTERVAL=1',
      'weekly DR drill': 'DTSTART;TZID=Europe/Lisbon:20270106T051500 RRULE:FREQ=WEEKLY;BYDAY=WE;INTERVAL=1',
      'hourly backup freshness': 'DTSTART;TZID=Europe/Lisbon:20270104T233000 RRULE:FREQ=HOURLY;INTERVAL=1'}),
], ids=['example', 'other-zone-and-day'])
def test_the_schedules_rrules_are_computed_by_awx_schedule_rrule(tmp_path, settings, expected):
    schedules = calls_of(play_calls(tmp_path, **settings), 'schedule')
    assert {call['args']['name']: call['args']['rrule'] for call in schedules} == expected


def test_the_rrules_run_nightly_and_weekly_at_the_configured_times(calls):
    rrule = pytest.importorskip('dateutil.rrule')
    by_name = {call['args']['name']: call['args']['rrule'] for call in calls_of(calls, 'schedule')}
    # AWX parses a schedule's rrule with dateutil after splitting it into its DTSTART and RRULE lines.
    firsts = {name: list(rrule.rrulestr(text.replace(' RRULE:', '\nRRULE:'), forceset=True).xafter(
        datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc), count=3)) for name, text in by_name.items()}
    utc = datetime.timezone.utc
    assert firsts['nightly backup'] == [datetime.datetime(2026, 12, day, 2, tzinfo=utc) for day in (7, 8, 9)]
    assert firsts['weekly DR drill'] == [datetime.datetime(2026, 12, day, 4, tzinfo=utc) for day in (13, 20, 27)]
    assert {date.weekday() for date in firsts['weekly DR drill']} == {6}
    assert firsts['hourly backup freshness'] == [datetime.datetime(2026, 12, 7, hour, tzinfo=utc) for hour in (2, 3, 4)]


def test_the_schedules_and_workflows_run_the_job_templates_the_play_creates(calls):
    templates = {call['args']['name']: call['args'] for call in calls_of(calls, 'job_template')}
    assert set(templates) == {'telemetry backup', 'telemetry restore', 'telemetry DR drill', 'rekognition reindex', 'backup freshness'}
    for name, args in templates.items():
        assert os.path.isfile(os.path.join(ansible_cli.REPO_ROOT, args['playbook'])), name
        assert args['notification_templates_error'] == [calls_of(calls, 'notification_template')[0]['args']['name']]
        assert args['execution_environment'] == calls_of(calls, 'execution_environment')[0]['args']['name']
    scheduled = {call['args']['unified_job_template'] for call in calls_of(calls, 'schedule')}
    assert scheduled == {'telemetry backup', 'telemetry DR drill', 'backup freshness'}

    node_options = yaml.safe_load(importlib.import_module(
        'ansible_collections.awx.awx.plugins.modules.workflow_job_template').DOCUMENTATION)['options']['workflow_nodes']['suboptions']
    chains = {}
    for call in calls_of(calls, 'workflow_job_template'):
        nodes = call['args']['workflow_nodes']
        identifiers = [node['identifier'] for node in nodes]
        assert len(set(identifiers)) == len(identifiers)
        for node in nodes:
            assert set(node) <= set(node_options), node
            assert set(node.get('related', {})) <= set(node_options['related']['suboptions']), node
            assert node['unified_job_template']['name'] in templates
            assert {target['identifier'] for target in node.get('related', {}).get('success_nodes', [])} <= set(identifiers)
        chains[call['args']['name']] = [(node['unified_job_template']['name'],
                                         [target['identifier'] for target in node.get('related', {}).get('success_nodes', [])])
                                        for node in nodes]
        assert call['args']['notification_templates_error'] == templates['telemetry backup']['notification_templates_error']
    assert chains == {
        'telemetry backup and drill': [('telemetry backup', ['drill']), ('telemetry DR drill', [])],
        'telemetry restore and reindex': [('telemetry restore', ['reindex']), ('rekognition reindex', [])],
    }


def test_the_restore_survey_asks_the_restore_roles_own_variables(calls):
    restore = [call['args'] for call in calls_of(calls, 'job_template') if call['args']['name'] == 'telemetry restore'][0]
    workflow = [call['args'] for call in calls_of(calls, 'workflow_job_template') if call['args'].get('survey_enabled')]
    assert restore['survey_enabled'] is True
    assert [args['survey_spec'] for args in workflow] == [restore['survey_spec']]
    role = load('roles/restore/meta/argument_specs.yml')['argument_specs']['main']['options']
    questions = {question['variable']: question for question in restore['survey_spec']['spec']}
    assert set(questions) == {'restore_artifact', 'restore_source', 'restore_confirm', 'restore_unreachable'}
    for variable, question in questions.items():
        option = role[variable]
        if question['type'] == 'multiplechoice':
            expected = option.get('choices') or ['false', 'true']
            assert sorted(question['choices']) == sorted(str(choice).lower() for choice in expected), variable
        assert question['default'] == str(option['default']).lower(), variable
    # Nothing destructive by default: the confirmation defaults to false and must be answered.
    assert questions['restore_confirm']['default'] == 'false' and questions['restore_confirm']['required'] is True


def test_the_credential_type_injects_the_roles_secret_variables_for_awx_to_render(calls):
    credential_type = calls_of(calls, 'credential_type')[0]['args']
    fields = {field['id']: field for field in credential_type['inputs']['fields']}
    injected = credential_type['injectors']['extra_vars']
    # Ansible left the injectors for AWX to render: each is the literal template of one field.
    assert injected == {'fleet_dr_' + field: '{{ %s }}' % field for field in fields}
    role_options = set()
    for role in ('backup', 'restore', 'dr_drill', 'rekognition_reindex'):
        role_options |= set(load('roles/%s/meta/argument_specs.yml' % role)['argument_specs']['main']['options'])
    assert set(injected) <= role_options
    secret = {name for name, field in fields.items() if field.get('secret')}
    assert secret == {'db_password', 'encryption_key', 'aws_secret_key', 'aws_session_token'}


def test_the_tasks_that_carry_secrets_log_nothing():
    tasks = {next(key for key in task if key.startswith('awx.awx.')): task for task in load(PLAYBOOK)[0]['tasks']
             if any(key.startswith('awx.awx.') for key in task)}
    assert tasks['awx.awx.credential']['no_log'] is True
    assert tasks['awx.awx.notification_template']['no_log'] is True


def test_the_credential_is_created_only_when_its_secrets_are_given(tmp_path, calls):
    assert calls_of(calls, 'credential')[0]['args']['inputs'] == SECRETS['fleet_dr_awx_secrets']
    result = ansible_cli.run(os.path.join(ansible_cli.REPO_ROOT, 'tests', 'unit', 'support', 'playbook_calls.py'), PLAYBOOK, EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert [call['skipped'] for call in json.loads(result.stdout) if call['action'] == 'awx.awx.credential'] == [True]


@pytest.mark.parametrize('change, problem', [
    ({'fleet_dr_awx_drill_day': 'someday'}, 'fleet_dr_awx_drill_day'),
    ({'fleet_dr_awx_notification_type': 'pigeon'}, 'fleet_dr_awx_notification_type'),
    ({'fleet_dr_awx_project': None}, 'fleet_dr_awx_project'),
], ids=['day', 'notification', 'missing'])
def test_the_settings_check_names_a_wrong_or_missing_setting(calls, change, problem):
    spec = [call for call in calls if call['action'] == 'ansible.builtin.validate_argument_spec'][0]['args']['argument_spec']
    settings = load(EXAMPLE)
    assert ArgumentSpecValidator(spec).validate(settings).error_messages == []
    settings.update(change)
    settings = {key: value for key, value in settings.items() if value is not None}
    errors = ArgumentSpecValidator(spec).validate(settings).error_messages
    assert errors and all(problem in error for error in errors)


@pytest.mark.parametrize('awx_returns', ['DTSTART:20261207T020000 RRULE:FREQ=DAILY', ['DTSTART:20261207T020000 RRULE:FREQ=DAILY']],
                         ids=['awx.awx-24.6.1-string', 'fixed-awx.awx-list'])
def test_the_rrule_lookup_beside_the_playbook_returns_awx_awxs_rrule_as_a_list(monkeypatch, awx_returns):
    spec = importlib.util.spec_from_file_location(
        'fleet_dr_awx_rrule', os.path.join(ansible_cli.REPO_ROOT, 'playbooks', 'lookup_plugins', 'awx_rrule.py'))
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    awx = mock.Mock()
    awx.run.return_value = awx_returns
    monkeypatch.setattr(plugin.lookup_loader, 'get', lambda name, **kwargs: awx if name == 'awx.awx.schedule_rrule' else None)
    assert plugin.LookupModule().run(['day'], variables={}, start_date='2026-12-07 02:00:00') == [
        'DTSTART:20261207T020000 RRULE:FREQ=DAILY']
    awx.run.assert_called_once_with(['day'], variables={}, start_date='2026-12-07 02:00:00')
