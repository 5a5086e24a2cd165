# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Restore an artifact into a database and prove the result. Internal to fleet_telemetry.dr; not a public API.

The order is the safety argument, and nothing in it writes until every check before it passed:

1. the artifact verifies (``_artifact.verify_artifact``: checksum and manifest; a runbook ``.sql`` without a
   manifest is accepted as ``kind: runbook``);
2. the key preflight (``key_preflight``): the key's fingerprint equals the manifest's, and photos read from the
   artifact itself decrypt with it (a plain dump's ``COPY photo`` block, or ``pg_restore -a -t photo -f -`` of an
   archive);
3. the target database exists;
4. restore: a plain dump is streamed through this process into ``psql -X -v ON_ERROR_STOP=1`` inside one
   transaction that is committed only after the whole stream was seen to be complete (pg_dump's trailer, every
   ``COPY`` block terminated, ``COPY`` row counts equal to the manifest's); custom and directory archives go to
   ``pg_restore --exit-on-error``, in parallel where the format allows;
5. verify: exact row counts, every photo decrypts, ``ANALYZE``.

The COPY scanner (``CopyScanner``) reads pg_dump's plain text in chunks and counts rows without splitting the
data into lines in Python, so it keeps up with the restore stream.
"""

from __future__ import annotations

import binascii
import collections
import functools
import os
import posixpath
import re
import subprocess
import tempfile
import time

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _artifact
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._backup import toc_runner_for as _backup_toc_runner
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._compose import Commands as ComposeCommands
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._compose import ComposeProject, compose_config, compose_files
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._pg import (
    USER_TABLES_QUERY,
    PsqlSession,
    count_query,
    parse_counts,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import key_fingerprint
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photos import check_photos, copy_photos
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import (
    TransportError,
    client_argv,
    client_env,
    fail_from_stderr,
    pick_client,
    resolve_container,
    run,
    widen_pipe,
)

CHUNK_SIZE = 1024 * 1024
MAX_FAILURES_LISTED = 20
# A wrong key fails every sampled photo the same way: a few examples say it all.
MAX_PREFLIGHT_FAILURES = 5
TRAILER = b'-- PostgreSQL database dump complete'
GZIP_MAGIC = b'\x1f\x8b'
ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
LZ4_MAGIC = b'\x04\x22\x4d\x18'

# pg_dump writes ``COPY public.t  FROM stdin;`` (two blanks) for a table without columns.
_COPY_RE = re.compile(br'\ACOPY (?P<table>.+?) +(?:\((?P<columns>.*)\) )?FROM stdin;\Z')
_TOC_COPY_RE = re.compile(br'COPY [^\n\x00]{1,1000}? FROM stdin;')
_OCTAL = b'01234567'
_COPY_ESCAPES = {ord('b'): 8, ord('f'): 12, ord('n'): 10, ord('r'): 13, ord('t'): 9, ord('v'): 11}


class RestoreError(TransportError):
    """A refusal or failure of the restore: one sentence (``str``), a code, and structured mismatches.

    ``partial`` holds what the run had found out so far (timings, preflight, counts) for the result.
    """

    def __init__(self, msg, code='error', mismatches=None, changed=False, **kwargs):
        super(RestoreError, self).__init__(msg, code=code, **kwargs)
        self.mismatches = list(mismatches or [])
        self.changed = changed

    def to_result(self):
        result = super(RestoreError, self).to_result()
        result['mismatches'] = self.mismatches
        result['changed'] = self.changed
        return result


# --------------------------------------------------------------------------------------------
# Names in pg_dump output
# --------------------------------------------------------------------------------------------

def split_identifiers(text, separator=','):
    """Split a SQL list of (possibly double-quoted) identifiers; return them unquoted.

    ``'id, "Data", "a""b"'`` -> ``['id', 'Data', 'a"b']``; with ``separator='.'`` it splits a qualified name.
    """
    parts = []
    current = []
    quoted = False
    i = 0
    while i < len(text):
        char = text[i]
        if quoted:
            if char == '"':
                if text[i + 1:i + 2] == '"':
                    current.append('"')
                    i += 1
                else:
                    quoted = False
            else:
                current.append(char)
        elif char == '"':
            quoted = True
        elif char == separator:
            parts.append(''.join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    parts.append(''.join(current).strip())
    return parts


def normalize_table(name, sql=False):
    """The collection's table name: ``photo`` for public tables, ``schema.table`` otherwise.

    ``sql=True`` parses a SQL name as pg_dump writes it (``public."Photo"``); otherwise ``name`` is a raw
    option value (``photo``, ``public.photo``, ``app.photo``), as manifests and ``_pg.quote_ident`` use.
    """
    parts = split_identifiers(name, '.') if sql else name.split('.')
    if len(parts) == 2 and parts[0] == 'public':
        return parts[1]
    return '.'.join(parts)


def parse_copy_header(line):
    """``(table, [columns])`` of a ``COPY <table> (<columns>) FROM stdin;`` line (bytes), else None."""
    match = _COPY_RE.match(line.rstrip(b'\r'))
    if not match:
        return None
    table = normalize_table(match.group('table').decode('utf-8', 'replace'), sql=True)
    columns = match.group('columns')
    return table, split_identifiers(columns.decode('utf-8', 'replace')) if columns is not None else []


# --------------------------------------------------------------------------------------------
# COPY text and bytea
# --------------------------------------------------------------------------------------------

def copy_unescape(field):
    """Undo COPY text-format escaping of one field (bytes); ``\\N`` (NULL) gives None."""
    if field == b'\\N':
        return None
    if b'\\' not in field:
        return field
    out = bytearray()
    i = 0
    size = len(field)
    while i < size:
        byte = field[i]
        if byte != 0x5c or i + 1 == size:
            out.append(byte)
            i += 1
            continue
        nxt = field[i + 1]
        if nxt in _OCTAL:
            j = i + 1
            while j < size and j < i + 4 and field[j] in _OCTAL:
                j += 1
            out.append(int(field[i + 1:j], 8) & 0xff)
            i = j
        elif nxt == ord('x') and i + 2 < size and field[i + 2:i + 3] in b'0123456789abcdefABCDEF' and field[i + 2:i + 3]:
            j = i + 2
            while j < size and j < i + 4 and field[j:j + 1] in b'0123456789abcdefABCDEF':
                j += 1
            out.append(int(field[i + 2:j], 16))
            i = j
        else:
            out.append(_COPY_ESCAPES.get(nxt, nxt))
            i += 2
    return bytes(out)


def decode_bytea(text):
    """The bytes of a bytea value in its text form: hex (``\\x0a1b``) or the escape format (``\\\\``, ``\\ooo``)."""
    if text.startswith(b'\\x'):
        try:
            return binascii.unhexlify(text[2:])
        except (binascii.Error, ValueError):
            raise ValueError('invalid hex bytea value')
    out = bytearray()
    i = 0
    size = len(text)
    while i < size:
        byte = text[i]
        if byte != 0x5c:
            out.append(byte)
            i += 1
        elif text[i + 1:i + 2] == b'\\':
            out.append(0x5c)
            i += 2
        elif len(text[i + 1:i + 4]) == 3 and all(c in _OCTAL for c in text[i + 1:i + 4]):
            out.append(int(text[i + 1:i + 4], 8))
            i += 4
        else:
            raise ValueError('invalid escape-format bytea value')
    return bytes(out)


def copy_bytea(field):
    """A bytea field of a COPY text line (bytes, as pg_dump writes it) -> bytes, or None for NULL."""
    if field.startswith(b'\\\\x') and field.count(b'\\') == 2:
        try:
            return binascii.unhexlify(field[3:])
        except (binascii.Error, ValueError):
            raise ValueError('invalid hex bytea value')
    value = copy_unescape(field)
    return None if value is None else decode_bytea(value)


# --------------------------------------------------------------------------------------------
# The COPY scanner
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Reading artifacts
# --------------------------------------------------------------------------------------------

def detect_compression(path):
    """``none``, ``gzip``, ``zstd`` or ``lz4`` from a file's magic bytes."""
    with open(path, 'rb') as fileobj:
        head = fileobj.read(4)
    if head.startswith(GZIP_MAGIC):
        return 'gzip'
    if head.startswith(ZSTD_MAGIC):
        return 'zstd'
    if head.startswith(LZ4_MAGIC):
        return 'lz4'
    return 'none'


def decompress_argv(compression, path):
    """The host command that writes the decompressed file to stdout, or None for an uncompressed file."""
    if compression in (None, 'none'):
        return None
    if compression == 'gzip':
        return ['gzip', '-dc', '--', path]
    if compression == 'zstd':
        return ['zstd', '-dcq', '--', path]
    if compression == 'lz4':
        return ['lz4', '-dcq', path]
    raise TransportError('compression %s is not supported' % compression, code='bad_option')


class StreamSource(object):
    """The bytes of a file, or of a process's stdout (optionally fed a file on stdin), read in chunks.

    ``close(complete)`` checks the exit code when the stream was read to the end, and kills the process
    otherwise (an early stop is not a failure).
    """

    def __init__(self, argv=None, path=None, stdin_path=None, env=None, what=None):
        self.argv = argv
        self.what = what or (argv[0] if argv else path)
        self._err = None
        self._stdin = None
        self.proc = None
        self.file = None
        if argv is None:
            self.file = open(path, 'rb')
            self.read = self.file.read
            return
        self._err = tempfile.TemporaryFile()
        try:
            self._stdin = open(stdin_path, 'rb') if stdin_path else subprocess.DEVNULL
            self.proc = subprocess.Popen(argv, stdin=self._stdin, stdout=subprocess.PIPE, stderr=self._err, env=env)
        except FileNotFoundError:
            self._cleanup()
            raise TransportError('%s is not installed or not on PATH' % argv[0], code='missing_binary', cmd=argv)
        except BaseException:
            self._cleanup()
            raise
        self.read = widen_pipe(self.proc.stdout).read

    def _cleanup(self):
        if self._err is not None:
            self._err.close()
        if self._stdin not in (None, subprocess.DEVNULL):
            self._stdin.close()

    def close(self, complete=True):
        """Return ``(rc, stderr)``; rc is 0 for a file or a process stopped early on purpose."""
        if self.proc is None:
            self.file.close()
            return 0, ''
        if not complete and self.proc.poll() is None:
            self.proc.kill()
        self.proc.stdout.close()
        rc = self.proc.wait()
        self._err.seek(0)
        err = self._err.read().decode('utf-8', 'replace')
        self._cleanup()
        return (rc if complete else 0), err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.file is not None:
            self.file.close()
        self._cleanup()


def _stream_failure(source, rc, err, what):
    lines = [line.strip() for line in (err or '').splitlines() if line.strip()]
    detail = lines[-1] if lines else 'exit code %s' % rc
    return RestoreError('%s failed while reading the artifact: %s' % (what, detail), code='artifact_unreadable',
                        rc=rc, stderr=(err or '')[-4000:], cmd=source.argv)


def scan_plain(path, compression, sample_table=None, sample_limit=0, full=True, chunk_size=CHUNK_SIZE):
    """Scan a plain dump (``none``/``gzip``/``zstd``), streamed; return ``CopyScanner.finish()`` plus ``read_to_end``."""
    scanner = CopyScanner(sample_table, sample_limit)
    argv = decompress_argv(compression, path)
    with StreamSource(argv=argv, path=path, what=argv[0] if argv else None) as source:
        at_end = scan_reader(source.read, scanner, stop_when_sampled=not full, chunk_size=chunk_size)
        rc, err = source.close(complete=at_end)
    if rc != 0:
        raise _stream_failure(source, rc, err, '%s -d' % argv[0])
    result = scanner.finish()
    result['read_to_end'] = at_end
    return result


def _table_selectors(table):
    """pg_restore's ``-n schema -t table`` (or ``-t table``) for a raw table name."""
    parts = table.split('.')
    if len(parts) == 2:
        return ['-n', parts[0], '-t', parts[1]]
    return ['-t', table]


def table_data_argv(conn, path, table, runner=run):
    """``pg_restore -a -t <table> -f -``: the table's data as plain text, read where the client tools are.

    Over compose the archive goes to the container's pg_restore on stdin (``docker exec -i``); the
    ``-d`` of ``client_argv`` must not be used here, pg_restore would restore instead of printing.
    """
    args = ['-a'] + _table_selectors(table) + ['-f', '-']
    if conn.transport == 'compose':
        return tools_prefix(conn, runner) + ['pg_restore'] + args, path
    binary = os.path.join(conn.bin_dir, 'pg_restore') if conn.bin_dir else 'pg_restore'
    return [binary] + args + [path], None


def scan_custom_table(conn, path, table, sample_limit, runner=run, chunk_size=CHUNK_SIZE):
    """Sample ``table`` of a custom archive through ``pg_restore -a -t table -f -``, streamed and stopped early."""
    argv, stdin_path = table_data_argv(conn, path, table, runner)
    scanner = CopyScanner(table, sample_limit)
    with StreamSource(argv=argv, stdin_path=stdin_path, env=client_env(conn), what='pg_restore') as source:
        at_end = scan_reader(source.read, scanner, stop_when_sampled=True, chunk_size=chunk_size)
        rc, err = source.close(complete=at_end)
    if rc != 0:
        raise _stream_failure(source, rc, err, 'pg_restore -a -t %s' % table)
    result = scanner.finish()
    result['read_to_end'] = at_end
    return result


def toc_data_ids(toc_text):
    """``{table: dump id}`` of the TABLE DATA entries of ``pg_restore -l`` output (tables normalised)."""
    ids = {}
    for line in toc_text.splitlines():
        line = line.strip()
        if not line or line.startswith(';'):
            continue
        head, sep, rest = line.partition(' TABLE DATA ')
        if not sep or ';' not in head:
            continue
        words = rest.split(' ')
        if len(words) < 3:
            continue
        dump_id = head.split(';', 1)[0].strip()
        if dump_id.isdigit():
            ids[normalize_table('%s.%s' % (words[0], ' '.join(words[1:-1])))] = int(dump_id)
    return ids


def toc_copy_headers(toc_bytes):
    """``{table: COPY line}`` of the COPY statements stored verbatim in a directory archive's ``toc.dat``."""
    headers = {}
    for match in _TOC_COPY_RE.finditer(toc_bytes):
        parsed = parse_copy_header(match.group(0))
        if parsed:
            headers.setdefault(parsed[0], match.group(0))
    return headers


def directory_data_file(directory, dump_id):
    """The data file of entry ``dump_id`` in a directory archive and its compression, or ``(None, None)``."""
    for suffix, compression in (('', 'none'), ('.gz', 'gzip'), ('.zst', 'zstd'), ('.lz4', 'lz4')):
        candidate = os.path.join(directory, '%d.dat%s' % (dump_id, suffix))
        if os.path.isfile(candidate):
            return candidate, compression
    return None, None


def scan_directory_table(directory, table, sample_limit, toc_runner, chunk_size=CHUNK_SIZE):
    """Sample ``table`` of a directory archive: its data file, located through the table of contents, read on the host.

    ``toc_runner(path)`` is ``pg_restore -l`` through the transport; it gives the dump id of the table's data, whose
    file is ``<id>.dat[.gz|.zst|.lz4]``. The COPY statement (the column order) is stored verbatim in ``toc.dat``.
    Only the head of the data file is read (and decompressed) until the sample is complete.
    """
    rc, out, err = toc_runner(directory)
    if rc != 0:
        raise RestoreError('the table of contents of %s is unreadable: %s' % (directory, (err or out or '').strip()[-300:]),
                           code='artifact_unreadable', rc=rc, stderr=err)
    scanner = CopyScanner(table, sample_limit)
    wanted = normalize_table(table)
    dump_id = toc_data_ids(out).get(wanted)
    if dump_id is None:
        return scanner.finish()
    with open(os.path.join(directory, 'toc.dat'), 'rb') as toc:
        header = toc_copy_headers(toc.read()).get(wanted)
    data_file, compression = directory_data_file(directory, dump_id)
    if header is None or data_file is None:
        raise RestoreError('the directory archive %s lists data of table %s but its %s is missing: the archive is damaged'
                           % (directory, table, 'COPY statement' if header is None else 'data file %d.dat' % dump_id),
                           code='artifact_unreadable')
    scanner.feed(header + b'\n')
    argv = decompress_argv(compression, data_file)
    with StreamSource(argv=argv, path=data_file) as source:
        at_end = scan_reader(source.read, scanner, stop_when_sampled=True, chunk_size=chunk_size)
        rc, err = source.close(complete=at_end)
    if rc != 0:
        raise _stream_failure(source, rc, err, '%s -d' % argv[0])
    return scanner.finish()


def read_artifact_photos(artifact, photo_table, sample, conn=None, toc_runner=None, full_scan=False, runner=run):
    """Photos read from the artifact itself: ``(samples, scan)``; ``artifact`` is a ``verify_artifact`` result.

    A plain dump is streamed (and decompressed) on the host; ``full_scan`` reads it to the end to count every
    COPY block (a runbook dump's expected counts). Custom archives go through ``pg_restore -a -t`` over the
    transport; directory archives through their table of contents and the table's data file.
    """
    fmt = artifact['dump_format']
    path = artifact['path']
    if fmt == _artifact.PLAIN:
        scan = scan_plain(path, artifact_compression(artifact), photo_table, sample, full=full_scan)
    elif fmt == _artifact.CUSTOM:
        scan = scan_custom_table(conn, path, photo_table, sample, runner=runner)
    elif fmt == _artifact.DIRECTORY:
        scan = scan_directory_table(path, photo_table, sample, toc_runner)
    else:
        raise RestoreError('the format of %s is unknown: name it .sql, .sql.gz, .sql.zst, .dump or .dir, or restore it '
                           'with its manifest' % path, code='artifact_invalid')
    return scan['samples'], scan


def artifact_compression(artifact):
    """The compression of a plain dump: the manifest's, else from the magic bytes."""
    manifest = artifact.get('manifest') or {}
    if manifest.get('compression') in _artifact.COMPRESSIONS:
        return manifest['compression']
    return detect_compression(artifact['path'])


# --------------------------------------------------------------------------------------------
# The key preflight
# --------------------------------------------------------------------------------------------

def fingerprint_problem(key, cipher, manifest):
    """``(code, sentence, mismatch)`` when the key or cipher contradicts the manifest, else None."""
    if not manifest:
        return None
    expected = manifest.get('key_fingerprint')
    if isinstance(expected, str) and expected:
        actual = key_fingerprint(key)
        if expected.split(':', 1)[0] == actual.split(':', 1)[0] and expected != actual:
            return ('wrong_key',
                    'encryption_key is not the key this backup was taken with (its fingerprint is %s, the manifest records %s): '
                    'set encryption_key to the ENCRYPTION_KEY in use when the backup was made' % (actual, expected),
                    {'kind': 'key_fingerprint', 'expected': expected, 'actual': actual})
    recorded = manifest.get('cipher')
    if isinstance(recorded, str) and recorded and recorded != cipher:
        return ('wrong_cipher',
                'the backup was taken with cipher=%s but cipher is %s: set cipher to %s' % (recorded, cipher, recorded),
                {'kind': 'cipher', 'expected': recorded, 'actual': cipher})
    return None


def photo_verdict(checks, cipher, photo_table, fingerprint_matched=False, table_seen=True):
    """``(code, sentence)`` about the photos sampled from an artifact, or None when every one decrypted."""
    if checks['checked'] == 0:
        if not table_seen:
            return ('no_photos', 'the artifact holds no data of table %s, so encryption_key cannot be proven on its photos: '
                                 'set photo_table to the table of the encrypted photos (or preflight_photos=0 to restore '
                                 'without this proof)' % photo_table)
        return ('no_photos', 'table %s is empty in the artifact, so encryption_key cannot be proven on its photos: set photo_table '
                             'to the table of the encrypted photos (or preflight_photos=0 to restore without this proof)' % photo_table)
    if checks['failed'] == 0:
        return None
    first = checks['failures'][0]
    if checks['failed'] < checks['checked']:
        return ('photo_corrupt', '%d of %d photos sampled from the artifact do not decrypt although the others do (first: photo %s: %s): '
                                 'the photo data in the artifact is damaged' % (checks['failed'], checks['checked'], first['id'], first['msg']))
    reason = collections.Counter(f['reason'] for f in checks['failures']).most_common(1)[0][0]
    if reason in ('looks_like_fernet', 'looks_like_aes_256_gcm'):
        other = 'fernet' if reason == 'looks_like_fernet' else 'aes-256-gcm'
        return ('wrong_cipher', 'the photos in the artifact were not encrypted with cipher=%s, they look like %s data: set cipher to %s'
                % (cipher, other, other))
    if reason == 'not_encrypted':
        return ('not_encrypted', 'the data column of table %s in the artifact holds plain images, not encrypted photos: '
                                 'check photo_table' % photo_table)
    if reason in ('too_short', 'not_fernet'):
        return ('wrong_cipher', 'the photos of table %s in the artifact are not what cipher=%s writes (%s): set cipher to the '
                                'application\'s scheme, or photo_table to the table of the encrypted photos'
                % (photo_table, cipher, first['msg']))
    if reason == 'not_an_image':
        return ('photo_corrupt', 'the photos sampled from the artifact decrypt but are not JPEG or PNG images: the photo data '
                                 'is not what the application stores; check photo_table')
    if fingerprint_matched:
        return ('photo_corrupt', 'none of the %d photos sampled from the artifact decrypt with cipher=%s although encryption_key '
                                 'matches the backup\'s fingerprint: the photo data is damaged, or set cipher to the scheme the '
                                 'application uses' % (checks['checked'], cipher))
    return ('wrong_key', 'none of the %d photos sampled from the artifact decrypt with encryption_key (cipher=%s): set encryption_key '
                         'to the ENCRYPTION_KEY the photos were encrypted with' % (checks['checked'], cipher))


def key_preflight(key, cipher, artifact=None, manifest=None, photo_table='photo', sample=20, conn=None,
                  toc_runner=None, full_scan=False, runner=run, clock=time.time):
    """Prove the key before anything is written; raise ``RestoreError`` naming the setting to change.

    ``key`` is the 32 raw bytes (``_photo_crypto.parse_key``), ``cipher`` the scheme. ``artifact`` is the result
    of ``_artifact.verify_artifact`` (its manifest is used when ``manifest`` is not given); without it only the
    fingerprint is checked. ``sample`` photos are read from the artifact itself and decrypted; 0 skips that.
    ``conn`` is needed for custom archives (pg_restore runs where the client tools are) and ``toc_runner`` for
    directory archives. ``full_scan`` reads a plain dump to the end (for its COPY counts).

    Error codes: ``wrong_key``, ``wrong_cipher``, ``no_photos``, ``photo_corrupt``, ``not_encrypted``,
    ``artifact_unreadable``. Returns ``{fingerprint, fingerprint_checked, cipher_checked, photos_checked,
    photos_failed, failures, photo_source, seconds, scan}`` (``scan``: the CopyScanner findings or None).
    """
    started = clock()
    if manifest is None and artifact is not None:
        manifest = artifact.get('manifest')
    fingerprint = key_fingerprint(key)
    result = {'fingerprint': fingerprint, 'fingerprint_checked': bool(manifest and manifest.get('key_fingerprint')),
              'cipher_checked': bool(manifest and manifest.get('cipher')), 'photos_checked': 0, 'photos_failed': 0,
              'failures': [], 'photo_source': None, 'seconds': None, 'scan': None}
    problem = fingerprint_problem(key, cipher, manifest)
    if problem:
        raise _preflight_error(problem[0], problem[1], [problem[2]], result, started, clock)
    if artifact is not None and (sample > 0 or full_scan):
        samples, scan = read_artifact_photos(artifact, photo_table, sample, conn=conn, toc_runner=toc_runner,
                                             full_scan=full_scan, runner=runner)
        result['scan'] = scan
        result['photo_source'] = {'plain': 'the dump\'s COPY block of %s', 'custom': 'pg_restore -a -t %s',
                                  'directory': 'the data file of %s'}[artifact['dump_format']] % photo_table
        if scan.get('sample_columns_missing'):
            raise _preflight_error('no_photos', 'table %s in the artifact has no column %s: set photo_table to the table of the '
                                                'encrypted photos (columns id and data)'
                                   % (photo_table, ' or '.join(scan['sample_columns_missing'])), [], result, started, clock)
        if sample > 0:
            checks = check_photos(samples, key, cipher, max_failures_listed=MAX_PREFLIGHT_FAILURES)
            for error in scan.get('sample_errors') or []:
                checks['checked'] += 1
                checks['failed'] += 1
                if len(checks['failures']) < MAX_PREFLIGHT_FAILURES:
                    checks['failures'].append({'id': None, 'reason': 'unreadable', 'msg': error['msg']})
            result.update(photos_checked=checks['checked'], photos_failed=checks['failed'], failures=checks['failures'])
            verdict = photo_verdict(checks, cipher, photo_table, fingerprint_matched=result['fingerprint_checked'],
                                    table_seen=scan.get('sample_table_seen', True))
            if verdict:
                mismatches = [dict(kind='photo', where='artifact', **failure) for failure in checks['failures']]
                raise _preflight_error(verdict[0], verdict[1], mismatches, result, started, clock)
    result['seconds'] = round(clock() - started, 3)
    return result


def _preflight_error(code, sentence, mismatches, result, started, clock):
    result['seconds'] = round(clock() - started, 3)
    exc = RestoreError(sentence + '; nothing was written', code=code, mismatches=mismatches)
    exc.partial['preflight'] = public_preflight(result)
    return exc


def public_preflight(result):
    """The preflight result without the scanner's samples (photo bytes never go into results)."""
    public = dict((k, v) for k, v in result.items() if k != 'scan')
    scan = result.get('scan')
    if scan is not None and scan.get('read_to_end'):
        public['dump'] = dict((k, v) for k, v in scan.items() if k not in ('samples', 'sample_errors'))
    elif scan is not None:
        # Stopped once the photos were sampled: counts and completeness of a partial read mean nothing.
        public['dump'] = {'read_to_end': False, 'bytes_read': scan['bytes']}
    return public


# --------------------------------------------------------------------------------------------
# Artifact acceptance
# --------------------------------------------------------------------------------------------

def artifact_refusal(info):
    """One sentence when a ``verify_artifact`` result must not be restored, else None."""
    if info['kind'] == _artifact.KIND_UNKNOWN and info['manifest'] is None and not info['problems']:
        return ('%s has no manifest beside it (%s): only a plain .sql backup can be restored without one; '
                'point artifact at a backup of this collection' % (info['path'], info['manifest_path']))
    if info['problems']:
        return 'artifact %s does not verify: %s' % (info['path'], info['problems'][0])
    if info['dump_format'] not in _artifact.DUMP_FORMATS:
        return 'the format of %s is unknown: restore a .sql, .sql.gz, .sql.zst, .dump or .dir artifact' % info['path']
    return None


def public_artifact(info):
    keys = ('path', 'manifest_path', 'kind', 'ok', 'problems', 'sha256', 'size', 'dump_format', 'toc_tables')
    return dict((key, info.get(key)) for key in keys)


def service_image(conn, runner=run):
    """The image of the database's compose service (from ``compose config``), or None when compose cannot tell."""
    project = ComposeProject(conn.project_src, project_name=conn.project_name, docker_cli=conn.docker_cli)
    try:
        config = compose_config(ComposeCommands(project, runner=runner), compose_files(project))
    except TransportError:
        return None
    image = (((config.get('services') or {}).get(conn.service) or {}).get('image'))
    return image if isinstance(image, str) and image else None


def offline_tools_prefix(docker_cli, image):
    """Runs a program in a throw-away container of ``image`` without network (``pg_restore`` reading an archive on stdin)."""
    return [docker_cli, 'run', '--rm', '-i', '--network', 'none', '--entrypoint', '', image]


def tools_prefix(conn, runner=run, image_of=service_image):
    """Where the compose transport runs ``pg_restore`` on an archive given on stdin: ``docker exec -i`` of the running
    container; when the service's container is down (a restore after a disaster), a throw-away container of the service's
    image (its own pg_restore, so the archive's version is understood), so a custom or directory backup can still be
    checked before anything is removed. ``container_down`` when neither exists."""
    try:
        container = resolve_container(conn, runner)
    except TransportError as exc:
        if exc.code != 'container_down':
            raise
        image = image_of(conn, runner)
        if not image:
            raise
        return offline_tools_prefix(conn.docker_cli, image)
    return [conn.docker_cli, 'exec', '-i', container]


def toc_runner_for(conn, runner=run, image_of=service_image):
    """``pg_restore -l`` of an artifact through the transport (see ``tools_prefix`` for compose)."""
    def toc(path):
        if conn.transport == 'compose':
            return _backup_toc_runner(conn, prefix=tools_prefix(conn, runner, image_of))(path)
        return _backup_toc_runner(conn)(path)
    return toc


# --------------------------------------------------------------------------------------------
# Restore commands
# --------------------------------------------------------------------------------------------

def needs_schema_reset(dump_format, clean, drops):
    """A plain dump without DROP statements (the runbook's pg_dump has no --clean) needs an empty public schema.

    A fresh stack's init scripts created the tables already, so its CREATE TABLE would fail.
    """
    return dump_format == _artifact.PLAIN and bool(clean) and not drops


def schema_reset_sql(server_version_num):
    """SQL that drops and recreates the public schema as initdb creates it (owner and privileges of the version)."""
    if server_version_num and int(server_version_num) >= 150000:
        create = ('CREATE SCHEMA public AUTHORIZATION pg_database_owner;\n'
                  'GRANT USAGE ON SCHEMA public TO PUBLIC;\n')
    else:
        create = ('CREATE SCHEMA public;\n'
                  'GRANT ALL ON SCHEMA public TO PUBLIC;\n')
    return ('DROP SCHEMA IF EXISTS public CASCADE;\n' + create +
            "COMMENT ON SCHEMA public IS 'standard public schema';\n")


def plain_restore_argv(conn, runner=run):
    """psql reading the dump from stdin; the transaction is ours (see ``restore_plain``), so no --single-transaction."""
    return client_argv(conn, 'psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', '-'], runner=runner, stdin=True)


