# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""compose_project against a real scratch stack through ``ansible -m``: check mode, up, again, down -v, again, not ready."""

from __future__ import annotations

import json
import os

import pytest

from conftest import HOST, ComposeStack, parse_host_result, run

MODULE = 'fleet_telemetry.dr.compose_project'


def project_objects(stack):
    """What Docker holds of the stack's project, found by compose's labels (containers, volumes, networks)."""
    label = 'label=com.docker.compose.project=%s' % stack.project
    found = {}
    for kind, argv in (('containers', ['docker', 'ps', '-a', '-q']), ('volumes', ['docker', 'volume', 'ls', '-q']),
                       ('networks', ['docker', 'network', 'ls', '-q'])):
        proc = run(argv + ['--filter', label])
        assert proc.returncode == 0, proc.stderr
        found[kind] = proc.stdout.split()
    return found


class Runner(object):
    def __init__(self, ansible, stack):
        self.ansible = ansible
        self.stack = stack
        # Port and container name reach compose through the environment of the run, the password through the module's env option.
        env = dict(os.environ)
        for name in ('PGPASSWORD', 'POSTGRES_PASSWORD', 'ENCRYPTION_KEY', 'COMPOSE_PROJECT_NAME'):
            env.pop(name, None)
        env.update(DB_PORT=str(stack.port), DB_CONTAINER_NAME=stack.container_name)
        self.env = env

    def __call__(self, check=False, verbose=False, **args):
        args.setdefault('project_src', self.stack.directory)
        args.setdefault('project_name', self.stack.project)
        args.setdefault('env', {'POSTGRES_PASSWORD': self.stack.password})
        argv = [self.ansible.ansible, HOST, '-i', self.ansible.inventory, '-m', MODULE, '-a', json.dumps(args)]
        argv += (['--check'] if check else []) + (['-vvv'] if verbose else [])
        proc = run(argv, cwd=self.ansible.workdir, env=self.ansible.env(self.env, json_output=True))
        return proc.returncode, parse_host_result(proc.stdout, proc.stderr), proc.stdout + proc.stderr


@pytest.fixture
def scratch(tmp_path, request):
    stack = ComposeStack(str(tmp_path), 'compose')
    request.addfinalizer(stack.down)
    return stack


def test_lifecycle(scratch, ansible):
    module = Runner(ansible, scratch)
    assert project_objects(scratch) == {'containers': [], 'volumes': [], 'networks': []}

    rc, result, dummy = module(check=True, services=['db'], wait=True)
    assert rc == 0 and result['changed'] is True, result
    assert 'would start db' in result['msg']
    assert project_objects(scratch) == {'containers': [], 'volumes': [], 'networks': []}, 'check mode created something'

    rc, result, output = module(services=['db'], wait=True, verbose=True)
    assert rc == 0 and result['changed'] is True, result
    assert result['ready_seconds'] > 0
    assert [(c['service'], c['name'], c['state']) for c in result['containers']] == [('db', scratch.container_name, 'running')]
    assert scratch.password not in output
    # Ready means ready: a query over the published port answers at once, no retry.
    proc = run(['psql', '-X', '-A', '-t', '-h', '127.0.0.1', '-p', str(scratch.port), '-U', 'challengeuser', '-d', 'telemetry_db',
                '-c', 'SELECT count(*) FROM photo'], env=dict(os.environ, PGPASSWORD=scratch.password))
    assert proc.returncode == 0 and proc.stdout.strip() == '0', proc.stderr
    objects = project_objects(scratch)
    assert len(objects['containers']) == 1 and objects['volumes'] == [scratch.project + '_db_data'] and len(objects['networks']) == 1

    rc, result, dummy = module(services=['db'], wait=True)
    assert rc == 0 and result['changed'] is False, result
    assert project_objects(scratch)['containers'] == objects['containers']

    rc, result, dummy = module(check=True, state='absent', remove_volumes=True)
    assert rc == 0 and result['changed'] is True
    assert result['volumes_removed'] == [scratch.project + '_db_data']
    assert project_objects(scratch) == objects, 'check mode removed something'

    rc, result, dummy = module(state='absent', remove_volumes=True)
    assert rc == 0 and result['changed'] is True, result
    assert result['volumes_removed'] == [scratch.project + '_db_data']
    assert result['containers'] == []
    assert project_objects(scratch) == {'containers': [], 'volumes': [], 'networks': []}

    rc, result, dummy = module(state='absent', remove_volumes=True)
    assert rc == 0 and result['changed'] is False, result


def test_down_without_remove_volumes_keeps_the_data(scratch, ansible):
    module = Runner(ansible, scratch)
    rc, result, dummy = module(services=['db'], wait=True)
    assert rc == 0, result
    scratch.container = run(['docker', 'ps', '-q', '--filter', 'name=^%s$' % scratch.container_name]).stdout.strip()
    scratch.psql("INSERT INTO audit_log (at, actor, action, detail) VALUES (now(), 'compose-test', 'keep', '{}');")
    rc, result, dummy = module(state='absent')
    assert rc == 0 and result['changed'] is True and result['volumes_removed'] == [], result
    assert project_objects(scratch)['volumes'] == [scratch.project + '_db_data']
    rc, result, dummy = module(services=['db'], wait=True)
    assert rc == 0 and result['changed'] is True, result
    scratch.container = run(['docker', 'ps', '-q', '--filter', 'name=^%s$' % scratch.container_name]).stdout.strip()
    assert scratch.psql("SELECT count(*) FROM audit_log WHERE actor = 'compose-test';") == '1'


def test_never_ready_is_not_ready(scratch, ansible):
    """A db service whose container runs but never starts PostgreSQL: not_ready after wait_timeout, naming the logs command."""
    override = os.path.join(scratch.directory, 'never-ready.yml')
    with open(override, 'w') as fileobj:
        fileobj.write('version: "3.8"\nservices:\n  db:\n    entrypoint: ["sleep", "600"]\n')
    module = Runner(ansible, scratch)
    rc, result, dummy = module(files=['docker-compose.yml', 'never-ready.yml'], services=['db'], wait=True, wait_timeout=5)
    assert rc != 0 and result['error_code'] == 'not_ready', result
    assert 'docker logs --tail 50 %s' % scratch.container_name in result['msg']
    assert result['changed'] is True


def test_missing_compose_file_is_no_project(tmp_path, ansible):
    stack = ComposeStack(str(tmp_path), 'noproj')
    os.unlink(os.path.join(stack.directory, 'docker-compose.yml'))
    rc, result, dummy = Runner(ansible, stack)(services=['db'])
    assert rc != 0 and result['error_code'] == 'no_project', result
    assert project_objects(stack)['containers'] == []
