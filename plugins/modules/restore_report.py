# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: restore_report
short_description: The report of a restore run, and the way back after a failure
version_added: 0.1.0
description:
  - Used by the role C(fleet_telemetry.dr.restore); it reads only the results of the role's other tasks and changes nothing.
  - An action that runs on the controller only - no module runs on the host - so the report's times (RTO, RPO) come from the
    same clock as the role's C(started_at).
  - Builds the report data for M(fleet_telemetry.dr.dr_report) from O(results) - the registered result of each step, by the
    step's key (exactly the keys of the role's steps; any other set fails with RV(error_code=bad_option)) - the failure message
    of a failed run and, when the failure came after C(down -v), the way back - the safety dump's path and the exact C(ansible-playbook)
    command that restores it - and the C(set_stats) facts.
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
      - It changes nothing; in check mode it words the report as what a run would do.
options:
  results:
    description:
      - The registered results of the role's steps under the keys C(artifact), C(preflight), C(confirm), C(safety_check),
        C(safety_plan) (the result of M(fleet_telemetry.dr.restore_safety)), C(safety), C(down), C(up_db), C(restore) and
        C(up_all) - exactly these.
      - When not given, they are read from the variables the restore role registers its steps in (C(_restore_artifact), C(_restore_preflight),
        C(_restore_confirm), C(_restore_db_check), C(_restore_safety_plan), C(_restore_safety), C(_restore_down), C(_restore_up_db),
        C(_restore_result), C(_restore_up_all)); a step that did not run counts as {}.
      - In check mode C(safety_check) (the O(fleet_telemetry.dr.pg_logical_backup#module:plan_only=true) run of
        M(fleet_telemetry.dr.pg_logical_backup)) stands for the safety dump that a real run would take.
    type: dict
  started_at:
    description: When the run started, ISO 8601 UTC (for RTO, RPO and the report's name).
    type: str
    required: true
  failed_task:
    description: In a C(rescue), the name of the failed task (C(ansible_failed_task.name)).
    type: str
  failed_msg:
    description: in a C(rescue), the message of the failed task (C(ansible_failed_result.msg)).
    type: str
  failed:
    description: Whether the run failed (V(true) in a C(rescue)).
    type: bool
    default: false
  confirmed:
    description: Whether C(restore_confirm) was given.
    type: bool
    default: false
  database:
    description: The database restored.
    type: str
  target:
    description: Where it was restored (no secrets), for example C(project_src) and C(project_name).
    type: dict
    default: {}
  inventory:
    description: The inventory for the recovery command (C(inventory_file)).
    type: str
  playbook:
    description: The restore playbook for the recovery command.
    type: str
    default: playbooks/restore.yml
  limit:
    description: The host for the recovery command's C(-l).
    type: str
  backup_dir:
    description: The backup directory; the reports go to its C(reports) subdirectory.
    type: path
  report_dir:
    description: The report directory instead of C(reports) in O(backup_dir).
    type: path
  history:
    description: Whether RV(history_path) (C(restore_history.jsonl) in the report directory) is returned.
    type: bool
    default: true
seealso:
  - module: fleet_telemetry.dr.pg_restore_verify
  - module: fleet_telemetry.dr.compose_project
  - module: fleet_telemetry.dr.dr_report
"""

EXAMPLES = r"""
- name: Build the report of a failed restore and the way back (the steps' results read from the role's registered variables)
  fleet_telemetry.dr.restore_report:
    failed: true
    failed_task: "{{ ansible_failed_task.name }}"
    failed_msg: "{{ ansible_failed_result.msg }}"
    started_at: "{{ _restore_started_at }}"
    inventory: "{{ inventory_file }}"
    limit: "{{ inventory_hostname }}"
"""

RETURN = r"""
changed:
  description: Always V(false).
  returned: always
  type: bool
msg:
  description: The run's outcome (on failure, with the way back).
  returned: always
  type: str
error_code:
  description: V(bad_option) (O(results) with other keys, or O(started_at) not ISO 8601 UTC).
  returned: failure
  type: str
data:
  description: The report data for M(fleet_telemetry.dr.dr_report).
  returned: success
  type: dict
name:
  description: The report's name, C(restore_YYYY-MM-DD_HH-MM-SS) of O(started_at).
  returned: success
  type: str
status:
  description: V(passed) or V(failed).
  returned: success
  type: str
recovery:
  description: How to get back when the run failed after C(down -v), else V(null).
  returned: success
  type: str
destroyed:
  description: Whether the run got as far as C(down -v).
  returned: success
  type: bool
report_dir:
  description: The directory of the report files.
  returned: success
  type: str
history_path:
  description: The history file of the restore reports, or V(null) with O(history=false).
  returned: success
  type: str
stats:
  description: The facts for C(set_stats) (status, artifact, row counts, RTO, safety dump).
  returned: success
  type: dict
"""
