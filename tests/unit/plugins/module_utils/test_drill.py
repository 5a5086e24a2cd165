# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of _drill: the pure parts with plain data, the rest with a fake docker CLI that keeps state."""

from __future__ import annotations

import datetime
import json
import os
import socket
import stat

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _drill as dr
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _restore_plan as restore_plan
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _scratch_stack as ss
from ansible_collections.fleet_telemetry.dr.plugins.modules import dr_scratch_stack
from ansible_collections.fleet_telemetry.dr.tests.unit.support.module_harness import run_main

PROD = 'telemetry'
SCRATCH = 'telemetry_drill'
INSPECT = {
    'Id': 'prod-id', 'Name': '/challenge_db_postgres',
    'Config': {'Image': 'postgres:15', 'Labels': {'com.docker.compose.project': PROD, 'com.docker.compose.service': 'db'}},
    'Mounts': [{'Type': 'volume', 'Name': 'telemetry_db_data'}, {'Type': 'bind', 'Source': '/srv/schema'}],
    'HostConfig': {'PortBindings': {'5432/tcp': [{'HostIp': '127.0.0.1', 'HostPort': '5432'}]}},
}


class FakeDocker(object):
    """docker ps/inspect/rm and volume/network ls/inspect/rm over ``objects``: {(kind, name): {project, label, id}}."""

    def __init__(self, objects=None, rm_fails=False, v2_name=None):
        self.v2_name = v2_name
        self.objects = dict(objects or {})
        self.calls = []
        self.rm_fails = rm_fails

    def add(self, kind, name, project, label=None, service='db'):
        self.objects[(kind, name)] = {'project': project, 'label': label, 'id': 'id-' + name, 'service': service}

    def _of(self, kind, project):
        return sorted(name for (k, name), obj in self.objects.items() if k == kind and obj['project'] == project)

    def __call__(self, argv, env=None, cwd=None, timeout=None, stdin_data=None):
        self.calls.append(list(argv))
        if argv == ['docker-compose', 'version']:
            return 0, 'docker-compose version 1.29.2\n', ''
        assert argv[0] == 'docker', argv
        args = argv[1:]
        if args[0] == 'version':
            return 0, '20.10.24\n', ''
        if args[0] == 'compose':
            return self._compose_v2(args[1:])
        project = None
        for arg in args:
            if arg.startswith('label=com.docker.compose.project='):
                project = arg.split('=', 2)[2]
        if args[0] == 'ps':
            lines = ['%s\t%s\trunning\t%s' % (self.objects[('container', n)]['service'], n, self.objects[('container', n)]['id'])
                     for n in self._of('container', project)]
            return 0, ''.join(line + '\n' for line in lines), ''
        if args[0] in ('volume', 'network') and args[1] == 'ls':
            return 0, ''.join(n + '\n' for n in self._of(args[0], project)), ''
        if args[0] == 'inspect':
            if args[-1] == 'prod-id':
                return 0, json.dumps(INSPECT), ''
            return self._label(self._find('container', args[-1]))
        if args[0] in ('container', 'volume', 'network') and args[1] == 'inspect':
            return self._label(self._find(args[0], args[-1]))
        if args[0] == 'rm' or args[1:2] == ['rm']:
            kind = 'container' if args[0] == 'rm' else args[0]
            key = self._key(kind, args[-1])
            if self.rm_fails or key is None:
                return 1, '', 'Error: cannot remove %s' % args[-1]
            del self.objects[key]
            return 0, '', ''
        raise AssertionError('unexpected command %s' % argv)

    def _compose_v2(self, args):
        """``docker compose`` answers only when ``v2_name`` is set (the name v2 reports in ``config --format json``)."""
        if self.v2_name is None:
            return 1, '', "docker: 'compose' is not a docker command."
        if args == ['version']:
            return 0, 'Docker Compose version v2.20.2\n', ''
        if '--format' in args and 'config' in args:
            return 0, json.dumps({'name': self.v2_name, 'services': {}}), ''
        raise AssertionError('unexpected compose command %s' % args)

    def _find(self, kind, ref):
        key = self._key(kind, ref)
        return self.objects.get(key) if key else None

    def _key(self, kind, ref):
        for (k, name), obj in self.objects.items():
            if k == kind and ref in (name, obj['id']):
                return (k, name)
        return None

    @staticmethod
    def _label(obj):
        if obj is None:
            return 1, '', 'Error: No such object'
        return 0, (obj['label'] or '<no value>') + '\n', ''


