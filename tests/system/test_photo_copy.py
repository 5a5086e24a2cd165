# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""_photos.copy_photos against the real PostgreSQL of the scratch stack, over both transports: the binary COPY the
restore verification reads every photo with gives exactly the bytes the database holds."""

from __future__ import annotations

import hashlib

import pytest

from conftest import DB_NAME, DB_USER

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import decrypt, detect_image_type
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photos import copy_photos
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import Connection, TransportError


def connection(stack, transport):
    if transport == 'direct':
        return Connection('direct', database=DB_NAME, user=DB_USER, password=stack.password, host='127.0.0.1', port=stack.port)
    conn = Connection('compose', database=DB_NAME, user=DB_USER, password=stack.password, project_src=stack.directory,
                      project_name=stack.project)
    conn.container = stack.container  # the compose lookup of the container is tested with the backup
    return conn


def database_digests(stack, where=''):
    rows = stack.psql('SELECT id, md5(data) FROM photo %s ORDER BY id;' % where).splitlines()
    return [(int(i), digest) for i, digest in (row.split('|') for row in rows)]


@pytest.mark.parametrize('transport', ['direct', 'compose'])
def test_copy_photos_reads_every_photo_exactly(stack, transport):
    photos = [(i, data) for i, data, extras in copy_photos(connection(stack, transport))]
    assert photos and [(i, hashlib.md5(data).hexdigest()) for i, data in photos] == database_digests(stack)
    assert all(detect_image_type(decrypt(stack.key, data, 'aes-256-gcm')) for dummy, data in photos)


def test_copy_photos_sample_and_limit(stack):
    rows = copy_photos(connection(stack, 'direct'), limit=3, sample_every=2)
    photos = [(i, hashlib.md5(data).hexdigest()) for i, data, dummy in rows]
    assert photos == database_digests(stack, 'WHERE id % 2 = 0')[:3]


def test_copy_photos_stopped_early_and_a_missing_table(stack):
    rows = copy_photos(connection(stack, 'compose'))
    first = next(rows)
    rows.close()  # kills psql; nothing hangs
    assert first[0] == database_digests(stack)[0][0]
    with pytest.raises(TransportError) as info:
        list(copy_photos(connection(stack, 'direct'), table='no_such_table'))
    assert 'no_such_table' in str(info.value) or 'no_such_table' in (info.value.stderr or '')
