# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The parts of a multipart upload, read from the file without holding them in memory. Internal to fleet_telemetry.dr:
not a public API.

``hashed_parts`` reads the file once, in order, in 1 MiB chunks, and yields each part's range and SHA-256 as soon as the
part is read, while it hashes the whole file. ``FilePart`` is a part as a request body: a file object over that range,
read from the file again (from the page cache) by the thread that sends it, seekable for signing and retries. So memory
stays a few MiB per thread whatever the part size; what was hashed and what was sent are compared by S3 (the part's
checksum) and by the read-back verification.

It imports nothing from the collection, and must keep compiling on Python 3.8.
"""

from __future__ import annotations

import base64
import hashlib

CHUNK = 1024 * 1024


class SourceChanged(Exception):
    """The file is not ``size`` bytes long any more (``read`` says how many bytes were read, or None for more)."""

    def __init__(self, read):
        super(SourceChanged, self).__init__(read)
        self.read = read


def hashed_parts(path, size, part_size, digest, chunk=CHUNK):
    """Yield ``(number, offset, length, base64 SHA-256)`` of each part of the ``size`` bytes of ``path``, updating ``digest``
    (the whole file's hash) on the way; a zero-byte file is one empty part. Raise SourceChanged when the file is shorter or
    longer than ``size``."""
    with open(path, 'rb', buffering=0) as stream:
        offset, number = 0, 0
        while number == 0 or offset < size:
            number += 1
            length = min(part_size, size - offset)
            part, left = hashlib.sha256(), length
            while left:
                data = stream.read(min(chunk, left))
                if not data:
                    raise SourceChanged(offset + length - left)
                part.update(data)
                digest.update(data)
                left -= len(data)
            yield number, offset, length, base64.b64encode(part.digest()).decode('ascii')
            offset += length
        if stream.read(1):
            raise SourceChanged(None)


class FilePart(object):
    """The bytes ``[offset, offset + length)`` of the file at ``path`` as a seekable, read-only file object."""

    def __init__(self, path, offset, length):
        self._file = open(path, 'rb')
        self._offset, self._length, self._pos = offset, length, 0
        self._file.seek(offset)

    def read(self, amount=-1):
        left = self._length - self._pos
        if amount is None or amount < 0 or amount > left:
            amount = left
        data = self._file.read(amount)
        self._pos += len(data)
        return data

    def seek(self, where, whence=0):
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        self._pos = max(0, min(self._length, base + where))
        self._file.seek(self._offset + self._pos)
        return self._pos

    def tell(self):
        return self._pos

    @staticmethod
    def seekable():
        return True

    def __len__(self):
        return self._length

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
