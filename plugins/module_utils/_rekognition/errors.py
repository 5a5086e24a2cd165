# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The errors of a re-indexing run and the classification of AWS errors. Internal to fleet_telemetry.dr; not a public API.

``ReindexError`` stops the run (a ``FleetDrError``); ``AwsCallError`` is one classified AWS failure (``kind`` is one
of the error kinds here: ``classify_error``, ``classify_exception``); ``PhotoProblem`` refuses one photo.
"""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError

# Error kinds.
THROTTLE = 'throttle'          # slow down and resend, however long it takes
UNSENT = 'unsent'              # the request never reached the service: resend
SERVER = 'server'              # 5xx: resend a read; the outcome of a write is unknown
UNKNOWN_OUTCOME = 'unknown'    # sent, no answer: resend a read; the outcome of a write is unknown
PHOTO = 'photo'                # this photo is refused; the run goes on
FATAL = 'fatal'                # nothing will work until an operator acts: stop
UNCERTAIN = 'uncertain'        # (raised by AwsCaller for writes with SERVER or UNKNOWN_OUTCOME)

THROTTLING_CODES = frozenset([
    'ProvisionedThroughputExceededException', 'ThrottlingException', 'Throttling', 'TooManyRequestsException',
    'RequestLimitExceeded', 'ThrottledException', 'SlowDown',
])
SERVER_CODES = frozenset([
    'InternalServerError', 'InternalFailure', 'InternalError', 'ServiceUnavailable', 'ServiceUnavailableException',
    'RequestTimeout', 'RequestTimeoutException',
])
PHOTO_ERRORS = {
    'InvalidImageFormatException': 'invalid_image_format',
    'ImageTooLargeException': 'too_large',
    'InvalidParameterException': 'invalid_parameter',
    'ValidationException': 'invalid_parameter',
    'InvalidS3ObjectException': 'invalid_image',
}
FATAL_HINTS = {
    'AccessDeniedException': 'the AWS identity may not call this Rekognition operation: grant the IAM permissions listed in the '
                             'module documentation',
    'UnrecognizedClientException': 'the AWS access key is not valid: check access_key/secret_key or the profile',
    'InvalidSignatureException': 'AWS rejected the request signature: check secret_key and the host clock',
    'ExpiredTokenException': 'the AWS session token has expired: renew the temporary credentials',
    'ServiceQuotaExceededException': 'the collection is full (faces per collection quota): ask AWS for more or use another collection',
    'ResourceNotFoundException': 'the collection was deleted while the run was going on: run again',
}
# botocore exceptions by class name, so that this file needs no botocore import.
_UNKNOWN_OUTCOME_EXCEPTIONS = ('ReadTimeoutError', 'ConnectionClosedError', 'ResponseStreamingError', 'IncompleteReadError')
_UNSENT_EXCEPTIONS = ('EndpointConnectionError', 'ConnectTimeoutError', 'ProxyConnectionError')
_FATAL_EXCEPTION_HINTS = {
    'NoCredentialsError': 'no AWS credentials found: set access_key and secret_key, a profile, or the AWS_* environment variables',
    'PartialCredentialsError': 'the AWS credentials are incomplete: set both access_key and secret_key',
    'NoRegionError': 'no AWS region: set the region option or AWS_REGION',
    'SSLError': 'the TLS connection to the endpoint failed: check endpoint_url, aws_ca_bundle or validate_certs',
}


class ReindexError(FleetDrError):
    """A failure that stops the run: ``str(err)`` is one sentence an operator can act on, with the counts so far."""


class AwsCallError(Exception):
    """An AWS call that did not succeed, classified: ``kind`` is one of the error kinds above."""

    def __init__(self, kind, code, message, operation=None):
        super(AwsCallError, self).__init__(message)
        self.kind = kind
        self.code = code
        self.message = message
        self.operation = operation

    def sentence(self):
        hint = FATAL_HINTS.get(self.code) or _FATAL_EXCEPTION_HINTS.get(self.code)
        text = '%s failed with %s: %s' % (self.operation or 'the AWS call', self.code, self.message)
        return '%s (%s)' % (text, hint) if hint else text


class PhotoProblem(Exception):
    """One photo cannot be indexed; ``reason`` is a stable code for reports."""

    def __init__(self, reason, msg):
        super(PhotoProblem, self).__init__(msg)
        self.reason = reason


def classify_error(code, status=None):
    """The kind of an AWS error response, from its error code and HTTP status."""
    if code in THROTTLING_CODES:
        return THROTTLE
    if code in SERVER_CODES or (status is not None and status >= 500):
        return SERVER
    if code in PHOTO_ERRORS:
        return PHOTO
    return FATAL


def classify_exception(exc):
    """``(kind, code, message)`` of an exception raised by a boto3 call, or None when it is not an AWS error."""
    response = getattr(exc, 'response', None)
    if isinstance(response, dict) and isinstance(response.get('Error'), dict):
        error = response['Error']
        code = error.get('Code') or 'Unknown'
        status = (response.get('ResponseMetadata') or {}).get('HTTPStatusCode')
        return classify_error(code, status), code, error.get('Message') or str(exc)
    names = [klass.__name__ for klass in type(exc).__mro__]
    if 'BotoCoreError' not in names:
        return None
    name = type(exc).__name__
    for group, kind in ((_UNKNOWN_OUTCOME_EXCEPTIONS, UNKNOWN_OUTCOME), (_UNSENT_EXCEPTIONS, UNSENT)):
        if any(candidate in names for candidate in group):
            return kind, name, str(exc)
    return FATAL, name, str(exc)
