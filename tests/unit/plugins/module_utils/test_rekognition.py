# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Re-indexing decisions over plain data, and whole runs against a stand-in of the boto3 Rekognition client."""

from __future__ import annotations

import collections
import io
import json
import os
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _lock as lk
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _photo_crypto as pc
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition import aws as _aws
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition import errors as _errors
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition import faces as _faces
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition import images as _images
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition import mapping as _mapping
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition import plan as _plan
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition import request as _request
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition import run as _run
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition import source as _source
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import TransportError

KEY = bytes(range(1, 33))
OTHER_KEY = bytes(range(101, 133))
JPEG_MAGIC = b'\xff\xd8\xff\xe0'


def image_with_faces(count, padding=0):
    """Bytes that pass as a JPEG and tell the stand-in client how many faces it shows."""
    return JPEG_MAGIC + b'faces:%d;' % count + b'x' * padding


def client_error(code, status=400, message='boom', operation='IndexFaces'):
    return ClientError({'Error': {'Code': code, 'Message': message}, 'ResponseMetadata': {'HTTPStatusCode': status}}, operation)


# ------------------------------------------------------------------------------------------------
# Stand-ins
# ------------------------------------------------------------------------------------------------

class FakeRekognition(object):
    """A boto3 Rekognition client stand-in: collections in memory, faces read from image_with_faces() bytes.

    ``fail[operation]`` is a list of exceptions (or callables returning one, given the request) raised by
    the next calls; ``index_then_fail`` raises after storing the faces, as a server that timed out late.
    """

    def __init__(self):
        self.collections = {}
        self.calls = collections.Counter()
        self.fail = collections.defaultdict(list)
        self.index_then_fail = []
        self.delay = 0.0
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def _enter(self, operation):
        with self.lock:
            self.calls[operation] += 1
            if self.fail[operation]:
                raise self.fail[operation].pop(0)

    def describe_collection(self, CollectionId):
        self._enter('describe_collection')
        if CollectionId not in self.collections:
            raise client_error('ResourceNotFoundException', operation='DescribeCollection')
        return {'CollectionARN': 'arn:aws:rekognition:us-east-1:123456789012:collection/%s' % CollectionId,
                'FaceModelVersion': '7.0', 'FaceCount': len(self.collections[CollectionId])}

    def create_collection(self, CollectionId):
        self._enter('create_collection')
        if CollectionId in self.collections:
            raise client_error('ResourceAlreadyExistsException', operation='CreateCollection')
        self.collections[CollectionId] = {}
        return {'CollectionArn': 'aws:rekognition:us-east-1:123456789012:collection/%s' % CollectionId, 'FaceModelVersion': '7.0'}

    def delete_collection(self, CollectionId):
        self._enter('delete_collection')
        del self.collections[CollectionId]
        return {'StatusCode': 200}

    def list_faces(self, CollectionId, MaxResults, NextToken=None):
        self._enter('list_faces')
        if CollectionId not in self.collections:
            raise client_error('ResourceNotFoundException', operation='ListFaces')
        faces = sorted(self.collections[CollectionId].values(), key=lambda face: face['FaceId'])
        start = int(NextToken or 0)
        page = faces[start:start + MaxResults]
        response = {'Faces': page, 'FaceModelVersion': '7.0'}
        if start + MaxResults < len(faces):
            response['NextToken'] = str(start + MaxResults)
        return response

    def index_faces(self, CollectionId, Image, ExternalImageId, DetectionAttributes, MaxFaces=None, QualityFilter=None):
        self._enter('index_faces')
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            data = Image['Bytes']
            assert data.startswith(JPEG_MAGIC), 'the client got undecrypted bytes'
            count = int(data[len(JPEG_MAGIC):].split(b';')[0].split(b':')[1])
            image_id = str(uuid.uuid4())
            records = []
            for index in range(count):
                face = {'FaceId': str(uuid.uuid4()), 'ImageId': image_id, 'ExternalImageId': ExternalImageId, 'Confidence': 99.5,
                        'BoundingBox': {'Left': 0.1 * index, 'Top': 0.2, 'Width': 0.1, 'Height': 0.2}}
                records.append({'Face': face})
            with self.lock:
                for record in records:
                    self.collections[CollectionId][record['Face']['FaceId']] = record['Face']
                if self.index_then_fail:
                    raise self.index_then_fail.pop(0)
            return {'FaceRecords': records, 'UnindexedFaces': [], 'FaceModelVersion': '7.0'}
        finally:
            with self.lock:
                self.active -= 1

    def faces_by_external_id(self, collection_id):
        found = collections.defaultdict(list)
        for face in self.collections[collection_id].values():
            found[face['ExternalImageId']].append(face['FaceId'])
        return dict((external_id, sorted(ids)) for external_id, ids in found.items())


class FakeSource(object):
    """Photo rows in memory; counts how many were handed out."""

    def __init__(self, photos):
        self.photos = photos
        self.yielded = 0

    def rows(self, ids=None):
        for photo_id, ciphertext, external_id in self.photos:
            if ids is None or photo_id in ids:
                self.yielded += 1
                yield photo_id, ciphertext, external_id


