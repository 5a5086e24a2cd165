# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of _compose: only the command runner is replaced, by a fake Docker that keeps state."""

from __future__ import annotations

import json

import pytest
import yaml

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _compose as co
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _compose_commands as cc
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _transport
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import TransportError

SECRET = 'pw-never-in-argv-0123'
DAEMON_DOWN = 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?'


class FakeDocker(object):
    """Answers the docker / compose argv the module runs; ``containers`` is {service: state} of project ``project``."""

    def __init__(self, project='telemetry', services=('db', 'app'), containers=None, volumes=None, v2=False, daemon=True,
                 up_rc=0, ready_after=0, select_ok=True, exit_on_up=False, mounts=None, config=None, existing_volumes=()):
        self.project = project
        # docker inspect's Mounts of the db container, and the output of compose config (v1: YAML; v2: JSON).
        self.mounts = mounts if mounts is not None else [
            {'Type': 'volume', 'Name': project + '_db_data', 'Destination': '/var/lib/postgresql/data', 'RW': True},
            {'Type': 'bind', 'Source': '/srv/app/schema', 'Destination': '/docker-entrypoint-initdb.d', 'RW': False}]
        self.config = config if config is not None else {
            'name': project, 'services': {'db': {'image': 'postgres:15', 'environment': {'POSTGRES_PASSWORD': SECRET},
                                                 'volumes': ['db_data:/var/lib/postgresql/data:rw', '/srv/app/schema:/docker-entrypoint-initdb.d:ro']}},
            'volumes': {'db_data': {}}}
        self.existing_volumes = list(existing_volumes)
        self.services = list(services)
        self.containers = dict(containers or {})
        self.volumes = list(volumes if volumes is not None else ([project + '_db_data'] if self.containers else []))
        self.networks = [project + '_default'] if self.containers else []
        self.v2 = v2
        self.daemon = daemon
        self.up_rc = up_rc
        self.ready_after = ready_after
        self.select_ok = select_ok
        self.exit_on_up = exit_on_up
        self.calls = []
        self.envs = []
        self.isready_calls = 0
        self.generation = 0

    def ids(self):
        return dict((service, 'id-%s-%d' % (service, self.generation)) for service in self.containers)

    def __call__(self, argv, env=None, cwd=None, timeout=None, stdin_data=None):
        self.calls.append(list(argv))
        self.envs.append(env)
        if argv[:3] == ['docker', 'compose', 'version']:
            return (0, 'Docker Compose version v2.24.0', '') if self.v2 else (1, '', "docker: 'compose' is not a docker command.")
        if argv[:2] == ['docker-compose', 'version']:
            return 0, 'docker-compose version 1.29.2', ''
        if argv[0] == 'docker' and argv[1] in ('version', 'ps', 'volume', 'network', 'exec') and not self.daemon:
            return 1, '', DAEMON_DOWN
        if argv[:2] == ['docker', 'version']:
            return 0, '20.10.24\n', ''
        if argv[:2] == ['docker', 'ps']:
            assert 'label=com.docker.compose.project=%s' % self.project in argv, argv
            ids = self.ids()
            lines = ['%s\t%s_%s_1\t%s\t%s' % (s, self.project, s, state, ids[s]) for s, state in sorted(self.containers.items())]
            return 0, '\n'.join(lines) + ('\n' if lines else ''), ''
        if argv[:3] == ['docker', 'volume', 'ls']:
            return 0, ''.join(v + '\n' for v in self.volumes), ''
        if argv[:3] == ['docker', 'network', 'ls']:
            return 0, ''.join(n + '\n' for n in self.networks), ''
        if argv[:3] == ['docker', 'volume', 'inspect']:
            return (0, '[{}]', '') if argv[3] in self.existing_volumes else (1, '', 'Error: No such volume: %s' % argv[3])
        if argv[:2] == ['docker', 'inspect']:
            assert argv[2] in self.ids().values(), argv
            return 0, json.dumps([{'Config': {'Env': ['POSTGRES_PASSWORD=' + SECRET, 'PGDATA=/var/lib/postgresql/data/pgdata']},
                                   'Mounts': self.mounts}]), ''
        if argv[:2] == ['docker', 'exec']:
            if 'pg_isready' in argv:
                self.isready_calls += 1
                return (0, '', '') if self.isready_calls > self.ready_after else (2, '', '')
            if 'psql' in argv:
                return (0, '1\n', '') if self.select_ok else (2, '', 'psql: error: FATAL:  the database system is starting up')
        base = 2 if argv[:2] == ['docker', 'compose'] else 1
        rest = argv[base:]
        while rest and rest[0] in ('-p', '-f'):
            rest = rest[2:]
        if rest[:2] == ['config', '--services']:
            return 0, '\n'.join(self.services) + '\n', ''
        if rest == ['config', '--format', 'json']:
            assert base == 2, 'config --format json is v2 only'
            return 0, json.dumps(self.config), ''
        if rest == ['config']:
            assert base == 1, 'v2 is asked for JSON'
            config = dict(self.config)
            config.pop('name', None)  # v1 has no top-level name
            return 0, yaml.safe_dump(config), ''
        if rest[:2] == ['up', '-d']:
            if self.up_rc:
                return self.up_rc, '', 'ERROR: for db  Cannot start service db: port is already allocated'
            for service in rest[2:] or self.services:
                if self.containers.get(service) != 'running':
                    self.generation += 1
                self.containers[service] = 'exited' if self.exit_on_up else 'running'
            if not self.volumes:
                self.volumes = [self.project + '_db_data']
            self.networks = [self.project + '_default']
            return 0, '', 'Creating %s_db_1 ... done' % self.project
        if rest and rest[0] == 'down':
            self.containers = {}
            self.networks = []
            if '-v' in rest:
                self.volumes = []
            return 0, '', ''
        raise AssertionError('unexpected command %s' % argv)


