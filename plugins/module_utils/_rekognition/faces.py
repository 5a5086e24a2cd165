# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Face IDs and the application's face table: Rekognition faces paired with the table's rows, and the UPDATE that
stores the new Face IDs. Internal to fleet_telemetry.dr; not a public API.

``face_tuple`` and ``pair_faces`` are decisions over plain data; ``FaceTable`` reads and updates the table over a
psql session; ``plan_face_id_updates`` decides which rows get which Face ID.
"""

from __future__ import annotations

import collections

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._pg import quote_ident
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.errors import ReindexError


def face_tuple(face):
    """``(face_id, image_id, (left, top, width, height))`` of a Rekognition Face structure."""
    box = face.get('BoundingBox') or {}
    bbox = tuple(float(box.get(name, 0.0)) for name in ('Left', 'Top', 'Width', 'Height')) if box else None
    return face['FaceId'], face.get('ImageId'), bbox


def pair_faces(rows, faces):
    """Pair the application's rows of one photo with the photo's faces in the collection.

    ``rows``: ``(row_id, bbox or None)``; ``faces``: ``(face_id, image_id, bbox or None)``. When every row
    and face has a box, the closest boxes pair first (sum of absolute differences of left, top, width,
    height); otherwise rows in id order pair with faces top-to-bottom, left-to-right.
    Returns ``(pairs, unmatched_rows, unmatched_faces)`` with ``pairs`` a list of ``(row, face)``.
    """
    rows = list(rows)
    faces = list(faces)
    if all(row[1] for row in rows) and all(face[2] for face in faces):
        candidates = sorted(
            (sum(abs(a - b) for a, b in zip(row[1], face[2])), r, f)
            for r, row in enumerate(rows) for f, face in enumerate(faces))
        used_rows, used_faces, pairs = set(), set(), []
        for dummy, r, f in candidates:
            if r not in used_rows and f not in used_faces:
                used_rows.add(r)
                used_faces.add(f)
                pairs.append((rows[r], faces[f]))
        pairs.sort(key=lambda pair: pair[0][0])
    else:
        ordered_rows = sorted(rows, key=lambda row: row[0])
        ordered_faces = sorted(faces, key=lambda face: (face[2][1], face[2][0]) if face[2] else (0.0, 0.0))
        pairs = list(zip(ordered_rows, ordered_faces))
        used_rows = set(id(row) for row, dummy in pairs)
        used_faces = set(id(face) for dummy, face in pairs)
        return (pairs, [row for row in rows if id(row) not in used_rows], [face for face in faces if id(face) not in used_faces])
    return pairs, [row for r, row in enumerate(rows) if r not in used_rows], [face for f, face in enumerate(faces) if f not in used_faces]


def quote_literal(value):
    return "'%s'" % str(value).replace("'", "''")


class FaceTable(object):
    """The application's table of stored Face IDs (the example app's ``recognition_result``) and how to update it."""

    def __init__(self, session, table='recognition_result', id_column='id', photo_column='photo_id', face_id_column='face_id',
                 image_id_column='image_id', collection_column='collection_id', bbox_columns=('bbox_left', 'bbox_top', 'bbox_width', 'bbox_height')):
        if bbox_columns and len(bbox_columns) != 4:
            raise ReindexError('face_id_update.bbox_columns must name 4 columns (left, top, width, height) or none', code='bad_option')
        self.session = session
        self.table = table
        self.id_column = id_column
        self.photo_column = photo_column
        self.face_id_column = face_id_column
        self.image_id_column = image_id_column or None
        self.collection_column = collection_column or None
        self.bbox_columns = tuple(bbox_columns or ())

    def select_sql(self, photo_ids, collection_id):
        cols = [self.id_column, self.photo_column, self.face_id_column] + list(self.bbox_columns)
        conditions = ['%s IN (%s)' % (quote_ident(self.photo_column), ', '.join(str(int(i)) for i in photo_ids))]
        if self.collection_column:
            conditions.append('%s = %s' % (quote_ident(self.collection_column), quote_literal(collection_id)))
        return 'SELECT %s FROM %s WHERE %s ORDER BY %s' % (
            ', '.join(quote_ident(c) for c in cols), quote_ident(self.table), ' AND '.join(conditions), quote_ident(self.id_column))

    def rows_by_photo(self, photo_ids, collection_id):
        """``{photo_id: [(row_id, bbox or None, face_id)]}`` of the rows of these photos."""
        found = collections.defaultdict(list)
        for row in self.session.query(self.select_sql(photo_ids, collection_id)):
            bbox = None
            if self.bbox_columns and all(value != '' for value in row[3:7]):
                bbox = tuple(float(value) for value in row[3:7])
            found[int(row[1])].append((int(row[0]), bbox, row[2]))
        return found

    def update_sql(self, updates):
        """One UPDATE ... FROM (VALUES ...) for ``[(row_id, face_id, image_id)]``."""
        values = ', '.join('(%d, %s, %s)' % (int(row_id), quote_literal(face_id), quote_literal(image_id or ''))
                           for row_id, face_id, image_id in updates)
        sets = ['%s = v.face_id' % quote_ident(self.face_id_column)]
        if self.image_id_column:
            sets.append("%s = nullif(v.image_id, '')" % quote_ident(self.image_id_column))
        return 'UPDATE %s AS t SET %s FROM (VALUES %s) AS v(row_id, face_id, image_id) WHERE t.%s = v.row_id' % (
            quote_ident(self.table), ', '.join(sets), values, quote_ident(self.id_column))

    def apply(self, updates):
        if updates:
            self.session.query('BEGIN; %s; COMMIT' % self.update_sql(updates))


def plan_face_id_updates(rows_by_photo, faces_by_photo, no_face_photos=()):
    """Which rows get which new Face ID. Returns ``(updates, counts)``; ``updates`` is ``[(row_id, face_id, image_id)]``."""
    updates = []
    counts = {'rows_updated': 0, 'rows_unchanged': 0, 'rows_without_face': 0, 'faces_without_row': 0}
    no_face_photos = set(no_face_photos)
    for photo_id, rows in rows_by_photo.items():
        faces = faces_by_photo.get(photo_id)
        if not faces:
            if photo_id in no_face_photos or faces is not None:
                counts['rows_without_face'] += len(rows)
            continue
        pairs, unmatched_rows, unmatched_faces = pair_faces([(row[0], row[1]) for row in rows], faces)
        current = dict((row[0], row[2]) for row in rows)
        for row, face in pairs:
            if current[row[0]] == face[0]:
                counts['rows_unchanged'] += 1
            else:
                counts['rows_updated'] += 1
                updates.append((row[0], face[0], face[1]))
        counts['rows_without_face'] += len(unmatched_rows)
        counts['faces_without_row'] += len(unmatched_faces)
    for photo_id, faces in faces_by_photo.items():
        if photo_id not in rows_by_photo:
            counts['faces_without_row'] += len(faces)
    return updates, counts
