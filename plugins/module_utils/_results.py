# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""How the modules hand their results to Ansible. Internal to fleet_telemetry.dr: not a public API."""

from __future__ import annotations

import datetime
import time


def _as_built(kwargs):
    return kwargs


def keep_result_as_built(module):
    """Stop ``exit_json``/``fail_json`` from adding path information to a result that has a ``path``.

    ``AnsibleModule.add_path_info`` would overwrite the result's ``size`` (an artifact's, for a directory the sum of its
    files) with ``lstat(path).st_size`` (4096 for a directory), and add the owner and mode of the path, which an artifact's
    result does not promise.
    """
    module.add_path_info = _as_built
    return module


def fail_with(module, error, **extra):
    """Fail the module with a ``FleetDrError``: its sentence, ``error_code`` and details, then ``extra``; ``changed`` is
    false unless the error says otherwise."""
    result = {'changed': False}
    result.update(error.to_result())
    result.update(extra)
    module.fail_json(**result)


def _stamp(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def _with_times(method, started, clock):
    def finish(*args, **result):
        result.setdefault('started_at', started)
        result.setdefault('finished_at', _stamp(clock()))
        return method(*args, **result)
    return finish


def timed(module, clock=time.time):
    """Give every result of ``module``, success or failure, its own ``started_at`` and ``finished_at`` (ISO 8601 UTC, with
    microseconds, by the host's clock): the times of the step it ran, for the step records of a run."""
    started = _stamp(clock())
    for name in ('exit_json', 'fail_json'):
        setattr(module, name, _with_times(getattr(module, name), started, clock))
    return module
