# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Rendering of report data: its summary line and history row, the trend table, and the JSON, Markdown and JUnit XML reports.

Internal to fleet_telemetry.dr: not a public API, it may change without notice.

The renderers are pure functions of the report data (the dict INTERFACES.md specifies: ``status``,
``msg``, ``rto_seconds``, ``rpo_seconds``, ``artifact``, ``tables``, ``photos``, ``steps``...; every key
but ``status`` may be missing). Nothing here adds a time stamp of its own, so the same data gives the
same bytes and a second run with the same name changes nothing. Checking the data and writing the files
and the history is ``_report``.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET

REPORT_FORMAT_VERSION = 1
SPARK_CHARS = u'\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588'
_TITLES = {'restore': 'Restore report', 'drill': 'DR drill report'}
_SUITE_CLASS = 'fleet_telemetry.dr.%s'


# --------------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------------

def _dict(value):
    return value if isinstance(value, dict) else {}


def _list_of_dicts(value):
    return [item for item in value if isinstance(item, dict)] if isinstance(value, (list, tuple)) else []


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def format_seconds(value):
    """``0.4 s``, ``62.1 s (1 min 2 s)``, ``3 h 2 min``... or ``-`` when unknown."""
    seconds = _number(value)
    if seconds is None:
        return '-'
    if seconds < 60:
        return '%.1f s' % seconds
    whole = int(round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return '%d d %d h' % (days, hours)
    if hours:
        return '%d h %d min' % (hours, minutes)
    return '%d min %d s' % (minutes, secs)


def format_size(value):
    """``512 B``, ``17.0 MiB``, ``1.44 GiB``... or ``-`` when unknown."""
    size = _number(value)
    if size is None:
        return '-'
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if abs(size) < 1024 or unit == 'GiB':
            return '%d B' % size if unit == 'B' else '%.1f %s' % (size, unit)
        size /= 1024.0
    return '-'


def format_counts(counts):
    """``audit_log=300, photo=24`` from a ``{table: count}`` mapping (sorted), or ``-``."""
    if not counts:
        return '-'
    return ', '.join('%s=%s' % (table, counts[table]) for table in sorted(counts))


def sparkline(values):
    """One block character per value, scaled between the smallest and the largest; ``.`` for a missing value."""
    numbers = [_number(value) for value in values]
    known = [value for value in numbers if value is not None]
    if not known:
        return ''
    low, high = min(known), max(known)
    chars = []
    for value in numbers:
        if value is None:
            chars.append('.')
        elif high == low:
            chars.append(SPARK_CHARS[len(SPARK_CHARS) // 2])
        else:
            chars.append(SPARK_CHARS[int(round((value - low) / (high - low) * (len(SPARK_CHARS) - 1)))])
    return ''.join(chars)


def _cell(value):
    """A Markdown table cell: pipes escaped, line breaks flattened."""
    text = '-' if value is None or value == '' else str(value)
    return text.replace('\\', '\\\\').replace('|', '\\|').replace('\r', ' ').replace('\n', ' ')


def _table(header, rows):
    lines = ['| %s |' % ' | '.join(header), '|%s|' % '|'.join('---' for dummy in header)]
    lines.extend('| %s |' % ' | '.join(_cell(value) for value in row) for row in rows)
    return lines


def _ok(value):
    return 'ok' if value else 'FAILED'


# --------------------------------------------------------------------------------------------
# Summary line, history row and the trend table
# --------------------------------------------------------------------------------------------

def actual_counts(data):
    """``{table: actual}`` from ``data.tables``."""
    counts = {}
    for row in _list_of_dicts(data.get('tables')):
        if row.get('table') is not None:
            counts[str(row['table'])] = row.get('actual')
    return counts


def summary_row(data, kind, name):
    """The history row of a report: small, secret-free, the columns of the trend."""
    artifact = _dict(data.get('artifact'))
    photos = _dict(data.get('photos'))
    target = _dict(data.get('target'))
    path = artifact.get('path')
    return {
        'name': name,
        'kind': kind,
        'status': data.get('status'),
        'failed_step': data.get('failed_step'),
        'started_at': data.get('started_at'),
        'finished_at': data.get('finished_at'),
        'rto_seconds': _number(data.get('rto_seconds')),
        'rpo_seconds': _number(data.get('rpo_seconds')),
        'database': data.get('database'),
        'target': target.get('project_name') or target.get('host'),
        'artifact': os.path.basename(path.rstrip('/')) if isinstance(path, str) and path else None,
        'size': artifact.get('size'),
        'sha256': artifact.get('sha256'),
        'counts': actual_counts(data),
        'photos_checked': photos.get('checked'),
        'photos_failed': photos.get('failed'),
    }


def summary_line(data, kind, name):
    """One line: ``drill drill_... passed: telemetry_db from backup_....sql.zst (17.0 MiB), RTO 12.3 s, RPO 2 h 1 min, ...``."""
    row = summary_row(data, kind, name)
    parts = ['%s %s %s' % (kind, name, row['status'])]
    if row['status'] == 'failed' and row['failed_step']:
        parts[0] += ' at step %s' % row['failed_step']
    source = []
    if row['database']:
        source.append(str(row['database']))
    if row['artifact']:
        source.append('from %s (%s)' % (row['artifact'], format_size(row['size'])))
    if source:
        parts[0] += ': ' + ' '.join(source)
    if row['rto_seconds'] is not None:
        parts.append('RTO %s' % format_seconds(row['rto_seconds']))
    if row['rpo_seconds'] is not None:
        parts.append('RPO %s' % format_seconds(row['rpo_seconds']))
    if row['counts']:
        parts.append(format_counts(row['counts']))
    if row['photos_checked'] is not None:
        parts.append('%s photo(s) decrypt, %s failed' % (row['photos_checked'], row['photos_failed'] or 0))
    if row['status'] == 'failed' and data.get('msg'):
        parts.append(str(data['msg']))
    return ', '.join(parts)


def render_trend(rows, kind):
    """Markdown lines: the table of date, status, RTO, RPO, size and counts, and sparklines of RTO and size."""
    if not rows:
        return []
    what = 'drills' if kind == 'drill' else 'restores'
    lines = ['## Trend (last %d %s)' % (len(rows), what), '']
    lines.extend(_table(
        ['date', 'status', 'RTO', 'RPO', 'size', 'counts', 'photos'],
        [[row.get('started_at') or row.get('finished_at'), row.get('status'), format_seconds(row.get('rto_seconds')),
          format_seconds(row.get('rpo_seconds')), format_size(row.get('size')), format_counts(row.get('counts')),
          row.get('photos_checked')] for row in rows]))
    rtos = [_number(row.get('rto_seconds')) for row in rows]
    known = [value for value in rtos if value is not None]
    if known:
        lines += ['', 'RTO `%s` (oldest to newest; min %s, max %s)' % (sparkline(rtos), format_seconds(min(known)), format_seconds(max(known)))]
    sizes = [_number(row.get('size')) for row in rows]
    known = [value for value in sizes if value is not None]
    if known:
        lines += ['', 'size `%s` (min %s, max %s)' % (sparkline(sizes), format_size(min(known)), format_size(max(known)))]
    return lines + ['']


# --------------------------------------------------------------------------------------------
# Renderers
# --------------------------------------------------------------------------------------------

def render_json(data, kind, name):
    """The JSON report (bytes): the data as given plus ``format_version``, ``kind``, ``name`` and ``summary``."""
    document = dict(data)
    document.update(format_version=REPORT_FORMAT_VERSION, kind=kind, name=name, summary=summary_line(data, kind, name))
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False, default=str) + '\n').encode('utf-8')


def _facts(data):
    artifact = _dict(data.get('artifact'))
    target = _dict(data.get('target'))
    rows = [
        ('status', str(data.get('status')).upper()),
        ('failed step', data.get('failed_step')),
        ('database', data.get('database')),
        ('started', data.get('started_at')),
        ('finished', data.get('finished_at')),
        ('RTO (start to verified)', format_seconds(data.get('rto_seconds'))),
        ('RPO (age of the backup)', format_seconds(data.get('rpo_seconds'))),
        ('artifact', artifact.get('path')),
        ('size', format_size(artifact.get('size')) if artifact.get('size') is not None else None),
        ('sha256', artifact.get('sha256')),
        ('dump format', artifact.get('dump_format')),
        ('backup started', artifact.get('started_at')),
    ]
    if target:
        rows.append(('target', ', '.join('%s=%s' % (key, target[key]) for key in sorted(target))))
    return [(label, value) for label, value in rows if value not in (None, '', '-')]


def render_markdown(data, kind, name, trend_rows=None):
    """The Markdown report (text)."""
    lines = ['# %s: %s' % (_TITLES[kind], name), '']
    if data.get('msg'):
        lines += [str(data['msg']).replace('\n', ' '), '']
    lines.extend(_table(['', 'value'], _facts(data)))
    lines.append('')
    steps = _list_of_dicts(data.get('steps'))
    if steps:
        lines += ['## Steps', '']
        lines.extend(_table(['step', 'result', 'seconds', 'message'],
                            [[step.get('name'), _ok(step.get('ok')), _seconds_cell(step.get('seconds')), step.get('msg')] for step in steps]))
        lines.append('')
    tables = _list_of_dicts(data.get('tables'))
    if tables:
        lines += ['## Row counts', '']
        lines.extend(_table(['table', 'expected', 'actual', 'result'],
                            [[row.get('table'), row.get('expected'), row.get('actual'), _ok(row.get('ok'))] for row in tables]))
        lines.append('')
    photos = _dict(data.get('photos'))
    if photos:
        lines += ['## Photos', '', '%s of %s photo(s) decrypted with the key, %s failed.' % (
            photos.get('checked', '-'), photos.get('total', '-'), photos.get('failed', 0) or 0), '']
    safety = _dict(data.get('safety_dump'))
    if safety:
        lines += ['## Safety dump', '']
        lines.extend(_table(['path', 'sha256'], [[safety.get('path'), safety.get('sha256')]]))
        lines.append('')
    if data.get('recovery'):
        lines += ['## How to get back', '', str(data['recovery']), '']
    lines.extend(render_trend(trend_rows or [], kind))
    return '\n'.join(lines).rstrip('\n') + '\n'


def _seconds_cell(value):
    seconds = _number(value)
    return '-' if seconds is None else '%.1f' % seconds


def junit_cases(data, kind):
    """The test cases of the JUnit report: ``(name, ok, seconds, msg)``, one per step.

    Without steps the whole report is one case. A failed report whose failing step is not among the
    steps gets a failing case of that name, so a failure is never reported as green.
    """
    cases = []
    for step in _list_of_dicts(data.get('steps')):
        cases.append((str(step.get('name') or 'step %d' % (len(cases) + 1)), bool(step.get('ok')), _number(step.get('seconds')),
                      step.get('msg')))
    failed = data.get('status') == 'failed'
    if not cases:
        cases.append((str(data.get('failed_step') or kind), not failed, _number(data.get('rto_seconds')), data.get('msg')))
    elif failed and all(ok for dummy, ok, dummy2, dummy3 in cases):
        cases.append((str(data.get('failed_step') or kind), False, None, data.get('msg')))
    return cases


def render_junit(data, kind, name):
    """The JUnit XML report (bytes): one ``testsuite`` named after the report, one ``testcase`` per step."""
    cases = junit_cases(data, kind)
    failures = sum(1 for dummy, ok, dummy2, dummy3 in cases if not ok)
    total = sum(seconds for dummy, dummy2, seconds, dummy3 in cases if seconds is not None)
    seconds = _number(data.get('rto_seconds'))
    elapsed = '%.3f' % (seconds if seconds is not None else total)
    root = ET.Element('testsuites', name='fleet_telemetry.dr %s' % kind, tests=str(len(cases)), failures=str(failures), errors='0',
                      time=elapsed)
    suite = ET.SubElement(root, 'testsuite', name=name, tests=str(len(cases)), failures=str(failures), errors='0', skipped='0',
                          time=elapsed)
    if data.get('started_at'):
        suite.set('timestamp', str(data['started_at']))
    properties = ET.SubElement(suite, 'properties')
    row = summary_row(data, kind, name)
    for key in ('status', 'failed_step', 'database', 'artifact', 'size', 'sha256', 'rto_seconds', 'rpo_seconds', 'photos_checked',
                'photos_failed'):
        if row.get(key) is not None:
            ET.SubElement(properties, 'property', name=key, value=str(row[key]))
    for table, count in sorted(row['counts'].items()):
        ET.SubElement(properties, 'property', name='count.%s' % table, value=str(count))
    for case_name, ok, case_seconds, msg in cases:
        case = ET.SubElement(suite, 'testcase', classname=_SUITE_CLASS % kind, name=case_name,
                             time='%.3f' % (case_seconds if case_seconds is not None else 0))
        if not ok:
            failure = ET.SubElement(case, 'failure', message=str(msg or '%s failed' % case_name), type='failed')
            failure.text = str(msg or '%s failed' % case_name)
        elif msg:
            ET.SubElement(case, 'system-out').text = str(msg)
    ET.SubElement(suite, 'system-out').text = summary_line(data, kind, name)
    if hasattr(ET, 'indent'):
        ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding='utf-8') + b'\n'
