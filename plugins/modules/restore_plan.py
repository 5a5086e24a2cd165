# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: restore_plan
short_description: The decisions of the restore role - safety dump or not, the report, the way back after a failure
version_added: 0.1.0
description:
  - Used by the role C(fleet_telemetry.dr.restore); it reads only the results of the role's other tasks and changes nothing.
  - An action that runs on the controller only - no module runs on the host - so the report's times (RTO, RPO) come from
    the same clock as the role's C(started_at).
  - O(stage=safety) decides about the safety dump of the current database from the check-mode result of
    M(fleet_telemetry.dr.pg_logical_backup) (O(db_check)), the volumes C(down -v) would remove (O(volumes)) and the other
    mounts that hold the database's cluster (O(mounts)). When the database answers, a safety dump is taken. When it does
    not answer (RV(error_code) V(db_down) or V(container_down)) and no volume or mount exists, there is nothing to save
    and the restore goes on without one. When it does not answer but a volume or mount exists, the task fails unless
    O(unreachable=force), because its data would be lost without a safety dump. Any other failure of the check (wrong
    password, missing database) fails the task, naming the setting.
  - O(stage=report) builds the report data for M(fleet_telemetry.dr.dr_report) from O(results) - the registered result of
    each step, by the step's key (exactly the keys of the role's steps; any other set fails with RV(error_code=bad_option)) -
    the failure message of a
    failed run and, when the failure came after C(down -v), the way back - the safety dump's path and the exact
    C(ansible-playbook) command that restores it - and the C(set_stats) facts.
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - fleet_telemetry.dr._attributes
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - It changes nothing; in check mode O(stage=report) words the report as what a run would do.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - RV(changed) is always V(false).
  platform:
    platforms: all
