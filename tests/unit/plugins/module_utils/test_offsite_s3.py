# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""S3Target without a server: error classification, names, and the calls it makes on a stand-in of the boto3 client.

The S3 behaviour itself (conditional writes, Object Lock, versions) is tested against moto in
tests/system/test_offsite_s3.py.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import threading

import pytest
from botocore.exceptions import (ClientError, ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError,
                                 NoCredentialsError, PartialCredentialsError, ReadTimeoutError, SSLError)

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite import s3 as s3mod
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import (
    OffsiteError, OffsiteExistsError, OffsiteLockedError)

MIB = 1024 * 1024
UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
WHERE = 's3://bucket/pre/name'


def client_error(code, status=400, message='a message', operation='PutObject'):
    return ClientError({'Error': {'Code': code, 'Message': message}, 'ResponseMetadata': {'HTTPStatusCode': status}},
                       operation)


@pytest.mark.parametrize('exc, code, aws_code', [
    (client_error('NoSuchBucket', 404), 'offsite_no_bucket', 'NoSuchBucket'),
    (client_error('AccessDenied', 403), 'offsite_denied', 'AccessDenied'),
    (client_error('403', 403, 'Forbidden', 'HeadObject'), 'offsite_denied', '403'),
    (client_error('InvalidAccessKeyId', 403), 'offsite_credentials', 'InvalidAccessKeyId'),
    (client_error('SignatureDoesNotMatch', 403), 'offsite_credentials', 'SignatureDoesNotMatch'),
    (client_error('ExpiredToken', 400), 'offsite_credentials', 'ExpiredToken'),
    (client_error('SlowDown', 503), 'offsite_throttled', 'SlowDown'),
    (client_error('404', 404, 'Not Found', 'HeadObject'), 'offsite_missing', 'NoSuchKey'),
    (client_error('NoSuchKey', 404), 'offsite_missing', 'NoSuchKey'),
    (NoCredentialsError(), 'offsite_credentials', 'NoCredentialsError'),
    (PartialCredentialsError(provider='env', cred_var='AWS_SECRET_ACCESS_KEY'), 'offsite_credentials',
     'PartialCredentialsError'),
    (EndpointConnectionError(endpoint_url='http://127.0.0.1:9'), 'offsite_unreachable', 'EndpointConnectionError'),
    (ConnectTimeoutError(endpoint_url='http://127.0.0.1:9'), 'offsite_unreachable', 'ConnectTimeoutError'),
    (SSLError(endpoint_url='https://s3.example', error='bad cert'), 'offsite_unreachable', 'SSLError'),
    (ReadTimeoutError(endpoint_url='http://127.0.0.1:9'), 'offsite_unreachable', 'ReadTimeoutError'),
    (ConnectionClosedError(endpoint_url='http://127.0.0.1:9'), 'offsite_unreachable', 'ConnectionClosedError'),
])
def test_classification(exc, code, aws_code):
    err = s3mod.classify(exc, 'S3 upload', WHERE)
    assert isinstance(err, OffsiteError) and not isinstance(err, OffsiteExistsError)
    assert (err.code, err.extra['aws_code']) == (code, aws_code)
    text = str(err)
    assert text.startswith('S3 upload failed for %s (%s): ' % (WHERE, aws_code))
    assert '\n' not in text and ': ' in text[len('S3 upload failed for '):]


def test_classification_of_the_rest():
    exists = s3mod.classify(client_error('PreconditionFailed', 412), 'S3 upload', WHERE)
    assert isinstance(exists, OffsiteExistsError) and exists.code == 'offsite_exists' and WHERE in str(exists)
    unknown = s3mod.classify(client_error('WeirdError', 400, 'Something odd happened.'), 'S3 upload', WHERE)
    assert unknown.code == 'offsite_error'
    assert str(unknown) == 'S3 upload failed for %s (WeirdError): Something odd happened' % WHERE
    local = s3mod.classify(FileNotFoundError(2, 'No such file or directory'), 'S3 upload', WHERE)
    assert local.code == 'offsite_error' and 'FileNotFoundError' in str(local)
    same = OffsiteError('already one')
    assert s3mod.classify(same, 'S3 upload', WHERE) is same
    assert s3mod.error_code(ValueError('x')) is None


