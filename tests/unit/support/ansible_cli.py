# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Ansible's command line tools run on this checkout as fleet_telemetry.dr, as scripts/lib.sh's use_checkout_collection
puts it on the collection path, beside the collections the ``ansible`` package bundles. For unit tests only."""

from __future__ import annotations

import os
import subprocess
import sys

import ansible_collections

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))))


def _checkout_root():
    """The sys.path entry whose ansible_collections/fleet_telemetry/dr is this checkout (tests/unit/conftest.py puts it there)."""
    for entry in sys.path:
        candidate = os.path.join(entry or '.', 'ansible_collections', 'fleet_telemetry', 'dr')
        if os.path.isdir(candidate) and os.path.realpath(candidate) == REPO_ROOT:
            return os.path.abspath(entry)
    raise AssertionError('this checkout is not importable as ansible_collections.fleet_telemetry.dr (tests/unit/conftest.py)')


def has_collection(fqcn):
    """Whether the collection ``fqcn`` (namespace.name) is installed where Python finds ansible_collections."""
    return any(os.path.isdir(os.path.join(path, *fqcn.split('.'))) for path in ansible_collections.__path__)


def environment():
    """The environment of the tools: this checkout first on the collection path, then every other ansible_collections."""
    roots = [_checkout_root()] + [os.path.dirname(path) for path in ansible_collections.__path__]
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(dict.fromkeys(roots)))
    env.pop('ANSIBLE_CONFIG', None)
    return env


def run(command, *args, timeout=600):
    """Run ``ansible.cli.<command>`` (``doc``, ``playbook``) or a Python script with this interpreter, from the checkout."""
    argv = [sys.executable] + (['-m', 'ansible.cli.' + command] if '/' not in command else [command]) + list(args)
    return subprocess.run(argv, cwd=REPO_ROOT, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, check=False)
