# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a run is asked to rebuild and how (``ReindexRequest``), checked when it is built from the module parameters.
Internal to fleet_telemetry.dr; not a public API.
"""

from __future__ import annotations

import re

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.errors import ReindexError

# Rekognition CollectionId constraints (API reference of CreateCollection).
COLLECTION_ID_PATTERN = re.compile(r'\A[a-zA-Z0-9_.\-]+\Z')


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
