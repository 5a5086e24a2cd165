# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Operations on a compose project: bring it up or down, and wait until its database answers.

Internal to fleet_telemetry.dr: not a public API, it may change without notice.

The commands run through ``_compose_commands.Commands``. What exists before and after is read from Docker itself by
the labels compose puts on what it creates (``_compose_commands.list_containers`` and ``list_labelled``), so check
mode can say what would change without acting, and ``changed`` is a comparison, not a guess.

``env`` holds secrets (``POSTGRES_PASSWORD``): it goes into the environment of the commands only, never into
argv or a result.
"""

from __future__ import annotations

import json
import os
import time

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._compose_commands import (
    ComposeError,
    Commands,
    check_docker,
    compose_config,
    compose_failure,
    compose_files,
    docker_problem,
    list_containers,
    list_labelled,
    list_services,
    project_name_of,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import run

# Where the official postgres image keeps its cluster unless PGDATA says otherwise.
DEFAULT_PGDATA = '/var/lib/postgresql/data'


# --------------------------------------------------------------------------------------------
# Decisions
# --------------------------------------------------------------------------------------------

def public_containers(containers):
    return [{'service': c['service'], 'name': c['name'], 'state': c['state']} for c in containers]


def services_not_running(containers, services):
    """Which of ``services`` have no running container (they would be created or started by ``up -d``)."""
    running = set(c['service'] for c in containers if c['state'] == 'running')
    return [s for s in services if s not in running]


def snapshot(containers):
    """What ``changed`` compares: each container's id and state."""
    return sorted((c['id'], c['state']) for c in containers)


def present_argv_args(services):
    return ['up', '-d'] + list(services)


def absent_argv_args(remove_volumes):
    return ['down', '--remove-orphans'] + (['-v'] if remove_volumes else [])


def pgdata_of(environment):
    """PGDATA of a container's or service's environment (a list of ``NAME=value`` or a dict), else the image's default."""
    if isinstance(environment, dict):
        value = environment.get('PGDATA')
    else:
        values = dict(item.split('=', 1) for item in (environment or []) if '=' in item)
        value = values.get('PGDATA')
    return (value or DEFAULT_PGDATA).rstrip('/') or '/'


def _holds(target, pgdata):
    target = (target or '').rstrip('/') or '/'
    return target == '/' or pgdata == target or pgdata.startswith(target + '/')


def data_mounts_from_inspect(container, project_volumes):
    """What holds the database's cluster besides the project's named volumes, from ``docker inspect`` of its container.

    The writable mounts whose target is PGDATA or a directory above it: a bind mount (``down -v`` keeps it, and the new
    database would start on that old cluster) or a volume that is not one of ``project_volumes`` (external, kept by
    ``down -v``; or anonymous, removed by it). Each as one phrase for a message.
    """
    pgdata = pgdata_of((container.get('Config') or {}).get('Env'))
    found = []
    for mount in container.get('Mounts') or []:
        if not mount.get('RW', True) or not _holds(mount.get('Destination'), pgdata):
            continue
        if mount.get('Type') == 'bind':
            found.append('bind mount %s' % mount.get('Source'))
        elif mount.get('Type') == 'volume' and mount.get('Name') not in project_volumes:
            found.append('volume %s' % mount.get('Name'))
    return found


def _service_mount(entry):
    """``(type, source, target, read_only)`` of a service's ``volumes`` entry, short (``src:dst[:mode]``) or long syntax."""
    if isinstance(entry, dict):
        return entry.get('type', 'volume'), entry.get('source'), entry.get('target'), bool(entry.get('read_only'))
    parts = str(entry).split(':')
    if len(parts) == 1:
        return 'volume', None, parts[0], False
    mode = parts[2].split(',') if len(parts) > 2 else []
    kind = 'bind' if parts[0].startswith(('/', '.', '~')) else 'volume'
    return kind, parts[0], parts[1], 'ro' in mode


def data_mounts_from_config(config, service, exists):
    """The same as ``data_mounts_from_inspect`` when the service has no container, from ``compose config``.

    ``exists(kind, name)`` says whether a host path (``kind='path'``) or a Docker volume (``kind='volume'``) exists: a bind
    source or an external volume that does not exist holds nothing. Named volumes of the project itself are left to the
    label lookup; an anonymous volume without a container no longer exists.
    """
    spec = ((config or {}).get('services') or {}).get(service) or {}
    pgdata = pgdata_of(spec.get('environment'))
    volumes = (config or {}).get('volumes') or {}
    found = []
    for entry in spec.get('volumes') or []:
        kind, source, target, read_only = _service_mount(entry)
        if read_only or not source or not _holds(target, pgdata):
            continue
        if kind == 'bind':
            if exists('path', source):
                found.append('bind mount %s' % source)
        elif kind == 'volume':
            declared = volumes.get(source) or {}
            if declared.get('external'):
                name = declared.get('name') or source
                if exists('volume', name):
                    found.append('external volume %s' % name)
    return found