def project(tmp_path, **kwargs):
    (tmp_path / 'docker-compose.yml').write_text('services: {db: {image: postgres:15}}\n')
    kwargs.setdefault('project_name', 'telemetry')
    kwargs.setdefault('env', {'POSTGRES_PASSWORD': SECRET})
    return cc.ComposeProject(str(tmp_path), **kwargs)


class Clock(object):
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def assert_no_secret(fake, result):
    assert not any(SECRET in ' '.join(c) for c in fake.calls)
    assert SECRET not in repr(result)


@pytest.mark.parametrize('name, expected', [
    ('telemetry', 'telemetry'), ('Fleet Telemetry', 'fleettelemetry'), ('my_stack-2', 'my_stack-2'), ('a.b', 'ab')])
def test_normalize_project_name(name, expected):
    assert cc.normalize_project_name(name) == expected


def test_effective_project_name_order(tmp_path):
    (tmp_path / 'docker-compose.yml').write_text('x')
    bare = cc.ComposeProject(str(tmp_path / ''))
    assert cc.effective_project_name(bare, environ={}) == cc.normalize_project_name(tmp_path.name)
    (tmp_path / '.env').write_text('# comment\nCOMPOSE_PROJECT_NAME="FromDotEnv"\nOTHER=1\n')
    assert cc.effective_project_name(bare, environ={}) == 'fromdotenv'
    assert cc.effective_project_name(bare, environ={'COMPOSE_PROJECT_NAME': 'fromenviron'}) == 'fromenviron'
    with_env = cc.ComposeProject(str(tmp_path), env={'COMPOSE_PROJECT_NAME': 'fromoption'})
    assert cc.effective_project_name(with_env, environ={'COMPOSE_PROJECT_NAME': 'fromenviron'}) == 'fromoption'
    named = cc.ComposeProject(str(tmp_path), project_name='Given', env={'COMPOSE_PROJECT_NAME': 'fromoption'})
    assert cc.effective_project_name(named, environ={}) == 'given'


