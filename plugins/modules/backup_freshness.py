#!/usr/bin/python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_freshness
short_description: Report how fresh the backups, their offsite copies and the last DR drill are, and write them as Prometheus metrics
version_added: 0.1.0
description:
  - Finds the newest verified backup of each database in O(backup_dir) and at each of O(targets), and the last DR drill in
    O(drill_history), and reports their age, size and row counts, the drill's status, RTO and RPO, and how far each offsite
    target lags.
  - Verified means what M(fleet_telemetry.dr.backup_retention) means - a manifest that validates and describes the artifact,
    whose size matches. The checksum is not recomputed (the backup run verified it; use M(fleet_telemetry.dr.pg_artifact_verify)
    for that), so a check costs a listing and a few small reads, also at an offsite target.
  - Fails, naming every problem in one sentence each (RV(problems)), when the newest verified backup of a database is older
    than O(max_backup_age) or missing, when the last drill failed, is older than O(max_drill_age) or missing, or when an
    offsite target holds no verified backup of the database, or the oldest local backup that is not there yet finished more
    than O(max_offsite_lag) ago, or the target cannot be listed.
  - With O(metrics_file), writes the same figures in the Prometheus text format for node_exporter's textfile collector, on
    every run and before failing, atomically (a temporary file, then a rename), mode 0644.
  - Reads only; it never writes, deletes or downloads a backup.
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - fleet_telemetry.dr._attributes
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    details:
      - Runs the same check and reports the same problems, and does not write O(metrics_file).
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - O(metrics_file) is rewritten on every run, so that its time and its C(fleet_dr_freshness_check_timestamp_seconds) say when
        the check ran; RV(changed) is V(true) only when another figure in it changed.
  platform:
    platforms: posix