def stack(tmp_path, port=45432, production=None):
    return ss.plan(PROD, SCRATCH, str(tmp_path / 'work'), port, 'postgres:15', 'challengeuser', 'telemetry_db',
                   production if production is not None else dr.container_facts(INSPECT))


def scratch_leftovers(fake, label=PROD):
    fake.add('container', SCRATCH + '_db', SCRATCH, label)
    fake.add('volume', SCRATCH + '_db_data', SCRATCH, label)
    fake.add('network', SCRATCH + '_default', SCRATCH, label)


# --------------------------------------------------------------------------------------------
# Pure parts
# --------------------------------------------------------------------------------------------

def test_container_facts():
    assert dr.container_facts(INSPECT) == {'id': 'prod-id', 'name': 'challenge_db_postgres', 'image': 'postgres:15', 'project': PROD,
                                           'volumes': ['telemetry_db_data'], 'ports': [5432]}
    assert dr.container_facts({}) == {'id': None, 'name': '', 'image': None, 'project': None, 'volumes': [], 'ports': []}


@pytest.mark.parametrize('production, name, expected', [
    ('telemetry', None, 'telemetry_drill'), ('Fleet Demo', None, 'fleetdemo_drill'), ('telemetry', 'My.Drill', 'mydrill')])
def test_scratch_project_name(production, name, expected):
    assert ss.scratch_project_name(production, name) == expected


def test_plan_names_everything_after_the_scratch_project(tmp_path):
    plan = stack(tmp_path)
    assert plan['container_name'] == 'telemetry_drill_db' and plan['volume'] == 'telemetry_drill_db_data'
    assert plan['compose_file'] == str(tmp_path / 'work' / SCRATCH / 'docker-compose.yml')
    assert plan['label'] == 'fleet_telemetry.dr.scratch_of=telemetry'


def test_isolated_plan_has_no_problems(tmp_path):
    assert ss.isolation_problems(stack(tmp_path), dr.container_facts(INSPECT)) == []


@pytest.mark.parametrize('change, word', [
    ({'project_name': PROD}, 'project name'),
    ({'container_name': 'challenge_db_postgres'}, 'container name'),
    ({'volume': 'telemetry_db_data'}, 'volume'),
    ({'port': 5432}, 'port 5432'),
])
def test_isolation_problems(tmp_path, change, word):
    plan = dict(stack(tmp_path), **change)
    problems = ss.isolation_problems(plan, dr.container_facts(INSPECT))
    assert len(problems) == 1 and word in problems[0]


def test_compose_definition_is_isolated_and_has_no_secret(tmp_path):
    definition = ss.compose_definition(stack(tmp_path))
    db = definition['services']['db']
    assert list(definition['services']) == ['db']
    assert db['image'] == 'postgres:15' and db['container_name'] == 'telemetry_drill_db'
    assert db['ports'] == ['127.0.0.1:45432:5432']
    assert db['environment']['POSTGRES_PASSWORD'] == '${POSTGRES_PASSWORD:-}'
    assert db['volumes'] == ['db_data:/var/lib/postgresql/data']
    for labels in (db['labels'], definition['volumes']['db_data']['labels'], definition['networks']['default']['labels']):
        assert labels == {ss.SCRATCH_LABEL: PROD}
    text = ss.render_compose(stack(tmp_path))
    assert text.startswith('# Scratch stack of a DR drill of compose project telemetry')
    assert json.loads(text[text.index('{'):]) == definition


# --------------------------------------------------------------------------------------------
# Report data
# --------------------------------------------------------------------------------------------