def test_every_table_entry_is_one_sentence():
    for code, (kind, hint) in s3mod.ERRORS.items():
        assert kind.startswith('offsite_') and ': ' in hint and not hint.endswith('.'), code
        assert '\n' not in hint


@pytest.mark.parametrize('prefix, label, key', [
    ('', 's3://bucket/', 'n'), ('/', 's3://bucket/', 'n'), ('pre', 's3://bucket/pre/', 'pre/n'),
    ('pre/', 's3://bucket/pre/', 'pre/n'), ('/a/b/', 's3://bucket/a/b/', 'a/b/n'),
])
def test_names(prefix, label, key):
    target = s3mod.S3Target(None, 'bucket', prefix)
    assert (target.kind, target.label, target.key('n'), target.location('n')) == ('s3', label, key, 's3://bucket/' + key)


@pytest.mark.parametrize('name', ['', 'a/b', '.', '..'])
def test_bad_names(name):
    with pytest.raises(OffsiteError):
        s3mod.S3Target(None, 'bucket').key(name)


def test_constructor_checks():
    with pytest.raises(OffsiteError):
        s3mod.S3Target(None, 'b', sse='aws:other')
    with pytest.raises(OffsiteError):
        s3mod.S3Target(None, 'b', kms_key_id='k')
    with pytest.raises(ValueError):
        s3mod.S3Target(None, 'b', concurrency=0)
    assert s3mod.S3Target(None, 'b', part_size=1).part_size == 5 * MIB


