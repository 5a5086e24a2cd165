# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The decisions of the restore role, as plain functions over the results of its steps. Internal to fleet_telemetry.dr.

* ``safety_decision``: take a safety dump of the current database, go on without one, or stop - from the reachability
  check of the database and what ``down -v`` would remove;
* ``recovery_text``: how to get back after a failure (the safety dump and the exact command that restores it);
* ``build_report``: the report data for ``dr_report``, the failure message, and the ``set_stats`` facts.

Safety dumps live in the ``safety/`` subdirectory of the backup directory (the role puts them there), named ``safety_<time>...``.
Selecting the newest backup (``_verification.newest_verified``) only looks at the backup directory itself, so a safety dump is
never taken for the newest backup; it is restored only when named.
"""

from __future__ import annotations

import os
import shlex

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import format_timestamp, parse_timestamp, utc_now
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError

REPORT_SUBDIR = 'reports'
HISTORY_NAME = 'restore_history.jsonl'
# Codes of pg_logical_backup (through _transport.classify_error) that mean "the database does not answer", as opposed to a
# database that answers but refuses (auth_failed, no_role, no_database ...), which is a setting to fix.
UNREACHABLE_CODES = ('db_down', 'container_down')
UNREACHABLE_POLICIES = ('continue', 'stop', 'force')
DEFAULT_PLAYBOOK = 'playbooks/restore.yml'

# The steps of the role, in order: (key of the results, name in the report). The key preflight runs while the safety
# dump (started after the safety check) runs; "safety dump" is the wait for it.
STEPS = (
    ('fetch', 'download from offsite'),
    ('artifact', 'pick and verify the artifact'),
    ('confirm', 'confirmation'),
    ('safety_plan', 'safety check'),
    ('preflight', 'key preflight'),
    ('safety', 'safety dump'),
    ('down', 'down -v'),
    ('up_db', 'start the database'),
    ('restore', 'restore and verify'),
    ('up_all', 'start the stack'),
)
DESTRUCTIVE_STEPS = ('down', 'up_db', 'restore', 'up_all')


class PlanError(FleetDrError):
    """A refusal: one sentence, a code."""

    code = 'refused'


def report_dir(backup_dir, configured=None):
    return configured or os.path.join(backup_dir, REPORT_SUBDIR)


def report_name(started_at):
    """``restore_YYYY-MM-DD_HH-MM-SS`` of the start time (UTC)."""
    return 'restore_%s' % started_at.strftime('%Y-%m-%d_%H-%M-%S')


# --------------------------------------------------------------------------------------------
# The safety dump
# --------------------------------------------------------------------------------------------

def other_volumes_problem(other_volumes, allowed=False, orphans=()):
    """Refuse (PlanError ``other_volumes``) when ``down -v`` would also remove volumes the database service does not mount,
    which no safety dump saves, unless ``allowed``; else return the sentence for the note and report, or None."""
    other_volumes = list(other_volumes or [])
    orphans = list(orphans or [])
    parts = []
    if other_volumes:
        parts.append('volume(s) %s of other services' % ', '.join(other_volumes))
    if orphans:
        parts.append('container(s) %s not in the compose file (--remove-orphans)' % ', '.join(orphans))
    if not parts:
        return None
    what = 'down -v also removes %s, which no safety dump saves' % ' and '.join(parts)
    if other_volumes and not allowed:
        raise PlanError('%s: back them up or move them out of the project, or set restore_remove_other_volumes=true to remove '
                        'them; nothing was changed' % what, code='other_volumes')
    return what


def safety_decision(db_check, volumes, policy='continue', mounts=()):
    """Decide about the safety dump; return ``{take, reachable, note}`` or raise PlanError.

    ``db_check`` is the result of pg_logical_backup's check-mode preflight against the current database; ``volumes`` are the
    named volumes ``down -v`` would remove; ``mounts`` the other places that hold the database's cluster (a bind mount, an
    external or anonymous volume: ``compose_project``'s ``data_mounts``), whose data the restore would replace. The database
    answers: take the dump. It does not answer (db_down, container_down): with nothing to destroy (no volume, no mount)
    there is nothing to save and the restore goes on (``continue``, the default); when a volume or mount exists, its data
    could be lost without a safety dump, so ``continue`` stops and only ``force`` goes on; ``stop`` never goes on without a
    safety dump. Any other failure of the check (wrong password, missing database ...) is a setting to fix: stop.
    """
    if policy not in UNREACHABLE_POLICIES:
        raise PlanError('restore_unreachable must be one of %s, not %s' % (', '.join(UNREACHABLE_POLICIES), policy), code='bad_option')
    db_check = db_check or {}
    volumes = list(volumes or [])
    if not (db_check.get('failed') or db_check.get('error_code') or db_check.get('free_space_problem')):
        return {'take': True, 'reachable': True, 'note': 'the current database answers: a safety dump is taken before anything is removed'}
    if db_check.get('free_space_problem') and not db_check.get('error_code'):
        raise PlanError('no room for the safety dump: %s; free space there, nothing was changed' % db_check['free_space_problem'],
                        code='disk_full')
    code = db_check.get('error_code')
    reason = db_check.get('msg') or 'no message'
    if code not in UNREACHABLE_CODES:
        raise PlanError('the current database cannot be saved before the restore (%s): fix that setting and run again; nothing was '
                        'changed' % reason, code='safety_check_failed')
    if policy == 'stop':
        raise PlanError('the current database does not answer (%s), so no safety dump can be taken, and restore_unreachable=stop: '
                        'start the database, or set restore_unreachable=continue; nothing was changed' % reason, code='unreachable')
    data = ['volume %s' % v for v in volumes] + list(mounts or [])
    if data and policy != 'force':
        raise PlanError('the current database does not answer (%s) but its data still exists (%s) and the restore would destroy '
                        'it without a safety dump: start the database (docker compose up -d db) so that one can be taken, or set '
                        'restore_unreachable=force to restore without one; nothing was changed' % (reason, ', '.join(data)),
                        code='unreachable')
    if data:
        note = ('the current database does not answer (%s); restore_unreachable=force: no safety dump, its data (%s) is '
                'replaced without one' % (reason, ', '.join(data)))
    else:
        note = ('the current database does not answer (%s) and no volume or mount of it holds data: nothing to save, no safety '
                'dump' % reason)
    return {'take': False, 'reachable': False, 'note': note}


# --------------------------------------------------------------------------------------------
# Recovery
# --------------------------------------------------------------------------------------------

def restore_command(artifact, inventory=None, playbook=None, limit=None):
    """The exact command that restores ``artifact`` with this playbook (arguments quoted for a POSIX shell).

    It is given after ``down -v``, when the stack's volume holds only a new, empty or half-restored database that a
    safety dump need not save: ``restore_unreachable=force`` lets it go on when that database does not answer.
    """
    argv = ['ansible-playbook']
    if inventory:
        argv += ['-i', inventory]
    argv.append(playbook or DEFAULT_PLAYBOOK)
    if limit:
        argv += ['-l', limit]
    argv += ['-e', 'restore_artifact=%s' % artifact, '-e', 'restore_confirm=true', '-e', 'restore_unreachable=force']
    return ' '.join(shlex.quote(arg) for arg in argv)


def recovery_text(destroyed, safety_dump=None, artifact=None, inventory=None, playbook=None, limit=None):
    """How to get back, or None before anything was destroyed."""
    if not destroyed:
        return None
    if safety_dump:
        return ('the database before this restore is saved in the safety dump %s; to bring it back run: %s '
                '(with the same variables as this run; in AWX relaunch the job template with restore_artifact=%s, '
                'restore_confirm=true and restore_unreachable=force)' % (safety_dump, restore_command(safety_dump, inventory, playbook, limit), safety_dump))
    if artifact:
        return ('no safety dump was taken (there was nothing to save); fix the cause and restore again with: %s '
                '(with the same variables as this run)' % restore_command(artifact, inventory, playbook, limit))
    return 'no safety dump was taken (there was nothing to save); fix the cause and run the restore again'


def stack_start_text(project_src, safety_path=None):
    """When only starting the rest of the stack failed: the data is back, the services are not."""
    text = ('The database was restored and verified; start the rest of the stack by hand (docker compose up -d, or docker-compose '
            'up -d, in %s)' % project_src)
    if safety_path:
        text += '; the database from before the restore is in the safety dump %s' % safety_path
    return text


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------

def _ran(result):
    return isinstance(result, dict) and bool(result) and not result.get('skipped')


def step_seconds(key, result):
    """How long a step took: the module's own measure where it has one, else its ``finished_at`` minus ``started_at``."""
    if not _ran(result):
        return None
    timings = result.get('timings') or {}
    if key in ('safety', 'preflight', 'restore') and timings.get('total_seconds') is not None:
        return timings['total_seconds']
    if key == 'up_db' and result.get('ready_seconds') is not None:
        return result['ready_seconds']
    try:
        return _seconds_between(parse_timestamp(result['started_at']), parse_timestamp(result['finished_at']))
    except (KeyError, TypeError, ValueError):
        return None


