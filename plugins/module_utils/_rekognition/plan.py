# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a run does with each photo, and the one line that sums up a run. Internal to fleet_telemetry.dr; not a public
API.

Decisions over plain data: whether an ExternalImageId is valid (``external_id_problem``), ``Planner`` and
``plan_reindex`` (index, skip as indexed or known without a face, refuse, stop at the limit), ``summary_message``.
"""

from __future__ import annotations

import re

# Rekognition ExternalImageId constraints (API reference of IndexFaces).
EXTERNAL_IMAGE_ID_PATTERN = re.compile(r'\A[a-zA-Z0-9_.\-:]+\Z')
EXTERNAL_IMAGE_ID_MAX = 255


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
