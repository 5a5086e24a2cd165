# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Passes the remote shell's ``async_dir`` to the job_status module, as ansible.builtin.async_status's action does, and
returns the job's own result as the task's."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()


class ActionModule(ActionBase):

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = dict(self._task.args)
        if not args.get('async_dir'):
            args['async_dir'] = self._remote_expand_user(self.get_shell_option('async_dir', default='~/.ansible_async'))
        answer = self._execute_module(module_name='fleet_telemetry.dr.job_status', task_vars=task_vars, module_args=args)
        job = answer.pop('job_result', None)
        if job is None:
            result.update(answer)
            result['finished'] = True
            return result
        # The job's own result, as async_status returns it (with the job's invocation, its no_log values masked).
        result.update((key, value) for key, value in job.items() if key not in ('warnings', 'deprecations'))
        if job.get('lease_problem'):
            display.warning(job['lease_problem'])
        result.setdefault('changed', False)
        result['finished'] = bool(job.get('finished'))
        return result
