# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""S3Target (plugins/module_utils/_offsite/s3.py) against a real moto server over HTTP: no Docker needed.

moto stores the checksums a client sends without verifying them, so every upload is checked independently: the
bytes are read back with boto3's get_object and hashed here. Tests that switch on moto's IAM authentication get a
server of their own (it is global to the server process).

Run: ``python -m pytest -q -p no:cacheprovider tests/system/test_offsite_s3.py``.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import threading
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite import s3 as s3mod
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import (
    OffsiteError, OffsiteExistsError, OffsiteLockedError)
from ansible_collections.fleet_telemetry.dr.tests.support import moto_server as moto_support

MIB = 1024 * 1024
PLAIN = 'fleet-dr-plain'
LOCKED = 'fleet-dr-locked'
PREFIX = 'backups/host1'


@pytest.fixture(scope='module')
def moto():
    server = moto_support.start_moto_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope='module')
def s3(moto):
    client = moto.client('s3', retries={'max_attempts': 2, 'mode': 'standard'})
    client.create_bucket(Bucket=PLAIN)
    client.create_bucket(Bucket=LOCKED, ObjectLockEnabledForBucket=True)
    return client


@pytest.fixture
def prefix(request):
    """A prefix of this test's own, so that tests sharing the module's buckets never see each other's objects."""
    return '%s/%s' % (PREFIX, request.node.name.replace('[', '-').replace(']', ''))


def target(client, bucket=PLAIN, prefix=PREFIX, **kwargs):
    kwargs.setdefault('part_size', 5 * MIB)
    kwargs.setdefault('concurrency', 3)
    return s3mod.S3Target(client, bucket, prefix, **kwargs)


def write_file(path, size, seed=b'fleet'):
    """A file of ``size`` pseudo-random bytes; returns its sha256 hex."""
    digest = hashlib.sha256()
    block = hashlib.sha512(seed).digest() * 16384   # 1 MiB
    with open(path, 'wb') as stream:
        left = size
        while left:
            chunk = block[:min(left, len(block))]
            chunk = bytes([left % 251]) + chunk[1:]
            stream.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def read_back(client, bucket, key):
    """(sha256 hex, size) of the object as boto3 reads it: the independent check."""
    body = client.get_object(Bucket=bucket, Key=key)['Body'].read()
    return hashlib.sha256(body).hexdigest(), len(body)


def uploads(client, bucket):
    return client.list_multipart_uploads(Bucket=bucket).get('Uploads', [])


def keys(client, bucket, prefix):
    return sorted(item['Key'] for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get('Contents', []))


def later(**delta):
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(**delta)


# -- uploads ----------------------------------------------------------------------------------------------------------

def test_multipart_upload_round_trips_byte_exact(s3, tmp_path, prefix):
    path = str(tmp_path / 'dump')
    expected = write_file(path, 40 * 1000 * 1000)
    seen = []
    tgt = target(s3, prefix=prefix, part_size=8 * MIB, concurrency=3)
    assert tgt.put_file(path, 'dump', 40 * 1000 * 1000, progress=seen.append) == expected
    assert read_back(s3, PLAIN, prefix + '/dump') == (expected, 40 * 1000 * 1000)
    head = s3.head_object(Bucket=PLAIN, Key=prefix + '/dump')
    assert head['ETag'].endswith('-5"')                   # 40 MB in 8 MiB parts
    assert seen == sorted(seen) and seen[-1] == 40 * 1000 * 1000
    assert tgt.hash_object('dump') == (expected, 40 * 1000 * 1000)
    assert uploads(s3, PLAIN) == []


def test_zero_byte_file(s3, tmp_path, prefix):
    path = str(tmp_path / 'empty')
    open(path, 'wb').close()
    tgt = target(s3, prefix=prefix)
    assert tgt.put_file(path, 'empty', 0) == hashlib.sha256(b'').hexdigest()
    assert read_back(s3, PLAIN, prefix + '/empty') == (hashlib.sha256(b'').hexdigest(), 0)
    assert tgt.stat('empty')['size'] == 0


def test_file_of_exactly_whole_parts(s3, tmp_path, prefix):
    path = str(tmp_path / 'whole')
    expected = write_file(path, 10 * MIB)
    assert target(s3, prefix=prefix).put_file(path, 'whole', 10 * MIB) == expected
    assert read_back(s3, PLAIN, prefix + '/whole') == (expected, 10 * MIB)
    assert s3.head_object(Bucket=PLAIN, Key=prefix + '/whole')['ETag'].endswith('-2"')


