#!/usr/bin/python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rekognition_reindex
short_description: Rebuild an Amazon Rekognition face collection from the encrypted photos in PostgreSQL
version_added: 0.1.0
description:
  - The runbook's recovery of a deleted face collection, made safe to rerun and as fast as the quota allows - reads the
    photo rows, decrypts each photo with O(encryption_key), and sends it to C(IndexFaces) with the photo's external
    image id as C(ExternalImageId).
  - The key is proven on the first O(key_check_photos) photos before any AWS call; a wrong key or cipher fails the task
    before anything is created or indexed.
  - The collection is created when it does not exist. O(recreate=true) deletes and recreates it first.
  - Photos whose C(ExternalImageId) already has faces in the collection (C(ListFaces)) are skipped, so a rerun indexes
    nothing new and an interrupted run resumes where it stopped. Photos an earlier run found without a face are skipped
    too when O(mapping_file) of that run is given.
  - Photos are indexed by O(concurrency) threads under one shared rate limit set just below O(tps). Throttling errors
    (C(ProvisionedThroughputExceededException), C(ThrottlingException)) are retried with backoff, and the rate adapts, so
    no photo is dropped. An C(IndexFaces) call whose outcome is unknown (timeout, dropped connection, server error) is
    not resent blindly, which could index a photo twice; the collection is listed again and only missing photos are sent.
  - Photos are read in keyset batches of O(batch_size) rows and at most twice O(concurrency) decrypted images are held
    at once, so memory does not grow with the number of photos (only the returned ids do).
  - A photo that does not decrypt (for example a corrupted one that fails its AES-GCM tag), is not a JPEG or PNG, or is
    refused by Rekognition is reported in RV(failures) while the others are indexed.
  - B(Face IDs are new after a rebuild.) Every Face ID the application stored (for example in C(recognition_result.face_id))
    is invalid once the collection was deleted. The module returns the new Face IDs per C(ExternalImageId) in
    RV(face_ids), can write them to O(mapping_file), and can update the application's table (O(face_id_update)).
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - fleet_telemetry.dr._attributes
  - fleet_telemetry.dr._connection
  - fleet_telemetry.dr._encryption_key
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    details:
      - Reads and decrypts the photos, describes the collection and lists its faces, and returns the plan
        (RV(would_index), predicted failures, the rows O(face_id_update) would change). Calls neither C(CreateCollection),
        C(DeleteCollection) nor C(IndexFaces), and writes neither the database nor O(mapping_file).
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - A second run indexes nothing and reports no change, unless O(recreate=true), which deletes the collection every time.
options:
  collection_id:
    description:
      - The Rekognition collection to rebuild (C([a-zA-Z0-9_.-]+), at most 255 characters).
    type: str
    required: true
  recreate:
    description:
      - Delete the collection and create it empty before indexing, which invalidates every Face ID in it.
      - Only for a collection that is damaged beyond resuming. Do not set it again to resume an interrupted rebuild;
        that would start over.
    type: bool
    default: false
  encryption_key:
    description:
      - The application's E(ENCRYPTION_KEY) that encrypts the photos, 32 bytes given as 64 hexadecimal characters,
        base64 of 32 bytes, or 32 raw characters.
      - Never logged and never returned.
    type: str
    required: true
  tps:
    description:
      - The C(IndexFaces) quota of the AWS account in the region, in transactions per second (Service Quotas,
        C(Transactions per second per account for the Amazon Rekognition IndexFaces operation)).
      - The run sends at most 95% of it, shared by all threads, and slows down further while it is throttled.
    type: float
    default: 5
  concurrency:
    description:
      - How many C(IndexFaces) calls may be in flight at once. To reach O(tps), it must be at least O(tps) times the
        latency of one call in seconds.
    type: int
    default: 8
  limit:
    description:
      - Send at most this many photos to C(IndexFaces) in this run, then stop (RV(complete=false)). A later run continues.
    type: int
  oversize:
    description:
      - What to do with a decrypted photo larger than the 5 MB that C(IndexFaces) accepts.
      - V(downscale) re-encodes it as a smaller JPEG (needs Pillow); V(report) reports it as failed with reason C(too_large).
    type: str
    choices: [downscale, report]
    default: downscale
  max_faces:
    description: C(MaxFaces) of C(IndexFaces), the most faces indexed per photo. Default is Rekognition's (100).
    type: int
  quality_filter:
    description: C(QualityFilter) of C(IndexFaces). Default is Rekognition's (V(AUTO)).
    type: str
    choices: [NONE, AUTO, LOW, MEDIUM, HIGH]
  photo_table:
    description: Table of the encrypted photos, C(table) or C(schema.table).
    type: str
    default: photo
  photo_id_column:
    description: Integer key of O(photo_table); photos are read in its order.
    type: str
    default: id
  photo_data_column:
    description: C(bytea) column of the encrypted photo.
    type: str
    default: data
  external_id_column:
    description:
      - Column used as the C(ExternalImageId) of the photo's faces (C([a-zA-Z0-9_.-:]+), at most 255 characters).
        Set it to O(photo_id_column) to use the id.
      - A column that does not exist fails with RV(error_code=no_column) naming it and this option.
    type: str
    default: external_image_id
  external_id_expression:
    description:
      - An SQL expression over the photo's row that gives the C(ExternalImageId) instead of O(external_id_column), for
        example C('photo-' || id) or C(vehicle_id || '.' || id). Trusted input, inserted into the query as is.
      - The ids must stay the same from run to run (they are how a rerun recognises the photos already indexed), and must
        match C([a-zA-Z0-9_.-:]+).
      - A view over the photo table with an C(external_image_id) column, given as O(photo_table), does the same.
    type: str
  where:
    description:
      - SQL condition that selects the photos, for example C(taken_at > now() - interval '90 days'). Trusted input,
        inserted into the query as is.
    type: str
  batch_size:
    description: Photos read per query. Memory holds about this many encrypted photos at once.
    type: int
    default: 25
  key_check_photos:
    description:
      - How many of the first photos are decrypted before any AWS call. When none of them decrypts, the task fails
        (wrong O(encryption_key) or O(cipher)).
    type: int
    default: 5
  mapping_file:
    description:
      - JSON file to write with C(ExternalImageId) to new Face IDs (C(face_ids)) and the photos found without a face
        (C(no_face)), for the application's owners. Written atomically with mode C(0600), only when its content changes.
      - Give the same file to every run of a rebuild, so that a rerun does not send the photos without a face again.
      - Its directory must exist.
      - Written as the run goes (every O(progress_interval) seconds) and at its end, so that a run killed at any point leaves
        what it learned, and the next run re-sends none of it.
    type: path
  lock_dir:
    description:
      - Directory of the lock C(.reindex-<collection_id>.lock) that a run holds from start to end. A second run for the same
        collection is refused (RV(error_code=lock_held)) with the pid, host and start time of the run that holds it, so two
        runs never send at the same time nor index a photo twice.
      - The kernel releases the lock when the run's process ends, however it ends.
      - Defaults to the directory of O(mapping_file), else of O(progress_file); with neither, no lock is taken.
      - Check mode takes no lock.
    type: path
  return_face_ids:
    description: Return RV(face_ids). Turn it off for very large collections to keep the result small.
    type: bool
    default: true
  face_id_update:
    description:
      - Update the Face IDs the application stored. Each row of O(face_id_update.table) that belongs to an indexed photo
        gets the new Face ID of the face whose bounding box is closest to the row's (or, without O(face_id_update.bbox_columns),
        the faces top to bottom in row id order). Rows are only ever updated, never inserted or deleted; rows left without
        a face and faces without a row are counted.
      - The defaults fit the example application's C(recognition_result); V({}) uses them.
    type: dict
    suboptions:
      table:
        description: Table that stores Face IDs.
        type: str
        default: recognition_result
      id_column:
        description: Integer key of the table.
        type: str
        default: id
      photo_column:
        description: Column with the id of the photo (O(photo_id_column)).
        type: str
        default: photo_id
      face_id_column:
        description: Column with the Face ID.
        type: str
        default: face_id
      image_id_column:
        description: Column with the Rekognition C(ImageId), updated too. Empty for none.
        type: str
        default: image_id
      collection_column:
        description: Only rows whose column has the value O(collection_id) are updated. Empty to update the rows of every collection.
        type: str
        default: collection_id
      bbox_columns:
        description: The row's bounding box (left, top, width, height) as Rekognition ratios, to pair rows with faces. Empty to pair in order.
        type: list
        elements: str
        default: [bbox_left, bbox_top, bbox_width, bbox_height]
  progress_file:
    description:
      - JSON file rewritten every O(progress_interval) seconds with the counts so far, the rate and C(finished), to watch a long
        run (for example C(watch cat progress.json)).
    type: path
  progress_interval:
    description: Seconds between writes of O(progress_file).
    type: int
    default: 5
  retries:
    description: How often a call that failed with a retryable error other than throttling (connection, server error) is retried.
    type: int
    default: 5
  throttle_timeout:
    description:
      - Seconds a single call may go on being throttled before the run stops (a rerun resumes). Throttling is otherwise
        retried without limit.
    type: int
    default: 600
