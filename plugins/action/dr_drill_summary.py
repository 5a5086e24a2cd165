# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""dr_drill_summary on the controller: the drill's report data from the results its steps registered, timed by their own times."""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._drill import registered_results, summary
from ansible_collections.fleet_telemetry.dr.plugins.plugin_utils._controller import ControllerAction


class ActionModule(ControllerAction):

    # Paths are the host's: not expanded here, on the controller.
    ARGUMENT_SPEC = dict(
        results=dict(type='dict'),
        artifact=dict(type='dict', default={}),
        stack=dict(type='dict', default={}),
        restore=dict(type='dict', default={}),
        failure=dict(type='dict'),
        teardown=dict(type='dict'),
        database=dict(type='str'),
        backup_dir=dict(type='str'),
        report_dir=dict(type='str'),
        history=dict(type='str'),
    )

    def compute(self, args, check_mode):
        if args['results'] is None:
            # The drill role registers each step under the name _drill.REGISTERED gives it: read them here.
            args = dict(args, results=registered_results(self._task_vars))
        return summary(args)

    def run(self, tmp=None, task_vars=None):
        self._task_vars = task_vars or {}
        return super(ActionModule, self).run(tmp, task_vars)
