# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Actions that only compute on the controller from their arguments (the results other tasks registered).

Internal to fleet_telemetry.dr: not a public API. Such an action runs no module and needs no connection to the host; its
times come from the controller's clock, the same one the roles' ``now()`` reads, so that RTO and RPO use one clock.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError


class ControllerAction(ActionBase):
    """Validates the task's arguments against ``ARGUMENT_SPEC`` (and ``VALIDATION``), then returns ``compute()``.

    With ``REGISTERED`` (``{step key: variable a role registers that step's result in}``), an absent ``results`` argument
    is read from those variables, so a role declares its steps by registering them, and nowhere else; a step that did not
    run gives {}. A ``FleetDrError`` becomes a failed result with its sentence and ``error_code``; ``changed`` is always
    false.
    """

    TRANSFERS_FILES = False
    _requires_connection = False
    ARGUMENT_SPEC = {}
    VALIDATION = {}
    REGISTERED = None

    def compute(self, args, check_mode):
        """The result, from the validated arguments; raise ``FleetDrError`` to fail."""
        raise NotImplementedError

    def run(self, tmp=None, task_vars=None):
        result = super(ControllerAction, self).run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC, **self.VALIDATION)
        if self.REGISTERED is not None and args.get('results') is None:
            variables = task_vars or {}
            args['results'] = dict((key, variables.get(name) or {}) for key, name in self.REGISTERED.items())
        try:
            result.update(self.compute(args, bool(self._task.check_mode)))
        except FleetDrError as exc:
            result.update(exc.to_result())
            result['failed'] = True
        result['changed'] = False
        return result
