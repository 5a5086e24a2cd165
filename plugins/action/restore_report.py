# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""restore_report on the controller: the restore's report and the way back, from the results its steps registered."""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore_plan import REGISTERED, report_plan
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

    # Without results, the steps' results are read from the variables the restore role registers them in.
    REGISTERED = REGISTERED

    def compute(self, args, check_mode):
        return report_plan(args, check_mode)