def make_photos(face_counts, key=KEY, cipher=pc.AES_256_GCM, padding=0):
    return [(i, pc.encrypt(key, image_with_faces(count, padding), cipher), 'veh-1.photo-%04d' % i)
            for i, count in enumerate(face_counts, start=1)]


FACES = [1, 0, 2, 1, 0, 3, 1, 1]


def run(client, photos, check_mode=False, face_table=None, **options):
    options.setdefault('key', KEY)
    options.setdefault('tps', 1000)
    options.setdefault('concurrency', 4)
    request = _request.ReindexRequest('fleet-drivers', **options)
    warnings = []
    reindexer = _run.Reindexer(request, client, FakeSource(photos) if isinstance(photos, list) else photos, face_table,
                               check_mode=check_mode, warn=warnings.append, sleep=lambda seconds: None)
    result = reindexer.run()
    result['_warnings'] = warnings
    return result


# ------------------------------------------------------------------------------------------------
# Pure decisions
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('code, status, kind', [
    ('ProvisionedThroughputExceededException', 400, _errors.THROTTLE),
    ('ThrottlingException', 400, _errors.THROTTLE),
    ('InternalServerError', 500, _errors.SERVER),
    ('SomethingNew', 503, _errors.SERVER),
    ('InvalidImageFormatException', 400, _errors.PHOTO),
    ('ImageTooLargeException', 400, _errors.PHOTO),
    ('InvalidParameterException', 400, _errors.PHOTO),
    ('ValidationException', 400, _errors.PHOTO),
    ('AccessDeniedException', 400, _errors.FATAL),
    ('ResourceNotFoundException', 400, _errors.FATAL),
    ('UnrecognizedClientException', 400, _errors.FATAL),
])
def test_classify_error(code, status, kind):
    assert _errors.classify_error(code, status) == kind


@pytest.mark.parametrize('exc, kind, code', [
    (client_error('ThrottlingException'), _errors.THROTTLE, 'ThrottlingException'),
    (client_error('InternalServerError', 500), _errors.SERVER, 'InternalServerError'),
    (ReadTimeoutError(endpoint_url='http://x'), _errors.UNKNOWN_OUTCOME, 'ReadTimeoutError'),
    (EndpointConnectionError(endpoint_url='http://x'), _errors.UNSENT, 'EndpointConnectionError'),
    (ConnectTimeoutError(endpoint_url='http://x'), _errors.UNSENT, 'ConnectTimeoutError'),
    (NoCredentialsError(), _errors.FATAL, 'NoCredentialsError'),
])
def test_classify_exception(exc, kind, code):
    assert _errors.classify_exception(exc)[:2] == (kind, code)


def test_classify_exception_leaves_other_exceptions_alone():
    assert _errors.classify_exception(ValueError('bug')) is None


@pytest.mark.parametrize('external_id, ok', [
    ('veh-0001.photo-00000001', True),
    ('a:b_c-d.e', True),
    ('x' * 255, True),
    ('x' * 256, False),
    ('', False),
    ('has space', False),
    ('slash/no', False),
    (u'caf\u00e9', False),
])
def test_external_id_problem(external_id, ok):
    assert (_plan.external_id_problem(external_id) is None) == ok


def test_plan_of_a_first_run_indexes_everything():
    plan = _plan.plan_reindex(['a', 'b', 'c'])
    assert plan['index'] == ['a', 'b', 'c'] and plan['complete']


def test_plan_of_a_rerun_indexes_nothing():
    plan = _plan.plan_reindex(['a', 'b', 'c', 'd'], indexed={'a', 'c'}, no_face={'b', 'd'})
    assert plan['index'] == []
    assert (plan[_plan.SKIP_INDEXED], plan[_plan.SKIP_NO_FACE]) == (2, 2)


def test_plan_of_an_interrupted_run_resumes_with_the_rest():
    ids = ['p%02d' % i for i in range(10)]
    plan = _plan.plan_reindex(ids, indexed=set(ids[:4]))
    assert plan['index'] == ids[4:]
    assert plan[_plan.SKIP_INDEXED] == 4


def test_plan_stops_at_the_limit():
    plan = _plan.plan_reindex(['a', 'b', 'c', 'd'], indexed={'a'}, limit=2)
    assert plan['index'] == ['b', 'c'] and not plan['complete']


def test_plan_with_a_limit_that_is_not_reached_is_complete():
    plan = _plan.plan_reindex(['a', 'b'], limit=5)
    assert plan['complete'] and plan['index'] == ['a', 'b']


def test_plan_refuses_duplicate_and_invalid_external_ids():
    plan = _plan.plan_reindex(['a', 'a', 'b c', '', 'd'])
    assert plan['index'] == ['a', 'd']
    assert plan[_plan.DUPLICATE_ID] == 1 and plan[_plan.INVALID_ID] == 2