def archive_restore_plan(transport, dump_format, clean, jobs):
    """How pg_restore gets the archive: ``{'source': stdin|copy|path, 'jobs', 'single_transaction', 'args'}``.

    Over compose a custom archive is streamed into the container's pg_restore on stdin, which cannot seek: no
    ``-j`` then, and the restore runs as one transaction. With ``jobs > 1`` it is copied into the container
    (``docker cp``) first. A directory archive is always copied over compose. One job means one transaction.
    """
    jobs = max(1, int(jobs or 1))
    if transport == 'compose':
        source = 'stdin' if dump_format == _artifact.CUSTOM and jobs == 1 else 'copy'
    else:
        source = 'path'
    single = jobs == 1
    args = ['--exit-on-error', '--no-owner']
    if clean:
        args += ['--clean', '--if-exists']
    args.append('--single-transaction' if single else '--jobs=%d' % jobs)
    return {'source': source, 'jobs': jobs, 'single_transaction': single, 'args': args}


def archive_restore_argv(conn, plan, archive_path=None, runner=run):
    """``pg_restore ... -d <db> [archive]`` for a plan; ``archive_path`` is the path where pg_restore runs."""
    args = list(plan['args'])
    if plan['source'] != 'stdin':
        args.append(archive_path)
    return client_argv(conn, 'pg_restore', args, runner=runner, stdin=plan['source'] == 'stdin')


