# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reading encrypted photos out of the database, and checking them with the key.

Internal to fleet_telemetry.dr. Two readers, both with memory flat however many photos there are:

* ``iter_photos``: batches over an open psql session, by keyset pagination over the id column (the backup's
  sample of photos, in its snapshot; Rekognition re-indexing, with extra columns and a filter);
* ``copy_photos``: one ``COPY (SELECT ...) TO STDOUT (FORMAT binary)`` streamed and parsed a photo at a time
  (restore verification of every photo: the bytes cross the pipe once, not hex-encoded at twice the size).
"""

from __future__ import annotations

import binascii
import struct
import subprocess
import tempfile

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._pg import quote_ident
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import (
    DecryptError,
    decrypt,
    detect_image_type,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import (
    TransportError,
    client_argv,
    client_env,
    fail_from_stderr,
    widen_pipe,
)

DEFAULT_BATCH = 100


def photo_batch_query(table, id_column, data_column, after_id, limit, extra_columns=(), where=None, sample_every=None, extra_sql=()):
    """SELECT of the next batch: id, hex data, extra columns, extra SQL expressions; keyset pagination on ``id_column``."""
    cols = [quote_ident(id_column), "encode(%s, 'hex')" % quote_ident(data_column)] + [quote_ident(c) for c in extra_columns]
    cols += list(extra_sql)
    conditions = ['%s > %d' % (quote_ident(id_column), int(after_id))]
    if where:
        conditions.append('(%s)' % where)
    if sample_every and sample_every > 1:
        conditions.append('%s %% %d = 0' % (quote_ident(id_column), int(sample_every)))
    return 'SELECT %s FROM %s WHERE %s ORDER BY %s LIMIT %d' % (
        ', '.join(cols), quote_ident(table), ' AND '.join(conditions), quote_ident(id_column), int(limit))


def iter_photos(session, table='photo', id_column='id', data_column='data', extra_columns=(), where=None,
                batch=DEFAULT_BATCH, limit=None, sample_every=None, extra_sql=()):
    """Yield ``(id, ciphertext_bytes, extras)`` for photos in id order, ``batch`` rows per query."""
    after = -(2 ** 62)
    seen = 0
    while limit is None or seen < limit:
        size = batch if limit is None else min(batch, limit - seen)
        rows = session.query(photo_batch_query(table, id_column, data_column, after, size, extra_columns, where, sample_every,
                                               extra_sql))
        if not rows:
            return
        for row in rows:
            after = int(row[0])
            seen += 1
            yield after, binascii.unhexlify(row[1]), row[2:]
        if len(rows) < size:
            return


COPY_SIGNATURE = b'PGCOPY\n\xff\r\n\x00'


class CopyStreamError(ValueError):
    """The binary COPY stream is not one, or ends in the middle of a row."""


def photo_copy_query(table, id_column, data_column, limit=None, sample_every=None):
    """The binary COPY of ``(id::bigint, data)`` in id order, every ``sample_every``-th id, at most ``limit`` rows."""
    where = ''
    if sample_every and sample_every > 1:
        where = ' WHERE %s %% %d = 0' % (quote_ident(id_column), int(sample_every))
    limit_sql = ' LIMIT %d' % int(limit) if limit else ''
    return 'COPY (SELECT %s::bigint, %s FROM %s%s ORDER BY %s%s) TO STDOUT (FORMAT binary)' % (
        quote_ident(id_column), quote_ident(data_column), quote_ident(table), where, quote_ident(id_column), limit_sql)


def _read_exact(stream, size):
    data = stream.read(size)
    if len(data) != size:
        raise CopyStreamError('the COPY stream ended in the middle of a row (%d of %d bytes)' % (len(data), size))
    return data


def parse_binary_copy(stream):
    """Yield the rows (lists of bytes, None for NULL) of a ``COPY ... (FORMAT binary)`` stream, one at a time."""
    header = stream.read(19)
    if len(header) != 19 or header[:11] != COPY_SIGNATURE:
        raise CopyStreamError('the output is not a binary COPY stream')
    _read_exact(stream, struct.unpack('!I', header[15:19])[0])
    while True:
        fields = struct.unpack('!h', _read_exact(stream, 2))[0]
        if fields == -1:
            return
        row = []
        for dummy in range(fields):
            size = struct.unpack('!i', _read_exact(stream, 4))[0]
            row.append(None if size == -1 else _read_exact(stream, size))
        yield row


def copy_photos(conn, table='photo', id_column='id', data_column='data', limit=None, sample_every=None, database=None):
    """Yield ``(id, ciphertext_bytes, ())`` like ``iter_photos``, from one binary COPY run by psql over ``conn``.

    psql's stdout is parsed as it arrives (a photo at a time); a failed psql raises the TransportError its stderr names.
    Stopping early (closing the generator) kills psql.
    """
    sql = photo_copy_query(table, id_column, data_column, limit, sample_every)
    argv = client_argv(conn, 'psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql], database=database)
    with tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=client_env(conn))
        except FileNotFoundError:
            raise TransportError('%s is not installed or not on PATH' % argv[0], code='missing_binary', cmd=argv)
        try:
            try:
                for row in parse_binary_copy(widen_pipe(proc.stdout)):
                    yield struct.unpack('!q', row[0])[0], row[1] or b'', ()
                problem = None
            except CopyStreamError as exc:
                problem = exc
            rc = proc.wait()
            if rc != 0 or problem:
                stderr.seek(0)
                err = stderr.read().decode('utf-8', 'replace')
                if rc == 0:
                    raise TransportError('reading the photos failed: %s' % problem, code='error', rc=rc, stderr=err, cmd=argv)
                raise fail_from_stderr(conn, rc, err, argv, 'psql COPY of the photos')
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()


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
