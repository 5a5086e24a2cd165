#!/usr/bin/python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_retention
short_description: Prune backups by a GFS policy (daily, weekly, monthly), locally or at an offsite target
version_added: 0.1.0
description:
  - Keeps the newest backup of each of the O(daily) most recent UTC days that have a backup, of the O(weekly) most recent
    ISO weeks and of the O(monthly) most recent months (the rule of restic's C(--keep-daily) and friends), by the
    backup's snapshot time (the manifest's C(started_at)), and deletes the other backups - in O(backup_dir), or at
    O(target).
  - Never deletes the newest verified backup, nor O(protect) (the backup this run just made). When O(protect) is not a
    verified backup of the place, nothing is deleted and the task fails (RV(error_code=retention_skipped)) - run it only
    after a backup verified.
  - Only complete, verified backups are managed - a manifest that validates and describes the artifact, whose size matches.
    Anything else (a dump without a manifest, an unreadable manifest, a backup the policy cannot date, a backup dated in the
    future) is kept and left alone.
  - O(keep_last) instead keeps the newest N backups of the place (for the safety dumps restores leave).
  - A backup under S3 Object Lock (a retain-until date in the future, or a legal hold) is reported in RV(locked) and not
    deleted, nor tried.
  - Each deletion removes the manifest first, then the artifact.
  - At an S3 target with O(target.object_lock_mode), a backup kept as the newest of its ISO week or month gets the longer
    Object Lock of its class (O(target.object_lock_weekly_days), O(target.object_lock_monthly_days)) after its snapshot
    time, on the artifact and its manifest; a lock is only ever extended (RV(lock_extended)).
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - fleet_telemetry.dr._attributes
  - fleet_telemetry.dr._offsite_target
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    details:
      - Lists what it would delete, each with its reason (RV(delete)), and deletes nothing.
  diff_mode:
    support: full
    details:
      - One line per backup, newest first, with the reasons it is kept; each deletion is a removed line with its reason.
  idempotent:
    support: full