options:
  stage:
    description: Which decision.
    type: str
    choices: [safety, report]
    required: true
  db_check:
    description:
      - With O(stage=safety), the registered result of M(fleet_telemetry.dr.pg_logical_backup) in check mode against the
        current database (registered with C(ignore_errors) or C(failed_when=false)).
    type: dict
    default: {}
  volumes:
    description: With O(stage=safety), the volumes C(down -v) would remove (RV(fleet_telemetry.dr.compose_project#module:volumes_removed)).
    type: list
    elements: str
    default: []
  mounts:
    description:
      - With O(stage=safety), the other places that hold the database's cluster - a bind mount, an external or anonymous
        volume (RV(fleet_telemetry.dr.compose_project#module:data_mounts)) - each as a phrase for the message.
    type: list
    elements: str
    default: []
  other_volumes:
    description:
      - With O(stage=safety), the volumes C(down -v) would remove that the database service does not mount
        (RV(fleet_telemetry.dr.compose_project#module:other_volumes)); no safety dump saves them, so the task fails
        (RV(error_code=other_volumes)) unless O(remove_other_volumes=true).
    type: list
    elements: str
    default: []
  orphans:
    description:
      - With O(stage=safety), the containers of the project that are not in its compose file, which C(--remove-orphans)
        removes (RV(fleet_telemetry.dr.compose_project#module:orphans)); named in the note.
    type: list
    elements: str
    default: []
  remove_other_volumes:
    description: With O(stage=safety), go on although O(other_volumes) is not empty (they are removed without a safety dump).
    type: bool
    default: false
  unreachable:
    description:
      - With O(stage=safety), what to do when the current database does not answer.
      - V(continue) goes on without a safety dump only when there is nothing to save (no volume, no mount); V(stop) never goes
        on without a safety dump; V(force) goes on even when a volume or mount would lose its data without one.
    type: str
    choices: [continue, stop, force]
    default: continue
  results:
    description:
      - With O(stage=report), the registered results of the role's steps under the keys C(artifact), C(preflight),
        C(confirm), C(safety_check), C(safety_plan) (the result of O(stage=safety)), C(safety), C(down), C(up_db),
        C(restore) and C(up_all) - exactly these.
      - When not given, they are read from the variables the restore role registers its steps in (C(_restore_artifact),
        C(_restore_preflight), C(_restore_confirm), C(_restore_db_check), C(_restore_safety_plan), C(_restore_safety),
        C(_restore_down), C(_restore_up_db), C(_restore_result), C(_restore_up_all)); a step that did not run counts as {}.
      - In check mode C(safety_check) (the check-mode run of M(fleet_telemetry.dr.pg_logical_backup)) stands for the safety
        dump that a real run would take.
    type: dict
  started_at:
    description: With O(stage=report), when the run started, ISO 8601 UTC (for RTO, RPO and the report's name).
    type: str
  failed_task:
    description: With O(stage=report) in a C(rescue), the name of the failed task (C(ansible_failed_task.name)).
    type: str
  failed_msg:
    description: With O(stage=report) in a C(rescue), the message of the failed task (C(ansible_failed_result.msg)).
    type: str
  failed:
    description: With O(stage=report), whether the run failed (V(true) in a C(rescue)).
    type: bool
    default: false
  confirmed:
    description: With O(stage=report), whether C(restore_confirm) was given.
    type: bool
    default: false
  database:
    description: With O(stage=report), the database restored.
    type: str
  target:
    description: With O(stage=report), where it was restored (no secrets), for example C(project_src) and C(project_name).
    type: dict
    default: {}
  inventory:
    description: With O(stage=report), the inventory for the recovery command (C(inventory_file)).
    type: str
  playbook:
    description: With O(stage=report), the restore playbook for the recovery command.
    type: str
    default: playbooks/restore.yml
  limit:
    description: With O(stage=report), the host for the recovery command's C(-l).
    type: str
  backup_dir:
    description: With O(stage=report), the backup directory; the reports go to its C(reports) subdirectory.
    type: path
  report_dir:
    description: With O(stage=report), the report directory instead of C(reports) in O(backup_dir).
    type: path
  history:
    description: With O(stage=report), whether RV(history_path) (C(restore_history.jsonl) in the report directory) is returned.
    type: bool
    default: true
seealso:
  - module: fleet_telemetry.dr.pg_restore_verify
  - module: fleet_telemetry.dr.compose_project
  - module: fleet_telemetry.dr.dr_report
"""

EXAMPLES = r"""
- name: Decide about the safety dump
  fleet_telemetry.dr.restore_plan:
    stage: safety
    db_check: "{{ _restore_db_check }}"
    volumes: "{{ _restore_down_plan.volumes_removed }}"
    mounts: "{{ _restore_down_plan.data_mounts }}"
  register: _restore_safety_plan

- name: Build the report of a failed restore and the way back
  fleet_telemetry.dr.restore_plan:
    stage: report
    failed: true
    failed_task: "{{ ansible_failed_task.name }}"
    failed_msg: "{{ ansible_failed_result.msg }}"
    started_at: "{{ _restore_started_at }}"
    results:
      artifact: "{{ _restore_artifact | default({}) }}"
      preflight: "{{ _restore_preflight | default({}) }}"
      confirm: "{{ _restore_confirm | default({}) }}"
      safety_check: "{{ _restore_db_check | default({}) }}"
      safety_plan: "{{ _restore_safety_plan | default({}) }}"
      safety: "{{ _restore_safety | default({}) }}"
      down: "{{ _restore_down | default({}) }}"
      up_db: "{{ _restore_up_db | default({}) }}"
      restore: "{{ _restore_result | default({}) }}"
      up_all: "{{ _restore_up_all | default({}) }}"
    inventory: "{{ inventory_file }}"
    limit: "{{ inventory_hostname }}"
"""

RETURN = r"""
changed:
  description: Always V(false).
  returned: always
  type: bool
msg:
  description: With O(stage=safety), the decision; with O(stage=report), the run's outcome (on failure, with the way back).
  returned: always
  type: str
error_code:
  description: V(unreachable), V(safety_check_failed), V(disk_full), V(other_volumes) or V(bad_option).
  returned: failure
  type: str
take:
  description: With O(stage=safety), whether to take the safety dump.
  returned: O(stage=safety)
  type: bool
reachable:
  description: With O(stage=safety), whether the current database answered.
  returned: O(stage=safety)
  type: bool
note:
  description: With O(stage=safety), one sentence for the report.
  returned: O(stage=safety)
  type: str
also_removed:
  description: With O(stage=safety), what C(down -v) removes besides the database (O(other_volumes), O(orphans)), or V(null).
  returned: O(stage=safety)
  type: str
data:
  description: With O(stage=report), the report data for M(fleet_telemetry.dr.dr_report).
  returned: O(stage=report)
  type: dict
name:
  description: With O(stage=report), the report's name, C(restore_YYYY-MM-DD_HH-MM-SS) of O(started_at).
  returned: O(stage=report)
  type: str
status:
  description: With O(stage=report), V(passed) or V(failed).
  returned: O(stage=report)
  type: str
recovery:
  description: With O(stage=report), how to get back when the run failed after C(down -v), else V(null).
  returned: O(stage=report)
  type: str
destroyed:
  description: With O(stage=report), whether the run got as far as C(down -v).
  returned: O(stage=report)
  type: bool
report_dir:
  description: With O(stage=report), the directory of the report files.
  returned: O(stage=report)
  type: str
history_path:
  description: With O(stage=report), the history file of the restore reports, or V(null) with O(history=false).
  returned: O(stage=report)
  type: str
stats:
  description: With O(stage=report), the facts for C(set_stats) (status, artifact, row counts, RTO, safety dump).
  returned: O(stage=report)
  type: dict
"""