@pytest.mark.parametrize('files, create, ok', [
    ([], ['docker-compose.yml'], True),
    ([], ['compose.yaml'], True),
    ([], [], False),
    (['other.yml'], ['docker-compose.yml'], False),
    (['other.yml'], ['other.yml'], True),
])
def test_compose_files(tmp_path, files, create, ok):
    for name in create:
        (tmp_path / name).write_text('services: {}\n')
    proj = cc.ComposeProject(str(tmp_path), files=files)
    if ok:
        assert [p.rsplit('/', 1)[1] for p in cc.compose_files(proj)] == (files or create)
    else:
        with pytest.raises(cc.ComposeError) as err:
            cc.compose_files(proj)
        assert err.value.code == 'no_project'


def test_missing_directory_is_no_project(tmp_path):
    fake = FakeDocker()
    with pytest.raises(cc.ComposeError) as err:
        co.run_compose_project(cc.ComposeProject(str(tmp_path / 'nope')), runner=fake)
    assert err.value.code == 'no_project'
    assert 'project_src' in str(err.value)
    assert fake.calls == []


@pytest.mark.parametrize('containers, services, missing', [
    ([], ['db'], ['db']),
    ([{'service': 'db', 'state': 'running'}], ['db'], []),
    ([{'service': 'db', 'state': 'exited'}], ['db', 'app'], ['db', 'app']),
    ([{'service': 'db', 'state': 'running'}, {'service': 'app', 'state': 'running'}], ['db', 'app'], []),
])
def test_services_not_running(containers, services, missing):
    assert co.services_not_running(containers, services) == missing


def test_present_starts_only_the_named_services_and_waits(tmp_path):
    fake = FakeDocker(ready_after=2)
    clock = Clock()
    result = co.run_compose_project(project(tmp_path), services=['db'], wait=True, runner=fake, environ={}, clock=clock,
                                    sleep=clock.sleep)
    assert result['changed'] is True
    assert result['cmd'] == ['docker-compose', '-p', 'telemetry', 'up', '-d', 'db']
    assert fake.containers == {'db': 'running'}
    assert result['containers'] == [{'service': 'db', 'name': 'telemetry_db_1', 'state': 'running'}]
    # Ready at the third probe, a quarter of a second apart.
    assert result['ready_seconds'] == 0.5
    assert fake.isready_calls == 3
    assert 'database ready' in result['msg']
    # The secret went to the environment of the commands, not their argv or the result.
    assert all(env and env.get('POSTGRES_PASSWORD') == SECRET for env in fake.envs)
    assert_no_secret(fake, result)


def test_readiness_is_pg_isready_over_tcp_then_select_1():
    isready, select = co.ready_checks('docker', 'cid', 'challengeuser', 'telemetry_db')
    assert isready[:3] == ['docker', 'exec', 'cid'] and 'pg_isready' in isready and isready[isready.index('-h') + 1] == '127.0.0.1'
    assert select[-2:] == ['-c', 'SELECT 1'] and 'psql' in select and '-h' not in select


def test_present_again_is_not_changed(tmp_path):
    fake = FakeDocker(containers={'db': 'running', 'app': 'running'})
    result = co.run_compose_project(project(tmp_path), runner=fake, environ={})
    assert result['changed'] is False
    assert result['cmd'][-2:] == ['up', '-d']
    assert 'already running' in result['msg']


def test_present_all_services_when_empty(tmp_path):
    fake = FakeDocker(containers={'db': 'running'})
    result = co.run_compose_project(project(tmp_path), runner=fake, environ={})
    assert result['changed'] is True
    assert fake.containers == {'db': 'running', 'app': 'running'}


def test_present_check_mode_reports_and_does_nothing(tmp_path):
    fake = FakeDocker(containers={'db': 'running'})
    result = co.run_compose_project(project(tmp_path), wait=True, check_mode=True, runner=fake, environ={})
    assert result['changed'] is True
    assert 'would start app' in result['msg']
    assert fake.containers == {'db': 'running'}
    assert not [c for c in fake.calls if 'up' in c or 'exec' in c]
    assert 'ready_seconds' not in result


def test_present_check_mode_nothing_to_do(tmp_path):
    fake = FakeDocker(containers={'db': 'running'})
    result = co.run_compose_project(project(tmp_path), services=['db'], check_mode=True, runner=fake, environ={})
    assert result['changed'] is False


