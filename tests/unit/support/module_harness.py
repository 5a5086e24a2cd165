# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Run a module's ``main()`` in the test process and catch its result. For unit tests only."""

from __future__ import annotations

from unittest import mock

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class AnsibleExitJson(Exception):
    pass


class AnsibleFailJson(Exception):
    pass


def _exit_json(self, **kwargs):
    raise AnsibleExitJson(kwargs)


def _fail_json(self, msg, **kwargs):
    kwargs['msg'] = msg
    kwargs['failed'] = True
    raise AnsibleFailJson(kwargs)


def patched_exits():
    """A context in which AnsibleModule.exit_json / fail_json raise AnsibleExitJson / AnsibleFailJson."""
    return mock.patch.multiple(basic.AnsibleModule, exit_json=_exit_json, fail_json=_fail_json)


def run_main(main, args, check_mode=False):
    """Run ``main`` with ``args``; return ``('exit' | 'fail', result)``."""
    args = dict(args)
    if check_mode:
        args['_ansible_check_mode'] = True
    with patch_module_args(args), patched_exits():
        try:
            main()
        except AnsibleExitJson as exc:
            return 'exit', exc.args[0]
        except AnsibleFailJson as exc:
            return 'fail', exc.args[0]
    raise AssertionError('the module neither exited nor failed')
