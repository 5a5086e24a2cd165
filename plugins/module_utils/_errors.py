# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one base class of the errors that reach a module. Internal to fleet_telemetry.dr: not a public API.

Every error a module reports derives from ``FleetDrError``: ``str(err)`` is one sentence an operator can act on (the
cause and the setting or command that fixes it), ``code`` a stable error code (``error_code`` in the result), ``extra``
structured details (never a secret), ``partial`` what the run had found out before it failed. A module's ``main()``
has one ``except FleetDrError`` and fails with ``err.to_result()``.

This file imports nothing and must keep compiling on Python 3.8.
"""

from __future__ import annotations


class FleetDrError(Exception):
    """One sentence, a stable code and structured details; ``to_result()`` is the failed result of a module."""

    code = 'error'

    def __init__(self, msg, code=None, **extra):
        super(FleetDrError, self).__init__(msg)
        if code is not None:
            self.code = code
        self.extra = extra
        self.partial = {}

    def to_result(self):
        """The keys of a failed module result: what the run found out, the details, ``msg`` and ``error_code``."""
        result = dict(self.partial)
        result.update(self.extra)
        result.update(msg=str(self), error_code=self.code)
        return result
