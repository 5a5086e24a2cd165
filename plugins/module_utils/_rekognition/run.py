# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The run: the lock of one run of a collection, and ``Reindexer`` (key check, collection, listing, indexing on a thread
pool, reconciliation, face-ID outputs, the result). Internal to fleet_telemetry.dr; not a public API.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import datetime
import itertools
import random
import threading
import time

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._lock import BackupLock, LockError, LockHeldError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._ratelimit import TokenBucket, limiter_rate
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.aws import AwsCaller
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.errors import (
    PHOTO,
    PHOTO_ERRORS,
    THROTTLING_CODES,
    UNCERTAIN,
    AwsCallError,
    PhotoProblem,
    ReindexError,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.faces import face_tuple, plan_face_id_updates
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.images import check_key, prepare_image
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.mapping import (
    MAPPING_FORMAT,
    known_no_face,
    mapping_document,
    read_json,
    remove_stale_temps,
    write_json_atomic,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.plan import (
    DUPLICATE_ID,
    INVALID_ID,
    LIMITED,
    SKIP_INDEXED,
    SKIP_NO_FACE,
    Planner,
    external_id_problem,
    summary_message,
)

# Rekognition ListFaces page size (API reference of ListFaces).
LIST_FACES_PAGE = 4096

FAILURES_LISTED = 50
RECONCILE_ROUNDS = 3
UPDATE_CHUNK = 500


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
