# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from unittest import mock

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow import client as escrow_client
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.errors import EscrowError


def test_the_client_has_the_short_timeouts_and_few_retries():
    module = mock.Mock(_name='fleet_telemetry.dr.pg_restore_verify')
    escrow_client.secretsmanager_client(module)
    module.client.assert_called_once_with('secretsmanager', config=escrow_client.CLIENT_CONFIG)
    assert escrow_client.CLIENT_CONFIG['connect_timeout'] <= 10 and escrow_client.CLIENT_CONFIG['retries']['max_attempts'] <= 3


def test_without_boto3_the_module_is_named_and_no_client_is_made():
    module = mock.Mock(_name='fleet_telemetry.dr.pg_restore_verify')
    with mock.patch.object(escrow_client, 'HAS_BOTO3', False):
        with pytest.raises(EscrowError) as caught:
            escrow_client.secretsmanager_client(module)
    assert caught.value.code == 'boto3_missing' and 'pg_restore_verify' in str(caught.value)
    module.client.assert_not_called()
