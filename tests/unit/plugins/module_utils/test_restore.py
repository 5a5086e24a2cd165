# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import binascii
import gzip
import io
import os
import shutil
import stat
import struct
import subprocess

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _pg, _photos, _transport, _verification
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import encrypt, key_fingerprint
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import commands as _commands
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import names as _names
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import preflight as _preflight
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import run as _run
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import scanner as _scanner
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import source as _source
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import verify as _verify
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.errors import RestoreError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
PNG = b'\x89PNG\r\n\x1a\n' + b'\x00' * 40
JPEG = b'\xff\xd8\xff\xe0' + b'\x01' * 40


def _photo_rows(key, count, cipher='aes-256-gcm', start=1):
    rows = []
    for i in range(start, start + count):
        data = encrypt(key, PNG if i % 2 else JPEG, cipher)
        rows.append(b'%d\t1\t\\\\x%s\tnote %d' % (i, binascii.hexlify(data), i))
    return rows


def make_dump(key=KEY, photos=3, audit=5, clean=True, trailer=True, cipher='aes-256-gcm', photo_rows=None):
    """A small plain dump shaped like pg_dump's: SETs, DROPs, CREATEs, COPY blocks, trailer."""
    lines = [b'--', b'-- PostgreSQL database dump', b'--', b'', b'\\restrict abc', b'SET statement_timeout = 0;']
    if clean:
        lines += [b'DROP TABLE IF EXISTS public.photo;', b'DROP TABLE IF EXISTS public.audit_log;']
    lines += [b'CREATE TABLE public.audit_log (id bigint, actor text);',
              b'CREATE TABLE public.photo (id bigint, vehicle_id bigint, data bytea, note text);', b'']
    lines += [b'COPY public.audit_log (id, actor) FROM stdin;']
    lines += [b'%d\tactor\\twith a tab\\nand a newline' % i for i in range(1, audit + 1)]
    lines += [b'\\.', b'', b'']
    rows = _photo_rows(key, photos, cipher) if photo_rows is None else photo_rows
    lines += [b'COPY public.photo (id, vehicle_id, data, note) FROM stdin;'] + rows + [b'\\.', b'', b'']
    lines += [b'COPY app."Odd ""Name""" (id) FROM stdin;', b'\\.', b'', b'']
    lines += [b'CREATE INDEX photo_idx ON public.photo (id);', b'']
    if trailer:
        lines += [b'--', b'-- PostgreSQL database dump complete', b'--', b'', b'\\unrestrict abc', b'']
    return b'\n'.join(lines)


def scan_bytes(data, chunk, **kwargs):
    scanner = _scanner.CopyScanner(**kwargs)
    for i in range(0, len(data), chunk):
        scanner.feed(data[i:i + chunk])
    return scanner.finish()


# ---------------------------------------------------------------------------------------------
# Names, COPY headers, COPY text and bytea
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('text, sep, expected', [
    ('id, vehicle_id, data', ',', ['id', 'vehicle_id', 'data']),
    ('"Data", "a""b", x', ',', ['Data', 'a"b', 'x']),
    ('"with, comma", y', ',', ['with, comma', 'y']),
    ('public.photo', '.', ['public', 'photo']),
    ('"my.schema"."Photo"', '.', ['my.schema', 'Photo']),
])
def test_split_identifiers(text, sep, expected):
    assert _names.split_identifiers(text, sep) == expected


@pytest.mark.parametrize('name, sql, expected', [
    ('photo', False, 'photo'),
    ('public.photo', False, 'photo'),
    ('app.photo', False, 'app.photo'),
    ('public.photo', True, 'photo'),
    ('public."Photo"', True, 'Photo'),
    ('"app"."photo"', True, 'app.photo'),
])
def test_normalize_table(name, sql, expected):
    assert _names.normalize_table(name, sql=sql) == expected


@pytest.mark.parametrize('line, expected', [
    (b'COPY public.photo (id, vehicle_id, data) FROM stdin;', ('photo', ['id', 'vehicle_id', 'data'])),
    (b'COPY app."Odd ""Name""" (id) FROM stdin;', ('app.Odd "Name"', ['id'])),
    (b'COPY public.empty  FROM stdin;', ('empty', [])),
    (b'COPY public.nocols FROM stdin;', ('nocols', [])),
    (b'COPY public.photo (id) TO stdout;', None),
    (b'-- COPY public.photo (id) FROM stdin;', None),
])
def test_parse_copy_header(line, expected):
    assert _names.parse_copy_header(line) == expected


@pytest.mark.parametrize('field, expected', [
    (b'plain', b'plain'),
    (b'\\N', None),
    (b'a\\tb\\nc\\\\d', b'a\tb\nc\\d'),
    (b'\\101\\x42', b'AB'),
    (b'\\\\x0a1b', b'\\x0a1b'),
    (b'trailing\\', b'trailing\\'),
])
def test_copy_unescape(field, expected):
    assert _names.copy_unescape(field) == expected


@pytest.mark.parametrize('text, expected', [
    (b'\\x', b''),
    (b'\\x00ff10', b'\x00\xff\x10'),
    (b'\\xDEADbeef', b'\xde\xad\xbe\xef'),
    (b'abc\\\\\\000\\377', b'abc\\\x00\xff'),
])
def test_decode_bytea(text, expected):
    assert _names.decode_bytea(text) == expected


@pytest.mark.parametrize('text', [b'\\x0', b'\\xzz', b'bad\\9'])
def test_decode_bytea_rejects_garbage(text):
    with pytest.raises(ValueError):
        _names.decode_bytea(text)


@pytest.mark.parametrize('field, expected', [
    (b'\\\\x0a1b', b'\x0a\x1b'),       # pg_dump's hex bytea: the backslash doubled by COPY
    (b'\\\\x', b''),
    (b'\\N', None),
    (b'ab\\\\\\\\c', b'ab\\c'),        # escape-format bytea of ab\c
])
def test_copy_bytea(field, expected):
    assert _names.copy_bytea(field) == expected