def test_existing_name_is_refused_and_kept(s3, tmp_path, prefix):
    tgt = target(s3, prefix=prefix)
    tgt.put_bytes('taken', b'the first one')
    path = str(tmp_path / 'other')
    write_file(path, 6 * MIB)
    with pytest.raises(OffsiteExistsError) as err:
        tgt.put_file(path, 'taken', 6 * MIB)
    assert 's3://%s/%s/taken' % (PLAIN, prefix) in str(err.value)
    with pytest.raises(OffsiteExistsError):
        tgt.put_bytes('taken', b'another')
    assert s3.get_object(Bucket=PLAIN, Key=prefix + '/taken')['Body'].read() == b'the first one'
    assert uploads(s3, PLAIN) == []


def test_name_taken_during_the_upload_fails_at_complete(s3, tmp_path, prefix):
    """The early check saw no object; another writer created it meanwhile: Complete's If-None-Match answers 412."""
    path = str(tmp_path / 'race')
    write_file(path, 12 * MIB)
    key = prefix + '/race'

    def racer(done):
        if not keys(s3, PLAIN, key):
            s3.put_object(Bucket=PLAIN, Key=key, Body=b'the other writer')

    with pytest.raises(OffsiteExistsError):
        target(s3, prefix=prefix).put_file(path, 'race', 12 * MIB, progress=racer)
    assert s3.get_object(Bucket=PLAIN, Key=key)['Body'].read() == b'the other writer'
    assert uploads(s3, PLAIN) == []


@pytest.mark.parametrize('exc_type', [RuntimeError, KeyboardInterrupt, SystemExit])
def test_interrupted_upload_leaves_nothing(s3, tmp_path, prefix, exc_type):
    path = str(tmp_path / 'big')
    write_file(path, 30 * MIB)

    def interrupt(done):
        if done >= 10 * MIB:
            raise exc_type('interrupted')

    expected = OffsiteError if exc_type is RuntimeError else exc_type
    with pytest.raises(expected):
        target(s3, prefix=prefix).put_file(path, 'big', 30 * MIB, progress=interrupt)
    assert keys(s3, PLAIN, prefix) == []
    assert uploads(s3, PLAIN) == []


class FailingParts(object):
    """The real client, but ``upload_part`` of part ``fail_at`` raises what S3 answers under too much load."""

    def __init__(self, client, fail_at):
        self._client = client
        self._fail_at = fail_at

    def __getattr__(self, name):
        return getattr(self._client, name)

    def upload_part(self, **kwargs):
        if kwargs['PartNumber'] == self._fail_at:
            raise ClientError({'Error': {'Code': 'SlowDown', 'Message': 'Please reduce your request rate.'},
                               'ResponseMetadata': {'HTTPStatusCode': 503}}, 'UploadPart')
        return self._client.upload_part(**kwargs)


def test_failed_part_aborts_the_upload(s3, tmp_path, prefix):
    path = str(tmp_path / 'big')
    write_file(path, 26 * MIB)
    with pytest.raises(OffsiteError) as err:
        target(FailingParts(s3, 3), prefix=prefix).put_file(path, 'big', 26 * MIB)
    assert err.value.code == 'offsite_throttled' and 'SlowDown' in str(err.value)
    assert keys(s3, PLAIN, prefix) == []
    assert uploads(s3, PLAIN) == []


def test_file_shorter_than_announced_is_aborted(s3, tmp_path, prefix):
    path = str(tmp_path / 'short')
    write_file(path, 7 * MIB)
    with pytest.raises(OffsiteError) as err:
        target(s3, prefix=prefix).put_file(path, 'short', 9 * MIB)
    assert err.value.code == 'offsite_source_changed'
    with pytest.raises(OffsiteError):
        target(s3, prefix=prefix).put_file(path, 'short', 6 * MIB)
    assert keys(s3, PLAIN, prefix) == [] and uploads(s3, PLAIN) == []


class CountingParts(object):
    """The real client, slowed down, counting the parts in flight and the parts' sizes."""

    def __init__(self, client):
        self._client = client
        self._lock = threading.Lock()
        self.in_flight = self.most = 0
        self.sizes = {}

    def __getattr__(self, name):
        return getattr(self._client, name)

    def upload_part(self, **kwargs):
        with self._lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.sizes[kwargs['PartNumber']] = len(kwargs['Body'])
        try:
            time.sleep(0.05)
            return self._client.upload_part(**kwargs)
        finally:
            with self._lock:
                self.in_flight -= 1