def test_pair_faces_by_nearest_bounding_box():
    rows = [(10, (0.5, 0.2, 0.1, 0.2)), (11, (0.1, 0.2, 0.1, 0.2))]
    faces = [('f-left', 'img', (0.11, 0.2, 0.1, 0.2)), ('f-right', 'img', (0.49, 0.21, 0.1, 0.2))]
    pairs, rows_left, faces_left = _faces.pair_faces(rows, faces)
    assert [(row[0], face[0]) for row, face in pairs] == [(10, 'f-right'), (11, 'f-left')]
    assert rows_left == [] and faces_left == []


def test_pair_faces_reports_the_unmatched():
    pairs, rows_left, faces_left = _faces.pair_faces([(1, (0.1, 0.1, 0.1, 0.1))], [('a', 'i', (0.1, 0.1, 0.1, 0.1)), ('b', 'i', (0.9, 0.9, 0.1, 0.1))])
    assert [face[0] for dummy, face in pairs] == ['a'] and [face[0] for face in faces_left] == ['b'] and rows_left == []
    pairs, rows_left, faces_left = _faces.pair_faces([(1, None), (2, None)], [('a', 'i', (0.1, 0.1, 0.1, 0.1))])
    assert len(pairs) == 1 and [row[0] for row in rows_left] == [2] and faces_left == []


def test_pair_faces_without_boxes_pairs_rows_in_order_with_faces_top_to_bottom():
    faces = [('low', 'i', (0.1, 0.8, 0.1, 0.1)), ('high', 'i', (0.5, 0.1, 0.1, 0.1))]
    pairs, dummy, dummy2 = _faces.pair_faces([(7, None), (3, None)], faces)
    assert [(row[0], face[0]) for row, face in pairs] == [(3, 'high'), (7, 'low')]


def test_plan_face_id_updates():
    rows = {1: [(100, (0.1, 0.2, 0.1, 0.2), 'old-1')],
            2: [(200, (0.0, 0.2, 0.1, 0.2), 'same'), (201, (0.1, 0.2, 0.1, 0.2), 'old-2b')],
            3: [(300, None, 'old-3')],
            4: [(400, None, 'old-4')]}
    faces = {1: [('new-1', 'img1', (0.1, 0.2, 0.1, 0.2))],
             2: [('same', 'img2', (0.0, 0.2, 0.1, 0.2)), ('new-2b', 'img2', (0.1, 0.2, 0.1, 0.2))],
             5: [('new-5', 'img5', (0.1, 0.2, 0.1, 0.2))]}
    updates, counts = _faces.plan_face_id_updates(rows, faces, no_face_photos={3})
    assert sorted(updates) == [(100, 'new-1', 'img1'), (201, 'new-2b', 'img2')]
    assert counts == {'rows_updated': 2, 'rows_unchanged': 1, 'rows_without_face': 1, 'faces_without_row': 1}


def test_check_key_fails_when_none_of_the_first_photos_decrypts():
    sample = [(photo_id, data, None) for photo_id, data, dummy in make_photos([1, 0, 2])]
    with pytest.raises(_errors.ReindexError) as err:
        _images.check_key(sample, OTHER_KEY, pc.AES_256_GCM)
    assert err.value.code == 'bad_key'
    assert 'none of the 3 photos' in str(err.value) and 'nothing was sent to Rekognition' in str(err.value)


def test_check_key_lets_a_corrupted_photo_through():
    photos = make_photos([1, 0, 2])
    corrupted = bytearray(photos[0][1])
    corrupted[20] ^= 0xFF
    sample = [(1, bytes(corrupted), None)] + [(photo_id, data, None) for photo_id, data, dummy in photos[1:]]
    assert _images.check_key(sample, KEY, pc.AES_256_GCM) == {'checked': 3, 'failed': 1}


def test_check_key_with_no_photo_passes():
    assert _images.check_key([], KEY, pc.AES_256_GCM) == {'checked': 0, 'failed': 0}


def test_prepare_image_reports_why_a_photo_cannot_be_sent():
    good = pc.encrypt(KEY, image_with_faces(1))
    assert _images.prepare_image(KEY, pc.AES_256_GCM, good) == (image_with_faces(1), False)
    corrupted = bytearray(good)
    corrupted[-1] ^= 1
    with pytest.raises(_errors.PhotoProblem) as err:
        _images.prepare_image(KEY, pc.AES_256_GCM, bytes(corrupted))
    assert err.value.reason == 'authentication_failed'
    with pytest.raises(_errors.PhotoProblem) as err:
        _images.prepare_image(KEY, pc.AES_256_GCM, pc.encrypt(KEY, b'GIF89a not a jpeg'))
    assert err.value.reason == 'not_an_image'


