# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Make ``ansible_collections.fleet_telemetry.dr`` importable when plain pytest runs from a checkout.

ansible-test units runs the tests from a tree that already sits at
``<root>/ansible_collections/fleet_telemetry/dr`` and sets up the import path itself; then only
``<root>`` is ensured on ``sys.path``. A checkout anywhere else gets, once per session, a temporary
``ansible_collections/fleet_telemetry/dr`` symlink to the repository root.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def _collections_parent(repo_root):
    """Return the directory to put on sys.path so that ``ansible_collections.fleet_telemetry.dr`` is the repo."""
    parts = repo_root.split(os.sep)
    if parts[-3:] == ['ansible_collections', 'fleet_telemetry', 'dr']:
        return os.sep.join(parts[:-3])
    tmp = tempfile.mkdtemp(prefix='fleet_telemetry_dr_units_')
    atexit.register(shutil.rmtree, tmp, True)
    namespace = os.path.join(tmp, 'ansible_collections', 'fleet_telemetry')
    os.makedirs(namespace)
    os.symlink(repo_root, os.path.join(namespace, 'dr'))
    return tmp


def _ensure_importable():
    parent = _collections_parent(REPO_ROOT)
    if parent not in sys.path:
        sys.path.insert(0, parent)


_ensure_importable()


@pytest.fixture(autouse=True)
def _docker_compose_v1_on_path(monkeypatch):
    """Whether docker-compose (v1) is installed is the host's business: unit tests see it on PATH unless they say otherwise
    (``_transport.find_program``)."""
    from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _transport
    real = _transport.find_program
    monkeypatch.setattr(_transport, 'find_program', lambda name: '/usr/bin/docker-compose' if name == 'docker-compose' else real(name))