MANIFEST = {'started_at': '2026-12-01T06:00:00Z', 'finished_at': '2026-12-01T06:00:30Z', 'database': 'telemetry_db'}
T0 = 1796119200.0  # 2026-12-01T10:00:00Z


def test_rpo_is_the_age_of_the_snapshot_at_the_start():
    assert dr.snapshot_age(MANIFEST, T0) == 4 * 3600
    assert dr.snapshot_age({'finished_at': '2026-12-01T06:00:30Z'}, T0) is None
    assert dr.snapshot_age({'started_at': 'yesterday'}, T0) is None
    assert dr.snapshot_age(None, T0) is None


def test_rpo_is_the_restore_s_rpo():
    started = datetime.datetime.fromtimestamp(T0, datetime.timezone.utc)
    assert dr.snapshot_age(MANIFEST, T0) == restore_plan.rpo_seconds({'started_at': MANIFEST['started_at']}, started)


@pytest.mark.parametrize('backup_dir, report_dir, history, expected_dir, expected_history', [
    ('/b', None, None, '/b/drill-reports', '/b/drill-reports/drill_history.jsonl'),
    ('/b', '/r', None, '/r', '/r/drill_history.jsonl'),
    ('', '/r', '/h/x.jsonl', '/r', '/h/x.jsonl'),
])
def test_report_location(backup_dir, report_dir, history, expected_dir, expected_history):
    assert dr.report_location(T0 + 3.7, backup_dir, report_dir, history) == {
        'report_name': 'drill_2026-12-01_10-00-03', 'report_dir': expected_dir, 'history_path': expected_history}


def test_report_location_needs_a_directory():
    with pytest.raises(dr.DrillError) as err:
        dr.report_location(T0, '', None)
    assert err.value.code == 'bad_option'


def marks(*names):
    values = {'started': T0}
    for index, name in enumerate(names):
        values[name] = T0 + 10 * (index + 1)
    return values


def test_report_data_of_a_passed_drill():
    restore = {'tables': [{'table': 'photo', 'expected': 2, 'actual': 2, 'ok': True}], 'photos': {'checked': 2, 'failed': 0, 'total': 2,
               'failures': []}, 'msg': 'restored and verified'}
    artifact = {'path': '/b/backup.sql.zst', 'size': 10, 'sha256': 'ab' * 32, 'dump_format': 'plain', 'manifest': MANIFEST}
    data = dr.report_data(dict(marks('leased', 'selected', 'planned', 'up', 'verified'), teardown_started=T0 + 60, torn_down=T0 + 63),
                          artifact=artifact, stack={'project_name': SCRATCH, 'port': 1, 'container_name': 'c', 'volume': 'v', 'image': 'i'},
                          restore=restore, teardown={'ok': True, 'msg': 'nothing left'})
    assert data['status'] == 'passed' and data['msg'] == 'restored and verified'
    assert data['rto_seconds'] == 50.0 and data['rpo_seconds'] == 4 * 3600
    assert data['started_at'] == '2026-12-01T10:00:00Z' and data['finished_at'] == '2026-12-01T10:01:03Z'
    assert [(s['name'], s['ok'], s['seconds']) for s in data['steps']] == [
        ('take the drill lease', True, 10.0), ('select the artifact', True, 10.0), ('plan the scratch stack', True, 10.0),
        ('start the scratch stack', True, 10.0),
        ('restore and verify', True, 10.0), ('tear down the scratch stack', True, 3.0)]
    assert data['artifact']['started_at'] == '2026-12-01T06:00:00Z' and data['target']['project_name'] == SCRATCH
    assert data['photos'] == {'checked': 2, 'failed': 0, 'total': 2} and data['tables'] == restore['tables']
    assert 'failed_step' not in data