def test_prepare_image_reports_or_downscales_an_oversized_photo():
    image = noise_png(420, 420)
    ciphertext = pc.encrypt(KEY, image)
    with pytest.raises(_errors.PhotoProblem) as err:
        _images.prepare_image(KEY, pc.AES_256_GCM, ciphertext, oversize='report', max_bytes=len(image) - 1)
    assert err.value.reason == 'too_large'
    fitted, downscaled = _images.prepare_image(KEY, pc.AES_256_GCM, ciphertext, oversize='downscale', max_bytes=len(image) // 3)
    assert downscaled and len(fitted) <= len(image) // 3 and fitted.startswith(b'\xff\xd8\xff')


def test_fit_image_keeps_the_minimum_size():
    image = noise_png(120, 120)
    with pytest.raises(_errors.PhotoProblem) as err:
        _images.fit_image(image, max_bytes=500)
    assert err.value.reason == 'too_large'


def noise_png(width, height):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    out = io.BytesIO()
    Image.frombytes('RGB', (width, height), os.urandom(width * height * 3)).save(out, format='PNG')
    return out.getvalue()


def test_known_no_face_only_trusts_a_document_of_the_same_collection_and_model():
    document = _mapping.mapping_document({'id': 'c', 'arn': 'arn', 'face_model_version': '7.0'}, {'a': ['f']}, {'b', 'c'})
    assert _mapping.known_no_face(document, 'c', '7.0') == {'b', 'c'}
    assert _mapping.known_no_face(document, 'other', '7.0') == set()
    assert _mapping.known_no_face(document, 'c', '6.0') == set()
    assert _mapping.known_no_face(None, 'c', '7.0') == set()
    assert _mapping.known_no_face({'format': 99}, 'c', '7.0') == set()


def test_summary_message_says_when_the_limit_stopped_the_run():
    result = {'indexed': 2, 'faces_indexed': 3, 'collection_id': 'c', 'already_indexed': 1, 'known_no_face': 0, 'no_face': 1,
              'failed_photos': 0, 'complete': False, 'limit': 3}
    assert _plan.summary_message(result).endswith('stopped at limit=3, run again to continue')


class RecordingSession(object):
    def __init__(self, rows=()):
        self.sql = []
        self.rows = list(rows)

    def query(self, sql):
        self.sql.append(sql)
        return self.rows


def test_photo_source_adds_the_ids_to_the_filter():
    session = RecordingSession()
    source = _source.PhotoSource(session, where="taken_at > '2025-01-01'", batch_size=10)
    assert list(source.rows(ids=[3, 1])) == []
    assert '''WHERE "id" > -4611686018427387904 AND ((taken_at > '2025-01-01') AND "id" IN (3, 1))''' in session.sql[0]
    assert 'encode("data", \'hex\'), "external_image_id"' in session.sql[0]


def test_photo_source_derives_the_external_id_from_an_expression():
    session = RecordingSession([['7', '00', 'photo-7']])
    source = _source.PhotoSource(session, external_id_expression="'photo-' || id", batch_size=10)
    assert list(source.rows()) == [(7, b'\x00', 'photo-7')]
    assert '''encode("data", 'hex'), ('photo-' || id)::text FROM "photo"''' in session.sql[0]
    assert 'external_image_id' not in session.sql[0]


class FailingSession(object):
    def __init__(self, stderr):
        self.stderr = stderr

    def query(self, sql):
        raise TransportError('psql failed (rc=3): ^', rc=3, stderr=self.stderr)


@pytest.mark.parametrize('stderr, code, expected', [
    ('ERROR:  column "external_image_id" does not exist\nLINE 1: SELECT "id", encode("data", \'hex\'), "external_image_id"',
     'no_column', 'the external image id column external_image_id does not exist in photo: set external_id_column '
                  '(role: rekognition_reindex_external_id_column) to the column of your schema; or derive the id from the row '
                  'with external_id_expression'),
    ('ERROR:  column "data" does not exist', 'no_column',
     'the photo data column data does not exist in photo: set photo_data_column (role: rekognition_reindex_photo_data_column)'),
    ('ERROR:  relation "photo" does not exist', 'no_table',
     'the photo table photo does not exist in the database: set photo_table (role: rekognition_reindex_photo_table) to the table'),
    ('ERROR:  column "taken_at" does not exist', 'no_column',
     'the photo query failed: column taken_at does not exist; check the photo_table, photo_*_column, external_id_* and where'),
])
def test_a_missing_column_names_the_column_and_its_setting(stderr, code, expected):
    with pytest.raises(_errors.ReindexError) as err:
        list(_source.PhotoSource(FailingSession(stderr), where='taken_at > now()').rows())
    assert err.value.code == code
    assert str(err.value).startswith(expected)


def test_other_query_failures_pass_through():
    with pytest.raises(TransportError):
        list(_source.PhotoSource(FailingSession('FATAL:  terminating connection')).rows())


def test_a_second_run_of_a_collection_is_refused_with_who_holds_it(tmp_path):
    ran = []
    with lk.BackupLock(str(tmp_path), 'reindex-fleet-drivers', purpose='re-indexing of collection fleet-drivers'):
        with pytest.raises(_errors.ReindexError) as err:
            _run.locked_run(_run.run_lock(str(tmp_path), 'fleet-drivers'), lambda: ran.append(1))
    assert err.value.code == 'lock_held' and ran == []
    assert str(err.value).startswith('another re-indexing of collection fleet-drivers is running: pid %d' % os.getpid())
    assert err.value.extra['holder']['pid'] == os.getpid()
    assert _run.locked_run(_run.run_lock(str(tmp_path), 'fleet-drivers'), lambda: 'ran') == 'ran'
    assert _run.locked_run(_run.run_lock(None, 'fleet-drivers'), lambda: 'unlocked') == 'unlocked'


def test_check_mode_takes_no_lock(tmp_path):
    with lk.BackupLock(str(tmp_path), 'reindex-fleet-drivers'):
        assert _run.locked_run(_run.run_lock(str(tmp_path), 'fleet-drivers', check_mode=True), lambda: 'planned') == 'planned'


def test_face_table_sql():
    session = RecordingSession([['5', '1', 'old', '0.1', '0.2', '0.3', '0.4'], ['6', '1', 'old2', '', '', '', '']])
    table = _faces.FaceTable(session)
    rows = table.rows_by_photo([1, 2], "fleet'drivers")
    assert rows == {1: [(5, (0.1, 0.2, 0.3, 0.4), 'old'), (6, None, 'old2')]}
    assert '''"photo_id" IN (1, 2) AND "collection_id" = 'fleet''drivers\'''' in session.sql[0]
    table.apply([(5, 'new', 'img')])
    assert session.sql[1] == ('BEGIN; UPDATE "recognition_result" AS t SET "face_id" = v.face_id, "image_id" = nullif(v.image_id, \'\') '
                              "FROM (VALUES (5, 'new', 'img')) AS v(row_id, face_id, image_id) WHERE t.\"id\" = v.row_id; COMMIT")
    table.apply([])
    assert len(session.sql) == 2


def test_face_table_refuses_a_partial_bounding_box():
    with pytest.raises(_errors.ReindexError):
        _faces.FaceTable(RecordingSession(), bbox_columns=['l', 't'])


@pytest.mark.parametrize('collection_id, tps, concurrency', [('bad id', 5, 1), ('ok', 0, 1), ('ok', 5, 0)])
def test_request_refuses_bad_options(collection_id, tps, concurrency):
    with pytest.raises(_errors.ReindexError) as err:
        _request.ReindexRequest(collection_id, KEY, tps=tps, concurrency=concurrency)
    assert err.value.code == 'bad_option'


# ------------------------------------------------------------------------------------------------
# The retry layer
# ------------------------------------------------------------------------------------------------

class Scripted(object):
    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = 0

    def index_faces(self, **kwargs):
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    describe_collection = index_faces


def caller(client, **kwargs):
    return _aws.AwsCaller(client, sleep=lambda seconds: None, **kwargs)


def test_throttling_is_retried_until_the_call_goes_through():
    client = Scripted(*([client_error('ProvisionedThroughputExceededException')] * 12 + [{'ok': 1}]))
    aws = caller(client)
    assert aws.call('index_faces', idempotent=False) == {'ok': 1}
    assert aws.throttle_retries == 12 and client.calls == 13


def test_throttling_for_too_long_stops_the_run():
    now = [0.0]

    def clock():
        now[0] += 100.0
        return now[0]

    client = Scripted(*([client_error('ThrottlingException')] * 20))
    with pytest.raises(_errors.AwsCallError) as err:
        _aws.AwsCaller(client, throttle_timeout=600, sleep=lambda s: None, clock=clock).call('index_faces', idempotent=False)
    assert err.value.kind == _errors.FATAL and 'still throttled' in err.value.message


def test_a_write_with_an_unknown_outcome_is_not_resent():
    for error in (client_error('InternalServerError', 500), ReadTimeoutError(endpoint_url='http://x')):
        client = Scripted(error, {'ok': 1})
        with pytest.raises(_errors.AwsCallError) as err:
            caller(client).call('index_faces', idempotent=False)
        assert err.value.kind == _errors.UNCERTAIN and client.calls == 1


def test_a_write_that_never_left_is_resent():
    client = Scripted(EndpointConnectionError(endpoint_url='http://x'), {'ok': 1})
    assert caller(client).call('index_faces', idempotent=False) == {'ok': 1}


def test_a_read_is_retried_a_bounded_number_of_times():
    client = Scripted(client_error('InternalServerError', 500), ReadTimeoutError(endpoint_url='x'), {'ok': 1})
    aws = caller(client)
    assert aws.call('describe_collection') == {'ok': 1} and aws.retried == 2
    client = Scripted(*([client_error('InternalServerError', 500)] * 4))
    with pytest.raises(_errors.AwsCallError) as err:
        caller(client, retries=3).call('describe_collection')
    assert err.value.kind == _errors.FATAL and client.calls == 4


def test_photo_errors_and_fatal_errors_are_not_retried():
    for code, kind in (('InvalidImageFormatException', _errors.PHOTO), ('AccessDeniedException', _errors.FATAL)):
        client = Scripted(client_error(code), {'ok': 1})
        with pytest.raises(_errors.AwsCallError) as err:
            caller(client).call('index_faces', idempotent=False)
        assert err.value.kind == kind and client.calls == 1


def test_fatal_errors_name_the_fix():
    error = _errors.AwsCallError(_errors.FATAL, 'AccessDeniedException', 'User is not authorized', 'index_faces')
    assert 'IAM permissions' in error.sentence()


def test_the_boto3_client_gets_no_retries_of_its_own():
    config = _aws.client_config(16)
    assert config['retries']['total_max_attempts'] == 1 and config['max_pool_connections'] >= 16


# ------------------------------------------------------------------------------------------------
# Whole runs
# ------------------------------------------------------------------------------------------------

def assert_one_entry_per_face(client, photos, counts):
    """The collection holds exactly the faces of each photo, once."""
    found = client.faces_by_external_id('fleet-drivers')
    expected = dict((external_id, count) for (dummy, dummy2, external_id), count in zip(photos, counts) if count)
    assert dict((external_id, len(ids)) for external_id, ids in found.items()) == expected


def test_full_rebuild_creates_the_collection_and_indexes_every_face(tmp_path):
    client = FakeRekognition()
    photos = make_photos(FACES)
    mapping = str(tmp_path / 'map.json')
    result = run(client, photos, mapping_file=mapping)
    assert result['changed'] and result['collection']['created']
    assert result['collection_arn'].startswith('arn:aws:rekognition:')
    assert (result['indexed'], result['faces_indexed'], result['no_face'], result['failed_photos']) == (6, 9, 2, 0)
    assert_one_entry_per_face(client, photos, FACES)
    assert result['face_ids'] == dict(client.faces_by_external_id('fleet-drivers'))
    with open(mapping) as fileobj:
        document = json.load(fileobj)
    assert document['face_ids'] == result['face_ids'] and document['no_face'] == ['veh-1.photo-0002', 'veh-1.photo-0005']
    assert oct(os.stat(mapping).st_mode & 0o777) == '0o600'


def test_a_rerun_changes_nothing(tmp_path):
    client = FakeRekognition()
    photos = make_photos(FACES)
    mapping = str(tmp_path / 'map.json')
    first = run(client, photos, mapping_file=mapping)
    before = json.dumps(client.collections, sort_keys=True)
    calls = client.calls['index_faces']
    again = run(client, photos, mapping_file=mapping)
    assert not again['changed'] and again['indexed'] == 0
    assert (again['already_indexed'], again['known_no_face']) == (6, 2)
    assert client.calls['index_faces'] == calls
    assert json.dumps(client.collections, sort_keys=True) == before
    assert again['face_ids'] == first['face_ids'] and not again['mapping_file_changed']


def test_a_rerun_without_the_mapping_file_resends_only_the_photos_without_a_face():
    client = FakeRekognition()
    photos = make_photos(FACES)
    run(client, photos)
    calls = client.calls['index_faces']
    again = run(client, photos)
    assert not again['changed'] and again['indexed'] == 0 and again['no_face'] == 2
    assert client.calls['index_faces'] - calls == 2


def test_an_interrupted_run_resumes_without_duplicates(tmp_path):
    client = FakeRekognition()
    photos = make_photos(FACES * 3)
    mapping = str(tmp_path / 'map.json')
    first = run(client, photos, mapping_file=mapping, limit=7)
    assert not first['complete'] and first['indexed'] + first['no_face'] == 7
    assert 'run again to continue' in first['msg']
    second = run(client, photos, mapping_file=mapping)
    assert second['complete'] and second['indexed'] + second['no_face'] == len(photos) - 7
    assert_one_entry_per_face(client, photos, FACES * 3)
    assert len(second['face_ids']) == sum(1 for count in FACES * 3 if count)


def test_the_mapping_is_written_as_the_run_goes(tmp_path):
    """What a run killed at any moment leaves: the mapping file read while the fifth photo is being sent."""
    client = FakeRekognition()
    photos = make_photos(FACES)
    mapping = str(tmp_path / 'map.json')
    seen = []
    original = client.index_faces

    def index_faces(**kwargs):
        if len(seen) == 4:
            with open(mapping) as fileobj:
                seen.append(json.load(fileobj))
        else:
            seen.append(kwargs['ExternalImageId'])
        return original(**kwargs)

    client.index_faces = index_faces
    result = run(client, photos, mapping_file=mapping, concurrency=1, progress_interval=0)
    assert result['complete']
    snapshot = seen[4]
    known = set(snapshot['face_ids']) | set(snapshot['no_face'])
    # One worker: the fifth photo is sent only after the first three were recorded and the mapping saved.
    assert set(seen[:3]) <= known
    assert 'veh-1.photo-0002' in snapshot['no_face']


def test_a_run_removes_the_temporary_files_a_killed_run_left(tmp_path):
    mapping = str(tmp_path / 'map.json')
    (tmp_path / '.map.json.abcd_123').write_text('{"half": ')
    (tmp_path / '.map.json.short').write_text('not ours')
    (tmp_path / 'notes.txt').write_text('not ours')
    run(FakeRekognition(), make_photos(FACES), mapping_file=mapping)
    assert sorted(os.listdir(tmp_path)) == ['.map.json.short', 'map.json', 'notes.txt']


def test_a_wrong_key_fails_before_any_aws_call():
    client = FakeRekognition()
    with pytest.raises(_errors.ReindexError) as err:
        run(client, make_photos(FACES), key=OTHER_KEY)
    assert err.value.code == 'bad_key'
    assert sum(client.calls.values()) == 0


def test_a_wrong_cipher_fails_before_any_aws_call():
    client = FakeRekognition()
    with pytest.raises(_errors.ReindexError) as err:
        run(client, make_photos(FACES, cipher=pc.FERNET), cipher=pc.AES_256_GCM)
    assert err.value.code == 'bad_key' and 'fernet' in str(err.value)
    assert sum(client.calls.values()) == 0


def test_a_corrupted_photo_is_reported_and_the_rest_are_indexed():
    client = FakeRekognition()
    photos = make_photos(FACES)
    damaged = bytearray(photos[2][1])
    damaged[30] ^= 0x55
    photos[2] = (photos[2][0], bytes(damaged), photos[2][2])
    result = run(client, photos)
    assert result['failed_photos'] == 1 and result['failure_reasons'] == {'authentication_failed': 1}
    assert result['failures'][0]['id'] == 3 and 'corrupted photo' in result['failures'][0]['msg']
    assert result['indexed'] == 5 and result['_warnings']
    assert_one_entry_per_face(client, photos, [count if i != 2 else 0 for i, count in enumerate(FACES)])


def test_throttling_loses_no_photo():
    client = FakeRekognition()
    client.fail['index_faces'] = [client_error('ProvisionedThroughputExceededException') for dummy in range(15)]
    client.fail['index_faces'][3:6] = [client_error('ThrottlingException') for dummy in range(3)]
    photos = make_photos(FACES)
    result = run(client, photos)
    assert result['throttle_retries'] == 15
    assert result['indexed'] == 6 and result['failed_photos'] == 0
    assert_one_entry_per_face(client, photos, FACES)


def test_an_index_call_with_an_unknown_outcome_is_reconciled_not_duplicated():
    client = FakeRekognition()
    # the first call indexes and then fails late; the second fails before indexing
    client.index_then_fail = [client_error('InternalServerError', 500)]
    photos = make_photos(FACES)
    client.fail['index_faces'] = []
    result = run(client, photos, concurrency=1)
    assert result['indexed'] == 6 and result['failed_photos'] == 0
    assert client.calls['index_faces'] == len(photos)  # the photo was found in the collection, not resent
    assert client.calls['list_faces'] == 1
    assert_one_entry_per_face(client, photos, FACES)


def test_an_index_call_that_failed_unclearly_before_indexing_is_resent_once():
    client = FakeRekognition()
    client.fail['index_faces'] = [ReadTimeoutError(endpoint_url='http://x')]
    photos = make_photos(FACES)
    result = run(client, photos, concurrency=1)
    assert result['indexed'] == 6 and client.calls['index_faces'] == len(photos) + 1
    assert_one_entry_per_face(client, photos, FACES)


def test_a_fatal_error_stops_the_run_and_keeps_what_was_done(tmp_path):
    client = FakeRekognition()
    client.collections['fleet-drivers'] = {}
    photos = make_photos(FACES)
    mapping = str(tmp_path / 'map.json')

    class DeniedAfterThree(FakeRekognition):
        pass

    original = client.index_faces
    count = [0]

    def index_faces(**kwargs):
        count[0] += 1
        if count[0] > 3:
            raise client_error('AccessDeniedException', message='not authorized to perform: rekognition:IndexFaces')
        return original(**kwargs)

    client.index_faces = index_faces
    with pytest.raises(_errors.ReindexError) as err:
        run(client, photos, concurrency=1, mapping_file=mapping)
    failure = err.value.to_result()
    assert failure['error_code'] == 'aws_auth' and failure['aws_error_code'] == 'AccessDeniedException'
    assert 'IAM permissions' in failure['msg']
    assert failure['indexed'] + failure['no_face'] == 3
    with open(mapping) as fileobj:
        assert len(json.load(fileobj)['face_ids']) == failure['indexed']


def test_check_mode_plans_without_creating_indexing_or_writing(tmp_path):
    client = FakeRekognition()
    photos = make_photos(FACES)
    damaged = bytearray(photos[0][1])
    damaged[-3] ^= 1
    photos[0] = (1, bytes(damaged), photos[0][2])
    mapping = str(tmp_path / 'map.json')
    progress = str(tmp_path / 'progress.json')
    result = run(client, photos, check_mode=True, mapping_file=mapping, progress_file=progress)
    assert result['changed'] and result['would_index'] == 7 and result['failed_photos'] == 1
    assert result['collection']['would_create'] and 'would create collection' in result['msg']
    assert client.calls['create_collection'] == 0 and client.calls['index_faces'] == 0
    assert not os.path.exists(mapping) and not os.path.exists(progress)


def test_check_mode_after_a_full_run_has_nothing_to_do(tmp_path):
    client = FakeRekognition()
    photos = make_photos(FACES)
    mapping = str(tmp_path / 'map.json')
    run(client, photos, mapping_file=mapping)
    result = run(client, photos, check_mode=True, mapping_file=mapping)
    assert not result['changed'] and result['would_index'] == 0


def test_recreate_deletes_the_collection_and_indexes_everything_again():
    client = FakeRekognition()
    photos = make_photos(FACES)
    first = run(client, photos)
    result = run(client, photos, recreate=True)
    assert result['collection']['deleted'] and result['collection']['created'] and result['indexed'] == 6
    assert set(result['face_ids']) == set(first['face_ids'])
    assert not set(sum(result['face_ids'].values(), [])) & set(sum(first['face_ids'].values(), []))
    assert_one_entry_per_face(client, photos, FACES)


def test_invalid_and_duplicate_external_ids_are_reported():
    client = FakeRekognition()
    photos = make_photos([1, 1, 1])
    photos[1] = (2, photos[1][1], 'has space')
    photos[2] = (3, photos[2][1], photos[0][2])
    result = run(client, photos)
    assert result['indexed'] == 1
    assert result['failure_reasons'] == {'invalid_external_image_id': 1, 'duplicate_external_image_id': 1}


def test_photos_refused_by_rekognition_are_reported():
    client = FakeRekognition()
    client.fail['index_faces'] = [client_error('InvalidImageFormatException', message='Request has invalid image format.')]
    result = run(client, make_photos([1, 1]), concurrency=1)
    assert result['failure_reasons'] == {'invalid_image_format': 1} and result['indexed'] == 1


def test_memory_holds_a_bounded_number_of_photos():
    client = FakeRekognition()
    client.delay = 0.005
    photos = make_photos([1] * 60)

    class Watching(FakeSource):
        max_ahead = 0

        def rows(self, ids=None):
            for row in FakeSource.rows(self, ids):
                done = client.calls['index_faces'] - client.active
                Watching.max_ahead = max(Watching.max_ahead, self.yielded - done)
                yield row

    result = run(client, Watching(photos), concurrency=3, key_check_photos=1)
    assert result['indexed'] == 60
    assert Watching.max_ahead <= 2 * 3 + 2
    assert client.max_active <= 3


def test_progress_file_is_written_while_running(tmp_path):
    client = FakeRekognition()
    progress = str(tmp_path / 'progress.json')
    run(client, make_photos(FACES), progress_file=progress, progress_interval=0)
    with open(progress) as fileobj:
        document = json.load(fileobj)
    assert document['finished'] and document['indexed'] == 6 and document['photos'] == len(FACES)


class FakeFaceTable(object):
    table = 'recognition_result'

    def __init__(self, rows):
        self.rows = rows
        self.applied = []

    def rows_by_photo(self, photo_ids, collection_id):
        return dict((photo_id, list(self.rows[photo_id])) for photo_id in photo_ids if photo_id in self.rows)

    def apply(self, updates):
        self.applied.extend(updates)


def test_face_ids_stored_by_the_application_are_replaced_and_a_rerun_changes_none():
    client = FakeRekognition()
    photos = make_photos(FACES)
    table = FakeFaceTable({1: [(10, (0.0, 0.2, 0.1, 0.2), 'stale')], 2: [(20, None, 'stale')],
                           3: [(30, (0.1, 0.2, 0.1, 0.2), 'stale'), (31, (0.0, 0.2, 0.1, 0.2), 'stale')]})
    result = run(client, photos, face_table=table)
    update = result['face_id_update']
    assert update['rows_updated'] == 3 and update['rows_without_face'] == 1
    new = dict((row_id, face_id) for row_id, face_id, dummy in table.applied)
    assert new[10] == result['face_ids']['veh-1.photo-0001'][0]
    assert sorted([new[30], new[31]]) == sorted(result['face_ids']['veh-1.photo-0003'])
    for photo_id, rows in table.rows.items():
        table.rows[photo_id] = [(row_id, bbox, new.get(row_id, face_id)) for row_id, bbox, face_id in rows]
    table.applied = []
    again = run(client, photos, face_table=table)
    assert again['face_id_update']['rows_updated'] == 0 and again['face_id_update']['rows_unchanged'] == 3
    assert table.applied == [] and not again['changed']


def test_check_mode_counts_the_rows_of_photos_not_indexed_yet():
    client = FakeRekognition()
    table = FakeFaceTable({1: [(10, None, 'stale')]})
    result = run(client, make_photos(FACES), check_mode=True, face_table=table)
    assert result['face_id_update']['rows_pending'] == 1 and table.applied == []