def service_volumes_from_config(config, service, project_name):
    """Names of the Docker volumes the service's ``volumes`` entries use (a declared ``name:``, else ``<project>_<key>``)."""
    spec = ((config or {}).get('services') or {}).get(service) or {}
    declared = (config or {}).get('volumes') or {}
    names = []
    for entry in spec.get('volumes') or []:
        kind, source, dummy, dummy = _service_mount(entry)
        if kind == 'volume' and source:
            names.append((declared.get(source) or {}).get('name') or '%s_%s' % (project_name, source))
    return names


def db_mounts(cmds, files, project_name, containers, project_volumes):
    """``(data_mounts, db_volumes)``: the database's data outside the project's named volumes (see
    ``data_mounts_from_inspect``), as phrases, and the names of the volumes its service mounts."""
    service = cmds.project.db_service
    own = [c for c in containers if c['service'] == service]
    if own:
        rc, out, err = cmds.docker(['inspect', own[0]['id']])
        if rc != 0:
            raise docker_problem(rc, err, 'docker inspect')
        try:
            inspected = json.loads(out)
        except ValueError:
            raise ComposeError('docker inspect of %s gave output that is not JSON' % own[0]['name'], code='compose_failed')
        container = inspected[0] if inspected else {}
        names = [m.get('Name') for m in container.get('Mounts') or [] if m.get('Type') == 'volume']
        return data_mounts_from_inspect(container, project_volumes), names

    def exists(kind, name):
        if kind == 'path':
            return os.path.exists(os.path.join(cmds.project.project_src, os.path.expanduser(name)))
        return cmds.docker(['volume', 'inspect', name])[0] == 0
    config = compose_config(cmds, files)
    return data_mounts_from_config(config, service, exists), service_volumes_from_config(config, service, project_name)


def other_volumes(volumes, db_volumes):
    """The volumes ``down -v`` removes that the database service does not mount (the safety dump saves none of them)."""
    return [v for v in volumes if v not in db_volumes]


# --------------------------------------------------------------------------------------------
# Waiting for the database
# --------------------------------------------------------------------------------------------

def ready_checks(docker_cli, container, user, database, with_password=False):
    """The two readiness probes, run inside the container.

    ``pg_isready`` over TCP (127.0.0.1): the official entrypoint's temporary init server listens on the socket
    only, so only the final server answers it; then a real ``SELECT 1`` through psql on the socket, with
    ``-e PGPASSWORD`` (the name only: docker takes the value from its own environment) when ``with_password``.
    """
    isready = [docker_cli, 'exec', container, 'pg_isready', '-q', '-h', '127.0.0.1', '-U', user, '-d', database]
    password = ['-e', 'PGPASSWORD'] if with_password else []
    select = [docker_cli, 'exec'] + password + [container, 'psql', '-X', '-q', '-A', '-t', '-U', user, '-d', database, '-c', 'SELECT 1']
    return isready, select


def logs_command(docker_cli, container_name):
    return '%s logs --tail 50 %s' % (docker_cli, container_name)


def wait_ready(cmds, project_name, timeout, clock=time.monotonic, sleep=time.sleep, interval=0.25):
    """Wait until the database of ``db_service`` accepts connections; return the seconds it took.

    Fails at once (not_ready) when the container exits, else after ``timeout`` seconds, naming the logs command.
    """
    project = cmds.project
    started = clock()
    deadline = started + timeout
    last = 'no container yet'
    container = None
    while True:
        containers = [c for c in list_containers(cmds, project_name) if c['service'] == project.db_service]
        if containers:
            container = containers[0]
            if container['state'] in ('exited', 'dead'):
                raise ComposeError('the container %s of service %s stopped (%s) instead of starting the database: read "%s"'
                                   % (container['name'], project.db_service, container['state'],
                                      logs_command(project.docker_cli, container['name'])), code='not_ready')
            if container['state'] == 'running':
                isready, select = ready_checks(project.docker_cli, container['id'], project.db_user, project.db_name,
                                               with_password=bool(project.db_password))
                rc, dummy, err = cmds.runner(isready, timeout=60)
                if rc == 0:
                    rc, out, err = cmds.runner(select, timeout=60, env=dict(cmds.env, PGPASSWORD=project.db_password)
                                               if project.db_password else cmds.env)
                    if rc == 0 and out.strip() == '1':
                        return round(clock() - started, 3)
                    last = (err or out or '').strip().splitlines()[-1:] or ['SELECT 1 gave no answer']
                    last = 'SELECT 1 failed: %s' % last[0]
                else:
                    last = 'pg_isready exit %s' % rc
            else:
                last = 'container state %s' % container['state']
        if clock() >= deadline:
            name = container['name'] if container else '<container of %s>' % project.db_service
            raise ComposeError('the database of service %s was not ready within %s s (%s): read "%s", or raise wait_timeout'
                               % (project.db_service, timeout, last, logs_command(project.docker_cli, name)), code='not_ready')
        sleep(interval)


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------