def test_part_size_keeps_under_10000_parts():
    target = s3mod.S3Target(None, 'b', part_size=8 * MIB)
    assert target.part_size_for(0) == 8 * MIB
    assert target.part_size_for(80000 * MIB) == 8 * MIB
    for size in (80000 * MIB + 1, 5 * 1024 ** 4):
        part = target.part_size_for(size)
        assert part % MIB == 0 and -(-size // part) <= 10000


class FakeS3(object):
    """A stand-in of the boto3 S3 client: records calls, keeps uploaded parts, fails where told."""

    def __init__(self, existing=(), fail_part=None, head=None, versions=None, pages=None, delay=None):
        self.calls = []
        self.parts = {}
        self.existing = set(existing)
        self.fail_part = fail_part
        self.head = head or {}
        self.versions = versions or []
        self.pages = pages or []
        self.delay = delay
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0

    def _record(self, name, kwargs):
        with self.lock:
            self.calls.append((name, kwargs))

    def head_object(self, **kwargs):
        self._record('head_object', kwargs)
        if kwargs['Key'] in self.existing:
            return dict(self.head, ContentLength=1)
        raise client_error('404', 404, 'Not Found', 'HeadObject')

    def head_bucket(self, **kwargs):
        self._record('head_bucket', kwargs)
        return {}

    def create_multipart_upload(self, **kwargs):
        self._record('create_multipart_upload', kwargs)
        return {'UploadId': 'up-1'}

    def upload_part(self, **kwargs):
        self._record('upload_part', kwargs)
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay:
                self.delay.wait(0.02)
            if kwargs['PartNumber'] == self.fail_part:
                raise client_error('InternalError', 500, 'We encountered an internal error.', 'UploadPart')
            body = kwargs['Body']
            data = body.read() if hasattr(body, 'read') else body  # read the stream, as botocore sends it
            assert kwargs.get('ContentLength', len(data)) == len(data)
            with self.lock:
                self.parts[kwargs['PartNumber']] = data
            return {'ETag': '"etag-%d"' % kwargs['PartNumber']}
        finally:
            with self.lock:
                self.in_flight -= 1

    def complete_multipart_upload(self, **kwargs):
        self._record('complete_multipart_upload', kwargs)
        self.existing.add(kwargs['Key'])
        return {'VersionId': 'v-new'}

    def abort_multipart_upload(self, **kwargs):
        self._record('abort_multipart_upload', kwargs)

    def put_object(self, **kwargs):
        self._record('put_object', kwargs)
        return {'VersionId': 'v-put'}

    def put_object_retention(self, **kwargs):
        self._record('put_object_retention', kwargs)

    def delete_object(self, **kwargs):
        self._record('delete_object', kwargs)

    def get_paginator(self, name):
        fake = self

        class Paginator(object):
            def paginate(self, **kwargs):
                fake._record('paginate:' + name, kwargs)
                if name == 'list_object_versions':
                    return [{'Versions': fake.versions[:2]}, {'Versions': fake.versions[2:], 'DeleteMarkers': [
                        {'Key': 'pre/name', 'VersionId': 'marker'}]}]
                return fake.pages

        return Paginator()

    def names(self):
        return [call[0] for call in self.calls]


def write(path, size):
    data = bytes(i % 253 for i in range(size))
    with open(path, 'wb') as stream:
        stream.write(data)
    return data


def b64sha(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_put_file_sends_parts_with_their_checksums(tmp_path):
    path = str(tmp_path / 'f')
    data = write(path, 12 * MIB + 3)
    fake = FakeS3(delay=threading.Event())
    seen = []
    target = s3mod.S3Target(fake, 'bucket', 'pre', part_size=5 * MIB, concurrency=2, storage_class='GLACIER_IR',
                            sse='aws:kms', kms_key_id='key-1')
    assert target.put_file(path, 'name', len(data), progress=seen.append) == hashlib.sha256(data).hexdigest()
    create = dict(fake.calls)['create_multipart_upload']
    assert create == {'Bucket': 'bucket', 'Key': 'pre/name', 'ChecksumAlgorithm': 'SHA256', 'StorageClass': 'GLACIER_IR',
                      'ServerSideEncryption': 'aws:kms', 'SSEKMSKeyId': 'key-1'}
    assert b''.join(fake.parts[n] for n in sorted(fake.parts)) == data
    complete = dict(fake.calls)['complete_multipart_upload']
    assert complete['IfNoneMatch'] == '*' and complete['UploadId'] == 'up-1'
    assert complete['MultipartUpload']['Parts'] == [
        {'PartNumber': n, 'ETag': '"etag-%d"' % n, 'ChecksumSHA256': b64sha(fake.parts[n])} for n in (1, 2, 3)]
    sent = [kwargs for name, kwargs in fake.calls if name == 'upload_part']
    assert sorted(kwargs['ChecksumSHA256'] for kwargs in sent) == sorted(b64sha(fake.parts[n]) for n in (1, 2, 3))
    assert all(kwargs['ChecksumAlgorithm'] == 'SHA256' for kwargs in sent)
    assert fake.most_in_flight <= 2 and seen[-1] == len(data) and seen == sorted(seen)
    assert 'abort_multipart_upload' not in fake.names()


def test_zero_byte_file_is_one_empty_part(tmp_path):
    path = str(tmp_path / 'f')
    write(path, 0)
    fake = FakeS3()
    assert s3mod.S3Target(fake, 'bucket', 'pre').put_file(path, 'name', 0) == hashlib.sha256(b'').hexdigest()
    assert fake.parts == {1: b''}


def test_failed_part_aborts(tmp_path):
    path = str(tmp_path / 'f')
    write(path, 11 * MIB)
    fake = FakeS3(fail_part=2)
    with pytest.raises(OffsiteError) as err:
        s3mod.S3Target(fake, 'bucket', 'pre', part_size=5 * MIB, concurrency=2).put_file(path, 'name', 11 * MIB)
    assert 'InternalError' in str(err.value) and 's3://bucket/pre/name' in str(err.value)
    assert fake.names()[-1] == 'abort_multipart_upload'
    assert 'complete_multipart_upload' not in fake.names()


def test_existing_name_is_refused_before_any_upload(tmp_path):
    path = str(tmp_path / 'f')
    write(path, 10)
    fake = FakeS3(existing=['pre/name'])
    with pytest.raises(OffsiteExistsError):
        s3mod.S3Target(fake, 'bucket', 'pre').put_file(path, 'name', 10)
    assert fake.names() == ['head_object']


def test_lock_is_set_only_when_the_store_ignored_it(tmp_path):
    path = str(tmp_path / 'f')
    write(path, 10)
    until = NOW + datetime.timedelta(days=3)
    honoured = FakeS3(head={'ObjectLockRetainUntilDate': until})
    s3mod.S3Target(honoured, 'bucket', 'pre').put_file(path, 'name', 10, lock=('COMPLIANCE', until))
    create = dict(honoured.calls)['create_multipart_upload']
    assert (create['ObjectLockMode'], create['ObjectLockRetainUntilDate']) == ('COMPLIANCE', until)
    assert 'put_object_retention' not in honoured.names()
    ignored = FakeS3()
    s3mod.S3Target(ignored, 'bucket', 'pre').put_bytes('name', b'{}', lock=('GOVERNANCE', until))
    assert dict(ignored.calls)['put_object_retention'] == {
        'Bucket': 'bucket', 'Key': 'pre/name', 'VersionId': 'v-put', 'Retention': {'Mode': 'GOVERNANCE', 'RetainUntilDate': until}}
    with pytest.raises(OffsiteError):
        s3mod.S3Target(FakeS3(), 'bucket').put_bytes('name', b'', lock=('FOREVER', until))
    with pytest.raises(OffsiteError):
        s3mod.S3Target(FakeS3(), 'bucket').put_bytes('name', b'', lock=('GOVERNANCE', until.replace(tzinfo=None)))


def test_put_bytes_arguments():
    fake = FakeS3()
    target = s3mod.S3Target(fake, 'bucket', 'pre', sse='AES256')
    assert target.put_bytes('name.manifest.json', b'{"x": 1}') == hashlib.sha256(b'{"x": 1}').hexdigest()
    assert dict(fake.calls)['put_object'] == {
        'Bucket': 'bucket', 'Key': 'pre/name.manifest.json', 'Body': b'{"x": 1}', 'IfNoneMatch': '*',
        'ChecksumAlgorithm': 'SHA256', 'ChecksumSHA256': b64sha(b'{"x": 1}'), 'ServerSideEncryption': 'AES256'}


def test_list_names_keeps_direct_children_over_pages():
    fake = FakeS3(pages=[{'Contents': [{'Key': 'pre/a'}, {'Key': 'pre/a.manifest.json'}]},
                         {'Contents': [{'Key': 'pre/sub/b'}, {'Key': 'pre/'}]}, {}])
    assert s3mod.S3Target(fake, 'bucket', 'pre').list_names() == {'a', 'a.manifest.json'}
    assert dict(fake.calls)['paginate:list_objects_v2'] == {'Bucket': 'bucket', 'Prefix': 'pre/', 'Delimiter': '/'}


def test_delete_removes_exactly_this_keys_versions():
    versions = [{'Key': 'pre/name', 'VersionId': 'v1'}, {'Key': 'pre/name.manifest.json', 'VersionId': 'v9'},
                {'Key': 'pre/name', 'VersionId': 'v2'}]
    fake = FakeS3(existing=['pre/name'], versions=versions)
    s3mod.S3Target(fake, 'bucket', 'pre', clock=lambda: NOW).delete('name')
    deleted = [kwargs.get('VersionId') for name, kwargs in fake.calls if name == 'delete_object']
    assert deleted == ['v1', 'v2', 'marker']


@pytest.mark.parametrize('head', [{'ObjectLockRetainUntilDate': NOW + datetime.timedelta(seconds=1)},
                                  {'ObjectLockLegalHoldStatus': 'ON'}])
def test_locked_object_is_not_even_tried(head):
    fake = FakeS3(existing=['pre/name'], head=head)
    with pytest.raises(OffsiteLockedError):
        s3mod.S3Target(fake, 'bucket', 'pre', clock=lambda: NOW).delete('name')
    assert 'delete_object' not in fake.names()


def test_expired_retention_does_not_block():
    fake = FakeS3(existing=['pre/name'], head={'ObjectLockRetainUntilDate': NOW - datetime.timedelta(seconds=1)},
                  versions=[{'Key': 'pre/name', 'VersionId': 'v1'}])
    s3mod.S3Target(fake, 'bucket', 'pre', clock=lambda: NOW).delete('name')
    assert 'delete_object' in fake.names()
    assert s3mod.S3Target(fake, 'b', clock=lambda: NOW).stat('name') is None
