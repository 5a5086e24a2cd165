#!/usr/bin/python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dr_scratch_stack
short_description: Plan, write and remove the scratch compose stack of a DR drill beside production
version_added: 0.1.0
description:
  - With O(state=present), writes the compose file of a scratch stack into C(<work_dir>/<project name>/docker-compose.yml),
    with one C(db) service with the image of production's db container, its own named volume, container name and port on
    127.0.0.1, and C(POSTGRES_PASSWORD) taken from the environment of the compose command. Start it with
    M(fleet_telemetry.dr.compose_project), passing the scratch password in its O(fleet_telemetry.dr.compose_project#module:env).
  - Production's compose file is not reused (its fixed C(container_name) and published port would collide). Production's
    db container is only read (C(docker ps) by compose's labels and C(docker inspect)), to take its image and to prove
    that the scratch project name, container name, volume and port differ from production's.
  - Whether production's db container is found or not, the task fails with RV(error_code=not_isolated) when a container
    or volume of the scratch names exists without the scratch label of this production, or when the port is in use on
    127.0.0.1. With production down, what its compose file would create or publish when it starts again is not known
    here; the scratch names derive from the scratch project name, so they differ unless production's file names its
    volumes explicitly.
  - Containers, volumes and networks of the scratch project carry the label C(fleet_telemetry.dr.scratch_of=<production project>).
    Leftovers of an earlier drill of the same production (a killed run) are removed first; anything under the scratch
    project name without that label is never touched and fails the task with RV(error_code=not_ours).
  - With O(state=absent), removes whatever of the scratch project is left (containers with C(docker rm -f -v), networks,
    volumes), then its compose file and the directory once it is empty (never a whole tree; any other file is left in
    place and fails the task), then proves that nothing of it is left (RV(error_code=teardown_failed) otherwise). Run it
    after C(compose_project state=absent remove_volumes=true), in an C(always) section.
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - fleet_telemetry.dr._attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads production and the scratch project's leftovers, picks the port, and reports the plan and what would be written
        or removed; writes and removes nothing.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - With O(port=0) each run picks a free port, so the compose file can change; with a fixed O(port) a second run with
        O(state=present) changes nothing, and O(state=absent) on nothing left reports V(changed=false).
  platform:
    platforms: posix
options:
  state:
    description: V(present) plans the stack and writes its compose file; V(absent) removes what is left of it.
    type: str
    choices: [present, absent]
    default: present
  production_project_src:
    description: Directory of production's compose project (used to derive its project name when O(production_project_name) is not set).
    type: path
    required: true
  production_project_name:
    description:
      - Production's compose project name. Default is what the compose command in use derives (v2 also reads the compose
        file's top-level C(name:); then E(COMPOSE_PROJECT_NAME), C(.env), the directory's name).
    type: str
  production_service:
    description: Production's compose service of the database.
    type: str
    default: db
  project_name:
    description:
      - The scratch project's name. Default C(<production project>_drill).
      - Must differ from production's; its container is C(<project_name>_db), its volume C(<project_name>_db_data).
      - Normalized as compose does (lower case, only letters, digits, C(_) and C(-)); a name with nothing left fails with
        RV(error_code=bad_option).
    type: str
  work_dir:
    description:
      - Directory under which the scratch project's directory C(<project_name>) is created (mode 0700) and removed again.
      - The scratch project's directory must not be, hold or lie inside O(production_project_src)
        (RV(error_code=not_isolated)).
    type: path
    required: true
  port:
    description:
      - Port on 127.0.0.1 the scratch database is published on. V(0) picks a free one.
      - Ignored with O(state=absent).
    type: int
    default: 0
  image:
    description:
      - Image of the scratch database. Default is the image of production's running db container.
      - Required when production's db container does not exist (for example a drill on a host where production is down).
    type: str
  db_user:
    description: PostgreSQL user created in the scratch database (E(POSTGRES_USER)); use production's, so that a plain dump restores its ownership.
    type: str
    default: challengeuser
  db_name:
    description: Database created in the scratch stack (E(POSTGRES_DB)).
    type: str
    default: telemetry_db
requirements:
  - Docker Engine on the host.
seealso:
  - module: fleet_telemetry.dr.compose_project
  - module: fleet_telemetry.dr.dr_report
"""

EXAMPLES = r"""
- name: Plan the scratch stack beside production
  fleet_telemetry.dr.dr_scratch_stack:
    production_project_src: /srv/telemetry
    work_dir: /var/tmp/fleet-dr-drill
  register: scratch

- name: Start it with a random password in the environment
  fleet_telemetry.dr.compose_project:
    project_src: "{{ scratch.project_src }}"
    project_name: "{{ scratch.project_name }}"
    env:
      POSTGRES_PASSWORD: "{{ scratch_password }}"
    services: [db]
    wait: true

- name: Remove whatever is left of it
  fleet_telemetry.dr.dr_scratch_stack:
    state: absent
    production_project_src: /srv/telemetry
    work_dir: /var/tmp/fleet-dr-drill
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
changed:
  description: V(true) when the compose file was written or something was removed (in check mode, would be).
  returned: always
  type: bool
msg:
  description: One sentence about the outcome; on failure the cause and what to change.
  returned: always
  type: str
error_code:
  description:
    - Stable code of a failure, V(bad_option) (a port out of range, a missing production directory, a scratch name that
      normalizes to nothing), V(bad_destination) (the scratch directory cannot be written or removed), V(no_production),
      V(not_isolated), V(not_ours), V(teardown_failed), V(no_docker) or V(compose_failed).
  returned: failure
  type: str
project_name:
  description: The scratch project's name.
  returned: success
  type: str
  sample: telemetry_drill
project_src:
  description: The scratch project's directory (holding its compose file).
  returned: success
  type: str
  sample: /var/tmp/fleet-dr-drill/telemetry_drill
compose_file:
  description: The scratch compose file.
  returned: success
  type: str
container_name:
  description: The scratch container's name.
  returned: success
  type: str
  sample: telemetry_drill_db
volume:
  description: The scratch named volume.
  returned: success
  type: str
  sample: telemetry_drill_db_data
network:
  description: The scratch project's default network.
  returned: success
  type: str
port:
  description: The port on 127.0.0.1 of the scratch database (V(0) with O(state=absent)).
  returned: success
  type: int
image:
  description: The image of the scratch database.
  returned: success
  type: str
  sample: postgres:15
production_project:
  description: Production's compose project name.
  returned: success
  type: str
production:
  description: Production's db container as read (C(id), C(name), C(image), C(project), C(volumes), C(ports)), or V(null) when it has none.
  returned: success
  type: dict
label:
  description: The label (C(name=value)) on everything of the scratch project.
  returned: success
  type: str
stale_removed:
  description: With O(state=present), the leftovers of an earlier drill that were removed first.
  returned: success
  type: list
  elements: str
removed:
  description: With O(state=absent), the containers, volumes and networks of the scratch project that were left and removed.
  returned: success
  type: list
  elements: str
left:
  description: With O(state=absent), what is still there afterwards (always empty on success).
  returned: success
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _drill
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _scratch_stack as scratch
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._compose_commands import check_docker
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._results import fail_with, timed


def argument_spec():
    return dict(
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        production_project_src=dict(type='path', required=True),
        production_project_name=dict(type='str'),
        production_service=dict(type='str', default='db'),
        project_name=dict(type='str'),
        work_dir=dict(type='path', required=True),
        port=dict(type='int', default=0),
        image=dict(type='str'),
        db_user=dict(type='str', default='challengeuser'),
        db_name=dict(type='str', default='telemetry_db'),
    )


def run(params, check_mode, runner=None):
    """The module's work, on plain parameters; raises ComposeError (DrillError), or FleetDrError (bad_destination) when the
    scratch project's files cannot be written or removed."""
    try:
        return _scratch_stack(params, check_mode, runner)
    except OSError as exc:
        raise FleetDrError('cannot write or remove the scratch project under %s: %s' % (params['work_dir'], exc.strerror or exc),
                           code='bad_destination') from None


def _scratch_stack(params, check_mode, runner):
    production_name = _drill.production_project_name(params['production_project_src'], params['production_project_name'], runner)
    scratch_name = scratch.scratch_project_name(production_name, params['project_name'])
    prod_cmds = _drill.commands(params['production_project_src'], production_name, runner)
    check_docker(prod_cmds)
    if params['state'] == 'absent':
        stack = scratch.plan(production_name, scratch_name, params['work_dir'], 0, params['image'], params['db_user'], params['db_name'],
                             production_project_src=params['production_project_src'])
        return scratch.run_absent(scratch.scratch_commands(stack, runner), stack, check_mode)
    production = _drill.production_facts(prod_cmds, production_name, params['production_service'])
    image = params['image'] or (production or {}).get('image')
    if not image:
        raise _drill.DrillError('production project %s has no container of service %s to take the image from: set image (dr_drill_image)'
                                % (production_name, params['production_service']), code='no_production')
    port = params['port'] or scratch.free_loopback_port()
    stack = scratch.plan(production_name, scratch_name, params['work_dir'], port, image, params['db_user'], params['db_name'], production,
                         params['production_project_src'])
    return scratch.run_present(scratch.scratch_commands(stack, runner), stack, check_mode)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    timed(module)
    if module.params['port'] < 0 or module.params['port'] > 65535:
        module.fail_json(msg='port must be between 0 (pick a free one) and 65535', error_code='bad_option', changed=False)
    if not os.path.isdir(module.params['production_project_src'] or ''):
        module.fail_json(msg='production_project_src %s is not a directory: set it (fleet_dr_project_src) to production\'s compose project'
                         % module.params['production_project_src'], error_code='bad_option', changed=False)
    try:
        result = run(module.params, module.check_mode)
    except FleetDrError as exc:
        fail_with(module, exc)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
