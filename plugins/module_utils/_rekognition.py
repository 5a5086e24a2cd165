# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Rebuilding an Amazon Rekognition face collection from the application's encrypted photos.

Internal to fleet_telemetry.dr; not a public API. Used by the module ``rekognition_reindex``.

The runbook's recovery of a deleted collection is: read ``photo``, decrypt each with ENCRYPTION_KEY,
send it to IndexFaces. Done here so that it can be rerun safely and runs at the speed the quota allows:

* the key is proven on the first photos before any AWS call (:func:`check_key`);
* photos whose ExternalImageId already has faces in the collection are skipped (:class:`Planner`), so a
  rerun indexes nothing and an interrupted run resumes; photos known to show no face are skipped when
  the mapping file of an earlier run says so;
* IndexFaces runs on a thread pool under one shared :class:`~._ratelimit.TokenBucket` just below the
  configured TPS; throttling is retried with backoff until the photo goes through (:class:`AwsCaller`);
* an IndexFaces call whose outcome is unknown (read timeout, dropped connection, 5xx) is never resent
  blindly, because that could index the photo twice: the collection is listed again at the end and only
  the photos still missing are sent again (:meth:`Reindexer._reconcile`);
* photos are read in keyset batches and at most ``2 * concurrency`` decrypted images are held at once.

Decisions are small functions over plain data (:func:`classify_error`, :func:`plan_reindex`,
:func:`pair_faces`, ...) that unit tests call directly; the AWS client and the photo source are passed in.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import datetime
import io
import itertools
import json
import os
import random
import re
import tempfile
import threading
import time

try:
    from PIL import Image
except ImportError:
    HAS_PILLOW = False
