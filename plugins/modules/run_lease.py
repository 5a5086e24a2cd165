#!/usr/bin/python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: run_lease
short_description: Keep two restores, or two drills, of one database from running at once
version_added: 0.1.0
description:
  - Takes or gives up a lease that spans a whole play, so that a second restore (or drill) of the same database on the same
    host is refused (RV(error_code=lock_held)) with who holds it, instead of running C(down -v) under the first one.
  - The lease is the file C(<directory>/.<run>-<database>.lease.json) (mode 0600), written under a C(flock) and holding the token of
    the run, the pid, host and user of the module that took it, when it was taken and when it expires. It never holds a
    secret.
  - A lease older than O(ttl) counts as abandoned (the play that took it was killed before it could give it up) and is
    taken over.
  - M(fleet_telemetry.dr.pg_logical_backup) refuses (RV(error_code=lock_held)) to back up a database into a directory that
    holds a live C(restore-<database>) lease; a C(restore) lease is in turn refused while a backup of the database into
    O(directory) runs, so a backup and a restore never overlap. The names are built in one place, shared with the backup.
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - fleet_telemetry.dr._attributes
attributes:
  check_mode:
    support: full
    details:
      - Says whether the lease could be taken (or would be given up) and writes nothing, not even a lock file; a lease
        held by another run, or a backup running during a restore, fails in check mode too.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Taking a lease the same O(token) holds renews it and reports C(changed=false).
options:
  directory:
    description: Directory of the lease file, for example the backup directory. It must exist.
    type: path
    required: true
  run:
    description: What the play does; it names the lease with O(database).
    type: str
    choices: [restore, drill]
    required: true
  database:
    description: The database the run restores or drills.
    type: str
    required: true
  token:
    description: Identifies the run; the same token renews or gives up the lease, any other is refused while it lasts.
    type: str
    required: true
  state:
    description: V(present) takes the lease, V(absent) gives it up (only when O(token) holds it).
    type: str
    choices: [present, absent]
    default: present
  ttl:
    description:
      - Seconds after which a lease that was not renewed nor given up counts as abandoned (its run was killed).
      - Renew it (take it again with the same O(token)) more often than that; M(fleet_telemetry.dr.job_status) renews it at
        every poll of a background job.
    type: int
    default: 14400
  stage:
    description:
      - A few words on where the run is, for example C(after down -v; safety dump /var/backups/x/safety/safety_...sql.zst).
        Kept in the lease until another stage is given; a contender's refusal shows it, and so does C(abandoned) in RV(lease) of the
        run that takes over the lease after its run was killed. Never put a secret here.
    type: str
seealso:
  - module: fleet_telemetry.dr.pg_logical_backup
"""

EXAMPLES = r"""
- name: Take the restore lease of telemetry_db
  fleet_telemetry.dr.run_lease:
    directory: /var/backups/fleet-telemetry
    run: restore
    database: telemetry_db
    token: "{{ restore_token }}"

- name: Give it up
  fleet_telemetry.dr.run_lease:
    directory: /var/backups/fleet-telemetry
    run: restore
    database: telemetry_db
    token: "{{ restore_token }}"
    state: absent
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
path:
  description: The lease file.
  returned: always
  type: str
lease:
  description:
    - The lease taken (token, pid, host, user, started_at, expires_at, purpose such as C(restore of telemetry_db), stage),
      with O(state=present).
    - C(abandoned) holds the purpose, start, host, user, stage and expiry of an expired lease of another run that this one
      took over - a run that was killed, at the step C(stage) says.
  returned: success, with O(state=present)
  type: dict
holder:
  description: The lease of the run that holds it, or the details of the backup that runs during a restore.
  returned: when RV(error_code=lock_held)
  type: dict
error_code:
  description: V(lock_held), or V(lock_error) when the directory cannot hold the lease.
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._lock import (
    RUNS, acquire_lease, lease_excludes, lease_name, lease_path, release_lease)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._results import fail_with, timed


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directory=dict(type='path', required=True),
            run=dict(type='str', choices=list(RUNS), required=True),
            database=dict(type='str', required=True),
            # It names a run (it is in the lease file and the result), it grants nothing: not a secret.
            token=dict(type='str', required=True, no_log=False),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            ttl=dict(type='int', default=14400),
            stage=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    timed(module)
    params = module.params
    name = lease_name(params['run'], params['database'])
    path = lease_path(params['directory'], name)
    try:
        if params['state'] == 'absent':
            changed = release_lease(params['directory'], name, params['token'], check_mode=module.check_mode)
            module.exit_json(changed=changed, path=path, msg='lease %s %s' % (path, 'given up' if changed else 'not held by this run'))
        lease, changed = acquire_lease(params['directory'], name, params['token'], params['ttl'],
                                       '%s of %s' % (params['run'], params['database']), check_mode=module.check_mode,
                                       exclude_locks=lease_excludes(params['run'], params['database']), stage=params['stage'])
    except FleetDrError as exc:
        fail_with(module, exc, path=path)
    msg = 'lease %s held until %s' % (path, lease['expires_at'])
    abandoned = lease.get('abandoned')
    if abandoned:
        msg += ('; it was taken over from a %s started %s on host %s that did not end (it was killed)%s' % (
            abandoned.get('purpose', 'run'), abandoned.get('started_at', 'at an unknown time'), abandoned.get('host', 'unknown'),
            ', at step "%s"' % abandoned['stage'] if abandoned.get('stage') else ''))
    module.exit_json(changed=changed, path=path, lease=lease, msg=msg)


if __name__ == '__main__':
    main()