def test_copy_bytea_round_trips_random_bytes():
    data = os.urandom(4096)
    assert _names.copy_bytea(b'\\\\x' + binascii.hexlify(data)) == data


# ---------------------------------------------------------------------------------------------
# The COPY scanner
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('chunk', [1, 2, 3, 5, 7, 64, 1000, 10 ** 7])
def test_scanner_counts_every_block_whatever_the_chunking(chunk):
    result = scan_bytes(make_dump(photos=4, audit=7), chunk)
    assert result['counts'] == {'audit_log': 7, 'photo': 4, 'app.Odd "Name"': 0}
    assert result['tables'] == ['audit_log', 'photo', 'app.Odd "Name"']
    assert result['complete'] and result['trailer'] and result['drops']
    assert result['incomplete_table'] is None and not result['partial_line']


def test_scanner_sees_a_dump_without_drops():
    result = scan_bytes(make_dump(clean=False), 4096)
    assert result['drops'] is False
    assert result['complete']


def test_scanner_last_terminator_without_newline():
    data = b'COPY public.t (id) FROM stdin;\n1\n2\n\\.'
    result = scan_bytes(data, 3)
    assert result['counts'] == {'t': 2}
    assert result['incomplete_table'] is None
    assert not result['trailer'] and not result['complete']


@pytest.mark.parametrize('chunk', [1, 4, 4096])
def test_scanner_samples_photos(chunk):
    result = scan_bytes(make_dump(photos=5), chunk, sample_table='photo', sample_limit=3)
    assert [s[0] for s in result['samples']] == [1, 2, 3]
    assert result['counts']['photo'] == 5
    assert result['sample_table_seen']
    assert _photos.check_photos(result['samples'], KEY, 'aes-256-gcm')['failed'] == 0


def test_scanner_reports_missing_photo_columns():
    result = scan_bytes(make_dump(), 4096, sample_table='audit_log', sample_limit=3)
    assert result['sample_table_seen']
    assert result['sample_columns_missing'] == ['data']
    assert result['samples'] == []


def test_scanner_sampled_stops_early_reading():
    data = make_dump(photos=6, audit=2000)
    scanner = _scanner.CopyScanner('photo', 2)
    chunks = iter([data[i:i + 256] for i in range(0, len(data), 256)])
    at_end = _scanner.scan_reader(lambda size: next(chunks, b''), scanner, stop_when_sampled=True)
    assert at_end is False
    assert len(scanner.finish()['samples']) == 2
    assert next(chunks, None) is not None


def _line_boundaries(data):
    return [i + 1 for i, byte in enumerate(data) if byte == 0x0a]


def test_truncated_at_any_line_boundary_is_caught():
    data = make_dump(photos=3, audit=4)
    whole = scan_bytes(data, 4096)
    manifest = {'photo': 3, 'audit_log': 4}
    assert _scanner.completeness_problems(whole, manifest) == []
    for cut in _line_boundaries(data)[:-1]:
        part = data[:cut]
        result = scan_bytes(part, 97)
        if b'-- PostgreSQL database dump complete\n' in part:
            continue
        problems = _scanner.completeness_problems(result, manifest)
        assert problems, 'a dump cut after byte %d passed' % cut
        assert problems[0]['kind'] == 'truncated'


def test_truncated_inside_a_block_names_the_table_and_the_count_differs():
    data = make_dump(photos=3, audit=4)
    cut = data.index(b'3\tactor')
    result = scan_bytes(data[:cut], 10)
    assert result['incomplete_table'] == 'audit_log'
    assert result['rows_in_incomplete_table'] == 2
    problems = _scanner.completeness_problems(result, {'audit_log': 4, 'photo': 3})
    kinds = [(p['kind'], p.get('table'), p.get('actual')) for p in problems]
    assert ('truncated', 'audit_log', None) in kinds
    assert ('row_count', 'audit_log', None) in kinds
    assert ('row_count', 'photo', None) in kinds


def test_count_mismatch_with_the_manifest_is_caught():
    result = scan_bytes(make_dump(photos=3), 4096)
    problems = _scanner.completeness_problems(result, {'photo': 4, 'public.audit_log': 5})
    assert problems == [{'kind': 'row_count', 'table': 'photo', 'expected': 4, 'actual': 3, 'where': 'dump',
                         'msg': 'the dump holds 3 rows of photo, the manifest says 4'}]


def test_a_dump_cut_mid_line_is_partial():
    data = make_dump()
    cut = data.index(b'actor\\twith') + 3
    result = scan_bytes(data[:cut], 4096)
    assert result['incomplete_table'] == 'audit_log'
    assert not result['complete']


# ---------------------------------------------------------------------------------------------
# Reading artifacts: plain files (none, gzip, zstd), directory archives
# ---------------------------------------------------------------------------------------------

def _write_plain(tmp_path, data, compression, name='backup.sql'):
    path = tmp_path / name
    if compression == 'gzip':
        path = tmp_path / (name + '.gz')
        path.write_bytes(gzip.compress(data))
    elif compression == 'zstd':
        path = tmp_path / (name + '.zst')
        subprocess.run(['zstd', '-q', '-o', str(path), '-'], input=data, check=True)
    else:
        path.write_bytes(data)
    return str(path)


needs_zstd = pytest.mark.skipif(shutil.which('zstd') is None, reason='zstd is not installed')


@pytest.mark.parametrize('compression', ['none', 'gzip', pytest.param('zstd', marks=needs_zstd)])
def test_scan_plain_streams_each_compression(tmp_path, compression):
    path = _write_plain(tmp_path, make_dump(photos=4), compression)
    assert _source.detect_compression(path) == compression
    result = _source.scan_plain(path, compression, 'photo', 2, full=True, chunk_size=100)
    assert result['read_to_end'] and result['complete']
    assert result['counts']['photo'] == 4
    assert len(result['samples']) == 2


