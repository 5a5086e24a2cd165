#!/usr/bin/python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: job_status
short_description: Wait on a background job of the collection, and notice at once when it died
version_added: 0.1.0
description:
  - Reads the state of an C(async) job as M(ansible.builtin.async_status) does, and returns the job's own result once it
    ended, or RV(finished=false) while it runs.
  - Unlike M(ansible.builtin.async_status), it notices a dead job. When the job's processes were killed together (a kill of
    the process group, the OOM killer, a reboot), the job file says "unfinished" for ever. Here that fails at the next poll
    (RV(error_code=job_died)) with one sentence naming the job, what it left behind (O(leftovers)) and, with O(lock), whether
    its module still runs without it.
  - A module killed on its own, or a job over its time limit, fails with one sentence too, not with the wrapper's traceback.
  - Use it in an C(until) loop on RV(finished); a dead job returns RV(finished=true) and fails, which ends the loop.
  - With O(wait) it watches the job for up to that many seconds and answers as soon as the job ends, so a loop with
    C(delay=0) sees the end of the job within a quarter of a second instead of at its next poll.
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - fleet_telemetry.dr._attributes
attributes:
  check_mode:
    support: full
    details:
      - It only reads; with O(stop=true) check mode says which processes it would stop.
  diff_mode:
    support: none
  idempotent:
    support: full
  action:
    description: Runs through an action plugin on the controller, which passes the remote shell's C(async_dir).
    support: full