else:
    HAS_PILLOW = True

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._lock import BackupLock, LockError, LockHeldError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._pg import quote_ident
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import (
    DecryptError,
    decrypt,
    detect_image_type,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photos import (
    check_photos,
    iter_photos,
    key_verdict,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._ratelimit import (
    TokenBucket,
    backoff_delay,
    limiter_rate,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import TransportError

# Rekognition Image quotas and constraints (API reference of IndexFaces and of the Image type).
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MIN_IMAGE_DIMENSION = 80
EXTERNAL_IMAGE_ID_PATTERN = re.compile(r'\A[a-zA-Z0-9_.\-:]+\Z')
EXTERNAL_IMAGE_ID_MAX = 255
COLLECTION_ID_PATTERN = re.compile(r'\A[a-zA-Z0-9_.\-]+\Z')
LIST_FACES_PAGE = 4096

MAPPING_FORMAT = 1
FAILURES_LISTED = 50
RECONCILE_ROUNDS = 3
UPDATE_CHUNK = 500

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


# ------------------------------------------------------------------------------------------------
# Decisions over plain data
# ------------------------------------------------------------------------------------------------

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


def external_id_problem(external_id):
    """Why ``external_id`` cannot be a Rekognition ExternalImageId, or None."""
    if not external_id:
        return 'the external image id is empty'
    if len(external_id) > EXTERNAL_IMAGE_ID_MAX:
        return 'the external image id is %d characters, more than %d' % (len(external_id), EXTERNAL_IMAGE_ID_MAX)
    if not EXTERNAL_IMAGE_ID_PATTERN.match(external_id):
        return 'the external image id %r has characters outside [a-zA-Z0-9_.-:]' % external_id
    return None


INDEX = 'index'
SKIP_INDEXED = 'skip_indexed'
SKIP_NO_FACE = 'skip_no_face'
INVALID_ID = 'invalid_external_image_id'
DUPLICATE_ID = 'duplicate_external_image_id'
LIMITED = 'limited'


class Planner(object):
    """Decides, photo by photo in id order, what a run does with it.

    ``indexed`` holds the ExternalImageIds that already have faces in the collection; ``no_face`` those an
    earlier run sent and found without a face. ``limit`` caps the photos sent in this run.
    """

    def __init__(self, indexed=(), no_face=(), limit=None):
        self.indexed = indexed
        self.no_face = no_face
        self.limit = limit
        self.to_index = 0
        self._seen = set()

    def decide(self, external_id):
        if external_id_problem(external_id):
            return INVALID_ID
        if external_id in self._seen:
            return DUPLICATE_ID
        self._seen.add(external_id)
        if external_id in self.indexed:
            return SKIP_INDEXED
        if external_id in self.no_face:
            return SKIP_NO_FACE
        if self.limit is not None and self.to_index >= self.limit:
            return LIMITED
        self.to_index += 1
        return INDEX


def plan_reindex(external_ids, indexed=(), no_face=(), limit=None):
    """The plan of a run over ``external_ids`` (photos in id order): counts per decision and the ids to index.

    Reading stops at the first photo beyond ``limit``, as a run does (``complete`` is then False).
    """
    planner = Planner(set(indexed), set(no_face), limit)
    plan = {'index': [], SKIP_INDEXED: 0, SKIP_NO_FACE: 0, INVALID_ID: 0, DUPLICATE_ID: 0, 'complete': True}
    for external_id in external_ids:
        decision = planner.decide(external_id)
        if decision == LIMITED:
            plan['complete'] = False
            break
        if decision == INDEX:
            plan['index'].append(external_id)
        else:
            plan[decision] += 1
    return plan


def check_key(sample, key, cipher):
    """Prove the key on the first photos; raise ReindexError when none of them decrypts."""
    result = check_photos(sample, key, cipher)
    if result['checked'] and result['failed'] == result['checked']:
        raise ReindexError('%s; nothing was sent to Rekognition: check encryption_key and cipher'
                           % key_verdict(result, cipher), code='bad_key', key_check=result)
    return {'checked': result['checked'], 'failed': result['failed']}


def fit_image(data, max_bytes=MAX_IMAGE_BYTES):
    """Downscale an image to a JPEG of at most ``max_bytes``; raise PhotoProblem when it cannot be done."""
    if not HAS_PILLOW:
        raise PhotoProblem('too_large', 'the photo is %d bytes, more than the %d bytes IndexFaces accepts, and Pillow is not '
                                        'installed to downscale it: install Pillow or set oversize=report' % (len(data), max_bytes))
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert('RGB')
    except Exception as exc:  # Pillow raises many types for undecodable data
        raise PhotoProblem('invalid_image_format', 'the photo is too large and cannot be decoded to downscale it: %s' % exc)
    size = len(data)
    for dummy in range(8):
        scale = min(0.9, (max_bytes / float(size)) ** 0.5 * 0.9)
        width, height = max(1, int(image.width * scale)), max(1, int(image.height * scale))
        if min(width, height) < MIN_IMAGE_DIMENSION:
            break
        image = image.resize((width, height), Image.Resampling.LANCZOS if hasattr(Image, 'Resampling') else Image.LANCZOS)
        out = io.BytesIO()
        image.save(out, format='JPEG', quality=90)
        size = out.tell()
        if size <= max_bytes:
            return out.getvalue()
    raise PhotoProblem('too_large', 'the photo cannot be downscaled below %d bytes and keep %d pixels on each side'
                       % (max_bytes, MIN_IMAGE_DIMENSION))


def prepare_image(key, cipher, ciphertext, oversize='downscale', max_bytes=MAX_IMAGE_BYTES):
    """Decrypt one photo and make it acceptable to IndexFaces; return ``(image_bytes, downscaled)``."""
    try:
        image = decrypt(key, ciphertext, cipher)
    except DecryptError as exc:
        raise PhotoProblem(exc.reason, str(exc))
    if detect_image_type(image) is None:
        raise PhotoProblem('not_an_image', 'the photo decrypts but is not a JPEG or PNG image, the formats IndexFaces accepts')
    if len(image) <= max_bytes:
        return image, False
    if oversize != 'downscale':
        raise PhotoProblem('too_large', 'the photo is %d bytes, more than the %d bytes IndexFaces accepts (oversize=report)'
                           % (len(image), max_bytes))
    return fit_image(image, max_bytes), True


def face_tuple(face):
    """``(face_id, image_id, (left, top, width, height))`` of a Rekognition Face structure."""
    box = face.get('BoundingBox') or {}
    bbox = tuple(float(box.get(name, 0.0)) for name in ('Left', 'Top', 'Width', 'Height')) if box else None
    return face['FaceId'], face.get('ImageId'), bbox


def pair_faces(rows, faces):
    """Pair the application's rows of one photo with the photo's faces in the collection.

    ``rows``: ``(row_id, bbox or None)``; ``faces``: ``(face_id, image_id, bbox or None)``. When every row
    and face has a box, the closest boxes pair first (sum of absolute differences of left, top, width,
    height); otherwise rows in id order pair with faces top-to-bottom, left-to-right.
    Returns ``(pairs, unmatched_rows, unmatched_faces)`` with ``pairs`` a list of ``(row, face)``.
    """
    rows = list(rows)
    faces = list(faces)
    if all(row[1] for row in rows) and all(face[2] for face in faces):
        candidates = sorted(
            (sum(abs(a - b) for a, b in zip(row[1], face[2])), r, f)
            for r, row in enumerate(rows) for f, face in enumerate(faces))
        used_rows, used_faces, pairs = set(), set(), []
        for dummy, r, f in candidates:
            if r not in used_rows and f not in used_faces:
                used_rows.add(r)
                used_faces.add(f)
                pairs.append((rows[r], faces[f]))
        pairs.sort(key=lambda pair: pair[0][0])
    else:
        ordered_rows = sorted(rows, key=lambda row: row[0])
        ordered_faces = sorted(faces, key=lambda face: (face[2][1], face[2][0]) if face[2] else (0.0, 0.0))
        pairs = list(zip(ordered_rows, ordered_faces))
        used_rows = set(id(row) for row, dummy in pairs)
        used_faces = set(id(face) for dummy, face in pairs)
        return (pairs, [row for row in rows if id(row) not in used_rows], [face for face in faces if id(face) not in used_faces])
    return pairs, [row for r, row in enumerate(rows) if r not in used_rows], [face for f, face in enumerate(faces) if f not in used_faces]


def summary_message(result, check_mode=False):
    """One line for the operator."""
    if check_mode:
        text = ('would index %d photos (%d already indexed, %d known without a face, %d would fail)'
                % (result['would_index'], result['already_indexed'], result['known_no_face'], result['failed_photos']))
        if result['collection'].get('would_recreate'):
            text = 'would delete and recreate collection %s and %s' % (result['collection_id'], text)
        elif result['collection'].get('would_create'):
            text = 'would create collection %s and %s' % (result['collection_id'], text)
    else:
        text = ('indexed %d photos (%d faces) into collection %s, skipped %d already indexed and %d known without a face, '
                '%d without a face, %d failed' % (result['indexed'], result['faces_indexed'], result['collection_id'], result['already_indexed'],
                                                  result['known_no_face'], result['no_face'], result['failed_photos']))
    if not result['complete']:
        text += '; stopped at limit=%s, run again to continue' % result['limit']
    return text


# ------------------------------------------------------------------------------------------------
# AWS calls: one retry and classification layer
# ------------------------------------------------------------------------------------------------

class AwsCaller(object):
    """Calls a boto3 client with retries: throttling until ``throttle_timeout`` seconds of it, other retryable
    errors ``retries`` times. Writes (``idempotent=False``) are never resent when their outcome is unknown:
    AwsCallError(UNCERTAIN) is raised instead.

    Make the boto3 client with botocore's own retries off (``client_config()``) so every attempt passes
    the rate limiter and no write is resent behind this layer's back.
    """

    def __init__(self, client, retries=5, throttle_timeout=600.0, sleep=time.sleep, clock=time.monotonic, rand=random.random):
        self.client = client
        self.retries = retries
        self.throttle_timeout = throttle_timeout
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self._lock = threading.Lock()
        self.calls = collections.Counter()
        self.throttle_retries = 0
        self.retried = 0

    def _count(self, name, operation=None):
        with self._lock:
            if name == 'call':
                self.calls[operation] += 1
            elif name == 'throttle':
                self.throttle_retries += 1
            else:
                self.retried += 1

    def call(self, operation, idempotent=True, limiter=None, **kwargs):
        method = getattr(self.client, operation)
        attempts = 0
        throttles = 0
        throttled_since = None
        while True:
            if limiter is not None:
                limiter.acquire()
            self._count('call', operation)
            try:
                response = method(**kwargs)
            except Exception as exc:  # classified below; anything that is not an AWS error is re-raised
                classified = classify_exception(exc)
                if classified is None:
                    raise
                kind, code, message = classified
            else:
                if limiter is not None:
                    limiter.succeeded()
                return response
            if kind == THROTTLE:
                now = self._clock()
                throttled_since = now if throttled_since is None else throttled_since
                if now - throttled_since >= self.throttle_timeout:
                    raise AwsCallError(FATAL, code, 'still throttled after %d s of retries: lower tps, raise the %s quota of '
                                                    'the account, or run again later (a rerun resumes)'
                                       % (self.throttle_timeout, operation), operation)
                if limiter is not None:
                    limiter.throttled()
                self._count('throttle')
                throttles += 1
                self._sleep(backoff_delay(min(throttles, 7), rand=self._rand))
                continue
            if kind in (SERVER, UNKNOWN_OUTCOME) and not idempotent:
                raise AwsCallError(UNCERTAIN, code, message, operation)
            if kind in (UNSENT, SERVER, UNKNOWN_OUTCOME):
                attempts += 1
                if attempts > self.retries:
                    raise AwsCallError(FATAL, code, '%s (gave up after %d retries)' % (message, self.retries), operation)
                self._count('retry')
                self._sleep(backoff_delay(attempts, base=0.5, rand=self._rand))
                continue
            raise AwsCallError(kind, code, message, operation)


def client_config(concurrency, connect_timeout=10, read_timeout=60):
    """botocore Config settings for the Rekognition client of a run (a dict, merged before the user's aws_config)."""
    return {
        'retries': {'total_max_attempts': 1, 'mode': 'standard'},
        'max_pool_connections': max(10, concurrency + 2),
        'connect_timeout': connect_timeout,
        'read_timeout': read_timeout,
    }


# ------------------------------------------------------------------------------------------------
# The mapping file: ExternalImageId -> Face IDs, and the photos known to show no face
# ------------------------------------------------------------------------------------------------

def mapping_document(collection, face_ids, no_face):
    return {
        'format': MAPPING_FORMAT,
        'collection_id': collection['id'],
        'collection_arn': collection.get('arn'),
        'face_model_version': collection.get('face_model_version'),
        'face_ids': dict((external_id, sorted(ids)) for external_id, ids in sorted(face_ids.items())),
        'no_face': sorted(no_face),
    }


def known_no_face(document, collection_id, face_model_version):
    """The ExternalImageIds an earlier run found without a face, when its document is for the same collection and model."""
    if not isinstance(document, dict) or document.get('format') != MAPPING_FORMAT:
        return set()
    if document.get('collection_id') != collection_id or document.get('face_model_version') != face_model_version:
        return set()
    return set(document.get('no_face') or ())


def read_json(path):
    """The JSON document at ``path``, or None when it does not exist or is not JSON."""
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path) as fileobj:
            return json.load(fileobj)
    except (OSError, ValueError):
        return None


def remove_stale_temps(path):
    """Remove the temporary files of ``write_json_atomic(path)`` that a killed run left; return their paths.

    Call it holding the run's lock: no other run writes them then.
    """
    if not path:
        return []
    directory, base = os.path.split(os.path.abspath(path))
    pattern = re.compile(r'\A\.%s\.[A-Za-z0-9_]{8}\Z' % re.escape(base))
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in sorted(names):
        if pattern.match(name):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                continue
            removed.append(os.path.join(directory, name))
    return removed


def write_json_atomic(path, document, mode=0o600):
    """Write ``document`` to ``path`` atomically (temp file, fsync, rename, fsync of the directory)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ReindexError('the directory of %s does not exist: create it or choose another path' % path, code='bad_option')
    handle, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(handle, 'w') as fileobj:
            json.dump(document, fileobj, indent=1, sort_keys=True)
            fileobj.write('\n')
            fileobj.flush()
            os.fsync(fileobj.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ------------------------------------------------------------------------------------------------
# The photo source and the application's face table
# ------------------------------------------------------------------------------------------------

def quote_literal(value):
    return "'%s'" % str(value).replace("'", "''")


# Where a name in a failed photo query comes from: (what it is, module option, role variable).
SOURCE_SETTINGS = {
    'table': ('photo table', 'photo_table', 'rekognition_reindex_photo_table'),
    'id_column': ('id column', 'photo_id_column', 'rekognition_reindex_photo_id_column'),
    'data_column': ('photo data column', 'photo_data_column', 'rekognition_reindex_photo_data_column'),
    'external_id_column': ('external image id column', 'external_id_column', 'rekognition_reindex_external_id_column'),
}
_MISSING_RE = re.compile(r'(column|relation) "([^"]+)" does not exist')


def missing_name_error(stderr, names):
    """A ``ReindexError`` naming the setting behind a column or table that does not exist, or None.

    ``names`` maps the keys of ``SOURCE_SETTINGS`` to the names in use.
    """
    match = _MISSING_RE.search(stderr or '')
    if not match:
        return None
    missing = match.group(2).split('.')[-1]
    kind = 'table' if match.group(1) == 'relation' else None
    for key, name in names.items():
        if name is None or name.split('.')[-1] != missing or (kind == 'table') != (key == 'table'):
            continue
        what, option, variable = SOURCE_SETTINGS[key]
        hint = ''
        if key == 'external_id_column':
            hint = ('; or derive the id from the row with external_id_expression (rekognition_reindex_external_id_expression), '
                    "for example 'photo-' || id")
        return ReindexError('the %s %s does not exist in %s: set %s (role: %s) to the %s of your schema%s'
                            % (what, name, names['table'] if key != 'table' else 'the database', option, variable,
                               'table' if key == 'table' else 'column', hint), code='no_column' if key != 'table' else 'no_table')
    return ReindexError('the photo query failed: %s %s does not exist; check the photo_table, photo_*_column, external_id_* and where '
                        'settings' % (match.group(1), match.group(2)), code='no_column')


class PhotoSource(object):
    """Reads ``(photo_id, ciphertext, external_id)`` in id order from a psql session, in batches.

    The external id is a column (``external_id_column``) or an SQL expression over the row (``external_id_expression``,
    for example ``'photo-' || id``).
    """

    def __init__(self, session, table='photo', id_column='id', data_column='data', external_id_column='external_image_id',
                 where=None, batch_size=25, external_id_expression=None):
        self.session = session
        self.table = table
        self.id_column = id_column
        self.data_column = data_column
        self.external_id_column = None if external_id_expression else external_id_column
        self.external_id_sql = '(%s)::text' % external_id_expression if external_id_expression else quote_ident(external_id_column)
        self.where = where
        self.batch_size = batch_size

    def rows(self, ids=None):
        where = self.where
        if ids is not None:
            in_ids = '%s IN (%s)' % (quote_ident(self.id_column), ', '.join(str(int(i)) for i in ids))
            where = '(%s) AND %s' % (where, in_ids) if where else in_ids
        try:
            for photo_id, data, extras in iter_photos(self.session, self.table, self.id_column, self.data_column,
                                                      extra_sql=(self.external_id_sql,), where=where, batch=self.batch_size):
                yield photo_id, data, extras[0]
        except TransportError as exc:
            names = {'table': self.table, 'id_column': self.id_column, 'data_column': self.data_column,
                     'external_id_column': self.external_id_column}
            raise missing_name_error(exc.stderr, names) or exc


class FaceTable(object):
    """The application's table of stored Face IDs (the example app's ``recognition_result``) and how to update it."""

    def __init__(self, session, table='recognition_result', id_column='id', photo_column='photo_id', face_id_column='face_id',
                 image_id_column='image_id', collection_column='collection_id', bbox_columns=('bbox_left', 'bbox_top', 'bbox_width', 'bbox_height')):
        if bbox_columns and len(bbox_columns) != 4:
            raise ReindexError('face_id_update.bbox_columns must name 4 columns (left, top, width, height) or none', code='bad_option')
        self.session = session
        self.table = table
        self.id_column = id_column
        self.photo_column = photo_column
        self.face_id_column = face_id_column
        self.image_id_column = image_id_column or None
        self.collection_column = collection_column or None
        self.bbox_columns = tuple(bbox_columns or ())

    def select_sql(self, photo_ids, collection_id):
        cols = [self.id_column, self.photo_column, self.face_id_column] + list(self.bbox_columns)
        conditions = ['%s IN (%s)' % (quote_ident(self.photo_column), ', '.join(str(int(i)) for i in photo_ids))]
        if self.collection_column:
            conditions.append('%s = %s' % (quote_ident(self.collection_column), quote_literal(collection_id)))
        return 'SELECT %s FROM %s WHERE %s ORDER BY %s' % (
            ', '.join(quote_ident(c) for c in cols), quote_ident(self.table), ' AND '.join(conditions), quote_ident(self.id_column))

    def rows_by_photo(self, photo_ids, collection_id):
        """``{photo_id: [(row_id, bbox or None, face_id)]}`` of the rows of these photos."""
        found = collections.defaultdict(list)
        for row in self.session.query(self.select_sql(photo_ids, collection_id)):
            bbox = None
            if self.bbox_columns and all(value != '' for value in row[3:7]):
                bbox = tuple(float(value) for value in row[3:7])
            found[int(row[1])].append((int(row[0]), bbox, row[2]))
        return found

    def update_sql(self, updates):
        """One UPDATE ... FROM (VALUES ...) for ``[(row_id, face_id, image_id)]``."""
        values = ', '.join('(%d, %s, %s)' % (int(row_id), quote_literal(face_id), quote_literal(image_id or ''))
                           for row_id, face_id, image_id in updates)
        sets = ['%s = v.face_id' % quote_ident(self.face_id_column)]
        if self.image_id_column:
            sets.append("%s = nullif(v.image_id, '')" % quote_ident(self.image_id_column))
        return 'UPDATE %s AS t SET %s FROM (VALUES %s) AS v(row_id, face_id, image_id) WHERE t.%s = v.row_id' % (
            quote_ident(self.table), ', '.join(sets), values, quote_ident(self.id_column))

    def apply(self, updates):
        if updates:
            self.session.query('BEGIN; %s; COMMIT' % self.update_sql(updates))


def plan_face_id_updates(rows_by_photo, faces_by_photo, no_face_photos=()):
    """Which rows get which new Face ID. Returns ``(updates, counts)``; ``updates`` is ``[(row_id, face_id, image_id)]``."""
    updates = []
    counts = {'rows_updated': 0, 'rows_unchanged': 0, 'rows_without_face': 0, 'faces_without_row': 0}
    no_face_photos = set(no_face_photos)
    for photo_id, rows in rows_by_photo.items():
        faces = faces_by_photo.get(photo_id)
        if not faces:
            if photo_id in no_face_photos or faces is not None:
                counts['rows_without_face'] += len(rows)
            continue
        pairs, unmatched_rows, unmatched_faces = pair_faces([(row[0], row[1]) for row in rows], faces)
        current = dict((row[0], row[2]) for row in rows)
        for row, face in pairs:
            if current[row[0]] == face[0]:
                counts['rows_unchanged'] += 1
            else:
                counts['rows_updated'] += 1
                updates.append((row[0], face[0], face[1]))
        counts['rows_without_face'] += len(unmatched_rows)
        counts['faces_without_row'] += len(unmatched_faces)
    for photo_id, faces in faces_by_photo.items():
        if photo_id not in rows_by_photo:
            counts['faces_without_row'] += len(faces)
    return updates, counts


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------

class ReindexRequest(object):
    """What to rebuild and how; plain data built from the module parameters."""

    def __init__(self, collection_id, key, cipher='aes-256-gcm', recreate=False, tps=5.0, concurrency=8, limit=None,
                 key_check_photos=5, oversize='downscale', max_faces=None, quality_filter=None, mapping_file=None,
                 return_face_ids=True, progress_file=None, progress_interval=5.0, retries=5, throttle_timeout=600.0):
        if not collection_id or not COLLECTION_ID_PATTERN.match(collection_id) or len(collection_id) > 255:
            raise ReindexError('collection_id %r is not a valid Rekognition collection id ([a-zA-Z0-9_.-], at most 255 characters)'
                               % collection_id, code='bad_option')
        if tps is None or tps <= 0:
            raise ReindexError('tps must be a positive number (the IndexFaces quota of the account in the region)', code='bad_option')
        if concurrency < 1:
            raise ReindexError('concurrency must be at least 1', code='bad_option')
        if limit is not None and limit < 0:
            raise ReindexError('limit must not be negative', code='bad_option')
        self.collection_id = collection_id
        self.key = key
        self.cipher = cipher
        self.recreate = recreate
        self.tps = float(tps)
        self.concurrency = concurrency
        self.limit = limit
        self.key_check_photos = max(1, key_check_photos)
        self.oversize = oversize
        self.max_faces = max_faces
        self.quality_filter = quality_filter
        self.mapping_file = mapping_file
        self.return_face_ids = return_face_ids
        self.progress_file = progress_file
        self.progress_interval = progress_interval
        self.retries = retries
        self.throttle_timeout = throttle_timeout


def run_lock(lock_dir, collection_id, check_mode=False):
    """The flock one run of ``collection_id`` holds in ``lock_dir`` (``.reindex-<collection>.lock``): a second run is refused.

    The kernel drops it when the run's process ends, however it ends. Check mode takes no lock.
    """
    if not lock_dir or check_mode:
        return contextlib.nullcontext()
    return BackupLock(lock_dir, 'reindex-%s' % collection_id, purpose='re-indexing of collection %s' % collection_id)


def locked_run(lock, run):
    """``run()`` under ``lock``; a held lock is a ``ReindexError`` naming who holds it (``lock_held``)."""
    try:
        with lock:
            return run()
    except LockHeldError as exc:
        raise ReindexError('%s (%s)' % (exc, exc.path), code='lock_held', holder=exc.holder) from None
    except LockError as exc:
        raise ReindexError(str(exc), code='bad_option') from None


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


class Reindexer(object):
    """One run: key check, collection, listing, indexing, reconciliation, face-ID outputs.

    ``client`` is a boto3 Rekognition client (or a stand-in with the same methods: describe_collection,
    create_collection, delete_collection, list_faces, index_faces); ``source`` has ``rows(ids=None)``;
    ``face_table`` (optional) has ``rows_by_photo()`` and ``apply()``.
    """

    def __init__(self, request, client, source, face_table=None, check_mode=False, warn=None,
                 clock=time.monotonic, sleep=time.sleep, rand=random.random):
        self.request = request
        self.source = source
        self.face_table = face_table
        self.check_mode = check_mode
        self._warn = warn or (lambda msg: None)
        self._clock = clock
        self.caller = AwsCaller(client, retries=request.retries, throttle_timeout=request.throttle_timeout,
                                sleep=sleep, clock=clock, rand=rand)
        self.limiter = TokenBucket(limiter_rate(request.tps), capacity=1.0, clock=clock, sleep=sleep)
        self._lock = threading.Lock()
        self.counts = collections.Counter()
        self.failure_reasons = collections.Counter()
        self.failures = []
        self.unindexed_faces = collections.Counter()
        self.faces_by_photo = {}
        self.face_ids = {}
        self.no_face = set()
        self.no_face_photos = set()
        self.uncertain = []
        self.pending_photos = set()
        self.collection = {'id': request.collection_id}
        self.complete = True
        self._started = None
        self._last_progress = None
        self._previous = None
        self._saved = None

    # -- bookkeeping (worker threads) ----------------------------------------------------------

    def _fail_photo(self, photo_id, external_id, reason, msg):
        with self._lock:
            self.counts['failed_photos'] += 1
            self.failure_reasons[reason] += 1
            if len(self.failures) < FAILURES_LISTED:
                self.failures.append({'id': photo_id, 'external_image_id': external_id, 'reason': reason, 'msg': msg})

    def _record_faces(self, photo_id, external_id, faces):
        faces = sorted(faces)
        self.faces_by_photo[photo_id] = faces
        self.face_ids[external_id] = [face[0] for face in faces]

    # -- steps ---------------------------------------------------------------------------------

    def _prepare_collection(self):
        request = self.request
        described = self._describe()
        info = self.collection
        info.update(existed=described is not None, created=False, deleted=False)
        if described is not None:
            info.update(arn=described.get('CollectionARN'), face_model_version=described.get('FaceModelVersion'),
                        face_count_before=described.get('FaceCount'))
        if described is not None and not request.recreate:
            return True
        if self.check_mode:
            info['would_recreate' if described is not None else 'would_create'] = True
            return False
        if described is not None:
            self.caller.call('delete_collection', CollectionId=request.collection_id)
            info['deleted'] = True
        created = self.caller.call('create_collection', CollectionId=request.collection_id)
        arn = created.get('CollectionArn') or ''
        info.update(created=True, arn=arn if not arn or arn.startswith('arn:') else 'arn:' + arn,
                    face_model_version=created.get('FaceModelVersion'), face_count_before=0)
        return False

    def _describe(self):
        try:
            return self.caller.call('describe_collection', CollectionId=self.request.collection_id)
        except AwsCallError as exc:
            if exc.code == 'ResourceNotFoundException':
                return None
            raise

    def _list_faces(self):
        """``{ExternalImageId: [(face_id, image_id, bbox)]}`` of every face in the collection."""
        faces = collections.defaultdict(list)
        kwargs = {'CollectionId': self.request.collection_id, 'MaxResults': LIST_FACES_PAGE}
        while True:
            response = self.caller.call('list_faces', **kwargs)
            for face in response.get('Faces', ()):
                if face.get('ExternalImageId') is not None:
                    faces[face['ExternalImageId']].append(face_tuple(face))
            token = response.get('NextToken')
            if not token:
                return dict(faces)
            kwargs['NextToken'] = token

    def _index_photo(self, photo_id, external_id, ciphertext):
        """Worker: decrypt, fit and index one photo; record the outcome. Fatal errors propagate."""
        request = self.request
        try:
            image, downscaled = prepare_image(request.key, request.cipher, ciphertext, request.oversize)
        except PhotoProblem as exc:
            self._fail_photo(photo_id, external_id, exc.reason, str(exc))
            return
        if downscaled:
            with self._lock:
                self.counts['downscaled'] += 1
        if self.check_mode:
            with self._lock:
                self.counts['would_index'] += 1
                self.pending_photos.add(photo_id)
            return
        kwargs = {'CollectionId': request.collection_id, 'Image': {'Bytes': image}, 'ExternalImageId': external_id,
                  'DetectionAttributes': ['DEFAULT']}
        if request.max_faces:
            kwargs['MaxFaces'] = request.max_faces
        if request.quality_filter:
            kwargs['QualityFilter'] = request.quality_filter
        try:
            response = self.caller.call('index_faces', idempotent=False, limiter=self.limiter, **kwargs)
        except AwsCallError as exc:
            if exc.kind == PHOTO:
                self._fail_photo(photo_id, external_id, PHOTO_ERRORS.get(exc.code, 'refused'), '%s: %s' % (exc.code, exc.message))
                return
            if exc.kind == UNCERTAIN:
                with self._lock:
                    self.uncertain.append((photo_id, external_id, '%s: %s' % (exc.code, exc.message)))
                return
            raise
        faces = [face_tuple(record['Face']) for record in response.get('FaceRecords', ())]
        with self._lock:
            for unindexed in response.get('UnindexedFaces', ()):
                for reason in unindexed.get('Reasons') or ['UNKNOWN']:
                    self.unindexed_faces[reason] += 1
            if faces:
                self.counts['indexed'] += 1
                self.counts['faces_indexed'] += len(faces)
                self._record_faces(photo_id, external_id, faces)
            else:
                self.counts['no_face'] += 1
                self.no_face.add(external_id)
                self.no_face_photos.add(photo_id)

    def _process(self, rows, planner, existing, pool):
        """Main thread: plan each photo, hand the ones to index to the pool, at most 2 * concurrency at once."""
        inflight = set()
        limit_in_flight = 2 * self.request.concurrency
        try:
            for photo_id, ciphertext, external_id in rows:
                decision = planner.decide(external_id)
                if decision == LIMITED:
                    self.complete = False
                    break
                with self._lock:
                    self.counts['photos'] += 1
                if decision == SKIP_INDEXED:
                    with self._lock:
                        self.counts['already_indexed'] += 1
                        self._record_faces(photo_id, external_id, existing[external_id])
                    continue
                if decision == SKIP_NO_FACE:
                    with self._lock:
                        self.counts['known_no_face'] += 1
                        self.no_face.add(external_id)
                        self.no_face_photos.add(photo_id)
                    continue
                if decision in (INVALID_ID, DUPLICATE_ID):
                    problem = external_id_problem(external_id) or 'another photo has the same external image id %r' % external_id
                    self._fail_photo(photo_id, external_id, decision, problem)
                    continue
                while len(inflight) >= limit_in_flight:
                    inflight = self._drain(inflight, concurrent.futures.FIRST_COMPLETED)
                inflight.add(pool.submit(self._index_photo, photo_id, external_id, ciphertext))
                self._progress()
        except BaseException:
            for future in inflight:
                future.cancel()
            concurrent.futures.wait(inflight)
            raise
        while inflight:
            inflight = self._drain(inflight, concurrent.futures.FIRST_COMPLETED)

    def _drain(self, inflight, return_when):
        done, pending = concurrent.futures.wait(inflight, timeout=max(0.5, self.request.progress_interval), return_when=return_when)
        for future in done:
            error = future.exception()
            if error is not None:
                for other in pending:
                    other.cancel()
                concurrent.futures.wait(pending)
                raise error
        self._progress()
        return pending

    def _reconcile(self, pool):
        """Photos whose IndexFaces outcome is unknown: keep those the collection now has, resend the others."""
        for dummy in range(RECONCILE_ROUNDS):
            if not self.uncertain:
                return
            uncertain, self.uncertain = self.uncertain, []
            listed = self._list_faces()
            resend = {}
            for photo_id, external_id, dummy_reason in uncertain:
                if external_id in listed:
                    self.counts['indexed'] += 1
                    self.counts['faces_indexed'] += len(listed[external_id])
                    self._record_faces(photo_id, external_id, listed[external_id])
                else:
                    resend[photo_id] = external_id
            if resend:
                futures = [pool.submit(self._index_photo, photo_id, external_id, ciphertext)
                           for photo_id, ciphertext, external_id in self.source.rows(ids=sorted(resend))]
                while futures:
                    futures = self._drain(set(futures), concurrent.futures.FIRST_COMPLETED)
        for photo_id, external_id, reason in self.uncertain:
            self._fail_photo(photo_id, external_id, 'uncertain', 'IndexFaces did not answer clearly %d times (%s); run again'
                             % (RECONCILE_ROUNDS + 1, reason))
        self.uncertain = []

    def _update_face_table(self):
        if self.face_table is None:
            return None
        collection_id = self.request.collection_id
        totals = collections.Counter()
        photo_ids = sorted(set(self.faces_by_photo) | self.no_face_photos | self.pending_photos)
        for start in range(0, len(photo_ids), UPDATE_CHUNK):
            chunk = photo_ids[start:start + UPDATE_CHUNK]
            rows = self.face_table.rows_by_photo(chunk, collection_id)
            pending = [photo_id for photo_id in chunk if photo_id in rows and photo_id in self.pending_photos]
            for photo_id in pending:
                totals['rows_pending'] += len(rows.pop(photo_id))
            faces = dict((photo_id, self.faces_by_photo[photo_id]) for photo_id in chunk if photo_id in self.faces_by_photo)
            updates, counts = plan_face_id_updates(rows, faces, self.no_face_photos)
            totals.update(counts)
            if not self.check_mode:
                self.face_table.apply(updates)
        result = dict((name, totals.get(name, 0)) for name in
                      ('rows_updated', 'rows_unchanged', 'rows_without_face', 'faces_without_row', 'rows_pending'))
        result['table'] = self.face_table.table
        return result

    def _progress(self, final=False):
        """Every ``progress_interval`` (and at the end): the progress file, and the mapping file so far.

        The mapping is written as the run goes, so that a run killed at any point leaves the Face IDs and no-face photos it
        learned, and the next run re-sends none of them.
        """
        if self.check_mode:
            return
        now = self._clock()
        if not final and self._last_progress is not None and now - self._last_progress < self.request.progress_interval:
            return
        self._last_progress = now
        self._save_mapping()
        path = self.request.progress_file
        if not path:
            return
        with self._lock:
            counts = dict(self.counts)
        elapsed = max(now - self._started, 1e-6)
        sent = counts.get('indexed', 0) + counts.get('no_face', 0)
        document = {'collection_id': self.request.collection_id, 'updated_at': _utcnow(), 'finished': final,
                    'elapsed_seconds': round(elapsed, 1), 'photos_per_second': round(sent / elapsed, 2),
                    'throttle_retries': self.caller.throttle_retries, 'check_mode': self.check_mode}
        for name in ('photos', 'indexed', 'faces_indexed', 'already_indexed', 'known_no_face', 'no_face', 'failed_photos', 'would_index'):
            document[name] = counts.get(name, 0)
        try:
            write_json_atomic(path, document, mode=0o644)
        except (OSError, ReindexError) as exc:
            self._warn('progress_file %s could not be written: %s' % (path, exc))
            self.request.progress_file = None

    def run(self):
        """Run; return the result dict. Raises ReindexError (with the partial counts) when the run must stop."""
        request = self.request
        self._started = self._clock()
        if not self.check_mode:
            for path in (request.mapping_file, request.progress_file):
                remove_stale_temps(path)
        self._previous = self._saved = read_json(request.mapping_file)
        rows = self.source.rows()
        head = list(itertools.islice(rows, request.key_check_photos))
        key_check = check_key([(photo_id, data, None) for photo_id, data, dummy in head], request.key, request.cipher)
        rows = itertools.chain(head, rows)
        try:
            exists = self._prepare_collection()
            existing = self._list_faces() if exists else {}
            previous = self._previous
            planner = Planner(existing, known_no_face(previous, request.collection_id, self.collection.get('face_model_version')),
                              request.limit)
            with concurrent.futures.ThreadPoolExecutor(max_workers=request.concurrency, thread_name_prefix='index_faces') as pool:
                self._process(rows, planner, existing, pool)
                if not self.check_mode:
                    self._reconcile(pool)
        except AwsCallError as exc:
            raise ReindexError(exc.sentence(), code=_error_code(exc), aws_error_code=exc.code, **self._partial_result())
        finally:
            self._progress(final=True)
        face_table = self._update_face_table()
        result = self._result(key_check, face_table)
        if request.mapping_file and not self.check_mode:
            document = self._mapping_document(previous)
            if previous != document:
                if document != self._saved:
                    write_json_atomic(request.mapping_file, document)
                result['mapping_file_changed'] = True
                result['changed'] = True
        return result

    def _save_mapping(self):
        """Write the mapping file as it stands when it changed since the last write (workers may be running)."""
        if not self.request.mapping_file or self.check_mode or not self.collection.get('face_model_version'):
            return
        with self._lock:
            document = self._mapping_document(self._previous)
        if document == self._saved:
            return
        try:
            write_json_atomic(self.request.mapping_file, document)
        except (OSError, ReindexError) as exc:
            self._warn('mapping_file %s could not be written: %s' % (self.request.mapping_file, exc))
            return
        self._saved = document

    def _mapping_document(self, previous):
        """This run's Face IDs and no-face photos over those of the earlier document of the same collection."""
        collection_id = self.request.collection_id
        face_ids = {}
        if (isinstance(previous, dict) and previous.get('format') == MAPPING_FORMAT and previous.get('collection_id') == collection_id
                and not self.collection.get('created') and isinstance(previous.get('face_ids'), dict)):
            face_ids.update(previous['face_ids'])
        face_ids.update(self.face_ids)
        for external_id in self.no_face:
            face_ids.pop(external_id, None)
        no_face = (known_no_face(previous, collection_id, self.collection.get('face_model_version')) - set(self.face_ids)) | self.no_face
        return mapping_document(self.collection, face_ids, no_face)

    def _partial_result(self):
        """Counts of an interrupted run, and the mapping file written so the next run knows what this one did."""
        partial = {'collection_id': self.request.collection_id, 'failures': list(self.failures)}
        for name in ('photos', 'indexed', 'faces_indexed', 'already_indexed', 'no_face', 'failed_photos'):
            partial[name] = self.counts.get(name, 0)
        partial['changed'] = bool(self.counts.get('indexed') or self.collection.get('created'))
        self._save_mapping()
        return partial

    def _result(self, key_check, face_table):
        request = self.request
        counts = self.counts
        elapsed = max(self._clock() - self._started, 1e-6)
        sent = counts['indexed'] + counts['no_face']
        collection = dict(self.collection)
        result = {
            'collection_id': request.collection_id,
            'collection_arn': collection.get('arn'),
            'face_model_version': collection.get('face_model_version'),
            'collection': collection,
            'photos': counts['photos'],
            'indexed': counts['indexed'],
            'faces_indexed': counts['faces_indexed'],
            'already_indexed': counts['already_indexed'],
            'known_no_face': counts['known_no_face'],
            'no_face': counts['no_face'],
            'failed_photos': counts['failed_photos'],
            'failure_reasons': dict(self.failure_reasons),
            'failures': sorted(self.failures, key=lambda failure: failure['id']),
            'downscaled': counts['downscaled'],
            'unindexed_faces': dict(self.unindexed_faces),
            'complete': self.complete,
            'limit': request.limit,
            'key_check': key_check,
            'api_calls': dict(self.caller.calls),
            'throttle_retries': self.caller.throttle_retries,
            'transient_retries': self.caller.retried,
            'tps': request.tps,
            'rate_limit': round(self.limiter.max_rate, 3),
            'seconds': round(elapsed, 3),
            'photos_per_second': round(sent / elapsed, 3),
            'mapping_file': request.mapping_file,
            'mapping_file_changed': False,
        }
        if face_table is not None:
            result['face_id_update'] = face_table
        if request.return_face_ids:
            result['face_ids'] = dict(sorted(self.face_ids.items()))
        if self.check_mode:
            result['would_index'] = counts['would_index']
            result['changed'] = bool(counts['would_index'] or collection.get('would_create') or collection.get('would_recreate')
                                     or (face_table or {}).get('rows_updated'))
        else:
            result['changed'] = bool(counts['indexed'] or collection.get('created') or collection.get('deleted')
                                     or (face_table or {}).get('rows_updated'))
        result['msg'] = summary_message(result, self.check_mode)
        if counts['failed_photos']:
            self._warn('%d photos could not be indexed (%s); see failures'
                       % (counts['failed_photos'], ', '.join('%s: %d' % item for item in sorted(self.failure_reasons.items()))))
        return result


def _error_code(exc):
    if exc.code in ('AccessDeniedException', 'UnrecognizedClientException', 'InvalidSignatureException', 'ExpiredTokenException',
                    'NoCredentialsError', 'PartialCredentialsError'):
        return 'aws_auth'
    if exc.code in THROTTLING_CODES:
        return 'throttled'
    if exc.code == 'ResourceNotFoundException':
        return 'collection_gone'
    return 'aws_error'