CONTAINER_TEMP_PREFIX = '/tmp/fleet-dr-restore.'


def stale_copies_argv(docker_cli, container):
    """Removes the copies that killed restores left in the container's /tmp (only the collection's own entries)."""
    return [docker_cli, 'exec', '-u', '0', container, 'find', '/tmp', '-maxdepth', '1', '-name', 'fleet-dr-restore.*',
            '-exec', 'rm', '-rf', '--', '{}', '+']


def container_copy_argv(conn, src, container_dir):
    return [conn.docker_cli, 'cp', src, '%s:%s' % (conn.container, posixpath.join(container_dir, 'archive'))]


def _copy_into_container(conn, src, runner=run):
    """``docker cp`` an archive into a fresh temp dir of the container, owned by the exec user; return its path there."""
    container = resolve_container(conn, runner)
    # A killed restore leaves its copy behind; the run's lease says no other restore of this database runs now.
    runner(stale_copies_argv(conn.docker_cli, container), timeout=600)
    rc, out, err = runner([conn.docker_cli, 'exec', container, 'mktemp', '-d', CONTAINER_TEMP_PREFIX + 'XXXXXX'], timeout=60)
    if rc != 0:
        raise TransportError('could not create a temp dir in the database container: %s' % (err.strip() or rc), code='copy_failed',
                             rc=rc, stderr=err)
    container_dir = out.strip()
    argv = container_copy_argv(conn, src, container_dir)
    rc, dummy, err = runner(argv)
    if rc != 0:
        _remove_from_container(conn, container_dir, runner)
        raise TransportError('docker cp of %s into the database container failed: %s' % (src, err.strip()[-300:]), code='copy_failed',
                             rc=rc, stderr=err, cmd=argv)
    rc, uid, dummy = runner([conn.docker_cli, 'exec', container, 'id', '-u'], timeout=60)
    if rc == 0 and uid.strip() not in ('', '0'):
        runner([conn.docker_cli, 'exec', '-u', '0', container, 'chown', '-R', uid.strip(), container_dir], timeout=600)
    return container_dir