def steps_of(results, failed_step=None, failed_msg=None, confirmed=None):
    """The report's steps: ``{name, ok, seconds, msg}`` of each step that ran (or failed), in order."""
    steps = []
    for key, name in STEPS:
        result = results.get(key)
        if key == 'confirm':
            if confirmed is None and failed_step != key:
                continue
            ok = failed_step != key and bool(confirmed)
            steps.append({'name': name, 'ok': ok, 'seconds': None,
                          'msg': failed_msg if failed_step == key else ('restore_confirm is set' if ok else 'not confirmed')})
            continue
        if not _ran(result) and failed_step != key:
            continue
        result = result if isinstance(result, dict) else {}
        failed = bool(result.get('failed')) or failed_step == key
        msg = failed_msg if failed_step == key and failed_msg else result.get('msg')
        steps.append({'name': name, 'ok': not failed, 'seconds': step_seconds(key, result), 'msg': msg})
    return steps


def _seconds_between(start, end):
    return round((end - start).total_seconds(), 3)


def _artifact_facts(artifact):
    artifact = artifact or {}
    manifest = artifact.get('manifest') or {}
    facts = dict((k, artifact.get(k)) for k in ('path', 'size', 'sha256', 'dump_format', 'kind'))
    facts['started_at'] = manifest.get('started_at')
    return facts