def test_absent_with_volumes(tmp_path):
    fake = FakeDocker(containers={'db': 'running'})
    result = co.run_compose_project(project(tmp_path), state='absent', remove_volumes=True, runner=fake, environ={})
    assert result['changed'] is True
    assert result['cmd'] == ['docker-compose', '-p', 'telemetry', 'down', '--remove-orphans', '-v']
    assert result['volumes_removed'] == ['telemetry_db_data']
    assert result['networks_removed'] == ['telemetry_default']
    assert result['containers'] == []
    assert fake.volumes == []
    assert_no_secret(fake, result)


def test_absent_keeps_volumes_without_remove_volumes(tmp_path):
    fake = FakeDocker(containers={'db': 'running'})
    result = co.run_compose_project(project(tmp_path), state='absent', runner=fake, environ={})
    assert result['changed'] is True
    assert '-v' not in result['cmd']
    assert result['volumes_removed'] == []
    assert fake.volumes == ['telemetry_db_data']


def test_absent_check_mode_lists_what_would_go(tmp_path):
    fake = FakeDocker(containers={'db': 'running'})
    result = co.run_compose_project(project(tmp_path), state='absent', remove_volumes=True, check_mode=True, runner=fake, environ={})
    assert result['changed'] is True
    assert result['volumes_removed'] == ['telemetry_db_data']
    assert fake.containers == {'db': 'running'} and fake.volumes == ['telemetry_db_data']
    assert not [c for c in fake.calls if 'down' in c]


def test_absent_when_nothing_exists_is_not_changed(tmp_path):
    fake = FakeDocker()
    result = co.run_compose_project(project(tmp_path), state='absent', remove_volumes=True, runner=fake, environ={})
    assert result['changed'] is False
    assert not [c for c in fake.calls if 'down' in c]


def test_absent_removes_a_volume_left_without_containers(tmp_path):
    fake = FakeDocker(volumes=['telemetry_db_data'])
    result = co.run_compose_project(project(tmp_path), state='absent', remove_volumes=True, runner=fake, environ={})
    assert result['changed'] is True and result['volumes_removed'] == ['telemetry_db_data']


def test_v2_is_used_when_the_plugin_answers(tmp_path):
    fake = FakeDocker(v2=True)
    result = co.run_compose_project(project(tmp_path, files=['docker-compose.yml']), services=['db'], runner=fake, environ={})
    assert result['cmd'] == ['docker', 'compose', '-p', 'telemetry', '-f', str(tmp_path / 'docker-compose.yml'), 'up', '-d', 'db']


def test_daemon_down_is_no_docker(tmp_path):
    fake = FakeDocker(daemon=False)
    with pytest.raises(cc.ComposeError) as err:
        co.run_compose_project(project(tmp_path), runner=fake, environ={})
    assert err.value.code == 'no_docker'
    assert 'dockerd' in str(err.value)


def test_missing_docker_binary_is_no_docker(tmp_path):
    def runner(argv, **kwargs):
        raise TransportError('%s is not installed or not on PATH' % argv[0], code='missing_binary', cmd=argv)
    with pytest.raises(cc.ComposeError) as err:
        co.run_compose_project(project(tmp_path), runner=runner, environ={})
    assert err.value.code == 'no_docker'


def test_no_compose_at_all_is_no_docker(tmp_path, monkeypatch):
    fake = FakeDocker()
    monkeypatch.setattr(_transport, 'find_program', lambda name: None)
    with pytest.raises(cc.ComposeError) as err:
        co.run_compose_project(project(tmp_path), runner=fake, environ={})
    assert err.value.code == 'no_docker'
    assert 'docker-compose' in str(err.value)


def test_up_failure_is_compose_failed_with_stderr(tmp_path):
    fake = FakeDocker(up_rc=1)
    with pytest.raises(cc.ComposeError) as err:
        co.run_compose_project(project(tmp_path), services=['db'], runner=fake, environ={})
    result = err.value.to_result()
    assert result['error_code'] == 'compose_failed'
    assert 'port is already allocated' in result['msg']
    assert result['rc'] == 1 and result['cmd'][-3:] == ['up', '-d', 'db']
    assert_no_secret(fake, result)


