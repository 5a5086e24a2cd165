# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The Secrets Manager client of a module (amazon.aws's AnsibleAWSModule: its region, endpoint_url and credential
lookup), the same for key_escrow and pg_restore_verify. Internal to fleet_telemetry.dr; not a public API."""

from __future__ import annotations

from ansible_collections.amazon.aws.plugins.module_utils.botocore import HAS_BOTO3
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.errors import EscrowError

# botocore settings of the client: fail fast on an unreachable endpoint, a few standard retries.
CLIENT_CONFIG = {'connect_timeout': 10, 'read_timeout': 30, 'retries': {'mode': 'standard', 'max_attempts': 3}}


def secretsmanager_client(module):
    """``module.client('secretsmanager')`` with ``CLIENT_CONFIG``; ``boto3_missing`` naming the module without boto3."""
    if not HAS_BOTO3:
        raise EscrowError('%s needs the Python libraries boto3 and botocore on the host that runs it to reach AWS Secrets '
                          'Manager: install them (pip install boto3, or the python3-boto3 package)' % module._name,
                          code='boto3_missing')
    return module.client('secretsmanager', config=CLIENT_CONFIG)
