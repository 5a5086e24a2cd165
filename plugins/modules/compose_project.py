#!/usr/bin/python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: compose_project
short_description: Bring a compose project up or down and wait until its database accepts connections
version_added: 0.1.0
description:
  - Runs C(up -d) (O(state=present)) or C(down) (O(state=absent)) of the compose project in O(project_src), with
    C(docker compose) (v2) when the plugin answers, else C(docker-compose) (v1).
  - What exists before and after is read from Docker by the labels compose puts on its containers, volumes and networks,
    so RV(changed) compares the real state and check mode reports what would change without acting.
  - With O(wait=true), waits until the database of O(db_service) accepts connections, proven inside the container by
    C(pg_isready) over TCP (the entrypoint's temporary init server does not listen there) and a real C(SELECT 1) through
    C(psql).
  - O(env) (for example E(POSTGRES_PASSWORD) or E(DB_PORT)) is passed in the environment of the compose command only, never
    in its arguments or the result.
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - fleet_telemetry.dr._attributes
attributes:
  check_mode:
    support: full
    details:
      - Lists the project's containers, volumes and networks (C(docker ps), C(docker volume ls), C(docker network ls)) and the
        services of the compose file, and reports what C(up -d) or C(down) would change; runs neither and does not wait.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - O(state=present) reports a change only when a container was created, recreated or started; O(state=absent) only
        when something of the project existed.
options:
  project_src:
    description: Directory holding the compose file (and its C(.env)).
    type: path
    required: true
  project_name:
    description:
      - Compose project name (C(-p)). Default is what compose derives (E(COMPOSE_PROJECT_NAME), else, with C(docker compose)
        v2, the compose file's top-level C(name:), else the directory's name).
    type: str
  files:
    description: Compose files (C(-f)), relative to O(project_src) or absolute. Default is compose's own default file.
    type: list
    elements: path
    default: []
  env:
    description:
      - Extra environment for the compose commands, for example E(DB_PORT) or E(POSTGRES_PASSWORD), on top of the module's
        own environment.
      - The option is C(no_log), so Ansible masks every one of its values wherever it appears in the output (also a port
        number or a container name given here).
    type: dict
    default: {}
  state:
    description:
      - V(present) runs C(up -d) for O(services) (all services when empty).
      - V(absent) runs C(down --remove-orphans), with C(-v) when O(remove_volumes=true).
    type: str
    choices: [present, absent]
    default: present
  services:
    description: With O(state=present), only these services (for example V([db])). Empty means every service.
    type: list
    elements: str
    default: []
  remove_volumes:
    description: With O(state=absent), also remove the project's named volumes (C(down -v)). Their data is gone afterwards.
    type: bool
    default: false
  wait:
    description: With O(state=present), wait until the database in O(db_service) accepts connections.
    type: bool
    default: false
  plan_only:
    description:
      - Only say what O(state) would change - the containers, volumes (RV(volumes_removed)), data mounts and orphans - as
        check mode does, and report no change. A read-only probe, for example what C(down -v) would remove before a restore,
        that needs no C(check_mode).
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait with O(wait=true). On timeout the task fails with RV(error_code=not_ready), naming the command that
        shows the container's logs.
    type: int
    default: 120
  db_service:
    description: Compose service of the database (for O(wait)).
    type: str
    default: db
  db_user:
    description: PostgreSQL user of the readiness checks.
    type: str
    default: challengeuser
  db_name:
    description: Database of the readiness checks.
    type: str
    default: telemetry_db
  db_password:
    description:
      - Password of O(db_user) for the C(SELECT 1) readiness check, for a C(pg_hba.conf) that asks for one over the socket.
        It reaches C(psql) as E(PGPASSWORD) through C(docker exec -e PGPASSWORD) (the name only; the value travels in the
        environment), never in arguments or the result.
    type: str
requirements:
  - Docker Engine and C(docker compose) (v2) or C(docker-compose) (v1) on the host.
notes:
  - The readiness checks connect inside the container on the local socket, which the official PostgreSQL image trusts;
    no password is needed or passed.
seealso:
  - module: fleet_telemetry.dr.pg_restore_verify
"""

EXAMPLES = r"""
- name: Remove the stack and its data volume (the runbook's down -v)
  fleet_telemetry.dr.compose_project:
    project_src: /srv/telemetry
    state: absent
    remove_volumes: true

- name: Start only the database and wait until it answers
  fleet_telemetry.dr.compose_project:
    project_src: /srv/telemetry
    services: [db]
    wait: true
    wait_timeout: 180

- name: A scratch copy of the stack on another port, under its own project name
  fleet_telemetry.dr.compose_project:
    project_src: /srv/telemetry
    project_name: telemetry_drill
    env:
      DB_PORT: "55433"
      DB_CONTAINER_NAME: telemetry_drill_db
      POSTGRES_PASSWORD: "{{ drill_password }}"
    services: [db]
    wait: true
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
  description: V(true) when containers, volumes or networks were created, started or removed (in check mode, would be).
  returned: always
  type: bool
msg:
  description: One sentence about the outcome; on failure, the cause and what to do.
  returned: always
  type: str
  sample: "started db of project telemetry; database ready after 4.2 s"
error_code:
  description: V(no_docker), V(no_project) (directory or compose file missing), V(compose_failed) or V(not_ready).
  returned: failure
  type: str
  sample: not_ready
cmd:
  description: The compose command that ran (or would run), without secrets.
  returned: success
  type: list
  elements: str
  sample: [docker-compose, -p, telemetry, up, -d, db]
project_name:
  description:
    - The project name compose uses (its labels' value). With C(docker compose) v2 it is the C(name) of
      C(docker compose config --format json), so a top-level C(name:) of the compose file counts; with C(docker-compose) v1
      it is derived as v1 does (O(project_name), E(COMPOSE_PROJECT_NAME), C(.env), the directory's name).
  returned: always
  type: str
state:
  description: The requested state.
  returned: always
  type: str
containers:
  description: The project's containers afterwards (in check mode, as they are), each C(service), C(name) and C(state).
  returned: always
  type: list
  elements: dict
  sample: [{service: db, name: challenge_db_postgres, state: running}]
volumes_removed:
  description: Named volumes removed (in check mode, that would be removed).
  returned: always
  type: list
  elements: str
  sample: [telemetry_db_data]
data_mounts:
  description:
    - With O(state=absent) and O(remove_volumes), the other places that hold the cluster of O(db_service) (the writable
      mounts at PGDATA or above it that are not one of the project's named volumes), read from C(docker inspect) of its
      container or, without one, from C(compose config) - a bind mount or an external volume (both kept by C(down -v), so
      the new database would start on the old cluster) or an anonymous volume (removed by C(down -v)).
  returned: always
  type: list
  elements: str
  sample: [bind mount /srv/pgdata]
other_volumes:
  description:
    - With O(state=absent) and O(remove_volumes), the volumes of RV(volumes_removed) that O(db_service) does not mount (from
      C(docker inspect) of its container or, without one, from C(compose config)).
  returned: always
  type: list
  elements: str
  sample: [telemetry_app_uploads]
orphans:
  description: With O(state=absent), the containers of the project that are not in its compose file (C(--remove-orphans) removes them).
  returned: always
  type: list
  elements: str
  sample: []
networks_removed:
  description: Networks removed (in check mode, that would be removed).
  returned: always
  type: list
  elements: str
ready_seconds:
  description: Seconds from the end of C(up -d) until the database answered.
  returned: with O(wait=true), outside check mode
  type: float
  sample: 4.2
rc:
  description: Exit code of the failed command.
  returned: on a failed command
  type: int
stderr:
  description: The end of the failed command's stderr.
  returned: on a failed command
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._compose import run_compose_project
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._compose_commands import ComposeProject
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._results import fail_with, timed


def argument_spec():
    return dict(
        project_src=dict(type='path', required=True),
        project_name=dict(type='str'),
        files=dict(type='list', elements='path', default=[]),
        env=dict(type='dict', default={}, no_log=True),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        services=dict(type='list', elements='str', default=[]),
        remove_volumes=dict(type='bool', default=False),
        wait=dict(type='bool', default=False),
        plan_only=dict(type='bool', default=False),
        wait_timeout=dict(type='int', default=120),
        db_service=dict(type='str', default='db'),
        db_user=dict(type='str', default='challengeuser'),
        db_name=dict(type='str', default='telemetry_db'),
        db_password=dict(type='str', no_log=True),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    timed(module)
    params = module.params
    if params['wait_timeout'] < 1:
        module.fail_json(msg='wait_timeout must be at least 1 second', error_code='bad_option', changed=False)
    project = ComposeProject(params['project_src'], project_name=params['project_name'], files=params['files'], env=params['env'],
                             db_service=params['db_service'], db_user=params['db_user'], db_name=params['db_name'],
                             db_password=params['db_password'])
    try:
        result = run_compose_project(project, state=params['state'], services=params['services'], remove_volumes=params['remove_volumes'],
                                     wait=params['wait'], wait_timeout=params['wait_timeout'],
                                     check_mode=module.check_mode or params['plan_only'])
        if params['plan_only']:
            result['changed'] = False
    except FleetDrError as exc:
        fail_with(module, exc)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
