# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dr_drill_summary
short_description: Turn the results of a DR drill's steps into the report data of dr_report, with RTO and RPO
version_added: 0.1.0
description:
  - Computes, from the registered results of the drill's steps and their own C(started_at) and C(finished_at), the C(data) that
    M(fleet_telemetry.dr.dr_report) writes - status, failed step, steps with their seconds, RTO, RPO, artifact, target,
    per-table counts and photos.
  - RTO is the time from the drill's start (when the lease step started) to the end of the verified restore, both by the
    host's clock, the one the backup's manifest was written by.
  - RPO is the age of the backup at the drill's start, from the manifest's C(started_at) (the dump's snapshot), computed as the
    restore role computes it; none without a manifest.
  - Also says where the report goes (RV(report_name), RV(report_dir), RV(history_path)), for M(fleet_telemetry.dr.dr_report).
  - Reads and writes nothing; the role of the drill calls it in its C(always) section, after the teardown.
  - An action that runs on the controller only - no module runs on the host.
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - fleet_telemetry.dr._attributes
  - fleet_telemetry.dr._attributes.controller_action
attributes:
  check_mode:
    support: full
    details:
      - The same computation as a normal run; nothing is changed either way.
options:
  results:
    description:
      - The registered result of each step, by the step's key - C(lease) (M(fleet_telemetry.dr.run_lease)), C(artifact)
        (M(fleet_telemetry.dr.pg_artifact_verify)), C(stack) (M(fleet_telemetry.dr.dr_scratch_stack)), C(up)
        (M(fleet_telemetry.dr.compose_project)), C(restore) (M(fleet_telemetry.dr.pg_restore_verify)), C(down) and C(cleanup)
        (the teardown) - each with the C(started_at) and C(finished_at) every module of the collection returns.
      - A step that did not run, or failed, has no end; the first such step is the failed step when O(failure) is given.
        Any other key fails with RV(error_code=bad_option).
      - When not given, they are read from the variables the drill role registers its steps in (C(_dr_drill_lease),
        C(_dr_drill_artifact), C(_dr_drill_stack), C(_dr_drill_up), C(_dr_drill_restore), C(_dr_drill_down),
        C(_dr_drill_cleanup)).
    type: dict
  artifact:
    description: The result of M(fleet_telemetry.dr.pg_artifact_verify) for the artifact drilled (C(path), C(size), C(sha256), C(dump_format), C(manifest)).
    type: dict
    default: {}
  source:
    description:
      - The result of M(fleet_telemetry.dr.offsite_fetch) when the drilled backup came from an offsite target (C(target),
        C(location)); the report then says where it came from.
    type: dict
    default: {}
  stack:
    description: The result of M(fleet_telemetry.dr.dr_scratch_stack) with O(fleet_telemetry.dr.dr_scratch_stack#module:state=present).
    type: dict
    default: {}
  restore:
    description: The result of M(fleet_telemetry.dr.pg_restore_verify) (C(tables), C(photos), C(msg), C(manifest)).
    type: dict
    default: {}
  failure:
    description: When the drill failed, C(msg) (one sentence), C(error_code) and C(task) of the failure.
    type: dict
  teardown:
    description: The teardown's outcome, C(ok) (bool) and C(msg).
    type: dict
  database:
    description: The database drilled; default the manifest's.
    type: str
  backup_dir:
    description: The backup directory; the reports go to C(<backup_dir>/drill-reports) unless O(report_dir) is set.
    type: path
  report_dir:
    description: Directory of the reports (returned as RV(report_dir)). One of O(backup_dir) and O(report_dir) is required.
    type: path
  history:
    description: JSON-lines history of the drills. Default C(<report dir>/drill_history.jsonl).
    type: path
seealso:
  - module: fleet_telemetry.dr.dr_report
"""

EXAMPLES = r"""
- name: Compute the drill's report data
  fleet_telemetry.dr.dr_drill_summary:
    results:
      lease: "{{ _dr_drill_lease }}"
      artifact: "{{ _dr_drill_artifact }}"
      stack: "{{ _dr_drill_stack }}"
      up: "{{ _dr_drill_up }}"
      restore: "{{ _dr_drill_restore }}"
      down: "{{ _dr_drill_down }}"
      cleanup: "{{ _dr_drill_cleanup }}"
    artifact: "{{ _dr_drill_artifact }}"
    stack: "{{ _dr_drill_stack }}"
    restore: "{{ _dr_drill_restore }}"
  register: summary
"""

RETURN = r"""
changed:
  description: Always V(false).
  returned: always
  type: bool
status:
  description: V(passed) when every step finished and the restore was verified, else V(failed).
  returned: success
  type: str
data:
  description: The report data for M(fleet_telemetry.dr.dr_report) (C(status), C(msg), C(failed_step), C(started_at), C(finished_at),
    C(rto_seconds), C(rpo_seconds), C(database), C(artifact), C(target), C(tables), C(photos), C(steps)).
  returned: success
  type: dict
report_name:
  description: Name of the report files, C(drill_<UTC start time>).
  returned: success
  type: str
  sample: drill_2026-12-06_04-00-03
report_dir:
  description: Directory of the reports, O(report_dir) or C(<backup_dir>/drill-reports).
  returned: success
  type: str
history_path:
  description: The history of the drills, O(history) or C(<report dir>/drill_history.jsonl).
  returned: success
  type: str
error_code:
  description:
    - V(bad_option) when O(results) holds another key or a time that is not ISO 8601 UTC, the lease step has no
      C(started_at), or neither O(backup_dir) nor O(report_dir) is set.
  returned: failure
  type: str
"""