def rpo_seconds(artifact, now):
    """Age of the backup at the restore (from its manifest's start time), or None (a runbook dump has no manifest)."""
    started = (artifact or {}).get('started_at')
    if not started:
        return None
    try:
        return _seconds_between(parse_timestamp(started), now)
    except ValueError:
        return None


# What a report says of where the key and the identity came from (a report never has a key named like a secret).
_SOURCE_FIELDS = (('from', 'from'), ('secret_id', 'vault'), ('version_id', 'version_id'), ('stages', 'stages'),
                  ('fingerprint', 'fingerprint'), ('path', 'path'), ('recipients', 'recipients'))


def secret_sources(result):
    """``key_source`` and ``identity_source`` of a pg_restore_verify result for a report: which vault version (``vault``,
    ``version_id``, ``stages``) or file gave the key and the age identity, with their fingerprints."""
    result = result if _ran(result) else {}
    sources = {}
    for name in ('key_source', 'identity_source'):
        source = result.get(name)
        if isinstance(source, dict):
            sources[name] = dict((to, source[field]) for field, to in _SOURCE_FIELDS if source.get(field) is not None)
    return sources


def find_failed_step(results, failed_task=None):
    """The key of the first step whose registered result failed; else the failed task's name; None when nothing failed."""
    for key, dummy in STEPS:
        result = results.get(key)
        if isinstance(result, dict) and result.get('failed'):
            return key
    return failed_task or None