def test_wait_timeout_is_not_ready_naming_the_logs_command(tmp_path):
    fake = FakeDocker(ready_after=10 ** 6)
    clock = Clock()
    with pytest.raises(cc.ComposeError) as err:
        co.run_compose_project(project(tmp_path), services=['db'], wait=True, wait_timeout=5, runner=fake, environ={},
                               clock=clock, sleep=clock.sleep)
    assert err.value.code == 'not_ready'
    assert 'docker logs --tail 50 telemetry_db_1' in str(err.value)
    assert 'wait_timeout' in str(err.value)
    assert clock.now >= 5
    assert err.value.to_result()['state'] == 'present'


def test_wait_needs_select_1_too(tmp_path):
    fake = FakeDocker(select_ok=False)
    clock = Clock()
    with pytest.raises(cc.ComposeError) as err:
        co.run_compose_project(project(tmp_path), services=['db'], wait=True, wait_timeout=3, runner=fake, environ={},
                               clock=clock, sleep=clock.sleep)
    assert err.value.code == 'not_ready'
    assert 'SELECT 1 failed' in str(err.value)


def test_wait_fails_at_once_when_the_container_exits(tmp_path):
    fake = FakeDocker(exit_on_up=True)
    clock = Clock()
    with pytest.raises(cc.ComposeError) as err:
        co.run_compose_project(project(tmp_path), services=['db'], wait=True, wait_timeout=100, runner=fake, environ={},
                               clock=clock, sleep=clock.sleep)
    assert err.value.code == 'not_ready'
    assert 'stopped' in str(err.value)
    assert clock.now == 0


def test_up_without_wait_fails_when_a_service_does_not_run(tmp_path):
    fake = FakeDocker(exit_on_up=True)
    with pytest.raises(cc.ComposeError) as err:
        co.run_compose_project(project(tmp_path), services=['db'], runner=fake, environ={})
    assert err.value.code == 'compose_failed'
    assert 'not running' in str(err.value)


@pytest.mark.parametrize('text, fields, rows', [
    ('', ('a',), []),
    ('db\tname\trunning\tid\n', ('service', 'name', 'state', 'id'), [{'service': 'db', 'name': 'name', 'state': 'running', 'id': 'id'}]),
    ('x\n', ('a', 'b'), [{'a': 'x', 'b': ''}]),
])
def test_parse_lines(text, fields, rows):
    assert cc.parse_lines(text, fields) == rows


def test_read_env_file_missing(tmp_path):
    assert cc.read_env_file(str(tmp_path / '.env')) == {}


# --------------------------------------------------------------------------------------------
# The database's data outside the project's named volumes (review finding 2)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('environment, expected', [
    (None, '/var/lib/postgresql/data'), (['A=1', 'PGDATA=/pg/data/'], '/pg/data'), ({'PGDATA': '/x'}, '/x'), ({}, '/var/lib/postgresql/data')])
def test_pgdata_of(environment, expected):
    assert co.pgdata_of(environment) == expected


def test_data_mounts_from_inspect():
    container = {'Config': {'Env': ['PGDATA=/var/lib/postgresql/data/pgdata']}, 'Mounts': [
        {'Type': 'volume', 'Name': 'p_db_data', 'Destination': '/var/lib/postgresql/data', 'RW': True},
        {'Type': 'bind', 'Source': '/srv/schema', 'Destination': '/docker-entrypoint-initdb.d', 'RW': False},
        {'Type': 'bind', 'Source': '/srv/backups', 'Destination': '/backups', 'RW': True},
    ]}
    # The project's own volume is counted by the label lookup; the schema mount is read-only; /backups holds no cluster.
    assert co.data_mounts_from_inspect(container, ['p_db_data']) == []
    container['Mounts'][0] = {'Type': 'bind', 'Source': '/srv/pgdata', 'Destination': '/var/lib/postgresql/data/', 'RW': True}
    assert co.data_mounts_from_inspect(container, []) == ['bind mount /srv/pgdata']
    container['Mounts'][0] = {'Type': 'volume', 'Name': 'shared_pg', 'Destination': '/var/lib/postgresql/data/pgdata', 'RW': True}
    assert co.data_mounts_from_inspect(container, ['p_db_data']) == ['volume shared_pg']
    # An anonymous volume (the image's VOLUME) holds the cluster too.
    container['Mounts'][0] = {'Type': 'volume', 'Name': 'a' * 64, 'Destination': '/var/lib/postgresql/data', 'RW': True}
    assert co.data_mounts_from_inspect(container, []) == ['volume ' + 'a' * 64]