def test_report_data_of_a_failed_drill_names_the_first_unfinished_step():
    failure = {'msg': 'encryption_key is not the key of this backup', 'error_code': 'wrong_key', 'task': 'Restore ...'}
    data = dr.report_data(marks('leased', 'selected', 'planned', 'up'), failure=failure, teardown={'ok': True, 'msg': 'nothing left'})
    assert data['status'] == 'failed' and data['failed_step'] == 'restore and verify'
    assert data['msg'] == failure['msg'] and data['error_code'] == 'wrong_key' and data['rto_seconds'] is None
    assert [s['name'] for s in data['steps']] == ['take the drill lease', 'select the artifact', 'plan the scratch stack', 'start the scratch stack',
                                                  'restore and verify', 'tear down the scratch stack']
    assert [s['ok'] for s in data['steps']] == [True, True, True, True, False, True]


def test_report_data_a_failed_teardown_fails_a_verified_drill():
    data = dr.report_data(marks('leased', 'selected', 'planned', 'up', 'verified'), teardown={'ok': False, 'msg': 'left x behind'})
    assert data['status'] == 'failed' and data['failed_step'] == 'tear down the scratch stack' and data['msg'] == 'left x behind'


def test_report_data_of_a_drill_refused_by_the_lease():
    failure = {'msg': 'another drill of telemetry_db is running: started ...', 'error_code': 'lock_held'}
    data = dr.report_data({'started': T0}, failure=failure, teardown={'ok': True, 'msg': 'skipped'})
    assert data['failed_step'] == 'take the drill lease' and data['error_code'] == 'lock_held'
    assert [s['name'] for s in data['steps']] == ['take the drill lease', 'tear down the scratch stack']


def test_report_data_without_a_verified_mark_never_passes():
    assert dr.report_data({'started': T0})['status'] == 'failed'
    assert dr.report_data({})['rpo_seconds'] is None


# --------------------------------------------------------------------------------------------
# Present and absent, with the fake docker
# --------------------------------------------------------------------------------------------

def test_present_writes_the_compose_file_privately(tmp_path):
    fake = FakeDocker()
    result = ss.run_present(ss.scratch_commands(stack(tmp_path), fake), stack(tmp_path))
    assert result['changed'] is True and result['stale_removed'] == []
    path = result['compose_file']
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ss.run_present(ss.scratch_commands(stack(tmp_path), fake), stack(tmp_path))['changed'] is False
    assert not [call for call in fake.calls if call[1] in ('rm', 'exec') or call[2:3] == ['rm']]


def test_present_in_check_mode_writes_nothing(tmp_path):
    result = ss.run_present(ss.scratch_commands(stack(tmp_path), FakeDocker()), stack(tmp_path), check_mode=True)
    assert result['changed'] is True and result['msg'].startswith('would write')
    assert not os.path.exists(str(tmp_path / 'work'))


def test_present_removes_our_stale_leftovers_first(tmp_path):
    fake = FakeDocker()
    scratch_leftovers(fake)
    result = ss.run_present(ss.scratch_commands(stack(tmp_path), fake), stack(tmp_path))
    assert result['stale_removed'] == ['telemetry_drill_db', 'telemetry_drill_db_data', 'telemetry_drill_default']
    assert fake.objects == {}


def test_present_refuses_a_project_that_is_not_ours(tmp_path):
    fake = FakeDocker()
    scratch_leftovers(fake, label=None)
    with pytest.raises(dr.DrillError) as err:
        ss.run_present(ss.scratch_commands(stack(tmp_path), fake), stack(tmp_path))
    assert err.value.code == 'not_ours' and len(fake.objects) == 3


def test_present_refuses_a_plan_that_shares_with_production(tmp_path):
    plan = dict(stack(tmp_path), port=5432)
    with pytest.raises(dr.DrillError) as err:
        ss.run_present(ss.scratch_commands(plan, FakeDocker()), plan)
    assert err.value.code == 'not_isolated'


def test_absent_removes_everything_of_ours_and_proves_it(tmp_path):
    fake = FakeDocker()
    scratch_leftovers(fake)
    fake.add('container', 'challenge_db_postgres', PROD)
    plan = stack(tmp_path)
    ss.write_compose_file(plan)
    result = ss.run_absent(ss.scratch_commands(plan, fake), plan)
    assert result['changed'] is True and result['left'] == []
    assert result['removed'] == ['telemetry_drill_db', 'telemetry_drill_db_data', 'telemetry_drill_default']
    assert list(fake.objects) == [('container', 'challenge_db_postgres')]
    assert not os.path.exists(plan['project_src'])
    again = ss.run_absent(ss.scratch_commands(plan, fake), plan)
    assert again['changed'] is False and again['msg'] == 'nothing of the scratch project telemetry_drill is left'


