# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Argument specs shared by the modules, matching the doc fragments. Internal to fleet_telemetry.dr."""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import PhotoCryptoError, parse_key
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import Connection


def connection_argument_spec():
    """Options of doc fragment fleet_telemetry.dr._connection."""
    return dict(
        transport=dict(type='str', choices=['compose', 'direct'], default='compose'),
        project_src=dict(type='path'),
        project_name=dict(type='str'),
        service=dict(type='str', default='db'),
        compose_command=dict(type='str'),
        db_host=dict(type='str'),
        db_port=dict(type='int'),
        db_user=dict(type='str', default='challengeuser'),
        db_password=dict(type='str', no_log=True),
        db_name=dict(type='str', default='telemetry_db'),
        pg_bin_dir=dict(type='path'),
        connect_timeout=dict(type='int', default=10),
    )


CONNECTION_REQUIRED_IF = [('transport', 'compose', ['project_src'])]


def encryption_key_argument_spec():
    """Options of doc fragment fleet_telemetry.dr._encryption_key."""
    return dict(
        encryption_key=dict(type='str', no_log=True),
        cipher=dict(type='str', choices=['aes-256-gcm', 'fernet'], default='aes-256-gcm'),
    )


def connection_from_params(params):
    return Connection(
        transport=params['transport'],
        database=params['db_name'],
        user=params['db_user'],
        password=params['db_password'],
        project_src=params['project_src'],
        project_name=params['project_name'],
        service=params['service'],
        compose_command=params['compose_command'],
        host=params['db_host'],
        port=params['db_port'],
        bin_dir=params['pg_bin_dir'],
        connect_timeout=params['connect_timeout'],
    )


def key_from_params(params):
    """The 32 key bytes of ``encryption_key``, or None when it is not given; a bad key names the option (``bad_key``)."""
    if not params.get('encryption_key'):
        return None
    try:
        return parse_key(params['encryption_key'])
    except PhotoCryptoError as exc:
        raise PhotoCryptoError('encryption_key: %s' % exc) from None
