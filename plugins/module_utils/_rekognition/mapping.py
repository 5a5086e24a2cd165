# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The mapping file: ExternalImageId -> Face IDs, and the photos known to show no face; JSON files written atomically.
Internal to fleet_telemetry.dr; not a public API.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.errors import ReindexError

MAPPING_FORMAT = 1


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
