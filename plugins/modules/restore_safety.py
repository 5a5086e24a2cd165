# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: restore_safety
short_description: The restore role's decision about a safety dump of the current database before down -v
version_added: 0.1.0
description:
  - Used by the role C(fleet_telemetry.dr.restore); it reads only the results of the role's other tasks and changes nothing.
  - An action that runs on the controller only - no module runs on the host.
  - Decides about the safety dump of the current database from the
    O(fleet_telemetry.dr.pg_logical_backup#module:plan_only=true) result of M(fleet_telemetry.dr.pg_logical_backup)
    (O(db_check)), the volumes C(down -v) would remove (O(volumes)) and the other mounts that hold the database's cluster
    (O(mounts)). When the database answers, a safety dump is taken. When it does not answer (RV(error_code) V(db_down) or
    V(container_down)) and no volume or mount exists, there is nothing to save and the restore goes on without one. When it
    does not answer but a volume or mount exists, the task fails unless O(unreachable=force), because its data would be lost
    without a safety dump. Any other failure of the check (wrong password, missing database) fails the task, naming the setting.
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
      - It changes nothing; the same decision in check mode.
options:
  db_check:
    description:
      - The registered result of M(fleet_telemetry.dr.pg_logical_backup) with
        O(fleet_telemetry.dr.pg_logical_backup#module:plan_only=true) against the current database (registered with
        C(failed_when=false)).
    type: dict
    default: {}
  volumes:
    description: The volumes C(down -v) would remove (RV(fleet_telemetry.dr.compose_project#module:volumes_removed)).
    type: list
    elements: str
    default: []
  mounts:
    description:
      - The other places that hold the database's cluster - a bind mount, an external or anonymous volume
        (RV(fleet_telemetry.dr.compose_project#module:data_mounts)), each as a phrase for the message.
    type: list
    elements: str
    default: []
  other_volumes:
    description:
      - The volumes C(down -v) would remove that the database service does not mount (RV(fleet_telemetry.dr.compose_project#module:other_volumes));
        no safety dump saves them, so the task fails (RV(error_code=other_volumes)) unless O(remove_other_volumes=true).
    type: list
    elements: str
    default: []
  orphans:
    description:
      - The containers of the project that are not in its compose file, which C(--remove-orphans) removes
        (RV(fleet_telemetry.dr.compose_project#module:orphans)); named in the note.
    type: list
    elements: str
    default: []
  remove_other_volumes:
    description: Go on although O(other_volumes) is not empty (they are removed without a safety dump).
    type: bool
    default: false
  unreachable:
    description:
      - What to do when the current database does not answer.
      - V(continue) goes on without a safety dump only when there is nothing to save (no volume, no mount); V(stop) never
        goes on without a safety dump; V(force) goes on even when a volume or mount would lose its data without one.
    type: str
    choices:
      - continue
      - stop
      - force
    default: continue
seealso:
  - module: fleet_telemetry.dr.pg_restore_verify
  - module: fleet_telemetry.dr.compose_project
  - module: fleet_telemetry.dr.dr_report
"""

EXAMPLES = r"""
- name: Decide about the safety dump
  fleet_telemetry.dr.restore_safety:
    db_check: "{{ _restore_db_check }}"
    volumes: "{{ _restore_down_plan.volumes_removed }}"
    mounts: "{{ _restore_down_plan.data_mounts }}"
  register: _restore_safety_plan
"""

RETURN = r"""
changed:
  description: Always V(false).
  returned: always
  type: bool
msg:
  description: The decision.
  returned: always
  type: str
error_code:
  description: V(unreachable), V(safety_check_failed), V(disk_full), V(other_volumes) or V(bad_option).
  returned: failure
  type: str
take:
  description: Whether to take the safety dump.
  returned: success
  type: bool
reachable:
  description: Whether the current database answered.
  returned: success
  type: bool
note:
  description: One sentence for the report.
  returned: success
  type: str
also_removed:
  description: What C(down -v) removes besides the database (O(other_volumes), O(orphans)), or V(null).
  returned: success
  type: str
"""