def test_parts_in_flight_are_bounded(s3, tmp_path, prefix):
    path = str(tmp_path / 'many')
    expected = write_file(path, 48 * MIB + 17)
    counting = CountingParts(s3)
    assert target(counting, prefix=prefix, concurrency=3).put_file(path, 'many', 48 * MIB + 17) == expected
    assert counting.most == 3
    assert sorted(counting.sizes) == list(range(1, 11))
    assert set(counting.sizes[n] for n in range(1, 10)) == {5 * MIB} and counting.sizes[10] == 3 * MIB + 17
    assert read_back(s3, PLAIN, prefix + '/many') == (expected, 48 * MIB + 17)


def test_storage_class_and_sse_land_on_the_object(s3, tmp_path, prefix):
    path = str(tmp_path / 'dump')
    write_file(path, 6 * MIB)
    kms = target(s3, prefix=prefix, storage_class='STANDARD_IA', sse='aws:kms', kms_key_id='alias/fleet-dr-test')
    kms.put_file(path, 'dump', 6 * MIB)
    head = s3.head_object(Bucket=PLAIN, Key=prefix + '/dump')
    assert (head['StorageClass'], head['ServerSideEncryption'], head['SSEKMSKeyId']) == (
        'STANDARD_IA', 'aws:kms', 'alias/fleet-dr-test')
    aes = target(s3, prefix=prefix, storage_class='STANDARD_IA', sse='AES256')
    aes.put_bytes('dump.manifest.json', b'{}')
    head = s3.head_object(Bucket=PLAIN, Key=prefix + '/dump.manifest.json')
    assert (head['StorageClass'], head['ServerSideEncryption']) == ('STANDARD_IA', 'AES256')


# -- reads ------------------------------------------------------------------------------------------------------------

def test_list_names_stat_get_hash_download(s3, prefix):
    for key in ('a', 'a.manifest.json', 'sub/c'):
        s3.put_object(Bucket=PLAIN, Key='%s/%s' % (prefix, key), Body=b'data of ' + key.encode())
    s3.put_object(Bucket=PLAIN, Key=prefix + 'x', Body=b'a sibling prefix')
    tgt = target(s3, prefix=prefix + '/')
    assert tgt.label == 's3://%s/%s/' % (PLAIN, prefix)
    assert tgt.location('a') == 's3://%s/%s/a' % (PLAIN, prefix)
    assert tgt.list_names() == {'a', 'a.manifest.json'}
    assert tgt.stat('a') == {'size': 9, 'locked_until': None, 'legal_hold': False}
    assert tgt.stat('missing') is None
    assert tgt.get_bytes('a.manifest.json', 100) == b'data of a.manifest.json'
    with pytest.raises(OffsiteError) as err:
        tgt.get_bytes('a.manifest.json', 10)
    assert err.value.code == 'offsite_too_large'
    assert tgt.hash_object('a') == (hashlib.sha256(b'data of a').hexdigest(), 9)
    sink = io.BytesIO()
    assert tgt.download('a', sink) == (hashlib.sha256(b'data of a').hexdigest(), 9)
    assert sink.getvalue() == b'data of a'
    for call in (lambda: tgt.get_bytes('missing', 10), lambda: tgt.hash_object('missing'),
                 lambda: tgt.download('missing', io.BytesIO())):
        with pytest.raises(OffsiteError) as err:
            call()
        assert err.value.code == 'offsite_missing' and '/missing' in str(err.value)


def test_empty_prefix(s3):
    s3.create_bucket(Bucket='fleet-dr-root')
    tgt = target(s3, bucket='fleet-dr-root', prefix='')
    assert tgt.label == 's3://fleet-dr-root/'
    tgt.put_bytes('top', b'x')
    s3.put_object(Bucket='fleet-dr-root', Key='dir/nested', Body=b'y')
    assert tgt.list_names() == {'top'}
    assert s3.get_object(Bucket='fleet-dr-root', Key='top')['Body'].read() == b'x'


# -- Object Lock and delete -------------------------------------------------------------------------------------------

