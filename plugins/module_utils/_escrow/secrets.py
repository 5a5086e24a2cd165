# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The Secrets Manager calls of the escrow. Internal to fleet_telemetry.dr; not a public API.

The boto3 ``secretsmanager`` client is given by the caller. Calls and their IAM actions: ``GetSecretValue``
(``secretsmanager:GetSecretValue``, and ``kms:Decrypt`` with a customer managed key), ``ListSecretVersionIds``
(``secretsmanager:ListSecretVersionIds``), ``CreateSecret`` (``secretsmanager:CreateSecret``, and
``kms:GenerateDataKey`` with ``kms_key_id``). Nothing here ever writes a new version of an existing secret
(``PutSecretValue``, ``UpdateSecret``): ``create_if_absent`` creates a secret or leaves it alone.

This file must keep compiling on Python 3.8.
"""

from __future__ import annotations

import datetime
import uuid

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.errors import EscrowError, aws_code, classify

CURRENT = 'AWSCURRENT'
PREVIOUS = 'AWSPREVIOUS'
_MAX_PAGES = 1000


def _iso(value):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc)
        return value.strftime('%Y-%m-%dT%H:%M:%SZ')
    return None if value is None else str(value)


def _rank(stages):
    if CURRENT in stages:
        return 0
    if PREVIOUS in stages:
        return 1
    return 2


def order_versions(items):
    """``items`` (dicts with ``stages`` and a ``created`` datetime or None) in the order versions are tried: AWSCURRENT,
    AWSPREVIOUS, then the rest newest first (equal times: the later listed first; unknown times last)."""
    listed = list(reversed(list(items)))
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

    def newest_first(item):
        created = item.get('created')
        if not isinstance(created, datetime.datetime):
            return 1, 0.0
        if created.tzinfo is None:
            created = created.replace(tzinfo=datetime.timezone.utc)
        return 0, -(created - epoch).total_seconds()

    listed.sort(key=newest_first)
    listed.sort(key=lambda item: _rank(item.get('stages') or ()))
    return listed


def versions(client, secret_id):
    """The versions of ``secret_id``, deprecated ones (without a stage) included, as ``{'version_id', 'stages',
    'created'}`` (``created`` ISO 8601 UTC or None): AWSCURRENT first, then AWSPREVIOUS, then the rest newest first."""
    items = []
    token = None
    for dummy in range(_MAX_PAGES):
        args = {'SecretId': secret_id, 'IncludeDeprecated': True}
        if token:
            args['NextToken'] = token
        try:
            page = client.list_secret_version_ids(**args)
        except Exception as exc:
            raise classify(exc, 'ListSecretVersionIds', secret_id) from None
        for version in page.get('Versions') or ():
            items.append({'version_id': version.get('VersionId'), 'stages': list(version.get('VersionStages') or []),
                          'created': version.get('CreatedDate')})
        token = page.get('NextToken')
        if not token:
            break
    ordered = order_versions(items)
    for item in ordered:
        item['created'] = _iso(item['created'])
    return ordered


def get_version(client, secret_id, version_id=None, stage=None):
    """One version of ``secret_id`` (``stage`` AWSCURRENT when neither is given): ``{'value', 'version_id', 'stages',
    'created'}``; ``value`` is the SecretString, or the SecretBinary bytes of a binary secret. Never log ``value``."""
    args = {'SecretId': secret_id}
    if version_id:
        args['VersionId'] = version_id
    if stage or not version_id:
        args['VersionStage'] = stage or CURRENT
    try:
        response = client.get_secret_value(**args)
    except Exception as exc:
        raise classify(exc, 'GetSecretValue', secret_id, version_id=version_id) from None
    value = response.get('SecretString')
    if value is None:
        value = response.get('SecretBinary')
    return {'value': value, 'version_id': response.get('VersionId', version_id),
            'stages': list(response.get('VersionStages') or ([stage] if stage else [])),
            'created': _iso(response.get('CreatedDate'))}


def secret_string(client, secret_id, version_id=None, stage=None):
    """The value of one version of ``secret_id`` (AWSCURRENT when neither ``version_id`` nor ``stage`` is given): the
    SecretString, or the SecretBinary bytes of a binary secret."""
    return get_version(client, secret_id, version_id=version_id, stage=stage)['value']


def exists(client, secret_id):
    """True when ``secret_id`` has an AWSCURRENT version this identity can read, False when the secret does not exist
    (GetSecretValue: the one permission the escrow needs anyway); other errors are raised."""
    try:
        get_version(client, secret_id)
    except EscrowError as exc:
        if exc.code == 'no_secret' and exc.extra.get('aws_code') == 'ResourceNotFoundException':
            return False
        raise
    return True


def create_if_absent(client, secret_id, secret_string, kms_key_id=None, description=None, check_mode=False,
                     client_request_token=None):
    """Create ``secret_id`` holding ``secret_string`` when it does not exist: ``'created'``, ``'exists'`` (nothing
    written, whatever it holds), or in check mode ``'would_create'``/``'exists'`` (nothing written).

    Only ``CreateSecret`` (with ``ClientRequestToken``, so that botocore's retries of one call create one version):
    never ``PutSecretValue``, so an existing secret is never given a new value.
    """
    if check_mode:
        return 'exists' if exists(client, secret_id) else 'would_create'
    args = {'Name': secret_id, 'SecretString': secret_string,
            'ClientRequestToken': client_request_token or str(uuid.uuid4())}
    if kms_key_id:
        args['KmsKeyId'] = kms_key_id
    if description:
        args['Description'] = description
    try:
        client.create_secret(**args)
    except Exception as exc:
        if aws_code(exc) == 'ResourceExistsException':
            return 'exists'
        raise classify(exc, 'CreateSecret', secret_id, secrets=(secret_string,)) from None
    return 'created'
