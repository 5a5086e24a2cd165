# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The photo source: the application's encrypted photos read in id order over psql, and a missing table or column
named by the setting that fixes it. Internal to fleet_telemetry.dr; not a public API.
"""

from __future__ import annotations

import re

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._pg import quote_ident
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photos import iter_photos
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import TransportError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.errors import ReindexError

# Where a name in a failed photo query comes from: (what it is, module option, role variable).
SOURCE_SETTINGS = {
    'table': ('photo table', 'photo_table', 'rekognition_reindex_photo_table'),
    'id_column': ('id column', 'photo_id_column', 'rekognition_reindex_photo_id_column'),
    'data_column': ('photo data column', 'photo_data_column', 'rekognition_reindex_photo_data_column'),
    'external_id_column': ('external image id column', 'external_id_column', 'rekognition_reindex_external_id_column'),
}
_MISSING_RE = re.compile(r'(column|relation) "([^"]+)" does not exist')


def missing_name_error(stderr, names):
    """A ``ReindexError`` naming the setting behind a column or table that does not exist, or None.

    ``names`` maps the keys of ``SOURCE_SETTINGS`` to the names in use.
    """
    match = _MISSING_RE.search(stderr or '')
    if not match:
        return None
    missing = match.group(2).split('.')[-1]
    kind = 'table' if match.group(1) == 'relation' else None
    for key, name in names.items():
        if name is None or name.split('.')[-1] != missing or (kind == 'table') != (key == 'table'):
            continue
        what, option, variable = SOURCE_SETTINGS[key]
        hint = ''
        if key == 'external_id_column':
            hint = ('; or derive the id from the row with external_id_expression (rekognition_reindex_external_id_expression), '
                    "for example 'photo-' || id")
        return ReindexError('the %s %s does not exist in %s: set %s (role: %s) to the %s of your schema%s'
                            % (what, name, names['table'] if key != 'table' else 'the database', option, variable,
                               'table' if key == 'table' else 'column', hint), code='no_column' if key != 'table' else 'no_table')
    return ReindexError('the photo query failed: %s %s does not exist; check the photo_table, photo_*_column, external_id_* and where '
                        'settings' % (match.group(1), match.group(2)), code='no_column')


class PhotoSource(object):
    """Reads ``(photo_id, ciphertext, external_id)`` in id order from a psql session, in batches.

    The external id is a column (``external_id_column``) or an SQL expression over the row (``external_id_expression``,
    for example ``'photo-' || id``).
    """

    def __init__(self, session, table='photo', id_column='id', data_column='data', external_id_column='external_image_id',
                 where=None, batch_size=25, external_id_expression=None):
        self.session = session
        self.table = table
        self.id_column = id_column
        self.data_column = data_column
        self.external_id_column = None if external_id_expression else external_id_column
        self.external_id_sql = '(%s)::text' % external_id_expression if external_id_expression else quote_ident(external_id_column)
        self.where = where
        self.batch_size = batch_size

    def rows(self, ids=None):
        where = self.where
        if ids is not None:
            in_ids = '%s IN (%s)' % (quote_ident(self.id_column), ', '.join(str(int(i)) for i in ids))
            where = '(%s) AND %s' % (where, in_ids) if where else in_ids
        try:
            for photo_id, data, extras in iter_photos(self.session, self.table, self.id_column, self.data_column,
                                                      extra_sql=(self.external_id_sql,), where=where, batch=self.batch_size):
                yield photo_id, data, extras[0]
        except TransportError as exc:
            names = {'table': self.table, 'id_column': self.id_column, 'data_column': self.data_column,
                     'external_id_column': self.external_id_column}
            raise missing_name_error(exc.stderr, names) or exc