def test_absent_in_check_mode_removes_nothing(tmp_path):
    fake = FakeDocker()
    scratch_leftovers(fake)
    result = ss.run_absent(ss.scratch_commands(stack(tmp_path), fake), stack(tmp_path), check_mode=True)
    assert result['changed'] is True and len(fake.objects) == 3 and result['msg'].startswith('would remove')


def test_absent_that_cannot_remove_fails_naming_what_is_left(tmp_path):
    fake = FakeDocker(rm_fails=True)
    scratch_leftovers(fake)
    with pytest.raises(dr.DrillError) as err:
        ss.run_absent(ss.scratch_commands(stack(tmp_path), fake), stack(tmp_path))
    assert err.value.code == 'teardown_failed' and 'telemetry_drill_db_data' in str(err.value)


def test_absent_never_removes_what_is_not_ours(tmp_path):
    fake = FakeDocker()
    fake.add('volume', SCRATCH + '_db_data', SCRATCH, label=None)
    with pytest.raises(dr.DrillError) as err:
        ss.run_absent(ss.scratch_commands(stack(tmp_path), fake), stack(tmp_path))
    assert err.value.code == 'not_ours' and len(fake.objects) == 1


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------

_real_run = dr_scratch_stack.run


def _module_args(tmp_path, **extra):
    (tmp_path / 'prod').mkdir(exist_ok=True)
    (tmp_path / 'prod' / 'docker-compose.yml').write_text('services:\n  db:\n    image: postgres:15\n')
    args = {'production_project_src': str(tmp_path / 'prod'), 'production_project_name': PROD, 'work_dir': str(tmp_path / 'work')}
    args.update(extra)
    return args


def test_module_present_takes_the_image_of_production(tmp_path, monkeypatch):
    fake = FakeDocker()
    fake.add('container', 'challenge_db_postgres', PROD)
    fake.objects[('container', 'challenge_db_postgres')]['id'] = 'prod-id'
    monkeypatch.setattr(dr_scratch_stack, 'run', lambda params, check_mode: _real_run(params, check_mode, fake))
    outcome, result = run_main(dr_scratch_stack.main, _module_args(tmp_path, port=45999))
    assert outcome == 'exit', result
    assert result['image'] == 'postgres:15' and result['port'] == 45999 and result['production']['id'] == 'prod-id'
    assert os.path.isfile(result['compose_file'])


def test_module_names_production_as_compose_v2_does(tmp_path, monkeypatch):
    """With v2, production's name comes from ``docker compose config`` (a top-level ``name:`` wins over the directory),
    so the drill finds production's container and names its scratch project after it."""
    fake = FakeDocker(v2_name='fleet')
    fake.add('container', 'challenge_db_postgres', 'fleet')
    fake.objects[('container', 'challenge_db_postgres')]['id'] = 'prod-id'
    monkeypatch.setattr(dr_scratch_stack, 'run', lambda params, check_mode: _real_run(params, check_mode, fake))
    args = _module_args(tmp_path, port=45996)
    del args['production_project_name']
    outcome, result = run_main(dr_scratch_stack.main, args)
    assert outcome == 'exit', result
    assert result['production_project'] == 'fleet' and result['project_name'] == 'fleet_drill', result
    assert result['production']['id'] == 'prod-id'


def test_module_without_production_container_needs_an_image(tmp_path, monkeypatch):
    fake = FakeDocker()
    monkeypatch.setattr(dr_scratch_stack, 'run', lambda params, check_mode: _real_run(params, check_mode, fake))
    outcome, result = run_main(dr_scratch_stack.main, _module_args(tmp_path))
    assert outcome == 'fail' and result['error_code'] == 'no_production' and 'dr_drill_image' in result['msg']
    outcome, result = run_main(dr_scratch_stack.main, _module_args(tmp_path, image='postgres:15', port=45998))
    assert outcome == 'exit' and result['production'] is None