def test_data_mounts_from_config():
    config = {'services': {'db': {'environment': {'PGDATA': '/var/lib/postgresql/data/pgdata'}, 'volumes': [
        '/srv/pgdata:/var/lib/postgresql/data:rw', '/srv/schema:/docker-entrypoint-initdb.d:ro', 'ext:/var/lib/postgresql/data',
        'db_data:/var/lib/postgresql/data', '/var/lib/postgresql/data',
        {'type': 'bind', 'source': '/srv/long', 'target': '/var/lib/postgresql/data/pgdata'},
        {'type': 'bind', 'source': '/srv/long-ro', 'target': '/var/lib/postgresql', 'read_only': True}]}},
        'volumes': {'db_data': {}, 'ext': {'external': True, 'name': 'shared_pg'}}}
    asked = []

    def exists(kind, name):
        asked.append((kind, name))
        return name in ('/srv/pgdata', 'shared_pg', '/srv/long')
    assert co.data_mounts_from_config(config, 'db', exists) == ['bind mount /srv/pgdata', 'external volume shared_pg', 'bind mount /srv/long']
    assert ('path', '/srv/schema') not in asked
    assert co.data_mounts_from_config(config, 'db', lambda kind, name: False) == []
    assert co.data_mounts_from_config({}, 'db', exists) == []


def test_absent_plan_lists_a_bind_mount_of_the_running_db(tmp_path):
    mounts = [{'Type': 'bind', 'Source': '/srv/pgdata', 'Destination': '/var/lib/postgresql/data', 'RW': True}]
    fake = FakeDocker(containers={'db': 'running'}, volumes=[], mounts=mounts)
    result = co.run_compose_project(project(tmp_path), state='absent', remove_volumes=True, check_mode=True, runner=fake, environ={})
    assert result['volumes_removed'] == [] and result['data_mounts'] == ['bind mount /srv/pgdata']
    assert_no_secret(fake, result)


@pytest.mark.parametrize('v2', [False, True], ids=['v1', 'v2'])
def test_absent_plan_without_container_reads_compose_config(tmp_path, v2):
    config = {'name': 'telemetry', 'services': {'db': {'environment': {'POSTGRES_PASSWORD': SECRET},
                                                       'volumes': ['pg:/var/lib/postgresql/data']}},
              'volumes': {'pg': {'external': True}}}
    fake = FakeDocker(config=config, existing_volumes=['pg'], v2=v2)
    result = co.run_compose_project(project(tmp_path), state='absent', remove_volumes=True, check_mode=True, runner=fake, environ={})
    assert result['changed'] is False and result['data_mounts'] == ['external volume pg']
    assert_no_secret(fake, result)
    fake = FakeDocker(config=config, v2=v2)
    assert co.run_compose_project(project(tmp_path), state='absent', remove_volumes=True, check_mode=True, runner=fake,
                                  environ={})['data_mounts'] == []


def test_absent_plan_of_the_default_stack_has_no_data_mount(tmp_path):
    fake = FakeDocker(containers={'db': 'exited'})
    result = co.run_compose_project(project(tmp_path), state='absent', remove_volumes=True, check_mode=True, runner=fake, environ={})
    assert result['volumes_removed'] == ['telemetry_db_data'] and result['data_mounts'] == []


# --------------------------------------------------------------------------------------------
# The project name under v2 (review finding 1); v2 is not installed on the test machine: a mocked runner
# --------------------------------------------------------------------------------------------

def test_normalize_project_name_v2_strips_leading_separators():
    assert cc.normalize_project_name('_My-App') == '_my-app'
    assert cc.normalize_project_name('_My-App', v2=True) == 'my-app'
    assert cc.normalize_project_name('-_x_', v2=True) == 'x_'


