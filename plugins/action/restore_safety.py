# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""restore_safety on the controller: the restore role's decision about a safety dump, from what its checks registered."""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore_plan import safety_plan
from ansible_collections.fleet_telemetry.dr.plugins.plugin_utils._controller import ControllerAction


class ActionModule(ControllerAction):

    ARGUMENT_SPEC = dict(
        db_check=dict(type='dict', default={}),
        volumes=dict(type='list', elements='str', default=[]),
        mounts=dict(type='list', elements='str', default=[]),
        other_volumes=dict(type='list', elements='str', default=[]),
        orphans=dict(type='list', elements='str', default=[]),
        remove_other_volumes=dict(type='bool', default=False),
        unreachable=dict(type='str', choices=['continue', 'stop', 'force'], default='continue'),
    )

    def compute(self, args, check_mode):
        return safety_plan(args)