def test_locked_object_cannot_be_deleted(s3, tmp_path, prefix):
    path = str(tmp_path / 'dump')
    expected = write_file(path, 6 * MIB)
    tgt = target(s3, bucket=LOCKED, prefix=prefix)
    until = later(days=1).replace(microsecond=0)
    tgt.put_file(path, 'dump', 6 * MIB, lock=('GOVERNANCE', until))
    tgt.put_bytes('dump.manifest.json', b'{}', lock=('COMPLIANCE', until))
    head = s3.head_object(Bucket=LOCKED, Key=prefix + '/dump')
    assert head['ObjectLockMode'] == 'GOVERNANCE' and head['ObjectLockRetainUntilDate'] == until
    assert tgt.stat('dump')['locked_until'] == until
    for name in ('dump', 'dump.manifest.json'):
        with pytest.raises(OffsiteLockedError) as err:
            tgt.delete(name)
        assert until.isoformat() in str(err.value)
    assert read_back(s3, LOCKED, prefix + '/dump') == (expected, 6 * MIB)
    assert tgt.list_names() == {'dump', 'dump.manifest.json'}


def test_a_lock_is_extended_never_shortened(s3, prefix):
    """Retention extends the lock of a weekly or monthly keeper; a shorter date is a no-op, not a shortening."""
    tgt = target(s3, bucket=LOCKED, prefix=prefix)
    first = later(days=1).replace(microsecond=0)
    tgt.put_bytes('dump', b'dump bytes', lock=('GOVERNANCE', first))
    longer = later(days=40).replace(microsecond=0)
    assert tgt.extend_lock('dump', 'GOVERNANCE', longer) is True
    assert s3.head_object(Bucket=LOCKED, Key=prefix + '/dump')['ObjectLockRetainUntilDate'] == longer
    assert tgt.extend_lock('dump', 'GOVERNANCE', first) is False
    assert tgt.stat('dump')['locked_until'] == longer
    assert tgt.extend_lock('missing', 'GOVERNANCE', longer) is False


def test_what_goes_on_the_wire(moto, s3, tmp_path, prefix):
    """moto ignores Object Lock on CreateMultipartUpload and checks no checksum: check the requests themselves."""
    client = moto.client('s3')
    sent = []
    client.meta.events.register('before-send.s3.*', lambda request, **kwargs: sent.append(
        (kwargs['event_name'].split('.')[-1], dict(request.headers), request.body)))
    path = str(tmp_path / 'dump')
    write_file(path, 7 * MIB)
    until = later(days=1).replace(microsecond=0)
    tgt = target(client, bucket=LOCKED, prefix=prefix, storage_class='STANDARD_IA', sse='aws:kms', kms_key_id='k1')
    tgt.put_file(path, 'dump', 7 * MIB, lock=('COMPLIANCE', until))
    tgt.put_bytes('dump.manifest.json', b'{"a": 1}', lock=('COMPLIANCE', until))
    headers = {}
    for operation, request_headers, dummy in sent:
        headers.setdefault(operation, {k.lower(): v for k, v in request_headers.items()})
    expected = {'x-amz-object-lock-mode': b'COMPLIANCE', 'x-amz-object-lock-retain-until-date': until.strftime(
        '%Y-%m-%dT%H:%M:%SZ').encode(), 'x-amz-storage-class': b'STANDARD_IA',
        'x-amz-server-side-encryption': b'aws:kms', 'x-amz-server-side-encryption-aws-kms-key-id': b'k1'}
    for operation in ('CreateMultipartUpload', 'PutObject'):
        got = {name: value.encode() if isinstance(value, str) else value for name, value in headers[operation].items()}
        assert {name: got.get(name) for name in expected} == expected, operation
    assert headers['CreateMultipartUpload']['x-amz-checksum-algorithm'] == b'SHA256'
    assert headers['PutObject']['x-amz-checksum-sha256'] == s3mod._b64_sha256(b'{"a": 1}').encode()
    assert headers['CompleteMultipartUpload']['if-none-match'] == b'*'
    assert headers['PutObject']['if-none-match'] == b'*'
    with open(path, 'rb') as stream:
        data = stream.read()
    part_checksums = sorted(dict((k.lower(), v) for k, v in h.items())['x-amz-checksum-sha256']
                            for operation, h, dummy in sent if operation == 'UploadPart')
    assert part_checksums == sorted([s3mod._b64_sha256(data[:5 * MIB]).encode(),
                                     s3mod._b64_sha256(data[5 * MIB:]).encode()])