notes:
  - 'IAM permissions: C(rekognition:DescribeCollection), C(rekognition:ListFaces), C(rekognition:IndexFaces) and
    C(rekognition:CreateCollection) on C(arn:aws:rekognition:<region>:<account>:collection/<collection_id>), and
    C(rekognition:DeleteCollection) with O(recreate=true).'
  - botocore's own retries are turned off for this module's client so that every attempt passes the shared rate limit and
    an C(IndexFaces) call is never resent behind the module's back; an O(aws_config) that sets C(retries) overrides that.
  - Images are sent as bytes (C(Image.Bytes)), never through S3.
requirements:
  - cryptography >= 3.0
  - Pillow, for O(oversize=downscale) of photos over 5 MB
  - PostgreSQL client tools in the container (O(transport=compose)) or on the host (O(transport=direct)).
seealso:
  - name: IndexFaces API reference
    description: Limits and errors of IndexFaces.
    link: https://docs.aws.amazon.com/rekognition/latest/APIReference/API_IndexFaces.html
  - module: fleet_telemetry.dr.pg_logical_backup
"""

EXAMPLES = r"""
- name: Rebuild the deleted face collection of the compose stack
  fleet_telemetry.dr.rekognition_reindex:
    project_src: /srv/telemetry
    encryption_key: "{{ telemetry_encryption_key }}"
    collection_id: fleet-drivers
    region: eu-west-1
    tps: 50
    concurrency: 32
    mapping_file: /var/lib/fleet-telemetry/face-ids.json
    face_id_update: {}
  register: reindex