def test_v2_takes_the_name_from_compose_config(tmp_path):
    """A top-level ``name:`` in the compose file: only compose knows it; the labels are looked up under that name."""
    fake = FakeDocker(project='fromfile', containers={'db': 'running'}, v2=True)
    fake.config['name'] = 'fromfile'
    result = co.run_compose_project(project(tmp_path, project_name=None), state='absent', remove_volumes=True, check_mode=True,
                                    runner=fake, environ={})
    assert result['project_name'] == 'fromfile'
    assert result['volumes_removed'] == ['fromfile_db_data'] and [c['service'] for c in result['containers']] == ['db']
    assert ['docker', 'compose', 'config', '--format', 'json'] in fake.calls
    assert_no_secret(fake, result)


def test_v2_falls_back_to_the_v1_rules_with_its_normalisation(tmp_path):
    workdir = tmp_path / '_Stack'
    workdir.mkdir()
    fake = FakeDocker(project='stack', v2=True)

    def runner(argv, **kwargs):
        if argv[-3:] == ['config', '--format', 'json']:
            return 1, '', 'unknown flag: --format'
        return fake(argv, **kwargs)
    assert cc.resolved_project_name(project(workdir, project_name=None), runner=runner, environ={}) == 'stack'


def test_v1_keeps_its_rules_and_never_asks_for_json(tmp_path):
    workdir = tmp_path / '_Stack'
    workdir.mkdir()
    fake = FakeDocker(project='_stack')
    assert cc.resolved_project_name(project(workdir, project_name=None), runner=fake, environ={}) == '_stack'
    assert not [c for c in fake.calls if 'config' in c]


def test_absent_plan_names_other_services_volumes_and_orphans(tmp_path):
    fake = FakeDocker(containers={'db': 'running', 'app': 'running', 'worker': 'exited'},
                      volumes=['telemetry_db_data', 'telemetry_uploads'])
    result = co.run_compose_project(project(tmp_path), state='absent', remove_volumes=True, check_mode=True, runner=fake, environ={})
    assert result['volumes_removed'] == ['telemetry_db_data', 'telemetry_uploads']
    assert result['other_volumes'] == ['telemetry_uploads']
    assert result['orphans'] == ['telemetry_worker_1']


def test_service_volumes_from_config():
    config = {'services': {'db': {'volumes': ['db_data:/var/lib/postgresql/data', './x:/x', {'type': 'volume', 'source': 'named', 'target': '/n'}]}},
              'volumes': {'db_data': {}, 'named': {'name': 'fixed_name'}}}
    assert co.service_volumes_from_config(config, 'db', 'proj') == ['proj_db_data', 'fixed_name']


def test_absent_plan_without_container_finds_other_volumes_from_config(tmp_path):
    fake = FakeDocker(volumes=['telemetry_db_data', 'telemetry_uploads'])
    result = co.run_compose_project(project(tmp_path), state='absent', remove_volumes=True, check_mode=True, runner=fake, environ={})
    assert result['other_volumes'] == ['telemetry_uploads'] and result['orphans'] == []


def test_readiness_select_gets_the_password_by_name_only(tmp_path):
    """Review finding 11: a pg_hba that asks for a password over the socket; the value is in the environment only."""
    isready, select = co.ready_checks('docker', 'cid', 'u', 'd', with_password=True)
    assert select[:5] == ['docker', 'exec', '-e', 'PGPASSWORD', 'cid'] and '-e' not in isready
    fake = FakeDocker(containers={'db': 'exited'})
    result = co.run_compose_project(project(tmp_path, db_password=SECRET), services=['db'], wait=True, runner=fake, environ={})
    assert result['ready_seconds'] is not None
    selects = [i for i, c in enumerate(fake.calls) if 'psql' in c]
    assert selects and all(fake.envs[i]['PGPASSWORD'] == SECRET for i in selects)
    assert all('PGPASSWORD' not in (fake.envs[i] or {}) for i, c in enumerate(fake.calls) if 'psql' not in c)
    assert_no_secret(fake, result)