@pytest.mark.parametrize('compression', ['gzip', pytest.param('zstd', marks=needs_zstd)])
def test_scan_plain_stops_the_decompressor_early(tmp_path, compression):
    path = _write_plain(tmp_path, make_dump(photos=4, audit=50000), compression)
    result = _source.scan_plain(path, compression, 'photo', 2, full=False, chunk_size=4096)
    assert len(result['samples']) == 2
    assert result['read_to_end'] is False


def test_scan_plain_fails_on_a_damaged_gzip(tmp_path):
    path = tmp_path / 'backup.sql.gz'
    blob = gzip.compress(make_dump(audit=20000))
    path.write_bytes(blob[:len(blob) // 2])
    with pytest.raises(RestoreError) as err:
        _source.scan_plain(str(path), 'gzip', full=True)
    assert err.value.code == 'artifact_unreadable'
    assert 'gzip' in str(err.value)


@pytest.mark.parametrize('compression, expected', [
    ('none', None),
    (None, None),
    ('gzip', ['gzip', '-dc', '--', '/b/x.sql.gz']),
    ('zstd', ['zstd', '-dcq', '--', '/b/x.sql.gz']),
])
def test_decompress_argv(compression, expected):
    assert _source.decompress_argv(compression, '/b/x.sql.gz') == expected


TOC_LIST = ('; Archive created at 2026-01-31 02:00:05 UTC\n'
            '221; 1259 16462 TABLE public photo challengeuser\n'
            '3433; 0 16462 TABLE DATA public photo challengeuser\n'
            '3437; 0 16400 TABLE DATA public audit_log challengeuser\n'
            '3440; 0 16500 TABLE DATA app photo challengeuser\n')


def test_toc_data_ids():
    assert _source.toc_data_ids(TOC_LIST) == {'photo': 3433, 'audit_log': 3437, 'app.photo': 3440}


def _toc_dat(*copy_lines):
    """Bytes shaped like toc.dat: length-prefixed strings, the COPY statement stored verbatim."""
    out = b'PGDMP\x01\x0e\x00'
    for line in copy_lines:
        out += b'\x00' + len(line).to_bytes(4, 'little') + line + b'\x00\x06\x00\x00\x00public\x00\x08\x00\x00\x003433.dat'
    return out


def test_toc_copy_headers():
    toc = _toc_dat(b'COPY public.photo (id, vehicle_id, data, note) FROM stdin;\n', b'COPY public.audit_log (id, actor) FROM stdin;\n')
    headers = _source.toc_copy_headers(toc)
    assert headers['photo'] == b'COPY public.photo (id, vehicle_id, data, note) FROM stdin;'
    assert set(headers) == {'photo', 'audit_log'}


def _directory_archive(tmp_path, photos=3):
    directory = tmp_path / 'backup.dir'
    directory.mkdir()
    (directory / 'toc.dat').write_bytes(_toc_dat(b'COPY public.photo (id, vehicle_id, data, note) FROM stdin;\n'))
    data = b'\n'.join(_photo_rows(KEY, photos)) + b'\n\\.\n\n\n'
    (directory / '3433.dat.gz').write_bytes(gzip.compress(data))
    return str(directory)


def test_scan_directory_table_reads_the_data_file_through_the_toc(tmp_path):
    directory = _directory_archive(tmp_path, photos=4)
    calls = []

    def toc_runner(path):
        calls.append(path)
        return 0, TOC_LIST, ''

    result = _source.scan_directory_table(directory, 'photo', 3, toc_runner)
    assert calls == [directory]
    assert [s[0] for s in result['samples']] == [1, 2, 3]
    assert _photos.check_photos(result['samples'], KEY, 'aes-256-gcm')['failed'] == 0


def test_scan_directory_table_without_the_table(tmp_path):
    directory = _directory_archive(tmp_path)
    result = _source.scan_directory_table(directory, 'nosuch', 3, lambda path: (0, TOC_LIST, ''))
    assert result['samples'] == [] and not result['sample_table_seen']


def test_scan_directory_table_missing_data_file(tmp_path):
    directory = _directory_archive(tmp_path)
    os.remove(os.path.join(directory, '3433.dat.gz'))
    with pytest.raises(RestoreError) as err:
        _source.scan_directory_table(directory, 'photo', 3, lambda path: (0, TOC_LIST, ''))
    assert err.value.code == 'artifact_unreadable'
    assert '3433.dat' in str(err.value)


# ---------------------------------------------------------------------------------------------
# Key preflight decisions
# ---------------------------------------------------------------------------------------------

def _checks(reasons, checked=None):
    failures = [{'id': i, 'reason': r, 'msg': 'because %s' % r} for i, r in enumerate(reasons, 1)]
    return {'checked': len(reasons) if checked is None else checked, 'failed': len(reasons), 'failures': failures}


@pytest.mark.parametrize('checks, matched, seen, code, setting', [
    ({'checked': 0, 'failed': 0, 'failures': []}, False, False, 'no_photos', 'photo_table'),
    ({'checked': 0, 'failed': 0, 'failures': []}, False, True, 'no_photos', 'photo_table'),
    (_checks([], checked=5), False, True, None, None),
    (_checks(['authentication_failed'] * 5), False, True, 'wrong_key', 'encryption_key'),
    (_checks(['authentication_failed'] * 5), True, True, 'photo_corrupt', 'cipher'),
    (_checks(['looks_like_fernet'] * 3), False, True, 'wrong_cipher', 'set cipher to fernet'),
    (_checks(['looks_like_aes_256_gcm'] * 3), False, True, 'wrong_cipher', 'set cipher to aes-256-gcm'),
    (_checks(['too_short'] * 3), False, True, 'wrong_cipher', 'cipher'),
    (_checks(['not_encrypted'] * 3), False, True, 'not_encrypted', 'photo_table'),
    (_checks(['authentication_failed'], checked=5), False, True, 'photo_corrupt', 'damaged'),
])
def test_photo_verdict(checks, matched, seen, code, setting):
    verdict = _preflight.photo_verdict(checks, 'aes-256-gcm', 'photo', fingerprint_matched=matched, table_seen=seen)
    if code is None:
        assert verdict is None
    else:
        assert verdict[0] == code
        assert setting in verdict[1]


@pytest.mark.parametrize('manifest, cipher, code', [
    (None, 'aes-256-gcm', None),
    ({}, 'aes-256-gcm', None),
    ({'key_fingerprint': key_fingerprint(KEY), 'cipher': 'aes-256-gcm'}, 'aes-256-gcm', None),
    ({'key_fingerprint': key_fingerprint(OTHER_KEY), 'cipher': 'aes-256-gcm'}, 'aes-256-gcm', 'wrong_key'),
    ({'key_fingerprint': key_fingerprint(KEY), 'cipher': 'fernet'}, 'aes-256-gcm', 'wrong_cipher'),
    ({'key_fingerprint': None, 'cipher': None}, 'fernet', None),
    ({'key_fingerprint': 'v2:' + 'ab' * 16}, 'aes-256-gcm', None),
])
def test_fingerprint_problem(manifest, cipher, code):
    problem = _preflight.fingerprint_problem(KEY, cipher, manifest)
    if code is None:
        assert problem is None
    else:
        assert problem[0] == code
        assert ('encryption_key' if code == 'wrong_key' else 'set cipher to') in problem[1]
        assert problem[2]['kind'] in ('key_fingerprint', 'cipher')


def _plain_artifact(tmp_path, data, fingerprint=None, cipher=None, counts=None):
    path = tmp_path / 'backup_2026-01-31_02-00-05.sql'
    path.write_bytes(data)
    manifest = {'dump_format': 'plain', 'compression': 'none', 'key_fingerprint': fingerprint, 'cipher': cipher,
                'row_counts': counts or {}}
    return {'path': str(path), 'dump_format': 'plain', 'manifest': manifest, 'kind': 'artifact'}


@pytest.mark.parametrize('key, cipher, fingerprint, data_cipher, code', [
    (KEY, 'aes-256-gcm', key_fingerprint(KEY), 'aes-256-gcm', None),
    (KEY, 'aes-256-gcm', None, 'aes-256-gcm', None),
    (OTHER_KEY, 'aes-256-gcm', key_fingerprint(KEY), 'aes-256-gcm', 'wrong_key'),
    (OTHER_KEY, 'aes-256-gcm', None, 'aes-256-gcm', 'wrong_key'),
    (KEY, 'fernet', None, 'aes-256-gcm', 'wrong_cipher'),
    (KEY, 'aes-256-gcm', None, 'fernet', 'wrong_cipher'),
    (KEY, 'fernet', None, 'fernet', None),
])
def test_key_preflight_on_a_plain_artifact(tmp_path, key, cipher, fingerprint, data_cipher, code):
    artifact = _plain_artifact(tmp_path, make_dump(photos=4, cipher=data_cipher), fingerprint=fingerprint)
    if code is None:
        result = _preflight.key_preflight(key, cipher, artifact=artifact, sample=3)
        assert result['photos_checked'] == 3 and result['photos_failed'] == 0
        assert result['fingerprint'] == key_fingerprint(key)
        assert result['fingerprint_checked'] is bool(fingerprint)
        assert all(isinstance(s[1], bytes) for s in result['scan']['samples'])
        assert 'samples' not in repr(_preflight.public_preflight(result))
    else:
        with pytest.raises(RestoreError) as err:
            _preflight.key_preflight(key, cipher, artifact=artifact, sample=3)
        assert err.value.code == code
        assert str(err.value).endswith('nothing was written')
        assert err.value.mismatches
        assert err.value.partial['preflight']['fingerprint'] == key_fingerprint(key)


def test_key_preflight_without_photos(tmp_path):
    artifact = _plain_artifact(tmp_path, make_dump(photos=0))
    with pytest.raises(RestoreError) as err:
        _preflight.key_preflight(KEY, 'aes-256-gcm', artifact=artifact, sample=3)
    assert err.value.code == 'no_photos'
    assert 'photo_table' in str(err.value)
    result = _preflight.key_preflight(KEY, 'aes-256-gcm', artifact=artifact, sample=0)
    assert result['photos_checked'] == 0


def test_key_preflight_on_another_photo_table(tmp_path):
    artifact = _plain_artifact(tmp_path, make_dump())
    with pytest.raises(RestoreError) as err:
        _preflight.key_preflight(KEY, 'aes-256-gcm', artifact=artifact, photo_table='nosuch', sample=3)
    assert err.value.code == 'no_photos' and 'nosuch' in str(err.value)


def test_key_preflight_one_damaged_photo(tmp_path):
    rows = _photo_rows(KEY, 4)
    rows[1] = rows[1][:-30] + (b'0' if rows[1][-30:-29] != b'0' else b'1') + rows[1][-29:]
    artifact = _plain_artifact(tmp_path, make_dump(photo_rows=rows))
    with pytest.raises(RestoreError) as err:
        _preflight.key_preflight(KEY, 'aes-256-gcm', artifact=artifact, sample=4)
    assert err.value.code == 'photo_corrupt'
    assert err.value.mismatches[0]['id'] == 2


def test_key_preflight_full_scan_counts_a_runbook_dump(tmp_path):
    artifact = _plain_artifact(tmp_path, make_dump(photos=4, audit=9))
    artifact['manifest'] = None
    result = _preflight.key_preflight(KEY, 'aes-256-gcm', artifact=artifact, sample=2, full_scan=True)
    assert result['scan']['read_to_end']
    assert result['scan']['counts'] == {'audit_log': 9, 'photo': 4, 'app.Odd "Name"': 0}
    assert _preflight.public_preflight(result)['dump']['counts']['audit_log'] == 9


# ---------------------------------------------------------------------------------------------
# Counts
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('expected, actual, bad', [
    ({'photo': 3, 'audit_log': 5}, {'photo': 3, 'audit_log': 5}, []),
    ({'photo': 3, 'audit_log': 5}, {'photo': 2, 'audit_log': 5}, ['photo']),
    ({'photo': 3}, {}, ['photo']),
    ({'photo': 0}, {'photo': 0}, []),
    ({}, {'photo': 1}, []),
])
def test_compare_counts(expected, actual, bad):
    tables, mismatches = _verify.compare_counts(expected, actual)
    assert [t['table'] for t in tables if not t['ok']] == bad
    assert [m['table'] for m in mismatches] == bad
    assert all(m['kind'] == 'row_count' and m['where'] == 'database' for m in mismatches)
    assert [t['table'] for t in tables] == sorted(expected)


def test_compare_counts_missing_table_message():
    dummy, mismatches = _verify.compare_counts({'photo': 3}, {})
    assert mismatches[0]['actual'] is None
    assert mismatches[0]['msg'] == 'photo has no table and no rows, 3 expected'


def test_expected_counts_manifest_wins_over_dump():
    expected, sources = _verify.expected_counts({'public.photo': 3, 'audit_log': 5}, {'photo': 3, 'audit_log': 5, 'vehicle': 2})
    assert expected == {'public.photo': 3, 'audit_log': 5, 'vehicle': 2}
    assert sources == {'public.photo': 'manifest', 'audit_log': 'manifest', 'vehicle': 'dump'}
    assert _verify.expected_counts(None, None) == ({}, {})


@pytest.mark.parametrize('total, sample, every', [(1000, 0, 1), (1000, 100, 10), (50, 100, 1), (1000, 300, 3), (0, 10, 1)])
def test_photo_sample_every(total, sample, every):
    assert _verify.photo_sample_every(total, sample) == every


def binary_copy(rows):
    """The bytes PostgreSQL sends for ``COPY (SELECT id::bigint, data ...) TO STDOUT (FORMAT binary)`` of ``rows``."""
    out = [_photos.COPY_SIGNATURE, struct.pack('!II', 0, 0)]
    for photo_id, data in rows:
        out.append(struct.pack('!hiq', 2, 8, photo_id))
        out.append(struct.pack('!i', -1) if data is None else struct.pack('!i', len(data)) + data)
    out.append(struct.pack('!h', -1))
    return b''.join(out)


class _CopyReader(object):
    """``read_photos`` over ``photos``: does what the COPY query asks (sample, limit), then parses the binary stream."""

    def __init__(self, photos):
        self.photos = photos
        self.calls = []

    def __call__(self, table, limit, sample_every):
        self.calls.append({'table': table, 'limit': limit, 'sample_every': sample_every})
        rows = [(i, d) for i, d in self.photos if i % (sample_every or 1) == 0][:limit]
        for row in _photos.parse_binary_copy(io.BytesIO(binary_copy(rows))):
            yield struct.unpack('!q', row[0])[0], row[1] or b'', ()


class _FakeSession(object):
    """Answers the queries verify_database sends: table list, counts, ANALYZE."""

    def __init__(self, counts, photos):
        self.counts = counts
        self.photos = photos
        self.queries = []

    def query(self, sql):
        self.queries.append(sql)
        if sql == _pg.USER_TABLES_QUERY:
            return [[t] for t in sorted(self.counts)]
        if sql.startswith('SELECT \'') and 'count(*)' in sql:
            return [[t, str(self.counts[t])] for t in self.counts if "'%s'" % t in sql]
        if sql == 'ANALYZE':
            return []
        raise AssertionError(sql)


def test_verify_database_counts_photos_and_analyze():
    photos = [(i, encrypt(KEY, PNG)) for i in range(1, 6)]
    photos[2] = (3, encrypt(OTHER_KEY, PNG))
    session = _FakeSession({'photo': 5, 'audit_log': 4}, photos)
    reader = _CopyReader(photos)
    result, mismatches = _verify.verify_database(session, reader, {'photo': 5, 'audit_log': 5, 'gone': 1}, {}, KEY, 'aes-256-gcm',
                                                 analyze=True)
    assert reader.calls == [{'table': 'photo', 'limit': None, 'sample_every': None}]
    assert result['photos']['checked'] == 5 and result['photos']['failed'] == 1
    assert result['photos']['sample'] == 'all' and result['photos']['total'] == 5
    assert result['analyzed'] and session.queries[-1] == 'ANALYZE'
    assert [(m['kind'], m.get('table'), m.get('id')) for m in mismatches] == [
        ('row_count', 'audit_log', None), ('row_count', 'gone', None), ('photo', None, 3)]
    sentence = _verify.verify_failure_sentence(result, mismatches, 'aes-256-gcm')
    assert 'audit_log has 4 rows, 5 expected' in sentence and '1 of 5 photos' in sentence


def test_verify_database_photo_sample_is_spread():
    photos = [(i, encrypt(KEY, PNG)) for i in range(1, 101)]
    session = _FakeSession({'photo': 100}, photos)
    reader = _CopyReader(photos)
    result, mismatches = _verify.verify_database(session, reader, {'photo': 100}, {}, KEY, 'aes-256-gcm', photo_sample=10)
    assert mismatches == []
    assert result['photos']['checked'] == 10
    assert reader.calls == [{'table': 'photo', 'limit': 10, 'sample_every': 10}]
    assert 'ANALYZE' not in session.queries


def test_photo_copy_query():
    assert _photos.photo_copy_query('photo', 'id', 'data') == (
        'COPY (SELECT "id"::bigint, "data" FROM "photo" ORDER BY "id") TO STDOUT (FORMAT binary)')
    assert _photos.photo_copy_query('Photo', 'id', 'data', limit=10, sample_every=7) == (
        'COPY (SELECT "id"::bigint, "data" FROM "Photo" WHERE "id" % 7 = 0 ORDER BY "id" LIMIT 10) TO STDOUT (FORMAT binary)')


def test_parse_binary_copy_rows_nulls_and_header_extension():
    stream = binary_copy([(1, b'abc'), (2 ** 40, None), (3, b'')])
    # A header extension area (allowed by the format) is skipped.
    stream = stream[:15] + struct.pack('!I', 4) + b'xxxx' + stream[19:]
    rows = list(_photos.parse_binary_copy(io.BytesIO(stream)))
    assert [(struct.unpack('!q', r[0])[0], r[1]) for r in rows] == [(1, b'abc'), (2 ** 40, None), (3, b'')]


@pytest.mark.parametrize('cut', [0, 5, 19, 25, 40])
def test_parse_binary_copy_refuses_a_cut_or_foreign_stream(cut):
    stream = binary_copy([(1, b'abcdef'), (2, b'ghijkl')])[:cut] if cut else b'id\tdata\n1\t\\x00\n'
    with pytest.raises(_photos.CopyStreamError):
        list(_photos.parse_binary_copy(io.BytesIO(stream)))


# ---------------------------------------------------------------------------------------------
# Restore commands
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('fmt, clean, drops, reset', [
    ('plain', True, False, True),
    ('plain', True, True, False),
    ('plain', False, False, False),
    ('custom', True, False, False),
    ('directory', True, False, False),
])
def test_needs_schema_reset(fmt, clean, drops, reset):
    assert _commands.needs_schema_reset(fmt, clean, drops) is reset


def test_schema_reset_sql_per_version():
    assert 'AUTHORIZATION pg_database_owner' in _commands.schema_reset_sql(150018)
    assert 'GRANT USAGE ON SCHEMA public TO PUBLIC' in _commands.schema_reset_sql(150018)
    old = _commands.schema_reset_sql(140010)
    assert 'pg_database_owner' not in old and 'GRANT ALL ON SCHEMA public TO PUBLIC' in old
    assert _commands.schema_reset_sql(150018).startswith('DROP SCHEMA IF EXISTS public CASCADE;')


@pytest.mark.parametrize('transport, fmt, clean, jobs, source, tail', [
    ('compose', 'custom', True, 1, 'stdin', ['--clean', '--if-exists', '--single-transaction']),
    ('compose', 'custom', True, 4, 'copy', ['--clean', '--if-exists', '--jobs=4']),
    ('compose', 'directory', True, 2, 'copy', ['--clean', '--if-exists', '--jobs=2']),
    ('compose', 'directory', False, 1, 'copy', ['--single-transaction']),
    ('direct', 'custom', True, 3, 'path', ['--clean', '--if-exists', '--jobs=3']),
    ('direct', 'directory', False, 2, 'path', ['--jobs=2']),
    ('direct', 'custom', True, 0, 'path', ['--clean', '--if-exists', '--single-transaction']),
])
def test_archive_restore_plan(transport, fmt, clean, jobs, source, tail):
    plan = _commands.archive_restore_plan(transport, fmt, clean, jobs)
    assert plan['source'] == source
    assert plan['args'] == ['--exit-on-error', '--no-owner'] + tail
    assert plan['single_transaction'] is ('--single-transaction' in tail)


def _compose_runner(calls):
    def runner(argv, **kwargs):
        calls.append(argv)
        if argv[-3:] == ['ps', '-q', 'db']:
            return 0, 'c0ffee\n', ''
        if argv[1] == 'inspect':
            return 0, 'true\n', ''
        if argv[1] == 'exec' and 'mktemp' in argv:
            return 0, '/tmp/fleet-dr-restore.abc\n', ''
        if argv[1] == 'exec' and argv[-2:] == ['id', '-u']:
            return 0, '999\n', ''
        return 0, '', ''
    return runner


def _compose_conn(password='s3cret'):
    return _transport.Connection(transport='compose', project_src='/', compose_command='docker-compose', user='u', database='d',
                                 password=password)


def test_restore_argv_over_compose_without_secrets():
    runner = _compose_runner([])
    conn = _compose_conn()
    psql = _commands.plain_restore_argv(conn, runner)
    assert psql == ['docker', 'exec', '-i', '-e', 'PGPASSWORD', '-e', 'PGCONNECT_TIMEOUT', 'c0ffee', 'psql', '-U', 'u', '-d', 'd',
                    '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', '-']
    assert '--single-transaction' not in psql
    stdin_plan = _commands.archive_restore_plan('compose', 'custom', True, 1)
    argv = _commands.archive_restore_argv(conn, stdin_plan, None, runner)
    assert argv[:3] == ['docker', 'exec', '-i'] and argv[-1] == '--single-transaction'
    copy_plan = _commands.archive_restore_plan('compose', 'directory', True, 2)
    argv = _commands.archive_restore_argv(conn, copy_plan, '/tmp/x/archive', runner)
    assert argv[2] != '-i' and argv[-2:] == ['--jobs=2', '/tmp/x/archive']
    assert 's3cret' not in repr(psql) + repr(argv)


def test_restore_argv_direct():
    conn = _transport.Connection(transport='direct', host='127.0.0.1', port=5433, user='u', database='d', password='pw',
                                 bin_dir='/opt/pg/bin')
    assert _commands.plain_restore_argv(conn) == ['/opt/pg/bin/psql', '-h', '127.0.0.1', '-p', '5433', '-U', 'u', '-d', 'd',
                                                  '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', '-']
    plan = _commands.archive_restore_plan('direct', 'custom', True, 2)
    assert _commands.archive_restore_argv(conn, plan, '/b/a.dump') == [
        '/opt/pg/bin/pg_restore', '-h', '127.0.0.1', '-p', '5433', '-U', 'u', '-d', 'd',
        '--exit-on-error', '--no-owner', '--clean', '--if-exists', '--jobs=2', '/b/a.dump']


@pytest.mark.parametrize('table, selectors', [('photo', ['-t', 'photo']), ('app.photo', ['-n', 'app', '-t', 'photo'])])
def test_table_data_argv(table, selectors):
    calls = []
    argv, stdin = _source.table_data_argv(_compose_conn(), '/b/a.dump', table, _compose_runner(calls))
    assert argv == ['docker', 'exec', '-i', 'c0ffee', 'pg_restore', '-a'] + selectors + ['-f', '-']
    assert stdin == '/b/a.dump'
    direct = _transport.Connection(transport='direct', database='d')
    argv, stdin = _source.table_data_argv(direct, '/b/a.dump', table)
    assert argv == ['pg_restore', '-a'] + selectors + ['-f', '-', '/b/a.dump'] and stdin is None
    assert '-d' not in argv


def test_copy_into_container_hands_the_files_to_the_exec_user():
    calls = []
    conn = _compose_conn()
    where = _commands._copy_into_container(conn, '/b/x.dir', _compose_runner(calls))
    assert where == '/tmp/fleet-dr-restore.abc'
    stale = ['docker', 'exec', '-u', '0', 'c0ffee', 'find', '/tmp', '-maxdepth', '1', '-name', 'fleet-dr-restore.*',
             '-exec', 'rm', '-rf', '--', '{}', '+']
    assert calls.index(stale) < next(i for i, argv in enumerate(calls) if 'mktemp' in argv)
    assert ['docker', 'cp', '/b/x.dir', 'c0ffee:/tmp/fleet-dr-restore.abc/archive'] in calls
    assert ['docker', 'exec', '-u', '0', 'c0ffee', 'chown', '-R', '999', '/tmp/fleet-dr-restore.abc'] in calls


# ---------------------------------------------------------------------------------------------
# restore_plain and restore_archive against stand-in client tools (the command boundary)
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A bin_dir with stand-ins for psql and pg_restore that record stdin and argv, and fail on demand."""
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    script = ('#!/bin/sh\n'
              'echo "$@" > "$FAKE_OUT.argv"\n'
              'if [ -n "$FAKE_FAIL_AFTER" ]; then head -c "$FAKE_FAIL_AFTER" > "$FAKE_OUT"; '
              'echo "psql:<stdin>:7: ERROR:  relation \\"audit_log\\" already exists" >&2; exit 3; fi\n'
              'cat > "$FAKE_OUT"\n'
              'exit 0\n')
    for tool in ('psql', 'pg_restore'):
        path = bindir / tool
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv('FAKE_OUT', str(tmp_path / 'received'))
    monkeypatch.delenv('FAKE_FAIL_AFTER', raising=False)
    return tmp_path


def _direct(fake_bin):
    return _transport.Connection(transport='direct', host='127.0.0.1', database='d', user='u', password='pw',
                                 bin_dir=str(fake_bin / 'bin'))


@pytest.mark.parametrize('compression', ['none', 'gzip', pytest.param('zstd', marks=needs_zstd)])
def test_restore_plain_commits_a_complete_dump(fake_bin, compression):
    data = make_dump(photos=3, audit=4)
    path = _write_plain(fake_bin, data, compression)
    prologue = _commands.schema_reset_sql(150000).encode()
    scan = _commands.restore_plain(_direct(fake_bin), path, compression, prologue=prologue,
                                   manifest_counts={'photo': 3, 'audit_log': 4}, chunk_size=64)
    received = (fake_bin / 'received').read_bytes()
    assert received == b'BEGIN;\n' + prologue + data + b'COMMIT;\n'
    assert scan['counts']['photo'] == 3 and scan['complete']
    assert '-f -' in (fake_bin / 'received.argv').read_text()


@pytest.mark.parametrize('cut_after, counts', [
    (b'2\tactor', None),                                  # inside a COPY block, at a line boundary
    (b'CREATE INDEX', None),                              # between blocks, before the trailer
    (None, {'photo': 4}),                                 # whole, but not what the manifest says
])
def test_restore_plain_never_commits_an_incomplete_dump(fake_bin, cut_after, counts):
    data = make_dump(photos=3, audit=4)
    if cut_after:
        data = data[:data.index(cut_after)]
    path = _write_plain(fake_bin, data, 'none')
    with pytest.raises(RestoreError) as err:
        _commands.restore_plain(_direct(fake_bin), path, 'none', manifest_counts=counts)
    received = (fake_bin / 'received').read_bytes()
    assert received.startswith(b'BEGIN;\n')
    assert b'COMMIT' not in received
    assert err.value.code == ('count_mismatch' if counts else 'dump_incomplete')
    assert 'nothing was committed' in str(err.value)
    assert err.value.changed is False


def test_restore_plain_never_commits_when_the_decompressor_fails(fake_bin):
    blob = gzip.compress(make_dump(audit=20000))
    path = fake_bin / 'backup.sql.gz'
    path.write_bytes(blob[:len(blob) // 2])
    with pytest.raises(RestoreError) as err:
        _commands.restore_plain(_direct(fake_bin), str(path), 'gzip')
    assert b'COMMIT' not in (fake_bin / 'received').read_bytes()
    assert err.value.code == 'dump_incomplete'


def test_restore_plain_reports_the_sql_error(fake_bin, monkeypatch):
    monkeypatch.setenv('FAKE_FAIL_AFTER', '10')
    path = _write_plain(fake_bin, make_dump(audit=30000), 'none')
    with pytest.raises(RestoreError) as err:
        _commands.restore_plain(_direct(fake_bin), path, 'none')
    assert err.value.code == 'restore_failed'
    assert 'already exists' in str(err.value) and 'rolled back' in str(err.value)
    assert err.value.rc == 3
    assert 'pw' not in repr(err.value.cmd)


def test_restore_archive_direct(fake_bin, monkeypatch):
    path = fake_bin / 'backup.dump'
    path.write_bytes(b'PGDMP')
    plan = _commands.restore_archive(_direct(fake_bin), str(path), 'custom', True, 2)
    assert plan['argv'][-2:] == ['--jobs=2', str(path)]
    assert '--clean --if-exists --jobs=2' in (fake_bin / 'received.argv').read_text()
    monkeypatch.setenv('FAKE_FAIL_AFTER', '0')
    with pytest.raises(RestoreError) as err:
        _commands.restore_archive(_direct(fake_bin), str(path), 'custom', True, 2)
    assert err.value.code == 'restore_failed' and err.value.changed is True
    assert 'partial restore' in str(err.value)
    with pytest.raises(RestoreError) as err:
        _commands.restore_archive(_direct(fake_bin), str(path), 'custom', True, 1)
    assert err.value.changed is False and 'rolled back' in str(err.value)


# ---------------------------------------------------------------------------------------------
# Artifact acceptance
# ---------------------------------------------------------------------------------------------

def _info(**kwargs):
    info = {'path': '/b/x.sql', 'manifest_path': '/b/x.sql.manifest.json', 'kind': 'artifact', 'manifest': {}, 'problems': [],
            'dump_format': 'plain'}
    info.update(kwargs)
    return info


@pytest.mark.parametrize('info, refused', [
    (_info(), None),
    (_info(kind='runbook', manifest=None), None),
    (_info(kind='unknown', manifest=None, path='/b/x.sql.zst'), 'no manifest'),
    (_info(problems=['sha256 mismatch: manifest says a, file has b']), 'sha256 mismatch'),
    (_info(kind='runbook', manifest=None, problems=['plain dump is incomplete: ...']), 'incomplete'),
    (_info(dump_format=None), 'unknown'),
])
def test_artifact_refusal(info, refused):
    sentence = _preflight.artifact_refusal(info)
    if refused is None:
        assert sentence is None
    else:
        assert refused in sentence


def test_verify_artifact_accepts_a_runbook_dump_and_its_truncation_is_refused(tmp_path):
    path = tmp_path / 'backup_2026-01-30_23-00-00.sql'
    data = make_dump()
    path.write_bytes(data)
    info = _verification.verify_artifact(str(path), require_manifest=False)
    assert info['kind'] == 'runbook' and _preflight.artifact_refusal(info) is None
    path.write_bytes(data[:data.index(b'CREATE INDEX')])
    info = _verification.verify_artifact(str(path), require_manifest=False)
    assert 'trailer' in _preflight.artifact_refusal(info)


# --------------------------------------------------------------------------------------------
# Table of contents while production's database is down (review finding 7)
# --------------------------------------------------------------------------------------------

def _no_container_runner(argv, **kwargs):
    """compose ps -q db gives nothing: the service has no container."""
    assert 'ps' in argv, argv
    return 0, '', ''


def test_toc_falls_back_to_a_container_of_the_service_image_when_the_db_is_down(monkeypatch, tmp_path):
    seen = []

    def fake_backup_toc_runner(conn, prefix=None):
        seen.append(prefix)
        return lambda path: (0, 'TOC of %s' % path, '')
    monkeypatch.setattr(_source, '_backup_toc_runner', fake_backup_toc_runner)
    conn = _transport.Connection(transport='compose', database='telemetry_db', project_src=str(tmp_path), compose_command='docker-compose')
    toc = _source.toc_runner_for(conn, _no_container_runner, image_of=lambda c, r: 'postgres:15')
    assert toc('/b/backup.dump') == (0, 'TOC of /b/backup.dump', '')
    assert seen == [['docker', 'run', '--rm', '-i', '--network', 'none', '--entrypoint', '', 'postgres:15']]


def test_toc_without_container_or_image_names_the_stopped_service(tmp_path):
    conn = _transport.Connection(transport='compose', database='telemetry_db', project_src=str(tmp_path), compose_command='docker-compose')
    toc = _source.toc_runner_for(conn, _no_container_runner, image_of=lambda c, r: None)
    with pytest.raises(_transport.TransportError) as err:
        toc('/b/backup.dump')
    assert err.value.code == 'container_down'


@pytest.mark.parametrize('path, archive', [('/b/a.sql', False), ('/b/a.sql.gz', False), ('/b/a.sql.zst', False),
                                           ('/b/a.dump', True), ('/b/a.custom', True)])
def test_is_archive_path(path, archive):
    assert _run.is_archive_path(path) is archive


def test_is_archive_path_of_a_directory(tmp_path):
    assert _run.is_archive_path(str(tmp_path)) is True


def test_archive_client_reads_the_archive_with_the_host_pg_restore():
    calls = []

    def runner(argv, **kwargs):
        calls.append(argv)
        if argv[-3:] == ['ps', '-q', 'db']:
            return 0, 'c0ffee\n', ''
        if argv[1] == 'inspect':
            return 0, 'true\n' if argv[3] == '{{.State.Running}}' else '172.18.0.2 \n', ''
        if argv[-1] == '--version':
            return 0, '%s (PostgreSQL) 15.18\n' % argv[0], ''
        if argv[0] == 'psql':
            return 0, '150018\n', ''
        raise AssertionError(argv)
    conn, client = _run.archive_client(_compose_conn(), 'auto', runner)
    assert conn.transport == 'direct' and conn.host == '172.18.0.2' and client['used'] == 'host'
    assert ['pg_restore', '--version'] in calls
    # The preflight's reads then run on the host, on the file itself (no docker exec, no stdin).
    assert _source.table_data_argv(conn, '/b/a.dump', 'photo') == (['pg_restore', '-a', '-t', 'photo', '-f', '-', '/b/a.dump'], None)


def test_archive_client_leaves_a_down_container_to_the_preflight():
    def runner(argv, **kwargs):
        if argv[-3:] == ['ps', '-q', 'db']:
            return 0, '', ''
        raise AssertionError(argv)
    original = _compose_conn()
    conn, client = _run.archive_client(original, 'auto', runner)
    assert conn is original and client is None


def test_archive_client_respects_container():
    original = _compose_conn()
    conn, client = _run.archive_client(original, 'container', None)
    assert conn is original and client == {'used': 'container', 'reason': 'restore_client=container'}
