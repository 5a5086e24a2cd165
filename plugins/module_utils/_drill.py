# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""DR drills: production's facts (read only) and the drill's summary - its steps, RTO, RPO and report data.

Internal to fleet_telemetry.dr: not a public API, it may change without notice.

Production is only read: ``docker ps``/``docker inspect`` of its db container (for the image and to
prove the scratch names differ from its names). Nothing here runs a command against it.

The scratch compose stack the drill restores into (planned, written and removed) is ``_scratch_stack``.
"""

from __future__ import annotations

import datetime
import json
import os

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import format_timestamp, parse_timestamp
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._compose_commands import (
    ComposeError,
    Commands,
    ComposeProject,
    effective_project_name,
    list_containers,
    resolved_project_name,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore_plan import rpo_seconds as restore_rpo_seconds
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore_plan import secret_sources

SERVICE = 'db'

# The drill's steps, in order: (mark that ends the step, name in the report).
STEPS = (
    ('leased', 'take the drill lease'),
    ('selected', 'select the artifact'),
    ('planned', 'plan the scratch stack'),
    ('up', 'start the scratch stack'),
    ('verified', 'restore and verify'),
)
TEARDOWN_STEP = 'tear down the scratch stack'
REPORT_SUBDIR = 'drill-reports'
HISTORY_NAME = 'drill_history.jsonl'


class DrillError(ComposeError):
    """A drill cannot go on; one sentence, a code (no_production, not_isolated, not_ours, teardown_failed, ...)."""


# --------------------------------------------------------------------------------------------
# Production (read only)
# --------------------------------------------------------------------------------------------

def inspect_container(cmds, container_id):
    """``docker inspect`` of one container: ``{id, name, image, project, volumes, ports}``."""
    rc, out, err = cmds.docker(['inspect', '--format', '{{json .}}', container_id])
    if rc != 0:
        raise DrillError('docker inspect %s failed: %s' % (container_id, (err or '').strip()), code='compose_failed', rc=rc)
    try:
        info = json.loads(out)
    except ValueError:
        raise DrillError('docker inspect %s gave no JSON' % container_id, code='compose_failed') from None
    return container_facts(info)


def container_facts(info):
    """The facts a drill needs from a ``docker inspect`` document (pure)."""
    config = info.get('Config') or {}
    labels = config.get('Labels') or {}
    volumes = sorted(m.get('Name') for m in info.get('Mounts') or [] if m.get('Type') == 'volume' and m.get('Name'))
    ports = set()
    for bindings in ((info.get('HostConfig') or {}).get('PortBindings') or {}).values():
        for binding in bindings or []:
            if str(binding.get('HostPort') or '').isdigit():
                ports.add(int(binding['HostPort']))
    return {
        'id': info.get('Id'),
        'name': (info.get('Name') or '').lstrip('/'),
        'image': config.get('Image'),
        'project': labels.get('com.docker.compose.project'),
        'volumes': volumes,
        'ports': sorted(ports),
    }


def production_facts(cmds, project_name, service=SERVICE):
    """Facts of production's db container, found by compose's labels (no compose command, so no interpolation of its file)."""
    containers = [c for c in list_containers(cmds, project_name) if c['service'] == service]
    if not containers:
        return None
    return inspect_container(cmds, containers[0]['id'])


def commands(project_src, project_name, runner=None, environ=None):
    """docker/compose commands of one compose project (``runner`` as ``_transport.run``, the default)."""
    project = ComposeProject(project_src, project_name=project_name)
    if runner is None:
        return Commands(project, environ=environ)
    return Commands(project, runner=runner, environ=environ)


def production_project_name(project_src, project_name=None, runner=None, environ=None):
    """Production's compose project name, as the compose command in use puts it in its labels (v2 also weighs the compose
    file's top-level ``name:``); ``project_name``, COMPOSE_PROJECT_NAME, ``.env`` and the directory otherwise.

    Without a compose file there (production's directory is gone, yet its drill's scratch stack must still be torn down)
    the name compose v1 would give.
    """
    project = ComposeProject(project_src, project_name=project_name)
    try:
        return resolved_project_name(project, runner=runner, environ=environ)
    except ComposeError as exc:
        if exc.code != 'no_project':
            raise
        return effective_project_name(project, environ=environ)


# --------------------------------------------------------------------------------------------
# The drill's report data
# --------------------------------------------------------------------------------------------

def _seconds_between(start, end):
    if start is None or end is None:
        return None
    return round(float(end) - float(start), 3)


def snapshot_age(manifest, at):
    """Age of the backup at ``at`` (epoch seconds), from its manifest's ``started_at``: the restore's RPO, one definition."""
    started = datetime.datetime.fromtimestamp(float(at), datetime.timezone.utc)
    return restore_rpo_seconds({'started_at': (manifest or {}).get('started_at')}, started)


def drill_steps(marks, failure=None, teardown=None):
    """The report's steps from the marks ``{mark: epoch seconds}`` the role records after each step.

    A step is ok when its mark exists; the first one without a mark failed (with the failure's message)
    when the drill failed, and the later ones did not run. The teardown is a step of its own.
    """
    steps = []
    previous = marks.get('started')
    for mark, name in STEPS:
        at = marks.get(mark)
        if at is not None:
            steps.append({'name': name, 'ok': True, 'seconds': _seconds_between(previous, at)})
            previous = at
            continue
        if failure:
            steps.append({'name': name, 'ok': False, 'seconds': None, 'msg': failure.get('msg') or 'failed'})
        break
    if teardown is not None:
        steps.append({'name': TEARDOWN_STEP, 'ok': bool(teardown.get('ok')),
                      'seconds': _seconds_between(marks.get('teardown_started'), marks.get('torn_down')), 'msg': teardown.get('msg')})
    return steps


def report_data(marks, artifact=None, stack=None, restore=None, failure=None, teardown=None, database=None, source=None):
    """The ``data`` of dr_report for a drill, from the results of its steps (no secrets in any of them)."""
    artifact = artifact or {}
    restore = restore or {}
    stack = stack or {}
    manifest = artifact.get('manifest') or restore.get('manifest') or {}
    steps = drill_steps(marks, failure, teardown)
    failed_steps = [step for step in steps if not step['ok']]
    passed = not failed_steps and marks.get('verified') is not None
    data = {
        'status': 'passed' if passed else 'failed',
        'started_at': format_timestamp_epoch(marks.get('started')),
        'finished_at': format_timestamp_epoch(marks.get('finished') or marks.get('torn_down') or marks.get('verified')),
        'rto_seconds': _seconds_between(marks.get('started'), marks.get('verified')),
        'rpo_seconds': snapshot_age(manifest, marks['started']) if marks.get('started') is not None else None,
        'database': database or manifest.get('database'),
        'steps': steps,
    }
    if artifact.get('path'):
        data['artifact'] = {'path': artifact.get('path'), 'size': artifact.get('size'), 'sha256': artifact.get('sha256'),
                            'dump_format': artifact.get('dump_format'), 'started_at': manifest.get('started_at'),
                            'finished_at': manifest.get('finished_at')}
    if (source or {}).get('location'):
        data['source'] = {'target': source.get('target'), 'location': source['location']}
    if stack.get('project_name'):
        data['target'] = {'project_name': stack.get('project_name'), 'container_name': stack.get('container_name'),
                          'volume': stack.get('volume'), 'port': stack.get('port'), 'image': stack.get('image')}
    if restore.get('tables') is not None:
        data['tables'] = restore['tables']
    if restore.get('photos') is not None:
        photos = restore['photos']
        data['photos'] = {'checked': photos.get('checked'), 'failed': photos.get('failed'), 'total': photos.get('total')}
    if restore.get('restore_client'):
        data['restore_client'] = restore['restore_client']
    data.update(secret_sources(restore))
    if failed_steps:
        data['failed_step'] = failed_steps[0]['name']
        data['msg'] = failed_steps[0].get('msg') or 'the drill failed'
        if failure and failure.get('error_code'):
            data['error_code'] = failure['error_code']
    else:
        data['msg'] = restore.get('msg') or 'the drill passed'
    return data


def format_timestamp_epoch(value):
    """ISO 8601 UTC of epoch seconds, or None."""
    if value is None:
        return None
    return format_timestamp(datetime.datetime.fromtimestamp(float(value), datetime.timezone.utc))


def report_location(started, backup_dir, report_dir=None, history=None):
    """``{report_name, report_dir, history_path}`` of a drill that started at ``started`` (epoch seconds).

    The name is ``drill_<UTC start, %Y-%m-%d_%H-%M-%S>``; the directory ``report_dir``, else ``<backup_dir>/drill-reports``;
    the history ``history``, else ``<report dir>/drill_history.jsonl``.
    """
    if not (report_dir or backup_dir):
        raise DrillError('the drill report needs a directory: set backup_dir (fleet_dr_backup_dir) or report_dir (dr_drill_report_dir)',
                         code='bad_option')
    directory = report_dir or os.path.join(backup_dir, REPORT_SUBDIR)
    when = datetime.datetime.fromtimestamp(float(started), datetime.timezone.utc)
    return {'report_name': 'drill_%s' % when.strftime('%Y-%m-%d_%H-%M-%S'), 'report_dir': directory,
            'history_path': history or os.path.join(directory, HISTORY_NAME)}


# The registered result of each step, by key, and the mark its end sets (the role declares its steps by these keys).
RESULT_MARKS = (('lease', 'leased'), ('artifact', 'selected'), ('stack', 'planned'), ('up', 'up'), ('restore', 'verified'))
TEARDOWN_RESULTS = ('down', 'cleanup')
RESULT_KEYS = tuple(key for key, dummy in RESULT_MARKS) + TEARDOWN_RESULTS
# The variable the drill role registers each of them in (read by the dr_drill_summary action): the role declares nothing
# else about its steps.
REGISTERED = {'lease': '_dr_drill_lease', 'artifact': '_dr_drill_artifact', 'stack': '_dr_drill_stack', 'up': '_dr_drill_up',
              'restore': '_dr_drill_restore', 'down': '_dr_drill_down', 'cleanup': '_dr_drill_cleanup'}


def _epoch(result, key):
    value = (result or {}).get(key)
    if not value:
        return None
    try:
        return parse_timestamp(value).timestamp()
    except ValueError:
        raise DrillError('%s %r of a step is not an ISO 8601 UTC time stamp' % (key, value), code='bad_option') from None


def marks_from_results(results):
    """The marks ``{mark: epoch seconds}`` from the steps' own ``started_at``/``finished_at`` (one clock, the host's).

    The drill starts when the lease step started; a step that ran and did not fail ends at its ``finished_at``; the teardown
    runs from the start of ``down -v`` (or of the cleanup) to the end of the cleanup (or of ``down -v``).
    """
    unknown = sorted(key for key in results if key not in RESULT_KEYS)
    if unknown:
        raise DrillError('results holds %s: the drill\'s steps are %s' % (', '.join(unknown), ', '.join(RESULT_KEYS)), code='bad_option')
    marks = {}
    started = _epoch(results.get('lease'), 'started_at')
    if started is not None:
        marks['started'] = started
    for key, mark in RESULT_MARKS:
        result = results.get(key) or {}
        if not result.get('failed') and not result.get('skipped'):
            at = _epoch(result, 'finished_at')
            if at is not None:
                marks[mark] = at
    down, cleanup = results.get('down') or {}, results.get('cleanup') or {}
    for mark, first, second, key in (('teardown_started', down, cleanup, 'started_at'), ('torn_down', cleanup, down, 'finished_at')):
        at = _epoch(first, key) if not first.get('skipped') else None
        if at is None and not second.get('skipped'):
            at = _epoch(second, key)
        if at is not None:
            marks[mark] = at
    return marks


def summary(params):
    """The result of dr_drill_summary: the report data, its status and message, and where the report goes."""
    marks = marks_from_results(params['results'])
    if marks.get('started') is None:
        raise DrillError('results must hold the lease step\'s result with its started_at: the drill\'s start', code='bad_option')
    data = report_data(marks, artifact=params.get('artifact'), stack=params.get('stack'), restore=params.get('restore'),
                       failure=params.get('failure'), teardown=params.get('teardown'), database=params.get('database'),
                       source=params.get('source'))
    result = dict(changed=False, status=data['status'], data=data, msg=data['msg'])
    result.update(report_location(marks['started'], params.get('backup_dir') or '', params.get('report_dir'), params.get('history')))
    return result
