# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""EscrowError, and the classification of Secrets Manager errors. Internal to fleet_telemetry.dr; not a public API.

boto3 and botocore are not imported: their errors are told apart by AWS error code and botocore exception class name
(``_offsite.s3.error_code``). Every sentence names what failed, the cause and the fix, and never holds a secret value:
an AWS message is only quoted for an error this table does not know, with the secret values the caller names removed.

This file must keep compiling on Python 3.8.
"""

from __future__ import annotations

import re

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.s3 import CONNECTION_ERRORS, error_code

CODES = ('vault_unreachable', 'vault_denied', 'no_secret', 'malformed_secret', 'vault_drift', 'no_matching_version',
         'secret_exists_differs', 'wrong_key', 'vault_error')

# The IAM permissions of each call, named in the fix of a refusal.
PERMISSIONS = {
    'GetSecretValue': 'secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its KMS key when that is a '
                      'customer managed key)',
    'ListSecretVersionIds': 'secretsmanager:ListSecretVersionIds on the secret',
    'CreateSecret': 'secretsmanager:CreateSecret on the secret name (and kms:GenerateDataKey and kms:Decrypt on '
                    'kms_key_id when it is set)',
}

_CREDENTIALS_FIX = 'check access_key and secret_key (or the profile), session_token and the host clock'
_CREDENTIALS = {
    'UnrecognizedClientException': 'the AWS access key is not known to Secrets Manager',
    'InvalidClientTokenId': 'the AWS access key is not known to Secrets Manager',
    'InvalidAccessKeyId': 'the AWS access key is not known to Secrets Manager',
    'InvalidSignatureException': 'Secrets Manager rejected the request signature (wrong secret key or host clock)',
    'SignatureDoesNotMatch': 'Secrets Manager rejected the request signature (wrong secret key or host clock)',
    'IncompleteSignature': 'the request signature is incomplete',
    'ExpiredToken': 'the AWS session token has expired',
    'ExpiredTokenException': 'the AWS session token has expired',
    'InvalidToken': 'the AWS session token is not valid',
    'NoCredentialsError': 'no AWS credentials were found',
    'PartialCredentialsError': 'the AWS credentials are incomplete',
}
_DENIED = ('AccessDenied', 'AccessDeniedException')
_UNREACHABLE = CONNECTION_ERRORS + ('SSLError',)
_THROTTLED = ('ThrottlingException', 'Throttling', 'TooManyRequestsException', 'RequestLimitExceeded')
_SERVER = ('InternalServiceError', 'InternalFailure', 'ServiceUnavailable', 'ServiceUnavailableException')
_DETAIL_LIMIT = 300
# An error body in XML where JSON was expected (a proxy, moto's IAM layer): botocore sees only the HTTP status.
_XML_CODE = re.compile(r'<Code>([A-Za-z0-9_.]+)</Code>')
_XML_MESSAGE = re.compile(r'<Message>([^<]*)</Message>')


class EscrowError(FleetDrError):
    """One sentence (cause and fix, never a secret value) and a code of ``CODES``; ``extra`` holds ``secret_id`` and,
    for an AWS error, ``aws_code``."""

    code = 'vault_error'


def aws_code(exc):
    """The AWS error code of a boto3 exception (read from an XML body when botocore saw only an HTTP status), the
    botocore exception class name, or None for other errors."""
    response = getattr(exc, 'response', None)
    error = response.get('Error') if isinstance(response, dict) else None
    if isinstance(error, dict) and str(error.get('Code') or '').isdigit():
        found = _XML_CODE.search(str(error.get('Message') or ''))
        return found.group(1) if found else str(error['Code'])
    return error_code(exc)


def _aws_message(exc):
    response = getattr(exc, 'response', None)
    error = (response.get('Error') if isinstance(response, dict) else None) or {}
    message = str(error.get('Message') or exc)
    found = _XML_MESSAGE.search(message)
    return found.group(1) if found else message


def _redacted(text, secrets):
    text = ' '.join(str(text).split()).rstrip('.')
    if text.startswith('<'):
        return 'an answer that is not an AWS error (an HTML or XML page: a proxy or a wrong endpoint_url?)'
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, '<redacted>')
    return text[:_DETAIL_LIMIT]


def _what(operation, secret_id, version_id):
    if version_id:
        return '%s of version %s of the vault secret %s' % (operation, version_id, secret_id)
    return '%s of the vault secret %s' % (operation, secret_id)


def _not_found(operation, secret_id, version_id):
    if operation == 'CreateSecret':
        return ('the KMS key or a resource the request names does not exist: correct kms_key_id (a key id, ARN or '
                'alias/... of this account and region)')
    if version_id:
        return 'that version no longer exists (deleted since it was listed): run again'
    return ('the secret does not exist in this account and region: create it with fleet_telemetry.dr.key_escrow '
            '(create=true and encryption_key), or correct the secret id, region or endpoint_url')


def _hint(code, operation, secret_id, version_id, message):
    """``(escrow code, cause: fix)`` of the AWS error ``code``."""
    if code in _UNREACHABLE:
        return 'vault_unreachable', ('the Secrets Manager endpoint cannot be reached: check region or endpoint_url, the '
                                     'network, any proxy and the firewall (TLS: aws_ca_bundle, validate_certs), then run again')
    if code in _DENIED:
        return 'vault_denied', 'access denied: grant this AWS identity %s' % PERMISSIONS.get(operation, 'the secretsmanager action')
    if code == '403':
        return 'vault_denied', ('access denied or credentials refused: grant this AWS identity %s, and %s'
                                % (PERMISSIONS.get(operation, 'the secretsmanager action'), _CREDENTIALS_FIX))
    if code in _CREDENTIALS:
        fix = 'renew the temporary credentials' if 'token' in _CREDENTIALS[code] else _CREDENTIALS_FIX
        return 'vault_denied', '%s: %s' % (_CREDENTIALS[code], fix)
    if code == 'DecryptionFailure':
        return 'vault_denied', ('Secrets Manager cannot decrypt the secret with its KMS key: grant this AWS identity '
                                'kms:Decrypt on the key, or enable the key')
    if code in ('EncryptionFailure', 'KMSInvalidStateException', 'KMSAccessDeniedException', 'KMSNotFoundException',
                'KMSDisabledException'):
        return 'vault_denied', ('the KMS key cannot encrypt the secret: check that kms_key_id exists here, is enabled, and '
                                'that this AWS identity has kms:GenerateDataKey and kms:Decrypt on it')
    if code == 'ResourceNotFoundException':
        return 'no_secret', _not_found(operation, secret_id, version_id)
    if code == 'InvalidRequestException' and 'delet' in message.lower():
        return 'no_secret', ('the secret is scheduled for deletion: restore it (aws secretsmanager restore-secret) or '
                             'use another secret id')
    if code in _THROTTLED:
        return 'vault_error', 'Secrets Manager kept throttling the requests beyond the retries: run again later'
    if code in _SERVER or (code.isdigit() and code.startswith('5')):
        return 'vault_unreachable', 'Secrets Manager answered with a server error: run again later'
    return 'vault_error', message or 'Secrets Manager refused the request'


def classify(exc, operation, secret_id, version_id=None, secrets=()):
    """The ``EscrowError`` of an exception raised by the Secrets Manager call ``operation`` (``GetSecretValue``,
    ``ListSecretVersionIds``, ``CreateSecret``) on ``secret_id``; an ``EscrowError`` is returned as it is.

    ``secrets`` are values that must not appear in the sentence (the secret string of a create): they are removed
    from any AWS message quoted.
    """
    if isinstance(exc, EscrowError):
        return exc
    code = aws_code(exc)
    what = _what(operation, secret_id, version_id)
    if code is None:
        return EscrowError('%s failed: %s: %s' % (what, type(exc).__name__, _redacted(exc, secrets) or 'no detail'),
                           code='vault_error', secret_id=secret_id)
    if code == 'ParamValidationError':
        # botocore's parameter errors quote the values, a secret string among them.
        return EscrowError('%s failed: botocore refused the request parameters (%s): check secret_id, kms_key_id and '
                           'description' % (what, code), code='vault_error', secret_id=secret_id, aws_code=code)
    message = _redacted(_aws_message(exc), secrets)
    kind, hint = _hint(code, operation, secret_id, version_id, message)
    return EscrowError('%s failed (%s): %s' % (what, code, hint), code=kind, secret_id=secret_id, aws_code=code)