- name: Plan only - how many photos would be indexed
  fleet_telemetry.dr.rekognition_reindex:
    project_src: /srv/telemetry
    encryption_key: "{{ telemetry_encryption_key }}"
    collection_id: fleet-drivers
    region: eu-west-1
  check_mode: true

- name: Index the photos of the last 90 days from a managed server, 500 per run
  fleet_telemetry.dr.rekognition_reindex:
    transport: direct
    db_host: db.internal
    db_password: "{{ telemetry_db_password }}"
    encryption_key: "{{ telemetry_encryption_key }}"
    collection_id: fleet-drivers
    region: eu-west-1
    where: "taken_at > now() - interval '90 days'"
    limit: 500
"""

RETURN = r"""
started_at:
  description: When the module started on the host (ISO 8601 UTC, the host's clock), for the step records of a run.
  returned: always
  type: str
  sample: "2026-12-06T03:00:00.123456Z"
finished_at:
  description: When the module ended, success or failure (ISO 8601 UTC, the host's clock).
  returned: always
  type: str
  sample: "2026-12-06T03:00:19.654321Z"
msg:
  description: One line summary.
  returned: always
  type: str
  sample: indexed 15 photos (18 faces) into collection fleet-drivers, skipped 0 already indexed and 0 known without a face, 9 without a face, 0 failed
collection_id:
  description: The collection.
  returned: always
  type: str
collection_arn:
  description: ARN of the collection (null in check mode when it does not exist yet).
  returned: success
  type: str
  sample: arn:aws:rekognition:eu-west-1:123456789012:collection/fleet-drivers
face_model_version:
  description: Face model version of the collection.
  returned: success
  type: str
  sample: "7.0"
collection:
  description:
    - What was done to the collection - C(existed), C(created), C(deleted), C(face_count_before); in check mode
      C(would_create) or C(would_recreate).
  returned: success
  type: dict
photos:
  description: Photos read (selected by O(where), up to where O(limit) stopped the run).
  returned: always
  type: int
indexed:
  description: Photos indexed in this run with at least one face.
  returned: always
  type: int
faces_indexed:
  description: Faces added to the collection in this run.
  returned: success
  type: int
already_indexed:
  description: Photos skipped because their C(ExternalImageId) already has faces in the collection.
  returned: always
  type: int
known_no_face:
  description: Photos skipped because O(mapping_file) of an earlier run lists them without a face.
  returned: success
  type: int
no_face:
  description: Photos sent to C(IndexFaces) in which no face was found.
  returned: always
  type: int
failed_photos:
  description: Photos that could not be indexed (in check mode, that would fail before C(IndexFaces)).
  returned: always
  type: int
failure_reasons:
  description: Failed photos per reason, for example C(authentication_failed), C(not_an_image), C(too_large), C(invalid_image_format).
  returned: success
  type: dict
  sample: {authentication_failed: 1}
failures:
  description: The failed photos (at most 50) with C(id), C(external_image_id), C(reason) and C(msg).
  returned: always
  type: list
  elements: dict
  sample: [{id: 7, external_image_id: veh-0003.photo-00000007, reason: authentication_failed,
            msg: "aes-256-gcm authentication failed: wrong ENCRYPTION_KEY, wrong cipher setting (try fernet), or corrupted photo"}]
downscaled:
  description: Photos over 5 MB downscaled before indexing.
  returned: success
  type: int
unindexed_faces:
  description: Faces Rekognition detected but did not index, per reason (for example C(EXCEEDS_MAX_FACES), C(LOW_QUALITY)).
  returned: success
  type: dict
complete:
  description: Whether every selected photo was considered (false when O(limit) stopped the run).
  returned: success
  type: bool
limit:
  description: O(limit).
  returned: success
  type: int
key_check:
  description: How many of the first photos were decrypted to prove the key, and how many of them failed.
  returned: success
  type: dict
  sample: {checked: 5, failed: 0}
would_index:
  description: Photos the run would send to C(IndexFaces).
  returned: check mode
  type: int
face_ids:
  description:
    - C(ExternalImageId) to the Face IDs it has in the collection now, for every selected photo with faces (indexed in this
      run or earlier). These replace the Face IDs the application stored before the rebuild.
  returned: success and O(return_face_ids)
  type: dict
  sample: {veh-0001.photo-00000003: [3f0c2c1e-8d1e-4c2b-9a57-0d7e3f1e2b6a]}
mapping_file:
  description: O(mapping_file).
  returned: success
  type: str
mapping_file_changed:
  description: Whether O(mapping_file) was written.
  returned: success
  type: bool
face_id_update:
  description:
    - With O(face_id_update), C(rows_updated) (in check mode, rows that would be), C(rows_unchanged), C(rows_without_face),
      C(faces_without_row), and C(rows_pending) (check mode - rows of photos not indexed yet).
  returned: success and O(face_id_update)
  type: dict
  sample: {table: recognition_result, rows_updated: 13, rows_unchanged: 0, rows_without_face: 0, faces_without_row: 5, rows_pending: 0}
api_calls:
  description: Rekognition calls made per operation, retries included.
  returned: success
  type: dict
  sample: {describe_collection: 1, create_collection: 1, list_faces: 0, index_faces: 24}
throttle_retries:
  description: Calls retried after a throttling error.
  returned: success
  type: int
transient_retries:
  description: Calls retried after a connection or server error.
  returned: success
  type: int
tps:
  description: O(tps).
  returned: success
  type: float
rate_limit:
  description: Calls per second the run allowed itself (just below O(tps)).
  returned: success
  type: float
seconds:
  description: Duration of the run.
  returned: success
  type: float
photos_per_second:
  description: Photos sent to C(IndexFaces) per second of the run.
  returned: success
  type: float
error_code:
  description:
    - Stable code of the failure, for example V(bad_key), V(aws_auth), V(throttled), V(collection_gone), V(aws_error),
      V(bad_option), V(lock_held) (another run of the collection holds O(lock_dir)'s lock), V(no_column), V(no_table),
      or a transport code (V(auth_failed), V(container_down), ...).
  returned: failure
  type: str
aws_error_code:
  description: The AWS error code of the call that stopped the run.
  returned: failure of an AWS call
  type: str
"""

import os

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._params import (
    CONNECTION_REQUIRED_IF,
    connection_argument_spec,
    connection_from_params,
    encryption_key_argument_spec,
    key_from_params,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._pg import PsqlSession
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.aws import client_config
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.faces import FaceTable
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.request import ReindexRequest
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.run import Reindexer, locked_run, run_lock
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.source import PhotoSource
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._results import fail_with, timed


def argument_spec():
    spec = connection_argument_spec()
    spec.update(encryption_key_argument_spec())
    spec['encryption_key'] = dict(type='str', no_log=True, required=True)
    spec.update(
        collection_id=dict(type='str', required=True),
        recreate=dict(type='bool', default=False),
        tps=dict(type='float', default=5),
        concurrency=dict(type='int', default=8),
        limit=dict(type='int'),
        oversize=dict(type='str', choices=['downscale', 'report'], default='downscale'),
        max_faces=dict(type='int'),
        quality_filter=dict(type='str', choices=['NONE', 'AUTO', 'LOW', 'MEDIUM', 'HIGH']),
        photo_table=dict(type='str', default='photo'),
        photo_id_column=dict(type='str', default='id'),
        photo_data_column=dict(type='str', default='data'),
        external_id_column=dict(type='str', default='external_image_id'),
        external_id_expression=dict(type='str'),
        lock_dir=dict(type='path'),
        where=dict(type='str'),
        batch_size=dict(type='int', default=25),
        key_check_photos=dict(type='int', default=5, no_log=False),
        mapping_file=dict(type='path'),
        return_face_ids=dict(type='bool', default=True),
        face_id_update=dict(type='dict', options=dict(
            table=dict(type='str', default='recognition_result'),
            id_column=dict(type='str', default='id'),
            photo_column=dict(type='str', default='photo_id'),
            face_id_column=dict(type='str', default='face_id'),
            image_id_column=dict(type='str', default='image_id'),
            collection_column=dict(type='str', default='collection_id'),
            bbox_columns=dict(type='list', elements='str', default=['bbox_left', 'bbox_top', 'bbox_width', 'bbox_height']),
        )),
        progress_file=dict(type='path'),
        progress_interval=dict(type='int', default=5),
        retries=dict(type='int', default=5),
        throttle_timeout=dict(type='int', default=600),
    )
    return spec


def main():
    module = AnsibleAWSModule(argument_spec=argument_spec(), required_if=CONNECTION_REQUIRED_IF, supports_check_mode=True)
    timed(module)
    params = module.params
    try:
        request = ReindexRequest(
            collection_id=params['collection_id'], key=key_from_params(params), cipher=params['cipher'],
            recreate=params['recreate'], tps=params['tps'], concurrency=params['concurrency'], limit=params['limit'],
            key_check_photos=params['key_check_photos'], oversize=params['oversize'], max_faces=params['max_faces'],
            quality_filter=params['quality_filter'], mapping_file=params['mapping_file'], return_face_ids=params['return_face_ids'],
            progress_file=params['progress_file'], progress_interval=params['progress_interval'], retries=params['retries'],
            throttle_timeout=params['throttle_timeout'])
        client = module.client('rekognition', config=client_config(params['concurrency']))
        lock_dir = params['lock_dir'] or os.path.dirname(params['mapping_file'] or params['progress_file'] or '') or None

        def reindex():
            with PsqlSession(connection_from_params(params)) as session:
                source = PhotoSource(session, table=params['photo_table'], id_column=params['photo_id_column'],
                                     data_column=params['photo_data_column'], external_id_column=params['external_id_column'],
                                     where=params['where'], batch_size=params['batch_size'],
                                     external_id_expression=params['external_id_expression'])
                face_table = FaceTable(session, **params['face_id_update']) if params['face_id_update'] is not None else None
                return Reindexer(request, client, source, face_table, check_mode=module.check_mode, warn=module.warn).run()

        result = locked_run(run_lock(lock_dir, params['collection_id'], module.check_mode), reindex)
    except FleetDrError as exc:
        fail_with(module, exc)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
