# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The scratch compose stack of a DR drill: planning it beside production, writing its compose project, removing it.

Internal to fleet_telemetry.dr: not a public API, it may change without notice.

A drill restores a backup into a scratch stack that shares nothing with production. Production's compose
file cannot be reused for it (it has a fixed ``container_name`` and a fixed published port), so a small
compose file is generated instead: one ``db`` service with production's image, its own named volume,
container name and loopback port, and ``POSTGRES_PASSWORD`` read from the environment of the compose
command (``${POSTGRES_PASSWORD:-}``), never from the file or argv. The default is empty, not an error,
so that commands that only read the project (``ps``, ``down``) work without the secret; ``up`` without
it creates no database (the entrypoint refuses to initialise a cluster without a password). Everything the scratch project
creates carries the label ``fleet_telemetry.dr.scratch_of=<production project>``, so leftovers of a
drill that was killed can be found and removed by what they are, not by a guess at their names.

Production's facts (read only) come from ``_drill``; nothing here runs a command against production.
"""

from __future__ import annotations

import json
import errno
import os
import socket

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._compose_commands import list_containers, list_labelled, normalize_project_name
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._drill import SERVICE, DrillError, commands
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._report import write_if_changed

SCRATCH_LABEL = 'fleet_telemetry.dr.scratch_of'
COMPOSE_FILE = 'docker-compose.yml'
SCRATCH_SUFFIX = '_drill'
VOLUME = 'db_data'
PGDATA = '/var/lib/postgresql/data/pgdata'
DIRECTORY_MODE = 0o700


# --------------------------------------------------------------------------------------------
# The scratch stack
# --------------------------------------------------------------------------------------------

def scratch_project_name(production_project, name=None):
    """The scratch project's name: ``name`` (normalized as compose does), else ``<production>_drill``.

    A name that normalizes to nothing would put the scratch compose file straight into ``work_dir``: DrillError ``bad_option``.
    """
    scratch = normalize_project_name(name) if name else normalize_project_name(production_project + SCRATCH_SUFFIX)
    if not scratch:
        raise DrillError('the scratch project name %r has no letter, digit, "_" or "-" left once normalized as compose does: '
                         'choose another dr_drill_project_name' % (name if name else production_project + SCRATCH_SUFFIX), code='bad_option')
    return scratch


def _real(path):
    return os.path.realpath(os.path.abspath(path))


def _within(path, directory):
    """Whether ``path`` is ``directory`` or below it (both already real paths)."""
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def path_problem(project_src, production_project_src):
    """Why the scratch directory must not be used beside production (it is, holds, or lies inside production's), or None."""
    if not production_project_src:
        return None
    scratch, production = _real(project_src), _real(production_project_src)
    if scratch == production:
        what = 'is'
    elif _within(production, scratch):
        what = 'contains'
    elif _within(scratch, production):
        what = 'is inside'
    else:
        return None
    return ('the scratch directory %s %s production\'s compose project %s: choose a dr_drill_work_dir outside production\'s directory '
            '(or another dr_drill_project_name)' % (project_src, what, production_project_src))


def free_loopback_port():
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def plan(production_project, scratch_name, work_dir, port, image, db_user, db_name, production=None, production_project_src=None):
    """The scratch stack (pure): names, port, image, where its compose file goes. ``port`` is already chosen."""
    return {
        'production_project': production_project,
        'production_project_src': production_project_src,
        'project_name': scratch_name,
        'project_src': os.path.join(work_dir, scratch_name),
        'compose_file': os.path.join(work_dir, scratch_name, COMPOSE_FILE),
        'container_name': scratch_name + '_db',
        'volume': scratch_name + '_' + VOLUME,
        'network': scratch_name + '_default',
        'port': port,
        'image': image,
        'db_user': db_user,
        'db_name': db_name,
        'service': SERVICE,
        'label': '%s=%s' % (SCRATCH_LABEL, production_project),
        'production': production,
    }


def isolation_problems(stack, production):
    """Sentences naming every way the scratch stack would share something with production (empty when isolated)."""
    problems = []
    if stack['project_name'] == stack['production_project'] or (production and stack['project_name'] == production.get('project')):
        problems.append('the scratch project name %s is production\'s: choose another dr_drill_project_name' % stack['project_name'])
    if production:
        if stack['container_name'] == production.get('name'):
            problems.append('the scratch container name %s is production\'s: choose another dr_drill_project_name' % stack['container_name'])
        if stack['volume'] in (production.get('volumes') or []):
            problems.append('the scratch volume %s is production\'s: choose another dr_drill_project_name' % stack['volume'])
        if stack['port'] in (production.get('ports') or []):
            problems.append('port %s is published by production: choose another dr_drill_port (0 picks a free one)' % stack['port'])
    return problems


def port_is_free(port, host='127.0.0.1'):
    """Whether ``host:port`` can be bound right now (nobody, production or not, listens on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _label_of(cmds, kind, name):
    """The scratch label of the container or volume ``name``, '' when it has none, None when it does not exist."""
    rc, out, dummy = cmds.docker([kind, 'inspect', '--format', '{{index %s "%s"}}' % (
        '.Config.Labels' if kind == 'container' else '.Labels', SCRATCH_LABEL), name])
    if rc != 0:
        return None
    value = out.strip()
    return '' if value == '<no value>' else value


def name_problems(cmds, stack):
    """Sentences about the scratch container and volume names when they exist and are not our leftovers.

    Read only, and independent of production's container (which may be down): whatever holds such a name is not ours.
    """
    problems = []
    for kind, name in (('container', stack['container_name']), ('volume', stack['volume'])):
        label = _label_of(cmds, kind, name)
        if label is not None and label != stack['production_project']:
            problems.append('a %s named %s exists and is not a scratch stack of %s: choose another dr_drill_project_name'
                            % (kind, name, stack['production_project']))
    return problems


def compose_definition(stack):
    """The scratch compose file as a dict: one db service, own volume, container name and loopback port, labelled."""
    labels = {SCRATCH_LABEL: stack['production_project']}
    return {
        'version': '3.8',
        'services': {
            SERVICE: {
                'image': stack['image'],
                'container_name': stack['container_name'],
                'environment': {
                    'POSTGRES_USER': stack['db_user'],
                    'POSTGRES_DB': stack['db_name'],
                    'POSTGRES_PASSWORD': '${POSTGRES_PASSWORD:-}',
                    'PGDATA': PGDATA,
                },
                'volumes': ['%s:/var/lib/postgresql/data' % VOLUME],
                'ports': ['127.0.0.1:%d:5432' % stack['port']],
                'stop_signal': 'SIGINT',
                'labels': dict(labels),
            },
        },
        'volumes': {VOLUME: {'labels': dict(labels)}},
        'networks': {'default': {'labels': dict(labels)}},
    }


def render_compose(stack):
    """The text of the scratch compose file (YAML: a comment, then the definition as JSON, which YAML reads as is)."""
    header = ('# Scratch stack of a DR drill of compose project %s, written by fleet_telemetry.dr.dr_scratch_stack.\n'
              '# Removed with its volume when the drill ends. POSTGRES_PASSWORD comes from the environment only.\n'
              % stack['production_project'])
    return header + json.dumps(compose_definition(stack), indent=2, sort_keys=True) + '\n'


def write_compose_file(stack, check_mode=False):
    """Create the scratch project's directory (0700) and write its compose file; return True when something changed."""
    directory = stack['project_src']
    created = not os.path.isdir(directory)
    if created and not check_mode:
        os.makedirs(directory, DIRECTORY_MODE)
    if check_mode and created:
        return True
    return write_if_changed(stack['compose_file'], render_compose(stack).encode('utf-8'), check_mode) or created


# --------------------------------------------------------------------------------------------
# Leftovers and teardown
# --------------------------------------------------------------------------------------------

def find_scratch(cmds, project_name):
    """Containers (names), volumes and networks of the compose project ``project_name``, each with whether it is ours."""
    found = {'containers': [], 'volumes': [], 'networks': []}
    for container in list_containers(cmds, project_name):
        found['containers'].append({'name': container['name'], 'id': container['id']})
    found['volumes'] = [{'name': name} for name in list_labelled(cmds, 'volume', project_name)]
    found['networks'] = [{'name': name} for name in list_labelled(cmds, 'network', project_name)]
    return found


def labelled_as_scratch(cmds, kind, name, production_project):
    """Whether the container, volume or network ``name`` carries our scratch label for ``production_project``."""
    fmt = '{{index .Config.Labels "%s"}}' if kind == 'container' else '{{index .Labels "%s"}}'
    rc, out, dummy = cmds.docker([kind, 'inspect', '--format', fmt % SCRATCH_LABEL, name])
    return rc == 0 and out.strip() == production_project


def foreign_objects(cmds, found, production_project):
    """The names in ``found`` that are not labelled as a scratch stack of ``production_project``."""
    foreign = []
    for kind, key in (('container', 'containers'), ('volume', 'volumes'), ('network', 'networks')):
        for item in found[key]:
            if not labelled_as_scratch(cmds, kind, item['name'], production_project):
                foreign.append('%s %s' % (kind, item['name']))
    return foreign


def is_empty(found):
    return not (found['containers'] or found['volumes'] or found['networks'])


def names(found):
    return [item['name'] for key in ('containers', 'volumes', 'networks') for item in found[key]]


def remove_found(cmds, found):
    """``docker rm -f`` the containers, then ``docker network rm`` and ``docker volume rm``; return the failures (sentences)."""
    failures = []
    steps = [(['rm', '-f', '-v'], found['containers']), (['network', 'rm'], found['networks']), (['volume', 'rm', '-f'], found['volumes'])]
    for args, items in steps:
        for item in items:
            rc, dummy, err = cmds.docker(args + [item.get('id') or item['name']])
            if rc != 0 and 'No such' not in (err or ''):
                failures.append('docker %s %s failed: %s' % (' '.join(args), item['name'], (err or '').strip().splitlines()[-1:] or rc))
    return failures


def check_paths(stack):
    """DrillError ``not_isolated`` when the scratch directory is, holds or lies inside production's compose project."""
    problem = path_problem(stack['project_src'], stack.get('production_project_src'))
    if problem:
        raise DrillError(problem, code='not_isolated')


def remove_work_dir(stack):
    """Remove the scratch compose file the drill wrote, then the (then empty) directory; never anything else.

    Return True when something was removed; DrillError ``teardown_failed`` when the directory holds other files.
    """
    directory = stack['project_src']
    if not os.path.isdir(directory):
        return False
    try:
        os.unlink(stack['compose_file'])
    except FileNotFoundError:
        pass
    try:
        os.rmdir(directory)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        raise DrillError('the scratch directory %s holds files the drill did not write (%s): they were left in place; remove them by hand'
                         % (directory, ', '.join(sorted(os.listdir(directory))[:5])), code='teardown_failed') from None
    return True


def scratch_commands(stack, runner=None, environ=None):
    """Commands of the scratch project; only the docker CLI is used (its compose file may be gone already)."""
    return commands(stack['project_src'], stack['project_name'], runner, environ)


def run_present(cmds, stack, check_mode=False):
    """Remove stale leftovers of an earlier drill (ours only), then write the compose file; return the result dict."""
    check_paths(stack)
    problems = isolation_problems(stack, stack['production'])
    if problems:
        raise DrillError(problems[0], code='not_isolated')
    found = find_scratch(cmds, stack['project_name'])
    result = dict(stack, changed=False, stale_removed=[])
    if not is_empty(found):
        foreign = foreign_objects(cmds, found, stack['production_project'])
        if foreign:
            raise DrillError('compose project %s already exists and is not a scratch stack of %s (%s): choose another dr_drill_project_name'
                             % (stack['project_name'], stack['production_project'], ', '.join(foreign)), code='not_ours')
    problems = name_problems(cmds, stack)
    if problems:
        raise DrillError(problems[0], code='not_isolated')
    if not is_empty(found):
        result['stale_removed'] = names(found)
        result['changed'] = True
        if not check_mode:
            failures = remove_found(cmds, found)
            if failures:
                raise DrillError('cannot remove the leftovers of an earlier drill: %s' % failures[0], code='teardown_failed')
    # In check mode leftovers may still hold the port; they would be removed first.
    if not (check_mode and result['stale_removed']) and not port_is_free(stack['port']):
        raise DrillError('port %s on 127.0.0.1 is in use: choose another dr_drill_port (0 picks a free one)' % stack['port'],
                         code='not_isolated')
    result['changed'] = write_compose_file(stack, check_mode) or result['changed']
    verb = 'would write' if check_mode else 'wrote'
    result['msg'] = '%s the scratch stack %s (image %s, container %s, volume %s, 127.0.0.1:%s)%s' % (
        verb, stack['compose_file'], stack['image'], stack['container_name'], stack['volume'], stack['port'],
        '; removed the leftovers of an earlier drill: %s' % ', '.join(result['stale_removed']) if result['stale_removed'] else '')
    return result


def run_absent(cmds, stack, check_mode=False):
    """Remove whatever of the scratch project is left (ours only) and its directory; prove nothing is left."""
    if stack['project_name'] == stack['production_project']:
        raise DrillError('the scratch project name %s is production\'s: nothing was removed; choose another dr_drill_project_name'
                         % stack['project_name'], code='not_isolated')
    check_paths(stack)
    found = find_scratch(cmds, stack['project_name'])
    result = dict(stack, changed=False, removed=names(found), left=[])
    if not is_empty(found):
        foreign = foreign_objects(cmds, found, stack['production_project'])
        if foreign:
            raise DrillError('compose project %s holds %s, which are not a scratch stack of %s: nothing was removed; remove them by hand'
                             % (stack['project_name'], ', '.join(foreign), stack['production_project']), code='not_ours')
        result['changed'] = True
        if not check_mode:
            remove_found(cmds, found)
    if os.path.isdir(stack['project_src']):
        result['changed'] = True
        if not check_mode:
            remove_work_dir(stack)
    if check_mode:
        result['msg'] = ('would remove %s of the scratch project %s' % (', '.join(result['removed']) or 'its directory', stack['project_name'])
                         if result['changed'] else 'nothing of the scratch project %s is left' % stack['project_name'])
        return result
    result['left'] = names(find_scratch(cmds, stack['project_name']))
    if result['left']:
        raise DrillError('the scratch project %s left %s behind: remove them with docker rm -f / docker volume rm / docker network rm'
                         % (stack['project_name'], ', '.join(result['left'])), code='teardown_failed')
    result['msg'] = ('removed %s of the scratch project %s; nothing of it is left' % (', '.join(result['removed']), stack['project_name'])
                     if result['removed'] else 'nothing of the scratch project %s is left' % stack['project_name'])
    return result
