# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Rebuilding an Amazon Rekognition face collection from the application's encrypted photos.

Internal to fleet_telemetry.dr; not a public API. Used by the module ``rekognition_reindex``.

The runbook's recovery of a deleted collection is: read ``photo``, decrypt each with ENCRYPTION_KEY,
send it to IndexFaces. Done here so that it can be rerun safely and runs at the speed the quota allows:

* the key is proven on the first photos before any AWS call (``images.check_key``);
* photos whose ExternalImageId already has faces in the collection are skipped (``plan.Planner``), so a
  rerun indexes nothing and an interrupted run resumes; photos known to show no face are skipped when
  the mapping file of an earlier run says so;
* IndexFaces runs on a thread pool under one shared ``_ratelimit.TokenBucket`` just below the
  configured TPS; throttling is retried with backoff until the photo goes through (``aws.AwsCaller``);
* an IndexFaces call whose outcome is unknown (read timeout, dropped connection, 5xx) is never resent
  blindly, because that could index the photo twice: the collection is listed again at the end and only
  the photos still missing are sent again (``run.Reindexer._reconcile``);
* photos are read in keyset batches and at most ``2 * concurrency`` decrypted images are held at once.

Decisions are small functions over plain data (``classify_error``, ``plan_reindex``, ``pair_faces``, ...)
that unit tests call directly; the AWS client and the photo source are passed in.

Import each name from the file that defines it (nothing is re-exported here):

* ``errors``: ``ReindexError`` (stops the run), ``AwsCallError`` and the error kinds, ``PhotoProblem`` (refuses one
  photo), and the classification of AWS errors (``classify_error``, ``classify_exception``);
* ``plan``: what a run does with each photo (``external_id_problem``, ``Planner``, ``plan_reindex``) and the
  one-line ``summary_message`` of a run;
* ``images``: the key check (``check_key``) and photos made acceptable to IndexFaces (``prepare_image``,
  ``fit_image`` with Pillow, ``HAS_PILLOW``);
* ``aws``: ``AwsCaller``, the one retry and classification layer of AWS calls, and ``client_config``;
* ``mapping``: the mapping file (``mapping_document``, ``known_no_face``) and JSON files written atomically
  (``read_json``, ``write_json_atomic``, ``remove_stale_temps``);
* ``source``: ``PhotoSource``, the photos read over psql, and ``missing_name_error``;
* ``faces``: Face IDs and the application's face table (``face_tuple``, ``pair_faces``, ``FaceTable``,
  ``plan_face_id_updates``);
* ``request``: ``ReindexRequest``, what a run is asked to do;
* ``run``: the lock of one run (``run_lock``, ``locked_run``) and ``Reindexer``, the whole run.
"""