def _remove_from_container(conn, container_dir, runner=run):
    runner([conn.docker_cli, 'exec', '-u', '0', conn.container, 'rm', '-rf', '--', container_dir], timeout=600)


def pass_through(source, scanner, sink, chunk_size=CHUNK_SIZE):
    """Move a decompressed dump from ``source`` (``read(n)``) into ``sink`` (``write``), feeding ``scanner`` on the way."""
    while True:
        data = source.read(chunk_size)
        if not data:
            return
        scanner.feed(data)
        sink.write(data)


def restore_plain(conn, path, compression, prologue=b'', manifest_counts=None, runner=run, chunk_size=CHUNK_SIZE,
                  sample_table=None):
    """Stream a plain dump into psql inside one transaction; commit only a complete stream; return the scan.

    ``BEGIN`` (and ``prologue``, e.g. the schema reset) go first. The dump is decompressed by ``zstd -dc`` /
    ``gzip -dc`` processes and passed through this process, which counts its COPY blocks on the way. ``COMMIT``
    is sent only when the decompressor succeeded, the dump ends with pg_dump's trailer, no COPY block is cut and
    the COPY counts equal ``manifest_counts``; otherwise psql's input ends without COMMIT and PostgreSQL rolls
    everything back. (``psql --single-transaction`` would commit whatever arrived before the end of input: a dump
    cut at a line boundary restores with exit 0, OFFLINE.md.)
    """
    argv = plain_restore_argv(conn, runner)
    scanner = CopyScanner(sample_table, 0)
    source_argv = decompress_argv(compression, path)
    err_file = tempfile.TemporaryFile()
    try:
        try:
            psql = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err_file, env=client_env(conn))
        except FileNotFoundError:
            raise TransportError('%s is not installed or not on PATH' % argv[0], code='missing_binary', cmd=argv)
        widen_pipe(psql.stdin)
        broken = False
        source = None
        try:
            source = StreamSource(argv=source_argv, path=path)
            try:
                psql.stdin.write(b'BEGIN;\n' + prologue)
                pass_through(source, scanner, psql.stdin, chunk_size)
            except (BrokenPipeError, OSError):
                broken = True
            src_rc, src_err = source.close(complete=not broken)
            scan = scanner.finish()
            problems = [] if broken else completeness_problems(scan, manifest_counts)
            if not broken and src_rc != 0:
                problems.insert(0, {'kind': 'artifact', 'msg': '%s -d failed: %s' % (source_argv[0], src_err.strip()[-300:])})
            if not broken and not problems:
                try:
                    psql.stdin.write(b'\n' if scanner.last_byte != b'\n' else b'')
                    psql.stdin.write(b'COMMIT;\n')
                except (BrokenPipeError, OSError):
                    broken = True
            try:
                psql.stdin.close()
            except (BrokenPipeError, OSError):
                broken = True
        except BaseException:
            if psql.poll() is None:
                psql.kill()
            psql.wait()
            if source is not None:
                source.__exit__(None, None, None)
            raise
        rc = psql.wait()
        err_file.seek(0)
        err = err_file.read().decode('utf-8', 'replace')
    finally:
        err_file.close()
    if rc != 0 or broken:
        exc = fail_from_stderr(conn, rc, err, argv, 'psql')
        raise RestoreError('the restore failed and was rolled back, nothing was committed: %s' % exc, code='restore_failed'
                           if exc.code == 'error' else exc.code, rc=rc, stderr=exc.stderr, cmd=argv, changed=False)
    if problems:
        truncated = problems[0]['kind'] in ('truncated', 'artifact')
        raise RestoreError('the dump is %s, so the restore was rolled back and nothing was committed: %s'
                           % ('incomplete' if truncated else 'not what the manifest describes', problems[0]['msg']),
                           code='dump_incomplete' if truncated else 'count_mismatch', mismatches=problems, changed=False, cmd=argv)
    scan['argv'] = argv
    return scan


