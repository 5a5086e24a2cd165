# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Run a controller-side action plugin in the test process. For unit tests only."""

from __future__ import annotations

from unittest import mock


def run_action(action_class, args, check_mode=False, task_vars=None):
    """The result of ``action_class`` run with the task arguments ``args`` (no host, no connection is used)."""
    task = mock.MagicMock()
    task.args = dict(args)
    task.check_mode = check_mode
    task.async_val = 0
    connection = mock.MagicMock()
    connection._shell.tmpdir = '/nonexistent'
    action = action_class(task, connection, mock.MagicMock(), loader=None, templar=None, shared_loader_obj=None)
    return action.run(task_vars=dict(task_vars or {}))