options:
  backup_dir:
    description: The local backup directory (the backup role's C(fleet_dr_backup_dir)).
    type: path
    required: true
  databases:
    description:
      - The databases to check (the manifests' C(database)). A database without any verified backup is then a problem.
      - When empty, every database that has a backup in O(backup_dir) or at a target, and a problem when there is none at all.
    type: list
    elements: str
    default: []
  name_prefix:
    description: Only artifacts whose name starts with this prefix and C(_) (as O(fleet_telemetry.dr.pg_logical_backup#module:name_prefix) names them).
    type: str
    default: backup
  targets:
    description:
      - The offsite targets to check, each a dict as the O(fleet_telemetry.dr.offsite_copy#module:target) option takes it
        (the backup role's C(fleet_dr_offsite_targets)). Each is listed, and its newest verified backup of each database compared
        with the local ones.
      - The AWS connection of the S3 targets is the module's AWS options.
    type: list
    elements: dict
    default: []
  max_backup_age:
    description:
      - How old the newest verified local backup may be, by its snapshot time (the manifest's C(started_at)).
      - Seconds, or a number with a unit C(s), C(m), C(h), C(d) or C(w), for example V(26h) or V(1d12h).
    type: str
    default: 26h
  check_drill:
    description: Check the last DR drill of each database in O(drill_history).
    type: bool
    default: true
  drill_report_dir:
    description:
      - The directory of the drill reports, the dr_drill role's C(dr_drill_report_dir); the report of a failed drill is read
        there for its message.
      - Defaults to the directory of O(drill_history) when that is given, else C(<backup_dir>/drill-reports), the dr_drill
        role's default.
    type: path
  drill_history:
    description:
      - The drill history the dr_drill role writes (M(fleet_telemetry.dr.dr_report)'s O(fleet_telemetry.dr.dr_report#module:history)),
        the role's C(dr_drill_history).
      - Defaults to C(<drill_report_dir>/drill_history.jsonl), the dr_drill role's default.
    type: path
  max_drill_age:
    description: How old the last DR drill may be, by its start; a duration as in O(max_backup_age).
    type: str
    default: 8d
  max_offsite_lag:
    description:
      - How long a verified local backup may wait for its copy at each target, from when it finished; a duration as in
        O(max_backup_age).
      - A copy made right after each backup never waits that long; a nightly copy that failed does, after this long.
    type: str
    default: 6h
  metrics_file:
    description:
      - Write the metrics to this file, in node_exporter's textfile collector directory (its C(--collector.textfile.directory)).
        The name must end in C(.prom); the directory must exist.
      - The metrics are described in the collection's C(docs/monitoring.md), with example alert rules.
    type: path
  fail_on_problems:
    description: Fail when there is a problem. With V(false) the module reports RV(ok) and RV(problems) and succeeds.
    type: bool
    default: true
notes:
  - boto3 is needed only for an S3 target; a backup server needs the C(ssh) client on the host that runs the module.
  - Run it on the host that holds O(backup_dir), from cron or AWX every few minutes to hours; it reads manifests, not backups.
seealso:
  - module: fleet_telemetry.dr.pg_artifact_verify
  - module: fleet_telemetry.dr.backup_retention
  - module: fleet_telemetry.dr.dr_report
"""

EXAMPLES = r"""
- name: Check the backups, their copy in S3 and the last drill, and write the metrics for node_exporter
  fleet_telemetry.dr.backup_freshness:
    backup_dir: /var/backups/fleet-telemetry
    databases: [telemetry_db]
    targets:
      - name: offsite-s3
        kind: s3
        bucket: acme-fleet-backups
        prefix: prod/telemetry_db/
    max_backup_age: 26h
    max_drill_age: 8d
    max_offsite_lag: 6h
    metrics_file: /var/lib/prometheus/node-exporter/fleet_dr.prom
  register: freshness

- name: Only report, never fail (a dashboard job)
  fleet_telemetry.dr.backup_freshness:
    backup_dir: /var/backups/fleet-telemetry
    check_drill: false
    fail_on_problems: false
  register: freshness

- name: Show the age of the newest backup
  ansible.builtin.debug:
    msg: "{{ freshness.databases.telemetry_db.backup.age_seconds }} s"
"""

RETURN = r"""
started_at:
  description: When the module started on the host (ISO 8601 UTC, the host's clock), for the step records of a run.
  returned: always
  type: str
  sample: "2026-12-06T09:00:00.123456Z"
finished_at:
  description: When the module ended, success or failure (ISO 8601 UTC, the host's clock).
  returned: always
  type: str
  sample: "2026-12-06T09:00:01.654321Z"
changed:
  description: V(true) when a figure in O(metrics_file) changed (in check mode, would change); never for anything else.
  returned: always
  type: bool
msg:
  description: Every problem, one sentence each, or one line with the newest backup, its copies and the last drill of each database.
  returned: always
  type: str
error_code:
  description:
    - V(not_fresh) when there are problems (RV(problems) has each one's code); V(bad_option) for an option the check cannot
      use; V(metrics_failed) when O(metrics_file) cannot be written.
  returned: failure
  type: str
  sample: not_fresh
ok:
  description: Whether the check found no problem.
  returned: success or when there are problems
  type: bool
checked_at:
  description: The time the ages are measured to (ISO 8601 UTC, the host's clock).
  returned: success or when there are problems
  type: str
  sample: "2026-12-06T09:00:00Z"
problems:
  description: What is wrong, each with a stable code, the database and target it concerns (or V(null)), and one sentence.
  returned: success or when there are problems
  type: list
  elements: dict
  contains:
    code:
      description:
        - V(backup_missing), V(backup_stale), V(drill_missing), V(drill_failed), V(drill_stale), V(offsite_missing),
          V(offsite_lagging) or V(offsite_unreachable).
      type: str
    database:
      description: The database, or V(null).
      type: str
    target:
      description: The offsite target's name, or V(null).
      type: str
    msg:
      description: The cause and what to do.
      type: str
  sample:
    - code: backup_stale
      database: telemetry_db
      target: null
      msg: >-
        telemetry_db: the newest verified backup, backup_2026-12-04_02-00-00.sql.zst, is 2 d 7 h old, older than max_backup_age
        (1 d 2 h): run playbooks/backup.yml and check that its schedule runs and succeeds
databases:
  description:
    - Per database, its newest verified local backup (V(null) when none), the newer artifacts that do not verify, each target's
      newest verified backup and lag, and the last drill (V(null) when none, or with O(check_drill=false)).
    - A backup is C(name), C(started_at), C(finished_at), C(age_seconds), C(size), C(sha256), C(row_counts), C(dump_format)
      and C(encrypted).
  returned: success or when there are problems
  type: dict
  contains:
    backup:
      description: The newest verified local backup, or V(null).
      type: dict
    skipped:
      description: Newer local artifacts that do not verify, each C(name) and C(problem).
      type: list
      elements: dict
    offsite:
      description:
        - One per target, in the order of O(targets) - C(target) (its name), C(backup) (its newest verified backup, or V(null)),
          C(skipped), C(lag_seconds), C(waiting) (the local backup that waits for its copy, or V(null)) and C(error) (why it
          could not be checked, or V(null)).
      type: list
      elements: dict
    drill:
      description:
        - The last drill - C(name), C(status) (V(passed) or V(failed)), C(started_at), C(finished_at), C(age_seconds),
          C(rto_seconds), C(rpo_seconds), C(failed_step), C(artifact), C(msg) (from its JSON report) and C(report) (its
          Markdown report), or V(null).
      type: dict
  sample:
    telemetry_db:
      backup: {name: backup_2026-12-06_02-00-00.sql.zst, started_at: "2026-12-06T02:00:00Z", age_seconds: 25200.0,
               size: 17825792, row_counts: {audit_log: 300, photo: 24}}
      skipped: []
      offsite:
        - {target: offsite-s3, backup: {name: backup_2026-12-06_02-00-00.sql.zst}, lag_seconds: 0, waiting: null, error: null}
      drill: {name: drill_2026-12-05_18-30-00, status: passed, age_seconds: 52200.0, rto_seconds: 62.1, rpo_seconds: 59400.0}
metrics_file:
  description: The metrics file written (in check mode, that would be written), or V(null) without O(metrics_file).
  returned: success or when there are problems
  type: str
  sample: /var/lib/prometheus/node-exporter/fleet_dr.prom
"""

import os

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import format_timestamp, utc_now
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._drill import HISTORY_NAME, REPORT_SUBDIR
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._freshness import (
    CHECK_METRIC,
    LIMITS,
    FreshnessCheck,
    FreshnessError,
    metric_families,
    parse_duration,
    summary,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._metrics import render, write_textfile
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.params import make_target, target_argument_spec, target_name
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._results import fail_with, timed


def argument_spec():
    return dict(
        backup_dir=dict(type='path', required=True),
        databases=dict(type='list', elements='str', default=[]),
        name_prefix=dict(type='str', default='backup'),
        targets=dict(type='list', elements='dict', default=[]),
        max_backup_age=dict(type='str', default='26h'),
        check_drill=dict(type='bool', default=True),
        drill_report_dir=dict(type='path'),
        drill_history=dict(type='path'),
        max_drill_age=dict(type='str', default='8d'),
        max_offsite_lag=dict(type='str', default='6h'),
        metrics_file=dict(type='path'),
        fail_on_problems=dict(type='bool', default=True),
    )


def target_options(targets):
    """Each element of ``targets`` validated as offsite_copy's ``target`` option, with its defaults."""
    spec = target_argument_spec()['target']
    validator = ArgumentSpecValidator(spec['options'], required_if=spec['required_if'])
    validated, names = [], {}
    for index, options in enumerate(targets):
        checked = validator.validate(options)
        if checked.error_messages:
            raise FreshnessError('targets[%d]: %s' % (index, checked.error_messages[0]))
        name = target_name(checked.validated_parameters)
        if name in names:
            raise FreshnessError('targets[%d] and targets[%d] are both named %s: give each target a distinct name (the results and '
                                 'the metrics tell targets apart by it)' % (names[name], index, name))
        names[name] = index
        validated.append(checked.validated_parameters)
    return validated


def run(module, params):
    """The check's result (with ``metrics_file`` and ``changed``), the metrics file written unless in check mode."""
    now = utc_now().replace(microsecond=0)
    limits = dict((limit, parse_duration(params[limit], limit)) for limit in LIMITS)
    targets = [(target_name(options), make_target(module, options)) for options in target_options(params['targets'])]
    history = None
    # The dr_drill role writes its reports and its history in one directory unless told otherwise.
    report_dir = params['drill_report_dir'] or (os.path.dirname(os.path.abspath(params['drill_history'])) if params['drill_history']
                                                else os.path.join(params['backup_dir'], REPORT_SUBDIR))
    if params['check_drill']:
        history = params['drill_history'] or os.path.join(report_dir, HISTORY_NAME)
    result = FreshnessCheck(params['backup_dir'], limits, now, targets=targets, databases=params['databases'],
                            prefix=params['name_prefix'], history=history, report_dir=report_dir).run()
    result.update(checked_at=format_timestamp(now), metrics_file=params['metrics_file'], changed=False)
    if params['metrics_file']:
        text = render(metric_families(result, now, check_drill=params['check_drill']))
        result['changed'] = write_textfile(params['metrics_file'], text, module.check_mode, volatile=(CHECK_METRIC,))
    return result


def main():
    module = AnsibleAWSModule(argument_spec=argument_spec(), supports_check_mode=True, check_boto3=False)
    timed(module)
    params = module.params
    try:
        result = run(module, params)
    except FleetDrError as exc:
        fail_with(module, exc)
    result['msg'] = summary(result)
    if result['problems'] and params['fail_on_problems']:
        module.fail_json(error_code='not_fresh', **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