def build_report(results, started_at, check_mode=False, failed_step=None, failed_msg=None, confirmed=None, database=None,
                 target=None, inventory=None, playbook=None, limit=None, now=None, backup_dir=None, configured_report_dir=None,
                 history=True):
    """The report data, the failure message (with the recovery), and the set_stats facts of a restore run.

    ``results`` maps the keys of ``STEPS`` to the registered results of the role's tasks.
    ``failed_step`` is the key of the step that failed (or the failed task's name), None for a passed run.
    """
    now = now or utc_now()
    started = parse_timestamp(started_at) if isinstance(started_at, str) else started_at
    artifact = _artifact_facts(results.get('artifact'))
    safety = results.get('safety_check') if check_mode else results.get('safety')
    safety = safety if _ran(safety) and not safety.get('failed') and not safety.get('error_code') else None
    safety_path = safety.get('path') if safety and not check_mode else None
    destroyed = (not check_mode) and any(_ran(results.get(key)) or failed_step == key for key in DESTRUCTIVE_STEPS)
    restored = results.get('restore') if _ran(results.get('restore')) else {}
    failed_step_name = dict(STEPS).get(failed_step, failed_step)
    recovery = recovery_text(destroyed and bool(failed_step), safety_path, artifact.get('path'), inventory, playbook, limit) \
        if failed_step else None

    data = {
        'status': 'failed' if failed_step else 'passed',
        'started_at': format_timestamp(started),
        'finished_at': format_timestamp(now),
        'database': database,
        'target': dict(target or {}),
        'artifact': artifact,
        'steps': steps_of(results, failed_step, failed_msg, confirmed),
        'check_mode': bool(check_mode),
    }
    fetched = results.get('fetch')
    if _ran(fetched) and fetched.get('location'):
        data['source'] = {'target': fetched.get('target'), 'location': fetched['location']}
    rpo = rpo_seconds(artifact, started)
    if rpo is not None:
        data['rpo_seconds'] = rpo
    if restored.get('tables') is not None:
        data['tables'] = restored['tables']
    if restored.get('photos') is not None:
        data['photos'] = dict((k, restored['photos'].get(k)) for k in ('checked', 'failed', 'total'))
    if restored.get('restore_client'):
        data['restore_client'] = restored['restore_client']
    data.update(secret_sources(results.get('preflight')))
    if not failed_step and not check_mode:
        data['rto_seconds'] = _seconds_between(started, now)
    if safety_path:
        data['safety_dump'] = {'path': safety_path, 'sha256': safety.get('sha256')}
    safety_plan = results.get('safety_plan')
    if _ran(safety_plan) and safety_plan.get('note'):
        data['safety_note'] = safety_plan['note']
    if _ran(safety_plan) and safety_plan.get('also_removed'):
        data['also_removed'] = safety_plan['also_removed']

    if failed_step:
        what = 'the restore failed at step "%s": %s' % (failed_step_name, failed_msg or 'no message')
        if failed_step == 'up_all' and _ran(restored) and not restored.get('failed'):
            recovery = stack_start_text((target or {}).get('project_src'), safety_path)
            msg = '%s. %s' % (what, recovery)
            data['recovery'] = recovery
        elif recovery:
            msg = '%s. The database was already removed: %s' % (what, recovery)
            data['recovery'] = recovery
        else:
            msg = '%s. Nothing was changed: the current database is untouched' % what
        data['failed_step'] = failed_step_name
    elif check_mode:
        msg = 'check mode: would restore %s into %s%s' % (
            artifact.get('path'), database, ', after a safety dump of the current database' if safety else ' without a safety dump')
        if not confirmed:
            msg += '; a real run needs restore_confirm=true'
    else:
        counts = ', '.join('%s=%s' % (t.get('table'), t.get('actual')) for t in data.get('tables', []))
        msg = 'restored and verified %s from %s (%s; %s photo(s) decrypt) in %.1f s' % (
            database, artifact.get('path'), counts or 'no counts', (data.get('photos') or {}).get('checked'), data['rto_seconds'])
    data['msg'] = msg

    stats = {
        'fleet_dr_restore_status': data['status'],
        'fleet_dr_restore_artifact': artifact.get('path'),
        'fleet_dr_restore_row_counts': dict((t.get('table'), t.get('actual')) for t in data.get('tables', [])),
        'fleet_dr_restore_rto_seconds': data.get('rto_seconds'),
        'fleet_dr_restore_safety_dump': safety_path,
    }
    reports = report_dir(backup_dir, configured_report_dir) if (backup_dir or configured_report_dir) else None
    return {'data': data, 'msg': msg, 'recovery': recovery, 'stats': stats, 'name': report_name(started),
            'status': data['status'], 'destroyed': destroyed, 'report_dir': reports,
            'history_path': os.path.join(reports, HISTORY_NAME) if reports and history else None}