def test_module_rejects_a_bad_port(tmp_path):
    outcome, result = run_main(dr_scratch_stack.main, _module_args(tmp_path, port=70000))
    assert outcome == 'fail' and result['error_code'] == 'bad_option'


def test_module_needs_the_production_directory(tmp_path):
    outcome, result = run_main(dr_scratch_stack.main, {'production_project_src': str(tmp_path / 'missing'), 'work_dir': str(tmp_path)})
    assert outcome == 'fail' and result['error_code'] == 'bad_option' and 'fleet_dr_project_src' in result['msg']


def test_absent_with_production_s_name_removes_nothing(tmp_path):
    fake = FakeDocker()
    fake.add('container', 'challenge_db_postgres', PROD)
    plan = ss.plan(PROD, PROD, str(tmp_path / 'work'), 0, None, 'challengeuser', 'telemetry_db')
    with pytest.raises(dr.DrillError) as err:
        ss.run_absent(ss.scratch_commands(plan, fake), plan)
    assert err.value.code == 'not_isolated' and fake.calls == [] and len(fake.objects) == 1


# --------------------------------------------------------------------------------------------
# Paths: the scratch directory never meets production's, teardown removes only what the drill wrote
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['!!!', '...', ' '])
def test_a_name_that_normalizes_to_nothing_is_refused(name):
    with pytest.raises(dr.DrillError) as err:
        ss.scratch_project_name(PROD, name)
    assert err.value.code == 'bad_option' and 'dr_drill_project_name' in str(err.value)


@pytest.mark.parametrize('scratch, production, word', [
    ('/srv/telemetry', '/srv/telemetry', ' is production'),
    ('/srv', '/srv/telemetry', ' contains production'),
    ('/srv/telemetry/drill', '/srv/telemetry', ' is inside production'),
    ('/srv/telemetry/', '/srv/telemetry', ' is production'),
])
def test_path_problem_names_the_overlap(scratch, production, word):
    problem = ss.path_problem(scratch, production)
    assert problem and word in problem and 'dr_drill_work_dir' in problem


@pytest.mark.parametrize('scratch, production', [
    ('/var/tmp/fleet-dr-drill/telemetry_drill', '/srv/telemetry'),
    ('/srv/telemetry_drill', '/srv/telemetry'),
    ('/srv/telemetry2', '/srv/telemetry'),
    ('/srv/x', None),
])
def test_path_problem_none_when_apart(scratch, production):
    assert ss.path_problem(scratch, production) is None


def test_path_problem_follows_symlinks(tmp_path):
    (tmp_path / 'prod').mkdir()
    (tmp_path / 'link').symlink_to(tmp_path / 'prod')
    assert ss.path_problem(str(tmp_path / 'link'), str(tmp_path / 'prod'))


def _prod_dir(tmp_path):
    """A production directory named like the scratch project, whose parent is the work dir (the review's scenario)."""
    prod = tmp_path / 'work' / SCRATCH
    prod.mkdir(parents=True)
    (prod / 'docker-compose.yml').write_text('production\n')
    return prod


def test_present_refuses_a_scratch_directory_that_is_production_s(tmp_path):
    prod = _prod_dir(tmp_path)
    plan = dict(stack(tmp_path), production_project_src=str(prod))
    with pytest.raises(dr.DrillError) as err:
        ss.run_present(ss.scratch_commands(plan, FakeDocker()), plan)
    assert err.value.code == 'not_isolated'
    assert (prod / 'docker-compose.yml').read_text() == 'production\n'


@pytest.mark.parametrize('where', ['same', 'parent'])
def test_absent_refuses_a_scratch_directory_that_is_or_holds_production_s(tmp_path, where):
    prod = _prod_dir(tmp_path)
    fake = FakeDocker()
    scratch_leftovers(fake)
    plan = dict(stack(tmp_path), production_project_src=str(prod if where == 'same' else prod / 'inner'))
    if where == 'parent':
        (prod / 'inner').mkdir()
    with pytest.raises(dr.DrillError) as err:
        ss.run_absent(ss.scratch_commands(plan, fake), plan)
    assert err.value.code == 'not_isolated' and len(fake.objects) == 3
    assert (prod / 'docker-compose.yml').read_text() == 'production\n'


