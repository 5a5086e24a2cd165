# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The parts of a multipart upload: hashed once in order, each sent as a seekable range of the file."""

from __future__ import annotations

import base64
import hashlib

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.parts import FilePart, SourceChanged, hashed_parts


def _file(tmp_path, data):
    path = tmp_path / 'artifact'
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize('size, part_size, lengths', [
    (0, 8, [0]), (8, 8, [8]), (9, 8, [8, 1]), (20, 8, [8, 8, 4]),
])
def test_parts_cover_the_file_with_their_checksums_and_the_whole_hash(tmp_path, size, part_size, lengths):
    data = bytes(range(256))[:size] if size <= 256 else b'x' * size
    path = _file(tmp_path, data)
    digest = hashlib.sha256()
    parts = list(hashed_parts(path, size, part_size, digest, chunk=3))
    assert [length for dummy, dummy2, length, dummy3 in parts] == lengths
    assert [number for number, dummy, dummy2, dummy3 in parts] == list(range(1, len(lengths) + 1))
    for dummy, offset, length, checksum in parts:
        assert base64.b64decode(checksum) == hashlib.sha256(data[offset:offset + length]).digest()
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize('actual, expected_read', [(b'x' * 5, 5), (b'x' * 12, None)])
def test_a_file_of_another_size_is_refused(tmp_path, actual, expected_read):
    path = _file(tmp_path, actual)
    with pytest.raises(SourceChanged) as caught:
        list(hashed_parts(path, 10, 4, hashlib.sha256()))
    assert caught.value.read == expected_read


def test_file_part_reads_seeks_and_tells_within_its_range(tmp_path):
    path = _file(tmp_path, b'0123456789abcdef')
    with FilePart(path, 4, 8) as part:
        assert len(part) == 8 and part.seekable()
        assert part.read(3) == b'456' and part.tell() == 3
        assert part.read() == b'789ab' and part.read(5) == b''
        assert part.seek(0) == 0 and part.read(100) == b'456789ab'
        assert part.seek(-2, 2) == 6 and part.read() == b'ab'
        assert part.seek(-3, 1) == 5 and part.read(1) == b'9'
