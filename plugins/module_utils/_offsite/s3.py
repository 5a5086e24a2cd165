# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""An S3 bucket and prefix as an offsite target (``S3Target``). Internal to fleet_telemetry.dr: not a public API.

The caller makes the boto3 S3 client (amazon.aws's ``module.client('s3', ...)``, or boto3 in tests); nothing here imports
boto3 or botocore: their errors are told apart by error code and exception class name (``classify``).

Uploads never overwrite and never leave a partial object: ``put_file`` is always a multipart upload completed with
``If-None-Match: *`` and aborted on any error, ``put_bytes`` a ``PutObject`` with ``If-None-Match: *``. Every part and
object carries its SHA-256 (``ChecksumSHA256``, computed here), which S3 checks on receipt.

This file must keep compiling on Python 3.8.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime
import hashlib

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.parts import FilePart, SourceChanged, hashed_parts
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import (
    OffsiteError, OffsiteExistsError, OffsiteLockedError, OffsiteTarget)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB     # S3's minimum size of a part (but the last)
MAX_PARTS = 10000           # S3's maximum number of parts of an upload
CHUNK = MIB                 # read size of downloads
SSE_CHOICES = (None, 'AES256', 'aws:kms')
LOCK_MODES = ('GOVERNANCE', 'COMPLIANCE')

# botocore's exception classes of an endpoint that cannot be reached (S3 here, Secrets Manager in _escrow.errors).
CONNECTION_ERRORS = ('EndpointConnectionError', 'ConnectTimeoutError', 'ConnectionClosedError', 'ReadTimeoutError',
                     'ProxyConnectionError', 'ResponseStreamingError', 'IncompleteReadError', 'HTTPClientError', 'ConnectionError')
_CREDENTIALS = 'check access_key/secret_key (or the profile) and the host clock'
_GRANT = 'grant this AWS identity the s3 permissions listed in the module documentation on the bucket and prefix'
# AWS error code or botocore exception class name -> (error code, cause and fix).
ERRORS = {
    'NoSuchBucket': ('offsite_no_bucket', 'the bucket does not exist here: create it or correct bucket, region or endpoint_url'),
    'AccessDenied': ('offsite_denied', 'access denied: %s (and kms:GenerateDataKey/kms:Decrypt on the key with SSE-KMS)' % _GRANT),
    '403': ('offsite_denied', 'access denied or credentials refused (a HEAD answer gives no reason): %s, and %s' % (_GRANT, _CREDENTIALS)),
    'AllAccessDisabled': ('offsite_denied', 'all access to the bucket is disabled: use another bucket'),
    'KMS.NotFoundException': ('offsite_denied', 'the KMS key for SSE-KMS does not exist: correct kms_key_id'),
    'KMS.DisabledException': ('offsite_denied', 'the KMS key for SSE-KMS is disabled: enable it or correct kms_key_id'),
    'InvalidAccessKeyId': ('offsite_credentials', 'the AWS access key is not known to S3: ' + _CREDENTIALS),
    'SignatureDoesNotMatch': ('offsite_credentials', 'S3 rejected the request signature (wrong secret key): ' + _CREDENTIALS),
    'RequestTimeTooSkewed': ('offsite_credentials', 'the host clock is too far from S3 time: synchronise it (NTP)'),
    'ExpiredToken': ('offsite_credentials', 'the AWS session token has expired: renew the temporary credentials'),
    'InvalidToken': ('offsite_credentials', 'the AWS session token is not valid: renew the temporary credentials'),
    'NoCredentialsError': ('offsite_credentials', 'no AWS credentials found: set access_key and secret_key, a profile or '
                                                  'the AWS_* environment variables'),
    'PartialCredentialsError': ('offsite_credentials', 'the AWS credentials are incomplete: set access_key and secret_key'),
    'SSLError': ('offsite_unreachable', 'the TLS connection to S3 failed: check endpoint_url, aws_ca_bundle or validate_certs'),
    'SlowDown': ('offsite_throttled', 'S3 kept asking to slow down beyond the retries: run again later or raise the retries'),
    'NoSuchKey': ('offsite_missing', 'the object does not exist: check the name and prefix'),
    'NoSuchUpload': ('offsite_error', 'the multipart upload was aborted meanwhile (a lifecycle rule?): run again'),
    'ConditionalRequestConflict': ('offsite_error', 'another upload of this name was completing at the same time: run again'),
    'InvalidObjectState': ('offsite_error', 'the object is archived (Glacier): restore it first or use a readable storage class'),
}
ERRORS.update(dict.fromkeys(   # the most specific class name in an exception's MRO counts: SSLError above comes first
    CONNECTION_ERRORS,
    ('offsite_unreachable', 'the S3 endpoint cannot be reached: check endpoint_url or region, the network, any proxy and '
                            'the firewall, then run again')))
# HTTP status -> error code, for answers without an error body (HEAD requests).
STATUS_CODES = {403: '403', 404: 'NoSuchKey', 412: 'PreconditionFailed', 503: 'SlowDown'}
_MISSING = ('NoSuchKey', 'NotFound', '404')


def error_code(exc):
    """The AWS error code of a boto3 exception, the botocore exception class name, or None for other errors."""
    response = getattr(exc, 'response', None)
    if isinstance(response, dict) and isinstance(response.get('Error'), dict):
        code = str(response['Error'].get('Code') or '')
        status = (response.get('ResponseMetadata') or {}).get('HTTPStatusCode')
        return STATUS_CODES.get(int(code), code) if code.isdigit() else (code or STATUS_CODES.get(status, 'Unknown'))
    names = [klass.__name__ for klass in type(exc).__mro__]
    if 'BotoCoreError' not in names:
        return None
    return next((name for name in names if name in ERRORS), type(exc).__name__)


def failure(code, action, where, message=None):
    """The ``OffsiteError`` of AWS error ``code``: one sentence naming what failed where, the cause and the fix."""
    if code == 'PreconditionFailed':
        return OffsiteExistsError('%s refused: %s already exists and is never overwritten: use another name'
                                  % (action, where), aws_code=code)
    kind, hint = ERRORS.get(code, ('offsite_error', message))
    return OffsiteError('%s failed for %s (%s): %s' % (action, where, code, hint), code=kind, aws_code=code)


def classify(exc, action, where):
    """The ``OffsiteError`` for an exception of ``action`` on ``where`` (an ``OffsiteError`` is returned as it is)."""
    if isinstance(exc, OffsiteError):
        return exc
    code = error_code(exc)
    if code is None:
        detail = str(exc).strip().rstrip('.') or type(exc).__name__
        return OffsiteError('%s failed for %s: %s: %s' % (action, where, type(exc).__name__, detail))
    message = (getattr(exc, 'response', None) or {}).get('Error', {}).get('Message') or str(exc)
    return failure(code, action, where, str(message).strip().rstrip('.'))


def _b64_sha256(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode('ascii')


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def is_locked(status, now):
    """True when ``stat()``'s answer says Object Lock forbids deleting the object at ``now``."""
    until = status.get('locked_until')
    return bool(status.get('legal_hold')) or (until is not None and until > now)


class S3Target(OffsiteTarget):
    """Objects ``prefix + name`` in one bucket, through a boto3 S3 client (see ``OffsiteTarget`` for the methods)."""

    kind = 's3'

    def __init__(self, client, bucket, prefix='', storage_class=None, sse=None, kms_key_id=None,
                 part_size=8 * MIB, concurrency=8, clock=_utc_now):
        if sse not in SSE_CHOICES:
            raise OffsiteError('sse must be AES256 or aws:kms, not %r' % (sse,), code='offsite_config')
        if kms_key_id and sse != 'aws:kms':
            raise OffsiteError('kms_key_id needs sse=aws:kms: set both or neither', code='offsite_config')
        if int(concurrency) < 1:
            raise ValueError('concurrency must be at least 1')
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip('/') + '/' if prefix.strip('/') else ''
        self.storage_class = storage_class
        self.sse = sse
        self.kms_key_id = kms_key_id
        self.part_size = max(int(part_size), MIN_PART_SIZE)
        self.concurrency = int(concurrency)
        self.clock = clock
        self.label = 's3://%s/%s' % (bucket, self.prefix)

    def key(self, name):
        """The S3 key of ``name``; a name is a base name (no ``/``)."""
        if not name or '/' in name or name in ('.', '..'):
            raise OffsiteError('invalid object name %r: a name is a file name without /' % (name,))
        return self.prefix + name

    def location(self, name):
        return 's3://%s/%s' % (self.bucket, self.key(name))

    def _object_args(self, key, lock):
        """The arguments of PutObject and CreateMultipartUpload: key, storage class, encryption, Object Lock."""
        args = {'Bucket': self.bucket, 'Key': key, 'ChecksumAlgorithm': 'SHA256'}
        if self.storage_class:
            args['StorageClass'] = self.storage_class
        if self.sse:
            args['ServerSideEncryption'] = self.sse
        if self.kms_key_id:
            args['SSEKMSKeyId'] = self.kms_key_id
        if lock is not None:
            mode, until = lock
            if mode not in LOCK_MODES or getattr(until, 'tzinfo', None) is None:
                raise OffsiteError('invalid Object Lock %r: the mode is GOVERNANCE or COMPLIANCE and the date an aware '
                                   'datetime' % (lock,), code='offsite_config')
            args.update(ObjectLockMode=mode, ObjectLockRetainUntilDate=until)
        return args

    def list_names(self):
        names = set()
        try:
            pages = self.client.get_paginator('list_objects_v2').paginate(
                Bucket=self.bucket, Prefix=self.prefix, Delimiter='/')
            for page in pages:
                for item in page.get('Contents') or ():
                    rest = item['Key'][len(self.prefix):]
                    if rest and '/' not in rest:
                        names.add(rest)
        except Exception as exc:
            raise classify(exc, 'S3 listing', self.label) from exc
        return names

    def stat(self, name, version_id=None):
        args = {'Bucket': self.bucket, 'Key': self.key(name)}
        if version_id is not None:
            args['VersionId'] = version_id
        try:
            head = self.client.head_object(**args)
        except Exception as exc:
            code = error_code(exc)
            if code not in _MISSING:
                cause = self._reason_of_403(args) if code == '403' else None
                raise classify(cause or exc, 'S3 HEAD', self.location(name)) from exc
            self._check_bucket()
            return None
        return {'size': head.get('ContentLength', 0), 'locked_until': head.get('ObjectLockRetainUntilDate'),
                'legal_hold': head.get('ObjectLockLegalHoldStatus') == 'ON'}

    def _reason_of_403(self, args):
        """The error of a one-byte GET of what a HEAD was refused (a HEAD answer has no body to say why), or None."""
        try:
            self.client.get_object(Range='bytes=0-0', **args)['Body'].close()
        except Exception as exc:  # pylint: disable=broad-except
            return exc
        return None

    def _check_bucket(self):
        """Raise the missing-bucket error when the bucket is missing (a HEAD of a key cannot tell); else nothing."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            if error_code(exc) in _MISSING + ('NoSuchBucket',):
                raise failure('NoSuchBucket', 'S3 HEAD', self.label) from exc

    def _stream(self, name, action):
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(name))
        except Exception as exc:
            raise classify(exc, action, self.location(name)) from exc

    def get_bytes(self, name, limit):
        response = self._stream(name, 'S3 download')
        body = response['Body']
        try:
            if response.get('ContentLength', 0) > limit:
                raise OffsiteError('%s is %d bytes, more than the %d expected: it is not what this collection wrote'
                                   % (self.location(name), response['ContentLength'], limit), code='offsite_too_large')
            data = body.read(limit + 1)
        except Exception as exc:
            raise classify(exc, 'S3 download', self.location(name)) from exc
        finally:
            body.close()
        if len(data) > limit:
            raise OffsiteError('%s is more than the %d bytes expected: it is not what this collection wrote'
                               % (self.location(name), limit), code='offsite_too_large')
        return data

    def download(self, name, writer):
        """Stream the object into ``writer.write(chunk)``; returns ``(sha256 hex, size)`` of what was written."""
        response = self._stream(name, 'S3 download')
        body, digest, size = response['Body'], hashlib.sha256(), 0
        try:
            for chunk in body.iter_chunks(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if writer is not None:
                    writer.write(chunk)
        except Exception as exc:
            raise classify(exc, 'S3 download', self.location(name)) from exc
        finally:
            body.close()
        return digest.hexdigest(), size

    def hash_object(self, name):
        return self.download(name, None)

    def put_bytes(self, name, data, lock=None):
        """PutObject with ``If-None-Match: *`` and the SHA-256 of ``data``; returns its sha256 hex."""
        key = self.key(name)
        args = self._object_args(key, lock)
        try:
            done = self.client.put_object(Body=data, IfNoneMatch='*', ChecksumSHA256=_b64_sha256(data), **args)
        except Exception as exc:
            raise classify(exc, 'S3 upload', self.location(name)) from exc
        if lock is not None:
            self._ensure_lock(name, lock, done.get('VersionId'))
        return hashlib.sha256(data).hexdigest()

    def put_file(self, path, name, size, progress=None, lock=None):
        """A multipart upload of ``path`` (``size`` bytes), completed with ``If-None-Match: *``, aborted on any error."""
        key = self.key(name)
        args = self._object_args(key, lock)
        self._refuse_existing(name)
        self._abort_stale(key)
        try:
            upload_id = self.client.create_multipart_upload(**args)['UploadId']
        except Exception as exc:
            raise classify(exc, 'S3 upload', self.location(name)) from exc
        try:
            parts, digest = self._send_parts(path, key, upload_id, size, progress)
            done = self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, IfNoneMatch='*', MultipartUpload={'Parts': parts})
        except BaseException as exc:
            self._abort(key, upload_id)
            if not isinstance(exc, Exception):
                raise   # KeyboardInterrupt, SystemExit: aborted, and the interruption goes on
            raise classify(exc, 'S3 upload', self.location(name)) from exc
        if lock is not None:
            self._ensure_lock(name, lock, done.get('VersionId'))
        return digest

    def _ensure_lock(self, name, lock, version_id):
        """Check that the retention asked for at the upload is on the object and set it when the store
        ignored it (moto 5.2 does); when that fails, remove the new object (version) and raise: all or nothing."""
        mode, until = lock
        status = self.stat(name)
        if status and status['locked_until'] is not None and status['locked_until'] >= until:
            return
        args = {'Bucket': self.bucket, 'Key': self.key(name)}
        if version_id and version_id != 'null':
            args['VersionId'] = version_id
        try:
            self.client.put_object_retention(Retention={'Mode': mode, 'RetainUntilDate': until}, **args)
        except Exception as exc:
            err = classify(exc, 'S3 Object Lock retention', self.location(name))
            try:
                self.client.delete_object(**args)
            except Exception:  # pylint: disable=broad-except
                pass
            raise OffsiteError('%s; the upload was undone, as the object could not be put under Object Lock' % err,
                               code=err.code, **err.extra) from exc

    def extend_lock(self, name, mode, until):
        """Extend the Object Lock retention of ``name`` to ``until`` (never shorten it); return True when it was extended."""
        status = self.stat(name)
        if status is None or (status['locked_until'] is not None and status['locked_until'] >= until):
            return False
        try:
            self.client.put_object_retention(Bucket=self.bucket, Key=self.key(name),
                                             Retention={'Mode': mode, 'RetainUntilDate': until})
        except Exception as exc:
            raise classify(exc, 'S3 Object Lock retention', self.location(name)) from exc
        return True

    def _refuse_existing(self, name):
        """Fail fast, before sending anything, when the name is taken (a 403 here is left to the upload to report)."""
        try:
            exists = self.stat(name) is not None
        except OffsiteError as err:
            if err.code == 'offsite_denied':
                return
            raise
        if exists:
            raise OffsiteExistsError('S3 upload refused: %s already exists and is never overwritten: use another name'
                                     % self.location(name))

    def part_size_for(self, size):
        """The part size for ``size`` bytes: ``part_size``, larger (whole MiB) when S3's 10,000 parts would not do."""
        needed = -(-int(size) // MAX_PARTS)
        return max(self.part_size, -(-needed // MIB) * MIB)

    def _send_parts(self, path, key, upload_id, size, progress):
        """Read ``path`` once, in order, in this thread (hashing each part and the whole file), and upload the parts from a
        pool of ``concurrency`` threads, each reading its part again from the file as it sends it (``_offsite.parts``):
        memory stays flat whatever the part size and the file size. Returns (the parts for Complete, the sha256 hex)."""
        digest, parts, pending, sent = hashlib.sha256(), [], set(), 0
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            try:
                for number, offset, length, checksum in hashed_parts(path, size, self.part_size_for(size), digest):
                    pending.add(pool.submit(self._send_part, path, key, upload_id, number, offset, length, checksum))
                    if len(pending) >= self.concurrency:
                        sent += self._collect(pending, parts, concurrent.futures.FIRST_COMPLETED, progress, sent)
            except SourceChanged as exc:
                raise OffsiteError('%s changed while it was being uploaded (%d bytes expected, %s read): nothing was '
                                   'stored; run again' % (path, size, exc.read if exc.read is not None else 'more'),
                                   code='offsite_source_changed') from None
            self._collect(pending, parts, concurrent.futures.ALL_COMPLETED, progress, sent)
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True)
        parts.sort(key=lambda part: part['PartNumber'])
        return parts, digest.hexdigest()

    def _send_part(self, path, key, upload_id, number, offset, length, checksum):
        """UploadPart of the bytes ``[offset, offset + length)`` of ``path``, read as they are sent, with their SHA-256
        (``checksum``, computed when the part was first read); returns its entry for Complete and its length."""
        with FilePart(path, offset, length) as body:
            response = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body, ContentLength=length,
                ChecksumAlgorithm='SHA256', ChecksumSHA256=checksum)
        return {'PartNumber': number, 'ETag': response['ETag'], 'ChecksumSHA256': checksum}, length

    @staticmethod
    def _collect(pending, parts, return_when, progress, sent):
        """Wait for uploads of ``pending`` (the first or all), move them to ``parts``; returns the bytes they sent."""
        done = concurrent.futures.wait(pending, return_when=return_when).done
        added = 0
        for future in done:
            pending.discard(future)
            part, length = future.result()
            parts.append(part)
            added += length
        if progress is not None and done:
            progress(sent + added)
        return added

    def _abort_stale(self, key):
        """Abort the incomplete uploads of ``key`` that an earlier, cut-off run left (S3 unreachable when it tried to abort,
        or a killed process): the name is not an object yet, so they are nobody's backup. Best effort."""
        try:
            pages = self.client.get_paginator('list_multipart_uploads').paginate(Bucket=self.bucket, Prefix=key)
            stale = [upload['UploadId'] for page in pages for upload in page.get('Uploads', []) if upload.get('Key') == key]
        except Exception:  # pylint: disable=broad-except
            return
        for upload_id in stale:
            self._abort(key, upload_id)

    def _abort(self, key, upload_id):
        """AbortMultipartUpload, best effort (the error being reported is the one that made the upload fail)."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception:  # pylint: disable=broad-except
            pass

    def delete(self, name):
        """Delete every version (and delete marker) of the object, so its bytes are gone; refuse a locked one."""
        status = self.stat(name)
        if status is not None and is_locked(status, self.clock()):
            raise self._locked_error(name, status)
        key = self.key(name)
        versions = self._versions(key)
        if not versions:
            versions = [None]
        for version_id in versions:
            args = {'Bucket': self.bucket, 'Key': key}
            if version_id is not None:
                args['VersionId'] = version_id
            try:
                self.client.delete_object(**args)
            except Exception as exc:
                if error_code(exc) == 'AccessDenied':
                    status = self.stat(name, version_id) if version_id not in (None, 'null') else self.stat(name)
                    if status is not None and is_locked(status, self.clock()):
                        raise self._locked_error(name, status) from exc
                raise classify(exc, 'S3 delete', self.location(name)) from exc

    def _versions(self, key):
        """The version IDs of exactly ``key``: its versions and its delete markers."""
        found = []
        try:
            pages = self.client.get_paginator('list_object_versions').paginate(Bucket=self.bucket, Prefix=key)
            for page in pages:
                for item in (page.get('Versions') or []) + (page.get('DeleteMarkers') or []):
                    if item.get('Key') == key:
                        found.append(item.get('VersionId'))
        except Exception as exc:
            raise classify(exc, 'S3 version listing', 's3://%s/%s' % (self.bucket, key)) from exc
        return found

    def _locked_error(self, name, status):
        why = ('a legal hold' if status.get('legal_hold') else
               'Object Lock retention until %s' % status['locked_until'].isoformat())
        return OffsiteLockedError('%s cannot be deleted: it is under %s; it is kept and not tried again'
                                  % (self.location(name), why))
