# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reading encrypted photos out of the database in batches, and checking them with the key.

Internal to fleet_telemetry.dr. Used by the backup (a sample, to prove the key before its fingerprint
is recorded), restore verification (every photo) and Rekognition re-indexing. Rows are read by keyset
pagination over the id column, so memory stays flat however many photos there are.
"""

from __future__ import annotations

import binascii

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._pg import quote_ident
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import (
    DecryptError,
    decrypt,
    detect_image_type,
)

DEFAULT_BATCH = 100


def photo_batch_query(table, id_column, data_column, after_id, limit, extra_columns=(), where=None, sample_every=None):
    """SELECT of the next batch: id, hex data, extra columns; keyset pagination on ``id_column``."""
    cols = [quote_ident(id_column), "encode(%s, 'hex')" % quote_ident(data_column)] + [quote_ident(c) for c in extra_columns]
    conditions = ['%s > %d' % (quote_ident(id_column), int(after_id))]
    if where:
        conditions.append('(%s)' % where)
    if sample_every and sample_every > 1:
        conditions.append('%s %% %d = 0' % (quote_ident(id_column), int(sample_every)))
    return 'SELECT %s FROM %s WHERE %s ORDER BY %s LIMIT %d' % (
        ', '.join(cols), quote_ident(table), ' AND '.join(conditions), quote_ident(id_column), int(limit))


def iter_photos(session, table='photo', id_column='id', data_column='data', extra_columns=(), where=None,
                batch=DEFAULT_BATCH, limit=None, sample_every=None):
    """Yield ``(id, ciphertext_bytes, extras)`` for photos in id order, ``batch`` rows per query."""
    after = -(2 ** 62)
    seen = 0
    while limit is None or seen < limit:
        size = batch if limit is None else min(batch, limit - seen)
        rows = session.query(photo_batch_query(table, id_column, data_column, after, size, extra_columns, where, sample_every))
        if not rows:
            return
        for row in rows:
            after = int(row[0])
            seen += 1
            yield after, binascii.unhexlify(row[1]), row[2:]
        if len(rows) < size:
            return


def check_photo(key, ciphertext, cipher):
    """Return None when the photo decrypts to a JPEG or PNG image, else ``(reason, sentence)``."""
    try:
        plain = decrypt(key, ciphertext, cipher)
    except DecryptError as exc:
        return exc.reason, str(exc)
    if detect_image_type(plain) is None:
        return 'not_an_image', 'the photo decrypts but is not a JPEG or PNG image'
    return None


def check_photos(photos, key, cipher, max_failures_listed=20):
    """Check every photo of an iterable; return counts and the first failures (ids and reasons)."""
    checked = 0
    failed = 0
    failures = []
    for photo_id, ciphertext, dummy in photos:
        checked += 1
        problem = check_photo(key, ciphertext, cipher)
        if problem:
            failed += 1
            if len(failures) < max_failures_listed:
                failures.append({'id': photo_id, 'reason': problem[0], 'msg': problem[1]})
    return {'checked': checked, 'failed': failed, 'failures': failures}


def key_verdict(result, cipher):
    """One sentence about a photo check, or None when every checked photo decrypted."""
    if result['checked'] == 0:
        return None
    if result['failed'] == 0:
        return None
    first = result['failures'][0]
    if result['failed'] == result['checked']:
        return ('none of the %d photos checked decrypt with the given encryption_key and cipher=%s: %s'
                % (result['checked'], cipher, first['msg']))
    return ('%d of %d photos checked do not decrypt (first: photo %s: %s)'
            % (result['failed'], result['checked'], first['id'], first['msg']))
