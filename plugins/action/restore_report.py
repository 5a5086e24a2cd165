# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""restore_report on the controller: the restore's report and the way back, from the results its steps registered."""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore_plan import registered_results, report_plan
from ansible_collections.fleet_telemetry.dr.plugins.plugin_utils._controller import ControllerAction


class ActionModule(ControllerAction):

    # Paths are the host's: not expanded here, on the controller.
    ARGUMENT_SPEC = dict(
        results=dict(type='dict'),
        started_at=dict(type='str', required=True),
        failed_task=dict(type='str'),
        failed_msg=dict(type='str'),
        failed=dict(type='bool', default=False),
        confirmed=dict(type='bool', default=False),
        database=dict(type='str'),
        target=dict(type='dict', default={}),
        inventory=dict(type='str'),
        playbook=dict(type='str', default='playbooks/restore.yml'),
        limit=dict(type='str'),
        backup_dir=dict(type='str'),
        report_dir=dict(type='str'),
        history=dict(type='bool', default=True),
    )

    def compute(self, args, check_mode):
        if args['results'] is None:
            # The restore role registers each step under the name _restore_plan.REGISTERED gives it: read them here.
            args = dict(args, results=registered_results(self._task_vars))
        return report_plan(args, check_mode)

    def run(self, tmp=None, task_vars=None):
        self._task_vars = task_vars or {}
        return super(ActionModule, self).run(tmp, task_vars)