def restore_archive(conn, path, dump_format, clean, jobs, runner=run):
    """Restore a custom or directory archive with pg_restore according to ``archive_restore_plan``; return the plan."""
    plan = archive_restore_plan(conn.transport, dump_format, clean, jobs)
    container_dir = None
    env = client_env(conn)
    err_file = tempfile.TemporaryFile()
    try:
        if plan['source'] == 'copy':
            container_dir = _copy_into_container(conn, path, runner)
            argv = archive_restore_argv(conn, plan, posixpath.join(container_dir, 'archive'), runner)
        else:
            argv = archive_restore_argv(conn, plan, path, runner)
        stdin = open(path, 'rb') if plan['source'] == 'stdin' else subprocess.DEVNULL
        try:
            proc = subprocess.run(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=err_file, env=env, check=False)
        except FileNotFoundError:
            raise TransportError('%s is not installed or not on PATH' % argv[0], code='missing_binary', cmd=argv)
        finally:
            if stdin is not subprocess.DEVNULL:
                stdin.close()
        err_file.seek(0)
        err = err_file.read().decode('utf-8', 'replace')
    finally:
        err_file.close()
        if container_dir:
            _remove_from_container(conn, container_dir, runner)
    if proc.returncode != 0:
        exc = fail_from_stderr(conn, proc.returncode, err, argv, 'pg_restore')
        if plan['single_transaction']:
            state = 'it was rolled back, nothing was committed'
        else:
            state = 'the target database may hold a partial restore (parallel jobs commit separately): restore again with clean=true'
        raise RestoreError('the restore failed, %s: %s' % (state, exc), code='restore_failed' if exc.code == 'error' else exc.code,
                           rc=proc.returncode, stderr=exc.stderr, cmd=argv, changed=not plan['single_transaction'])
    plan['argv'] = argv
    return plan


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------