def test_legal_hold_blocks_delete(s3, prefix):
    tgt = target(s3, bucket=LOCKED, prefix=prefix)
    tgt.put_bytes('held', b'keep me')
    s3.put_object_legal_hold(Bucket=LOCKED, Key=prefix + '/held', LegalHold={'Status': 'ON'})
    assert tgt.stat('held')['legal_hold'] is True
    with pytest.raises(OffsiteLockedError) as err:
        tgt.delete('held')
    assert 'legal hold' in str(err.value)
    assert s3.get_object(Bucket=LOCKED, Key=prefix + '/held')['Body'].read() == b'keep me'


def test_lock_on_a_bucket_without_object_lock_fails_cleanly(s3, tmp_path, prefix):
    path = str(tmp_path / 'dump')
    write_file(path, 1000)
    tgt = target(s3, prefix=prefix)
    for call in (lambda: tgt.put_file(path, 'dump', 1000, lock=('GOVERNANCE', later(days=1))),
                 lambda: tgt.put_bytes('m', b'{}', lock=('GOVERNANCE', later(days=1)))):
        with pytest.raises(OffsiteError) as err:
            call()
        assert 'ObjectLockConfiguration' in str(err.value)
    assert keys(s3, PLAIN, prefix) == [] and uploads(s3, PLAIN) == []


def test_delete_removes_every_version(s3, prefix):
    tgt = target(s3, bucket=LOCKED, prefix=prefix)
    key = prefix + '/old'
    tgt.put_bytes('old', b'v1')
    s3.put_object(Bucket=LOCKED, Key=key, Body=b'v2')
    s3.delete_object(Bucket=LOCKED, Key=key)                   # a delete marker on top
    s3.put_object(Bucket=LOCKED, Key=key, Body=b'v3')
    s3.put_object(Bucket=LOCKED, Key=key + '.manifest.json', Body=b'{}')   # same key prefix: must stay
    tgt.delete('old')
    versions = s3.list_object_versions(Bucket=LOCKED, Prefix=key)
    left = [item['Key'] for item in versions.get('Versions', []) + versions.get('DeleteMarkers', [])]
    assert left == [key + '.manifest.json']
    assert tgt.stat('old') is None
    tgt.delete('old')                                          # nothing left: nothing to do


def test_delete_in_an_unversioned_bucket(s3, prefix):
    tgt = target(s3, prefix=prefix)
    tgt.put_bytes('gone', b'x')
    tgt.delete('gone')
    assert keys(s3, PLAIN, prefix) == []


def test_delete_refused_by_s3_for_a_locked_older_version(s3, prefix):
    """The current version is free, an older one is under retention: S3 answers AccessDenied, reported as locked."""
    tgt = target(s3, bucket=LOCKED, prefix=prefix)
    key = prefix + '/mixed'
    tgt.put_bytes('mixed', b'v1', lock=('GOVERNANCE', later(days=1)))
    s3.put_object(Bucket=LOCKED, Key=key, Body=b'v2')
    with pytest.raises(OffsiteLockedError):
        tgt.delete('mixed')
    versions = s3.list_object_versions(Bucket=LOCKED, Prefix=key).get('Versions', [])
    assert [v['Size'] for v in versions] == [2]


def test_delete_after_retention_expired(s3, prefix):
    tgt = target(s3, bucket=LOCKED, prefix=prefix)
    tgt.put_bytes('brief', b'x', lock=('GOVERNANCE', later(seconds=2)))
    with pytest.raises(OffsiteLockedError):
        tgt.delete('brief')
    time.sleep(2.5)
    tgt.delete('brief')
    assert s3.list_object_versions(Bucket=LOCKED, Prefix=prefix + '/brief').get('Versions', []) == []


# -- errors -----------------------------------------------------------------------------------------------------------

def test_missing_bucket(s3, tmp_path):
    path = str(tmp_path / 'dump')
    write_file(path, 100)
    tgt = target(s3, bucket='fleet-dr-no-such-bucket')
    for call in (lambda: tgt.put_file(path, 'dump', 100), lambda: tgt.put_bytes('m', b'{}'), tgt.list_names,
                 lambda: tgt.stat('dump'), lambda: tgt.hash_object('dump'), lambda: tgt.delete('dump')):
        with pytest.raises(OffsiteError) as err:
            call()
        assert err.value.code == 'offsite_no_bucket', str(err.value)
        assert 'fleet-dr-no-such-bucket' in str(err.value)


