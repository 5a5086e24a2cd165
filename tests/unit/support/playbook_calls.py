# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Print, as JSON, the module calls a playbook's plays would make on localhost, without running any. For unit tests only.

    python playbook_calls.py PLAYBOOK [EXTRA_VARS_FILE ...]

Ansible itself loads the playbook (collections on ANSIBLE_COLLECTIONS_PATH, plugins beside the playbook), resolves each
task's action, evaluates its ``when`` and ``loop``, and templates its arguments (lookups run, ``omit`` drops a key) with
the play's variables and the extra variables; the ``module_defaults`` that apply to the action (its own, or a group's of
its collection's ``meta/runtime.yml``) are merged under the task's arguments, as at run time. Each call is
``{"task", "action", "item", "skipped", "args"}``. A separate process, so that the plugin loader's global state stays out
of the test session.
"""

from __future__ import annotations

import json
import os
import sys

import yaml

from ansible import context
from ansible.collections.list import list_collections
from ansible.inventory.manager import InventoryManager
from ansible.module_utils.common.collections import ImmutableDict
from ansible.parsing.dataloader import DataLoader
from ansible.playbook import Playbook
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar
from ansible.vars.manager import VariableManager


def in_group(action, group):
    """Whether the module_defaults key ``group/<namespace>.<name>.<group>`` applies to ``action`` (a FQCN), as its
    collection's meta/runtime.yml says."""
    namespace, name, group_name = group[len('group/'):].split('.', 2)
    if not action.startswith('%s.%s.' % (namespace, name)):
        return False
    path = os.fsdecode(list_collections(coll_filter='%s.%s' % (namespace, name))['%s.%s' % (namespace, name)])
    with open(os.path.join(path, 'meta', 'runtime.yml'), 'rb') as runtime:
        members = yaml.safe_load(runtime).get('action_groups', {}).get(group_name, [])
    return action.split('.', 2)[2] in members


def defaults_for(task, templar):
    merged = {}
    for defaults in task.module_defaults or []:
        for key, value in defaults.items():
            if key == task.resolved_action or (key.startswith('group/') and in_group(task.resolved_action, key)):
                merged.update(templar.template(value))
    return merged


def calls(playbook, extra_vars_files):
    context.CLIARGS = ImmutableDict(extra_vars=tuple('@' + path for path in extra_vars_files), inventory=None)
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=['localhost,'])
    variables = VariableManager(loader=loader, inventory=inventory)
    host = inventory.get_host('localhost')
    for play in Playbook.load(playbook, variable_manager=variables, loader=loader).get_plays():
        for block in play.compile():
            for task in block.block:
                if task.implicit:
                    continue
                task_vars = variables.get_vars(play=play, task=task, host=host)
                templar = Templar(loader=loader, variables=task_vars)
                loop_var = task.loop_control.loop_var if task.loop_control else 'item'
                items = templar.template(task.loop) if task.loop is not None else [None]
                for item in items:
                    if task.loop is not None:
                        templar.available_variables = dict(task_vars, **{loop_var: item})
                    skipped = not all(templar.evaluate_conditional(condition) for condition in task.when or [])
                    args = {} if skipped else dict(defaults_for(task, templar), **templar.template(task.args))
                    yield {'task': task.get_name(), 'action': task.resolved_action, 'item': item, 'skipped': skipped, 'args': args}


def main():
    init_plugin_loader(os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep))
    json.dump(list(calls(sys.argv[1], sys.argv[2:])), sys.stdout, indent=1, default=str)


if __name__ == '__main__':
    main()