options:
  jid:
    description: The job id, RV(ansible_job_id) of the task started with C(async) and C(poll=0).
    type: str
    required: true
  job:
    description: What the job does, for the messages, for example C(backup of telemetry_db).
    type: str
    default: job
  leftovers:
    description: A sentence for a dead job's message - what a killed job of this kind leaves behind and what removes it.
    type: str
    default: ""
  lease:
    description:
      - A lease of M(fleet_telemetry.dr.run_lease) to renew at every poll, so that it lasts as long as the job does and
        no longer; its O(fleet_telemetry.dr.run_lease#module:ttl) then only has to outlast one poll and the steps that do not
        poll.
    type: dict
    suboptions:
      directory:
        description: The lease's directory.
        type: path
        required: true
      run:
        description: The lease's run.
        type: str
        choices: [restore, drill]
        required: true
      database:
        description: The lease's database.
        type: str
        required: true
      token:
        description: The token of the run that holds the lease.
        type: str
        required: true
      ttl:
        description: Seconds the renewed lease lasts.
        type: int
        required: true
  wait:
    description:
      - Seconds to watch the job before answering that it still runs, reading its state every quarter of a second; the
        answer comes as soon as the job ends or dies. V(0) answers at once, as M(ansible.builtin.async_status) does.
      - With an C(until) loop, set C(delay=0) and O(wait) to the poll interval; O(lease) is renewed at every answer.
    type: int
    default: 0
  async_dir:
    description:
      - The directory of the job files.
      - The action plugin fills in the C(async_dir) of the remote shell when it is not given, as M(ansible.builtin.async_status)
        does.
    type: path
    default: ~/.ansible_async
  stop:
    description:
      - Stop the job instead of reading its state - C(SIGTERM) to the process groups of its C(async_wrapper) processes (the
        module and the commands it runs are in one of them), C(SIGKILL) to what is left 10 seconds later.
      - For a job left running by a play that was interrupted. What a stopped job leaves behind is what a killed one does
        (see O(leftovers)); the next run of the same kind cleans it up.
    type: bool
    default: false
  lock:
    description:
      - The lock file that the job's module holds while it runs, for example C(<backup_dir>/.backup-<database>.lock).
      - When the job is dead but another process still holds it, the message names that pid (the module, orphaned from its
        wrapper).
    type: path
notes:
  - A job is alive while one of the C(async_wrapper) processes with its id runs on the host (read from C(/proc)).
    Where C(/proc) cannot be read, the job counts as alive, as with M(ansible.builtin.async_status).
seealso:
  - module: ansible.builtin.async_status
"""

EXAMPLES = r"""
- name: Stop a backup that an interrupted play left running
  fleet_telemetry.dr.job_status:
    jid: j123456789012.4242
    stop: true

- name: Start the backup
  fleet_telemetry.dr.pg_logical_backup:
    backup_dir: /var/backups/fleet-telemetry
  async: 21600
  poll: 0
  register: backup_job

- name: Wait for it (answers when the job ends; fails within one poll when it dies)
  fleet_telemetry.dr.job_status:
    jid: "{{ backup_job.ansible_job_id }}"
    job: backup of telemetry_db
    leftovers: nothing was published; the next backup removes its temporary file
    lock: /var/backups/fleet-telemetry/.backup-telemetry_db.lock
    wait: 5
  register: backup
  until: backup.finished
  retries: 4320
  delay: 0
"""

RETURN = r"""
finished:
  description: Whether the job ended (with its result, or dead).
  returned: always
  type: bool
ansible_job_id:
  description: The job id.
  returned: always
  type: str
stopped:
  description: The pids of the wrapper processes whose process groups were stopped (O(stop=true)).
  returned: with O(stop=true)
  type: list
  elements: int
lease_problem:
  description: Why O(lease) could not be renewed (another run took it over); the wait goes on, as the job does.
  returned: when the renewal failed
  type: str
dead:
  description: True when the job's processes are gone and it never reported a result.
  returned: when the job died
  type: bool
error_code:
  description: V(job_died), V(job_timeout), V(job_missing), or the job's own error code.
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._jobs import stop_job, wait_for_job, wrapper_pids
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._lock import RUNS, LockError, acquire_lease, lease_name, lease_path


def main():
    module = AnsibleModule(
        argument_spec=dict(
            jid=dict(type='str', required=True),
            job=dict(type='str', default='job'),
            leftovers=dict(type='str', default=''),
            lock=dict(type='path'),
            stop=dict(type='bool', default=False),
            lease=dict(type='dict', options=dict(
                directory=dict(type='path', required=True),
                run=dict(type='str', choices=list(RUNS), required=True),
                database=dict(type='str', required=True),
                # It names a run, it grants nothing: not a secret.
                token=dict(type='str', required=True, no_log=False),
                ttl=dict(type='int', required=True),
            )),
            async_dir=dict(type='path', default='~/.ansible_async'),
            wait=dict(type='int', default=0),
        ),
        supports_check_mode=True,
    )
    params = module.params
    async_dir = params['async_dir']
    if params['stop']:
        if module.check_mode:
            pids = wrapper_pids(params['jid']) or []
            module.exit_json(changed=bool(pids), stopped=pids, msg='would stop the processes %s of job %s' % (pids, params['jid']))
        module.exit_json(**stop_job(async_dir, params['jid'], params['job']))
    result = wait_for_job(async_dir, params['jid'], params['wait'], params['job'], params['leftovers'], params['lock'])
    if params['lease'] and not module.check_mode:
        problem = renew_lease(params['lease'])
        if problem:
            result['lease_problem'] = problem
    # Nested, so that exit_json leaves the job's own result as it is (its path info would overwrite a directory's size);
    # the action plugin returns it as the task's result.
    module.exit_json(changed=False, job_result=result)


def renew_lease(lease):
    """Renew the lease of the run that waits; a sentence when that failed (the wait goes on: the job still runs)."""
    name = lease_name(lease['run'], lease['database'])
    try:
        acquire_lease(lease['directory'], name, lease['token'], lease['ttl'], '%s of %s' % (lease['run'], lease['database']))
    except LockError as exc:
        return 'the lease %s could not be renewed: %s' % (lease_path(lease['directory'], name), exc)
    return None


if __name__ == '__main__':
    main()