def run_compose_project(project, state='present', services=None, remove_volumes=False, wait=False, wait_timeout=120,
                        check_mode=False, runner=None, environ=None, clock=time.monotonic, sleep=time.sleep):
    """Apply ``state`` to the project; return the result dict (no secrets). ``runner`` defaults to ``_transport.run``."""
    services = list(services or [])
    cmds = Commands(project, runner=runner or run, environ=environ)
    files = compose_files(project)
    check_docker(cmds)
    name = project_name_of(cmds, files)
    result = {'changed': False, 'project_name': name, 'state': state, 'containers': [], 'volumes_removed': [], 'networks_removed': [],
              'data_mounts': [], 'other_volumes': [], 'orphans': []}
    try:
        if state == 'absent':
            return _absent(cmds, files, name, remove_volumes, check_mode, result)
        return _present(cmds, files, name, services, wait, wait_timeout, check_mode, result, clock, sleep)
    except ComposeError as exc:
        exc.partial = dict(result, **exc.partial)
        raise


def _absent(cmds, files, name, remove_volumes, check_mode, result):
    containers = list_containers(cmds, name)
    networks = list_labelled(cmds, 'network', name)
    volumes = list_labelled(cmds, 'volume', name) if remove_volumes else []
    result['containers'] = public_containers(containers)
    result['cmd'] = cmds.compose_argv(absent_argv_args(remove_volumes), files)
    if remove_volumes:
        result['data_mounts'], db_volumes = db_mounts(cmds, files, name, containers, volumes)
        result['other_volumes'] = other_volumes(volumes, db_volumes)
    services = set(list_services(cmds, files))
    result['orphans'] = sorted(c['name'] for c in containers if c['service'] not in services)
    if not (containers or networks or volumes):
        result['msg'] = 'project %s has no containers%s or networks: nothing to remove' % (name, ', volumes' if remove_volumes else '')
        return result
    what = '%d container(s), %d network(s)%s' % (len(containers), len(networks), ', volumes %s' % ', '.join(volumes) if volumes else '')
    if check_mode:
        result.update(changed=True, volumes_removed=volumes, networks_removed=networks, msg='would remove %s of project %s' % (what, name))
        return result
    argv, rc, dummy, err = cmds.compose(absent_argv_args(remove_volumes), files)
    if rc != 0:
        raise compose_failure(argv, rc, err, 'compose down of project %s failed' % name)
    left = list_containers(cmds, name)
    left_volumes = list_labelled(cmds, 'volume', name) if remove_volumes else []
    result.update(changed=True, containers=public_containers(left), volumes_removed=[v for v in volumes if v not in left_volumes],
                  networks_removed=[n for n in networks if n not in list_labelled(cmds, 'network', name)])
    if left or left_volumes:
        raise ComposeError('compose down of project %s left %s behind: remove them with docker rm -f / docker volume rm'
                           % (name, ', '.join([c['name'] for c in left] + left_volumes)), code='compose_failed', cmd=argv)
    result['msg'] = 'removed %s of project %s' % (what, name)
    return result


def _present(cmds, files, name, services, wait, wait_timeout, check_mode, result, clock, sleep):
    before = list_containers(cmds, name)
    wanted = services or list_services(cmds, files)
    missing = services_not_running(before, wanted)
    result['cmd'] = cmds.compose_argv(present_argv_args(services), files)
    if check_mode:
        result['containers'] = public_containers(before)
        result['changed'] = bool(missing)
        result['msg'] = ('would start %s of project %s' % (', '.join(missing), name) if missing
                         else 'services %s of project %s are running' % (', '.join(wanted), name))
        if wait and missing:
            result['msg'] += ', then wait up to %s s for the database of service %s' % (wait_timeout, cmds.project.db_service)
        return result
    argv, rc, dummy, err = cmds.compose(present_argv_args(services), files)
    after = list_containers(cmds, name)
    result['containers'] = public_containers(after)
    result['changed'] = snapshot(before) != snapshot(after)
    if rc != 0:
        raise compose_failure(argv, rc, err, 'compose up of project %s failed' % name)
    not_running = services_not_running(after, wanted)
    if not_running and not wait:
        raise ComposeError('compose up of project %s left %s not running: read "%s logs %s"'
                           % (name, ', '.join(not_running), ' '.join(cmds.compose_argv([], files)), not_running[0]), code='compose_failed',
                           cmd=argv)
    if wait:
        result['ready_seconds'] = wait_ready(cmds, name, wait_timeout, clock=clock, sleep=sleep)
        result['containers'] = public_containers(list_containers(cmds, name))
    result['msg'] = '%s %s of project %s%s' % ('started' if result['changed'] else 'already running:', ', '.join(wanted), name,
                                               '; database ready after %.1f s' % result['ready_seconds'] if wait else '')
    return result
