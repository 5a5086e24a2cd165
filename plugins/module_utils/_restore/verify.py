# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Verification of a restored database: exact row counts against the expected ones, photos decrypt, ANALYZE.
Internal to fleet_telemetry.dr; not a public API.
"""

from __future__ import annotations

import time

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._pg import USER_TABLES_QUERY, count_query, parse_counts
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photos import check_photos
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.names import normalize_table

MAX_FAILURES_LISTED = 20


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