options:
  backup_dir:
    description: The local backup directory to prune (one of O(backup_dir) and O(target)).
    type: path
  missing_ok:
    description: A O(backup_dir) that does not exist holds nothing to prune (else the task fails).
    type: bool
    default: false
  database:
    description: Only backups of this database (the manifest's C(database)).
    type: str
  prefix:
    description: Only artifacts whose name starts with this prefix (V(backup), V(safety)); all when unset.
    type: str
  protect:
    description: The name of the backup this run made and verified; always kept, and required to be a verified backup there.
    type: str
  daily:
    description: Days with a backup to keep the newest backup of (O(target.retention) takes precedence).
    type: int
    default: 7
  weekly:
    description: ISO weeks with a backup to keep the newest backup of.
    type: int
    default: 4
  monthly:
    description: Months with a backup to keep the newest backup of.
    type: int
    default: 0
  keep_last:
    description: Keep the newest O(keep_last) backups and delete the rest, instead of the GFS buckets.
    type: int
"""

EXAMPLES = r"""
- name: Keep 7 daily and 4 weekly backups in the backup directory, after tonight's backup verified
  fleet_telemetry.dr.backup_retention:
    backup_dir: /var/backups/fleet-telemetry
    database: telemetry_db
    protect: "{{ fleet_dr_last_backup.path | basename }}"

- name: Show what 30 daily and 12 monthly backups would delete in the bucket
  fleet_telemetry.dr.backup_retention:
    target: "{{ fleet_dr_offsite_targets[0] }}"
    daily: 30
    weekly: 0
    monthly: 12
  check_mode: true
  diff: true
"""

RETURN = r"""
started_at:
  description: When the module started on the host (ISO 8601 UTC, the host's clock), for the step records of a run.
  returned: always
  type: str
  sample: "2026-12-06T03:00:00.123456Z"
finished_at:
  description: When the module ended, success or failure (ISO 8601 UTC, the host's clock).
  returned: always
  type: str
  sample: "2026-12-06T03:00:19.654321Z"
where:
  description: The place pruned (the directory, or the target's label).
  returned: always
  type: str
keep:
  description: The backups kept, newest first, each with C(name), C(started_at) and C(reasons).
  returned: success
  type: list
  elements: dict
delete:
  description: The backups deleted (or, in check mode, that would be), each with C(name), C(started_at) and C(reason).
  returned: success
  type: list
  elements: dict
locked:
  description: Backups the policy would delete that are under Object Lock, left in place, each with its C(reason).
  returned: success
  type: list
  elements: dict
lock_extended:
  description:
    - The backups whose Object Lock was extended to their retention class's (or, in check mode, would be), each with
      C(name) and the new C(locked_until).
  returned: success
  type: list
  elements: dict
errors:
  description: Deletions that failed, each with C(name) and C(msg) (the task fails when there is one).
  returned: always
  type: list
  elements: dict
msg:
  description: One sentence.
  returned: always
  type: str
error_code:
  description: V(retention_skipped) (O(protect) is not a verified backup there), V(retention_failed) (a deletion failed), or a target's codes.
  returned: failure
  type: str
"""

import os

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import format_timestamp, utc_now
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.params import make_target, target_argument_spec
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._results import fail_with, timed
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._retention import plan_retention, plan_safety_dumps, retention_diff
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._retention_apply import (
    apply_plan,
    extend_locks,
    local_backups,
    lock_extensions,
    local_remover,
    target_backups,
    target_remover,
)

COUNTS = ('daily', 'weekly', 'monthly')


def place(module, params):
    """``(where, backups, remove, target)`` of the place to prune: the local directory (target None) or the target."""
    if params['backup_dir'] is not None:
        directory = params['backup_dir']
        if not os.path.isdir(directory) and not params['missing_ok']:
            raise FleetDrError('backup_dir %s is not a directory: point it at the directory of the backups' % directory,
                               code='bad_option')
        return directory, local_backups(directory, params['database'], params['prefix']), local_remover(directory), None
    target = make_target(module, params['target'])
    backups = target_backups(target, params['database'], now=utc_now())
    if params['prefix']:
        backups = [backup for backup in backups if backup['name'].startswith(params['prefix'])]
    return target.label, backups, target_remover(target), target


def plan(params, backups, where):
    """The plan for ``backups``: keep_last, or GFS with the target's own counts before the module's."""
    now = utc_now()
    if params['keep_last'] is not None:
        return plan_safety_dumps(backups, keep=params['keep_last'], protect=params['protect'], now=now)
    own = (params['target'] or {}).get('retention') or {}
    counts = dict((kind, own[kind] if own.get(kind) is not None else params[kind]) for kind in COUNTS)
    return plan_retention(backups, now, protect=params['protect'], where=where, **counts)


def lock_work(target, options, planned, check_mode):
    """The keepers whose Object Lock retention class (weekly, monthly) asks for a longer lock, extended (or, in check mode,
    listed)."""
    if target is None or target.kind != 's3' or not options.get('object_lock_mode'):
        return []
    wanted = lock_extensions(planned, {'weekly': options['object_lock_weekly_days'], 'monthly': options['object_lock_monthly_days']})
    if check_mode:
        return [{'name': name, 'locked_until': format_timestamp(until)} for name, until in wanted]
    return extend_locks(target, options['object_lock_mode'], wanted)


def summary(where, planned, done, check_mode):
    verb = 'would delete' if check_mode else 'deleted'
    deleted = planned['delete'] if check_mode else done['deleted']
    text = '%s: kept %d backup(s), %s %d' % (where, len(planned['keep']), verb, len(deleted))
    if done['locked']:
        text += ', %d under Object Lock left in place' % len(done['locked'])
    return text


def main():
    spec = dict(backup_dir=dict(type='path'), missing_ok=dict(type='bool', default=False), database=dict(type='str'),
                prefix=dict(type='str'), protect=dict(type='str'), daily=dict(type='int', default=7),
                weekly=dict(type='int', default=4), monthly=dict(type='int', default=0), keep_last=dict(type='int'))
    spec.update(target_argument_spec(required=False))
    module = AnsibleAWSModule(argument_spec=spec, supports_check_mode=True, check_boto3=False,
                              mutually_exclusive=[('backup_dir', 'target')], required_one_of=[('backup_dir', 'target')])
    timed(module)
    params = module.params
    where = params['backup_dir'] or None
    try:
        where, backups, remove, target = place(module, params)
        planned = plan(params, backups, where)
        done = {'deleted': [], 'locked': planned['locked'], 'errors': []} if module.check_mode else apply_plan(planned, remove)
        extended = lock_work(target, params['target'] or {}, planned, module.check_mode)
    except FleetDrError as exc:
        fail_with(module, exc, where=where, errors=[])
    deleted = planned['delete'] if module.check_mode else done['deleted']
    result = dict(changed=bool(deleted or extended), where=where, keep=planned['keep'], delete=deleted, locked=done['locked'],
                  lock_extended=extended, errors=done['errors'], msg=summary(where, planned, done, module.check_mode))
    if module._diff:
        result['diff'] = retention_diff(planned, where)
    if done['errors']:
        result.update(error_code='retention_failed', msg='%s; %s' % (result['msg'], done['errors'][0]['msg']))
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