# The keys of ``results`` the report reads: every step's registered result, and the safety check's.
RESULT_KEYS = tuple(key for key, dummy in STEPS) + ('safety_check',)
# The variable the restore role registers each of them in (read by the restore_report action): the role declares
# nothing else about its steps.
REGISTERED = {
    'fetch': '_restore_fetch', 'artifact': '_restore_artifact', 'preflight': '_restore_preflight', 'confirm': '_restore_confirm',
    'safety_check': '_restore_db_check', 'safety_plan': '_restore_safety_plan', 'safety': '_restore_safety',
    'down': '_restore_down', 'up_db': '_restore_up_db', 'restore': '_restore_result', 'up_all': '_restore_up_all',
}


def results_problem(results):
    """A sentence when the role's ``results`` do not name exactly the steps of ``STEPS`` (and the safety check), else None."""
    missing = [key for key in RESULT_KEYS if key not in results]
    unknown = sorted(key for key in results if key not in RESULT_KEYS)
    if not (missing or unknown):
        return None
    return ('the restore report got results for %s: they must be exactly %s%s%s' % (
        ', '.join(sorted(results)) or 'no step', ', '.join(RESULT_KEYS),
        '; missing %s' % ', '.join(missing) if missing else '', '; unknown %s' % ', '.join(unknown) if unknown else ''))


def safety_plan(args):
    """The result of the role's ``restore_safety`` task: take a safety dump, go on without one, or stop (``args`` are the
    task's validated arguments)."""
    also_removed = other_volumes_problem(args['other_volumes'], args['remove_other_volumes'], args['orphans'])
    decision = safety_decision(args['db_check'], args['volumes'], args['unreachable'], mounts=args['mounts'])
    if also_removed:
        decision['note'] = '%s; %s' % (decision['note'], also_removed)
    return dict(decision, msg=decision['note'], also_removed=also_removed)


def report_plan(args, check_mode=False, now=None):
    """The result of the role's ``restore_report`` task: the report, the way back after a failure, the set_stats facts."""
    problem = results_problem(args['results'])
    if problem:
        raise PlanError(problem, code='bad_option')
    failed_step = find_failed_step(args['results'], args['failed_task'] or 'unknown') if args['failed'] else None
    try:
        return build_report(args['results'], args['started_at'], check_mode=check_mode, failed_step=failed_step,
                            failed_msg=args['failed_msg'], confirmed=args['confirmed'], database=args['database'],
                            target=args['target'], inventory=args['inventory'], playbook=args['playbook'], limit=args['limit'],
                            now=now, backup_dir=args['backup_dir'], configured_report_dir=args['report_dir'],
                            history=args['history'])
    except ValueError as exc:
        raise PlanError('started_at: %s' % exc, code='bad_option') from None
