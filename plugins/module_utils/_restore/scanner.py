# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The COPY scanner: row counts, completeness and photo samples of a plain dump. Internal to fleet_telemetry.dr;
not a public API.

The COPY scanner (``CopyScanner``) reads pg_dump's plain text in chunks and counts rows without splitting the
data into lines in Python, so it keeps up with the restore stream. ``completeness_problems`` says whether what it
saw may be committed (or trusted).
"""

from __future__ import annotations

import collections

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.names import (
    copy_bytea,
    copy_unescape,
    normalize_table,
    parse_copy_header,
)

CHUNK_SIZE = 1024 * 1024
TRAILER = b'-- PostgreSQL database dump complete'


class CopyScanner(object):
    """Count the data lines of every ``COPY ... FROM stdin;`` block of pg_dump's plain text, fed in chunks.

    Optionally keeps the first ``sample_limit`` ``(id, bytes)`` pairs of ``sample_table`` (its ``id`` and
    ``data`` columns, bytea decoded). ``finish()`` returns the findings; ``sampled`` says when the sample is
    complete, so a caller that only wants photos can stop reading.
    """

    def __init__(self, sample_table=None, sample_limit=0, id_column='id', data_column='data'):
        self.counts = collections.OrderedDict()
        self.current = None
        self.rows = 0
        self.trailer = False
        self.drops = False
        self.copy_seen = False
        self.samples = []
        self.sample_errors = []
        self.sample_table = normalize_table(sample_table) if sample_table else None
        self.sample_limit = max(0, int(sample_limit or 0))
        self.id_column = id_column
        self.data_column = data_column
        self.sample_table_seen = False
        self.sample_columns_missing = None
        self.bytes = 0
        self.last_byte = None
        self._sampling = None
        self._pending = b''

    @property
    def sampled(self):
        """True once the sample is complete, or the sample block is over (a short table)."""
        if not self.sample_table:
            return True
        if self.sample_table in self.counts:
            return True
        return self.sample_limit > 0 and len(self.samples) >= self.sample_limit

    def feed(self, data):
        if not data:
            return
        self.bytes += len(data)
        self.last_byte = data[-1:]
        buf = self._pending + data if self._pending else data
        pos = 0
        end = len(buf)
        while pos < end:
            if self.current is not None and self._sampling is None:
                if buf.startswith(b'\\.\n', pos):
                    self._end_block()
                    pos += 3
                    continue
                idx = buf.find(b'\n\\.\n', pos)
                if idx >= 0:
                    self.rows += buf.count(b'\n', pos, idx + 1)
                    pos = idx + 1
                    continue
                last = buf.rfind(b'\n', pos)
                if last >= 0:
                    self.rows += buf.count(b'\n', pos, last + 1)
                    pos = last + 1
                break
            nl = buf.find(b'\n', pos)
            if nl < 0:
                break
            self._line(buf[pos:nl])
            pos = nl + 1
        self._pending = buf[pos:]

    def _line(self, line):
        if self.current is not None:
            if line == b'\\.':
                self._end_block()
                return
            self.rows += 1
            if len(self.samples) + len(self.sample_errors) < self.sample_limit:
                self._sample(line)
            if len(self.samples) + len(self.sample_errors) >= self.sample_limit:
                self._sampling = None
            return
        if line.startswith(b'COPY '):
            header = parse_copy_header(line)
            if header:
                self._begin_block(*header)
            return
        if not self.copy_seen and line.startswith(b'DROP '):
            self.drops = True
        elif line.startswith(TRAILER):
            self.trailer = True

    def _begin_block(self, table, columns):
        self.copy_seen = True
        self.current = table
        self.rows = 0
        self._sampling = None
        if self.sample_table and table == self.sample_table:
            self.sample_table_seen = True
            missing = [c for c in (self.id_column, self.data_column) if c not in columns]
            if missing:
                self.sample_columns_missing = missing
            elif self.sample_limit > len(self.samples):
                self._sampling = (columns.index(self.id_column), columns.index(self.data_column))

    def _sample(self, line):
        id_idx, data_idx = self._sampling
        fields = line.split(b'\t')
        try:
            raw_id = copy_unescape(fields[id_idx])
            photo_id = raw_id.decode('utf-8', 'replace') if raw_id is not None else None
            if photo_id is not None and photo_id.lstrip('-').isdigit():
                photo_id = int(photo_id)
            data = copy_bytea(fields[data_idx])
        except (IndexError, ValueError) as exc:
            self.sample_errors.append({'line': self.rows, 'msg': 'unreadable COPY row: %s' % exc})
            return
        self.samples.append((photo_id, data if data is not None else b'', ()))

    def _end_block(self):
        self.counts[self.current] = self.counts.get(self.current, 0) + self.rows
        self.current = None
        self.rows = 0
        self._sampling = None

    def finish(self):
        """Flush the last partial line and return the findings (a dict)."""
        partial = False
        if self._pending:
            pending, self._pending = self._pending, b''
            if self.current is not None and pending == b'\\.':
                self._end_block()
            elif self.current is not None:
                partial = True
            else:
                self._line(pending)
        incomplete = self.current
        return {
            'counts': dict(self.counts),
            'tables': list(self.counts),
            'incomplete_table': incomplete,
            'rows_in_incomplete_table': self.rows if incomplete else 0,
            'partial_line': partial,
            'trailer': self.trailer,
            'drops': self.drops,
            'complete': self.trailer and incomplete is None and not partial,
            'samples': self.samples,
            'sample_errors': self.sample_errors,
            'sample_table_seen': self.sample_table_seen,
            'sample_columns_missing': self.sample_columns_missing,
            'bytes': self.bytes,
        }


def scan_reader(read, scanner, stop_when_sampled=False, chunk_size=CHUNK_SIZE):
    """Feed ``read(chunk_size)`` into ``scanner`` until EOF (or the sample is complete); return True at EOF."""
    while True:
        data = read(chunk_size)
        if not data:
            return True
        scanner.feed(data)
        if stop_when_sampled and scanner.sampled and scanner.copy_seen:
            return False


def completeness_problems(scan, manifest_counts=None):
    """Mismatches that forbid committing (or trusting) a plain dump's stream; ``[]`` when it is whole.

    A dump cut at a line boundary restores with exit 0 under ``ON_ERROR_STOP`` (OFFLINE.md): it lacks
    pg_dump's trailer or ends inside a COPY block, and its COPY counts differ from the manifest's.
    """
    mismatches = []
    if scan['incomplete_table']:
        mismatches.append({'kind': 'truncated', 'table': scan['incomplete_table'],
                           'msg': 'the dump ends inside the data of table %s (after %d rows)'
                                  % (scan['incomplete_table'], scan['rows_in_incomplete_table'])})
    elif scan['partial_line']:
        mismatches.append({'kind': 'truncated', 'msg': 'the dump ends in the middle of a line'})
    if not scan['trailer']:
        mismatches.append({'kind': 'truncated', 'msg': 'the dump does not end with pg_dump\'s "%s" trailer' % TRAILER.decode()})
    for table, expected in sorted((manifest_counts or {}).items()):
        actual = scan['counts'].get(normalize_table(table))
        if actual != expected:
            mismatches.append({'kind': 'row_count', 'table': table, 'expected': expected, 'actual': actual,
                               'where': 'dump', 'msg': 'the dump holds %s rows of %s, the manifest says %d'
                                                       % ('no' if actual is None else actual, table, expected)})
    return mismatches