def compare_counts(expected, actual, sources=None):
    """Per-table ``{table, expected, actual, ok, source}`` and the row-count mismatches; ``actual`` None = missing."""
    tables = []
    mismatches = []
    for table in sorted(expected):
        got = actual.get(table)
        entry = {'table': table, 'expected': expected[table], 'actual': got, 'ok': got == expected[table],
                 'source': (sources or {}).get(table, 'manifest')}
        tables.append(entry)
        if not entry['ok']:
            mismatches.append({'kind': 'row_count', 'table': table, 'expected': expected[table], 'actual': got,
                               'where': 'database', 'msg': '%s has %s rows, %d expected' % (
                                   table, 'no table and no' if got is None else got, expected[table])})
    return tables, mismatches


def expected_counts(manifest_counts, dump_counts):
    """What the database must hold: the dump's COPY counts, overridden by the manifest's; and where each came from."""
    expected = {}
    sources = {}
    for table, count in (dump_counts or {}).items():
        expected[table] = count
        sources[table] = 'dump'
    for table, count in (manifest_counts or {}).items():
        normal = normalize_table(table)
        if normal != table:
            expected.pop(normal, None)
            sources.pop(normal, None)
        expected[table] = count
        sources[table] = 'manifest'
    return expected, sources


def count_tables(session, tables):
    """Exact ``count(*)`` of the tables that exist; a missing table is absent from the result."""
    existing = set(row[0] for row in session.query(USER_TABLES_QUERY))
    present = [t for t in tables if normalize_table(t) in existing]
    return parse_counts(session.query(count_query(present))) if present else {}


