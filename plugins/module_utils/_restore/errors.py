# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""RestoreError, the one exception of the restore. Internal to fleet_telemetry.dr; not a public API."""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import TransportError


class RestoreError(TransportError):
    """A refusal or failure of the restore: one sentence (``str``), a code, and structured mismatches.

    ``partial`` holds what the run had found out so far (timings, preflight, counts) for the result.
    """

    def __init__(self, msg, code='error', mismatches=None, changed=False, **kwargs):
        super(RestoreError, self).__init__(msg, code=code, **kwargs)
        self.mismatches = list(mismatches or [])
        self.changed = changed

    def to_result(self):
        result = super(RestoreError, self).to_result()
        result['mismatches'] = self.mismatches
        result['changed'] = self.changed
        return result
