# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""dr_drill_summary on the controller: the drill's report data from the results its steps registered, timed by their own times."""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._drill import REGISTERED, summary
from ansible_collections.fleet_telemetry.dr.plugins.plugin_utils._controller import ControllerAction


class ActionModule(ControllerAction):

    # Paths are the host's: not expanded here, on the controller.
    ARGUMENT_SPEC = dict(
        results=dict(type='dict'),
        artifact=dict(type='dict', default={}),
        source=dict(type='dict', default={}),
        stack=dict(type='dict', default={}),
        restore=dict(type='dict', default={}),
        failure=dict(type='dict'),
        teardown=dict(type='dict'),
        database=dict(type='str'),
        backup_dir=dict(type='str'),
        report_dir=dict(type='str'),
        history=dict(type='str'),
    )

    # Without results, the steps' results are read from the variables the drill role registers them in.
    REGISTERED = REGISTERED

    def compute(self, args, check_mode):
        return summary(args)