def test_endpoint_unreachable(tmp_path):
    path = str(tmp_path / 'dump')
    write_file(path, 100)
    client = boto3.session.Session().client(
        's3', region_name='us-east-1', endpoint_url='http://127.0.0.1:%d' % moto_support.free_port(),
        aws_access_key_id='AKIAFLEETDRTEST', aws_secret_access_key='not-a-secret',
        config=Config(retries={'max_attempts': 1}, connect_timeout=2, read_timeout=2, s3={'addressing_style': 'path'}))
    tgt = target(client)
    for call in (lambda: tgt.put_file(path, 'dump', 100), tgt.list_names, lambda: tgt.stat('dump'),
                 lambda: tgt.get_bytes('m', 10)):
        with pytest.raises(OffsiteError) as err:
            call()
        assert err.value.code == 'offsite_unreachable', str(err.value)
        assert 's3://%s/' % PLAIN in str(err.value)


def test_no_credentials(moto, monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith('AWS_'):
            monkeypatch.delenv(name)
    monkeypatch.setenv('AWS_SHARED_CREDENTIALS_FILE', str(tmp_path / 'none'))
    monkeypatch.setenv('AWS_CONFIG_FILE', str(tmp_path / 'none'))
    monkeypatch.setenv('AWS_EC2_METADATA_DISABLED', 'true')
    client = boto3.session.Session().client('s3', region_name='us-east-1', endpoint_url=moto.url)
    with pytest.raises(OffsiteError) as err:
        target(client).list_names()
    assert err.value.code == 'offsite_credentials' and 'no AWS credentials' in str(err.value)


def test_server_gone_mid_upload(tmp_path):
    """The endpoint dies while parts are being sent: a clear error, no hang (the upload cannot be aborted then)."""
    path = str(tmp_path / 'dump')
    write_file(path, 30 * MIB)
    with moto_support.moto_server() as server:
        client = server.client('s3', retries={'max_attempts': 1}, connect_timeout=2, read_timeout=5)
        client.create_bucket(Bucket=PLAIN)

        def crash(done):
            server.kill()

        started = time.monotonic()
        with pytest.raises(OffsiteError) as err:
            target(client).put_file(path, 'dump', 30 * MIB, progress=crash)
        assert err.value.code == 'offsite_unreachable', str(err.value)
        assert time.monotonic() - started < 60


@pytest.fixture(scope='module')
def auth_moto():
    """A server of its own with IAM authentication on: a user allowed s3:*, a user allowed nothing."""
    server = moto_support.start_moto_server()
    try:
        iam, admin = server.client('iam'), server.client('s3')
        admin.create_bucket(Bucket=PLAIN)
        users = {}
        for user, policy in (('backup', {'Effect': 'Allow', 'Action': 's3:*', 'Resource': '*'}), ('nobody', None)):
            iam.create_user(UserName=user)
            if policy:
                iam.put_user_policy(UserName=user, PolicyName='s3', PolicyDocument=json.dumps(
                    {'Version': '2012-10-17', 'Statement': [policy]}))
            users[user] = iam.create_access_key(UserName=user)['AccessKey']
        server.enable_auth()
        server.users = users
        yield server
    finally:
        server.stop()


def test_credentials_and_permissions(auth_moto, tmp_path):
    path = str(tmp_path / 'dump')
    write_file(path, 6 * MIB)
    backup, nobody = auth_moto.users['backup'], auth_moto.users['nobody']
    good = target(auth_moto.client('s3', backup['AccessKeyId'], backup['SecretAccessKey']))
    good.put_file(path, 'dump', 6 * MIB)                       # authentication is on, and this identity may write
    assert good.list_names() == {'dump'}
    cases = [
        ('AKIAFLEETDRUNKNOWN00', 'whatever', 'offsite_credentials', 'InvalidAccessKeyId'),
        (backup['AccessKeyId'], 'not-the-secret', 'offsite_credentials', 'SignatureDoesNotMatch'),
        (nobody['AccessKeyId'], nobody['SecretAccessKey'], 'offsite_denied', 'AccessDenied'),
    ]
    for access_key, secret_key, code, aws_code in cases:
        tgt = target(auth_moto.client('s3', access_key, secret_key))
        for call in (lambda: tgt.put_file(path, 'other', 6 * MIB), lambda: tgt.put_bytes('m', b'{}'), tgt.list_names,
                     lambda: tgt.stat('dump'), lambda: tgt.hash_object('dump'), lambda: tgt.delete('dump')):
            with pytest.raises(OffsiteError) as err:
                call()
            assert (err.value.code, err.value.extra.get('aws_code')) == (code, aws_code), str(err.value)
            assert secret_key not in str(err.value) and access_key not in str(err.value)
    assert good.list_names() == {'dump'}