def photo_sample_every(total, sample):
    """The ``id % k = 0`` stride that spreads a sample of ``sample`` photos over ``total`` rows (1 = every row)."""
    if not sample or not total or sample >= total:
        return 1
    return max(1, total // sample)


def verify_database(session, read_photos, expected, sources, key, cipher, photo_table='photo', photo_sample=0, analyze=False,
                    clock=time.time):
    """Counts and ANALYZE on an open session, photos through ``read_photos(table=, limit=, sample_every=)`` (an iterator of
    ``(id, ciphertext, extras)``, as ``_photos.copy_photos``); return ``(result, mismatches)``."""
    timings = {}
    t0 = clock()
    actual = count_tables(session, list(expected))
    tables, mismatches = compare_counts(expected, actual, sources)
    timings['count_seconds'] = round(clock() - t0, 3)

    t0 = clock()
    total = actual.get(photo_table)
    if total is None:
        total = count_tables(session, [photo_table]).get(photo_table)
    if total is None:
        photos = {'checked': 0, 'failed': 0, 'failures': [], 'total': None, 'sample': photo_sample or 'all'}
        mismatches.append({'kind': 'photo_table', 'table': photo_table, 'msg': 'table %s does not exist in the database' % photo_table})
    else:
        every = photo_sample_every(total, photo_sample)
        rows = read_photos(table=photo_table, limit=photo_sample or None, sample_every=every if every > 1 else None)
        photos = check_photos(rows, key, cipher, max_failures_listed=MAX_FAILURES_LISTED)
        photos.update(total=total, sample=photo_sample or 'all')
        for failure in photos['failures']:
            mismatches.append(dict(kind='photo', where='database', **failure))
    timings['photo_seconds'] = round(clock() - t0, 3)

    if analyze:
        t0 = clock()
        session.query('ANALYZE')
        timings['analyze_seconds'] = round(clock() - t0, 3)
    return {'tables': tables, 'photos': photos, 'analyzed': bool(analyze), 'timings': timings}, mismatches


def verify_failure_sentence(verification, mismatches, cipher):
    """One sentence about a failed verification."""
    counts = [m for m in mismatches if m['kind'] == 'row_count']
    photos = verification['photos']
    parts = []
    if counts:
        first = counts[0]
        parts.append('%d table(s) have other row counts than expected (first: %s has %s rows, %d expected)'
                     % (len(counts), first['table'], 'no table and no' if first['actual'] is None else first['actual'], first['expected']))
    if photos['failed']:
        first = photos['failures'][0]
        parts.append('%d of %d photos checked do not decrypt with encryption_key and cipher=%s (first: photo %s: %s)'
                     % (photos['failed'], photos['checked'], cipher, first['id'], first['msg']))
    missing = [m for m in mismatches if m['kind'] == 'photo_table']
    if missing:
        parts.append(missing[0]['msg'])
    return '; '.join(parts)


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------

class RestoreRequest(object):
    """What to restore or verify, and how; built from module parameters. ``key`` is the 32 raw bytes."""

    def __init__(self, artifact=None, manifest=None, key=None, cipher='aes-256-gcm', verify_only=False, preflight_only=False,
                 clean=True, jobs=2, photo_table='photo', photo_sample=0, preflight_photos=20, analyze=True, preflight_scan=False,
                 restore_client='auto'):
        self.preflight_scan = preflight_scan
        self.restore_client = restore_client
        self.artifact = artifact.rstrip('/') if artifact else artifact
        self.manifest = manifest
        self.key = key
        self.cipher = cipher
        self.verify_only = verify_only
        self.preflight_only = preflight_only
        self.clean = clean
        self.jobs = jobs
        self.photo_table = photo_table
        self.photo_sample = photo_sample
        self.preflight_photos = preflight_photos
        self.analyze = analyze

    @property
    def mode(self):
        if self.preflight_only:
            return 'preflight_only'
        if self.verify_only:
            return 'verify_only'
        return 'restore'


def _target_facts(conn):
    """The target database must exist: its name and server version (read-only)."""
    with PsqlSession(conn) as session:
        rows = session.query("SELECT current_database(), current_setting('server_version_num'), current_setting('server_version')")
    database, version_num, version = rows[0]
    return {'database': database, 'server_version_num': int(version_num), 'server_version': version}


def _manifest_from_path(path):
    try:
        manifest = _artifact.read_manifest(path)
    except _artifact.ManifestError as exc:
        raise RestoreError('%s: point manifest at the .manifest.json of a backup' % exc, code='manifest_invalid')
    problems = _artifact.validate_manifest(manifest)
    if problems:
        raise RestoreError('manifest %s is invalid: %s' % (path, problems[0]), code='manifest_invalid',
                           mismatches=[{'kind': 'manifest', 'msg': p} for p in problems])
    return manifest


def preflight(conn, req, full_scan=False, runner=run, clock=time.time):
    """Artifact verification and the key preflight, read-only; return ``(result_part, artifact_info, manifest, scan)``."""
    started = clock()
    part = {}
    info = None
    manifest = None
    toc_runner = None
    if req.artifact:
        path = req.artifact
        if is_archive_path(path):
            toc_runner = toc_runner_for(conn, runner)
        info = _artifact.verify_artifact(path, toc_runner=toc_runner, require_manifest=False)
        part['artifact'] = public_artifact(info)
        refusal = artifact_refusal(info)
        if refusal:
            exc = RestoreError(refusal + ': nothing was written', code='artifact_invalid',
                               mismatches=[{'kind': 'artifact', 'msg': p} for p in info['problems']])
            exc.partial.update(part)
            raise exc
        manifest = info['manifest']
        part['kind'] = info['kind']
        part['dump_format'] = info['dump_format']
        if info['dump_format'] == _artifact.PLAIN:
            part['compression'] = artifact_compression(info)
    elif req.manifest:
        manifest = _manifest_from_path(req.manifest)
        part['kind'] = 'manifest'
    part['manifest_path'] = info['manifest_path'] if info and manifest else req.manifest
    if manifest:
        part['manifest'] = dict((k, manifest.get(k)) for k in ('file', 'database', 'dump_format', 'compression', 'started_at',
                                                               'finished_at', 'row_counts', 'key_fingerprint', 'cipher'))
    try:
        key_result = key_preflight(req.key, req.cipher, artifact=info, manifest=manifest, photo_table=req.photo_table,
                                   sample=req.preflight_photos if info else 0, conn=conn, toc_runner=toc_runner,
                                   full_scan=full_scan, runner=runner, clock=clock)
    except RestoreError as exc:
        exc.partial.update(part)
        exc.partial['timings'] = {'preflight_seconds': round(clock() - started, 3)}
        raise
    scan = key_result['scan']
    part['preflight'] = public_preflight(key_result)
    part['preflight_seconds'] = round(clock() - started, 3)
    return part, info, manifest, scan


def is_archive_path(path):
    """A custom or directory archive, read with pg_restore (a plain dump is named .sql, .sql.gz or .sql.zst)."""
    return os.path.isdir(path) or not path.endswith(('.sql', '.sql.gz', '.sql.zst'))


def archive_client(conn, choice, runner=run):
    """``pick_client`` for a custom or directory archive, before the preflight: ``(connection, {'used', 'reason'} or None)``.

    With the host's pg_restore the preflight reads the table of contents and the photos from the file itself, seeking
    to the photo table's data, instead of streaming the archive into ``docker exec -i pg_restore`` up to it (6-7 s of
    1.6 GB, bench/RESULTS.md). When the service's container is down (a restore after a disaster) the preflight
    reads the archive on the container side, as ``tools_prefix`` does, and no choice is made (None).
    """
    try:
        return pick_client(conn, choice, 'restore_client', ('pg_restore',), runner)[:2]
    except TransportError as exc:
        if exc.code != 'container_down':
            raise
        return conn, None


def _with_partial(exc, result, timings, started, clock):
    partial = dict(result)
    partial.update(exc.partial)
    timings['total_seconds'] = round(clock() - started, 3)
    partial['timings'] = dict(timings, **exc.partial.get('timings', {}))
    exc.partial = partial
    return exc


def run_restore_verify(conn, req, check_mode=False, runner=run, clock=time.time):
    """Preflight, restore and verify according to ``req``; return the result dict (no secrets, no photo bytes)."""
    started = clock()
    timings = {}
    result = {'changed': False, 'mode': req.mode, 'target': conn.describe(), 'mismatches': []}
    try:
        return _run(conn, req, check_mode, runner, clock, started, timings, result)
    except RestoreError as exc:
        raise _with_partial(exc, result, timings, started, clock)
    except TransportError as exc:
        wrapped = RestoreError(str(exc), code=exc.code, rc=exc.rc, stderr=exc.stderr, cmd=exc.cmd,
                               changed=result.get('changed', False))
        raise _with_partial(wrapped, result, timings, started, clock)


def _run(conn, req, check_mode, runner, clock, started, timings, result):
    # A runbook dump's expected counts come from its own COPY blocks: read to the end when no restore stream will count them.
    runbook = bool(req.artifact) and _looks_like_runbook(req.artifact)
    full_scan = (runbook and (check_mode or req.verify_only or req.preflight_only)) or (req.preflight_only and req.preflight_scan)
    client = None
    if req.artifact and is_archive_path(req.artifact) and not req.verify_only:
        conn, client = archive_client(conn, req.restore_client, runner)
        if client:
            result['restore_client'] = client
    part, info, manifest, scan = preflight(conn, req, full_scan=full_scan, runner=runner, clock=clock)
    timings['preflight_seconds'] = part.pop('preflight_seconds')
    result.update(part)
    manifest_counts = (manifest or {}).get('row_counts') or {}
    if scan is not None and scan.get('read_to_end'):
        problems = completeness_problems(scan, manifest_counts)
        if problems:
            raise RestoreError('the dump is incomplete: %s; nothing was written' % problems[0]['msg'], code='dump_incomplete',
                               mismatches=problems)

    if req.preflight_only:
        timings['total_seconds'] = round(clock() - started, 3)
        result.update(timings=timings, msg=_preflight_message(req, result))
        if scan is not None and scan.get('read_to_end'):
            result['expected_counts'] = expected_counts(manifest_counts, scan['counts'])[0]
        return result

    t0 = clock()
    # From here on the host's psql / pg_restore over the container's address when they can (restore_client), else docker exec.
    if client is None:
        tools = ('pg_restore',) if info and info['dump_format'] != _artifact.PLAIN and not req.verify_only else ('psql',)
        conn, result['restore_client'], dummy = pick_client(conn, req.restore_client, 'restore_client', tools, runner)
    target = _target_facts(conn)
    timings['target_check_seconds'] = round(clock() - t0, 3)
    result['server_version'] = target['server_version']

    if req.verify_only:
        dump_counts = scan['counts'] if scan is not None and scan.get('read_to_end') else None
        return _verify(conn, req, result, timings, started, clock, manifest_counts, dump_counts, analyze=False, changed=False)

    fmt = info['dump_format']
    drops = bool(scan and scan.get('drops'))
    if fmt == _artifact.PLAIN and scan is None:
        drops = scan_plain(info['path'], result['compression'], full=False)['drops']
    reset = needs_schema_reset(fmt, req.clean, drops)
    plan = _describe_plan(conn, fmt, req, reset, runner)
    result['restore'] = plan
    if check_mode:
        timings['total_seconds'] = round(clock() - started, 3)
        if scan is not None and scan.get('read_to_end'):
            result['expected_counts'] = expected_counts(manifest_counts, scan['counts'])[0]
        elif manifest_counts:
            result['expected_counts'] = dict(manifest_counts)
        result.update(changed=True, timings=timings,
                      msg='would restore %s (%s%s) into database %s%s' % (
                          info['path'], fmt, ', runbook dump' if info['kind'] == _artifact.KIND_RUNBOOK else '', target['database'],
                          ', dropping and recreating the public schema first' if reset else
                          (', dropping the objects of the dump first' if req.clean or fmt == _artifact.PLAIN else '')))
        return result

    t0 = clock()
    dump_counts = None
    try:
        if fmt == _artifact.PLAIN:
            prologue = schema_reset_sql(target['server_version_num']).encode('utf-8') if reset else b''
            stream = restore_plain(conn, info['path'], result['compression'], prologue=prologue, manifest_counts=manifest_counts,
                                   runner=runner)
            dump_counts = stream['counts']
            result['dump'] = dict((k, v) for k, v in stream.items() if k not in ('samples', 'sample_errors', 'argv'))
        else:
            executed = restore_archive(conn, info['path'], fmt, req.clean, req.jobs, runner=runner)
            plan['argv'] = executed['argv']
    finally:
        timings['restore_seconds'] = round(clock() - t0, 3)
    result['changed'] = True
    return _verify(conn, req, result, timings, started, clock, manifest_counts, dump_counts, analyze=req.analyze, changed=True)


def _looks_like_runbook(path):
    return path.endswith('.sql') and not os.path.exists(_artifact.manifest_path(path))


def _describe_plan(conn, fmt, req, reset, runner):
    if fmt == _artifact.PLAIN:
        return {'method': 'psql', 'argv': plain_restore_argv(conn, runner), 'single_transaction': True,
                'schema_reset': reset, 'jobs': 1}
    plan = archive_restore_plan(conn.transport, fmt, req.clean, req.jobs)
    where = '<temp dir in the container>/archive' if plan['source'] == 'copy' else req.artifact
    return {'method': 'pg_restore', 'argv': archive_restore_argv(conn, plan, where, runner), 'single_transaction': plan['single_transaction'],
            'schema_reset': False, 'jobs': plan['jobs'], 'source': plan['source']}


def _verify(conn, req, result, timings, started, clock, manifest_counts, dump_counts, analyze, changed):
    expected, sources = expected_counts(manifest_counts, dump_counts)
    t0 = clock()
    with PsqlSession(conn) as session:
        verification, mismatches = verify_database(session, functools.partial(copy_photos, conn), expected, sources, req.key,
                                                   req.cipher, req.photo_table,
                                                   req.photo_sample, analyze=analyze, clock=clock)
    timings['verify_seconds'] = round(clock() - t0, 3)
    timings.update(verification.pop('timings'))
    timings['total_seconds'] = round(clock() - started, 3)
    result.update(verification)
    result.update(timings=timings, mismatches=mismatches, changed=changed)
    if mismatches:
        what = 'restored, but the database does not verify' if changed else 'the database does not verify'
        exc = RestoreError('%s: %s' % (what, verify_failure_sentence(verification, mismatches, req.cipher)), code='verify_failed',
                           mismatches=mismatches, changed=changed)
        raise exc
    counted = ', '.join('%s=%s' % (t['table'], t['actual']) for t in verification['tables']) or 'no tables counted'
    photos = verification['photos']
    result['msg'] = '%s %s: %s; %d photo(s) decrypt%s; in %.1f s' % (
        'restored and verified' if changed else 'verified', conn.database, counted, photos['checked'],
        '' if req.photo_sample == 0 else ' (sample)', timings['total_seconds'])
    return result


def _preflight_message(req, result):
    pre = result['preflight']
    parts = ['artifact %s verifies' % req.artifact]
    if pre['fingerprint_checked']:
        parts.append('encryption_key matches the manifest\'s fingerprint')
    if pre['photos_checked']:
        parts.append('%d photo(s) from the artifact decrypt' % pre['photos_checked'])
    return 'preflight passed: ' + ', '.join(parts)