def test_teardown_removes_only_the_compose_file_and_keeps_other_files(tmp_path):
    plan = stack(tmp_path)
    ss.write_compose_file(plan)
    other = os.path.join(plan['project_src'], 'notes.txt')
    with open(other, 'w') as fileobj:
        fileobj.write('not the drill\'s\n')
    with pytest.raises(dr.DrillError) as err:
        ss.run_absent(ss.scratch_commands(plan, FakeDocker()), plan)
    assert err.value.code == 'teardown_failed' and 'notes.txt' in str(err.value)
    assert os.path.isfile(other) and not os.path.exists(plan['compose_file'])


def test_teardown_rmdirs_the_empty_directory(tmp_path):
    plan = stack(tmp_path)
    ss.write_compose_file(plan)
    assert ss.remove_work_dir(plan) is True
    assert not os.path.exists(plan['project_src']) and os.path.isdir(str(tmp_path / 'work'))
    assert ss.remove_work_dir(plan) is False


def test_module_refuses_a_work_dir_inside_production(tmp_path, monkeypatch):
    fake = FakeDocker()
    monkeypatch.setattr(dr_scratch_stack, 'run', lambda params, check_mode: _real_run(params, check_mode, fake))
    args = _module_args(tmp_path, image='postgres:15', port=45997)
    args['work_dir'] = args['production_project_src']
    outcome, result = run_main(dr_scratch_stack.main, args)
    assert outcome == 'fail' and result['error_code'] == 'not_isolated', result
    assert os.listdir(args['production_project_src']) == ['docker-compose.yml']


# --------------------------------------------------------------------------------------------
# Isolation without production's container (production down): names and the port
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('kind, name', [('volume', SCRATCH + '_db_data'), ('container', SCRATCH + '_db')])
def test_present_refuses_a_scratch_name_that_someone_else_holds(tmp_path, kind, name):
    fake = FakeDocker()
    fake.add(kind, name, 'someone_else', label=None)
    plan = stack(tmp_path, production={})
    with pytest.raises(dr.DrillError) as err:
        ss.run_present(ss.scratch_commands(plan, fake), plan)
    assert err.value.code == 'not_isolated' and name in str(err.value) and len(fake.objects) == 1
    assert not os.path.exists(plan['project_src'])


def test_present_accepts_a_volume_name_of_our_own_leftovers(tmp_path):
    fake = FakeDocker()
    fake.add('volume', SCRATCH + '_db_data', 'someone_else', label=PROD)
    plan = stack(tmp_path, production={})
    assert ss.run_present(ss.scratch_commands(plan, fake), plan)['changed'] is True


@pytest.fixture
def busy_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_present_refuses_a_port_in_use_without_production(tmp_path, busy_port):
    plan = stack(tmp_path, port=busy_port, production={})
    with pytest.raises(dr.DrillError) as err:
        ss.run_present(ss.scratch_commands(plan, FakeDocker()), plan)
    assert err.value.code == 'not_isolated' and 'port %d' % busy_port in str(err.value)
    assert not os.path.exists(plan['project_src'])


def test_check_mode_does_not_blame_the_port_on_leftovers_it_would_remove(tmp_path, busy_port):
    fake = FakeDocker()
    scratch_leftovers(fake)
    plan = stack(tmp_path, port=busy_port)
    result = ss.run_present(ss.scratch_commands(plan, fake), plan, check_mode=True)
    assert result['stale_removed'] and len(fake.objects) == 3


def test_port_is_free(busy_port):
    assert ss.port_is_free(busy_port) is False
    assert ss.port_is_free(ss.free_loopback_port()) is True


def test_every_step_of_the_drill_has_a_registered_variable():
    assert sorted(dr.REGISTERED) == sorted(dr.RESULT_KEYS)
