# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Writing reports of restores and DR drills: the checks of their data, the report files, and the history with its trend.

Internal to fleet_telemetry.dr: not a public API, it may change without notice.

The files (JSON, Markdown, JUnit XML) are rendered by ``_report_render``, from the data alone, so the same data
gives the same bytes and a second run with the same name changes nothing.

A history is a JSON-lines file, one summary row per report, keyed by the report's name (a row of the
same name is replaced in place, not appended twice). It is rewritten whole under a lock
(``.<history>.lock`` beside it) through a temporary file, fsync and rename, so a reader never sees a
half-written line and two reports never lose each other's row.

Only what the caller gives is written; keys that look like secrets are refused, not written.
"""

from __future__ import annotations

import json
import os

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import ArtifactError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._atomic import AtomicArtifactWriter
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._lock import BackupLock
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._manifest import _looks_secret
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._report_render import (
    render_json,
    render_junit,
    render_markdown,
    summary_line,
    summary_row,
)

KINDS = ('restore', 'drill')
FORMATS = ('json', 'markdown', 'junit')
STATUSES = ('passed', 'failed')
EXTENSIONS = {'json': '.json', 'markdown': '.md', 'junit': '.xml'}
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
HISTORY_LOCK_TIMEOUT = 60.0
_SECRET_NAMES = ('encryption_key', 'key', 'pgpassword')


class ReportError(FleetDrError):
    """A report cannot be written; ``code`` is the stable error code, the message one sentence."""

    code = 'report_failed'


# --------------------------------------------------------------------------------------------
# Checking the data
# --------------------------------------------------------------------------------------------

def secret_keys(data, prefix=''):
    """Return the dotted paths of the keys of ``data`` (nested dicts and lists) that look like secrets."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = '%s%s' % (prefix, key)
            if _looks_secret(key) or str(key).lower() in _SECRET_NAMES:
                found.append(path)
            found.extend(secret_keys(value, path + '.'))
    elif isinstance(data, (list, tuple)):
        for index, value in enumerate(data):
            found.extend(secret_keys(value, '%s%d.' % (prefix, index)))
    return found


def check_data(data, kind, name):
    """Raise ReportError when the report cannot be written as given; return None."""
    if kind not in KINDS:
        raise ReportError('kind must be one of %s, not %r' % (', '.join(KINDS), kind), code='bad_option')
    if not name or '/' in name or name.startswith('.') or '\0' in name:
        raise ReportError('name %r must be a plain file name without a leading dot (the files are <name>.json, .md, .xml)' % (name,),
                          code='bad_option')
    if not isinstance(data, dict):
        raise ReportError('data must be a mapping with at least status', code='bad_data')
    if data.get('status') not in STATUSES:
        raise ReportError('data.status must be passed or failed, not %r' % (data.get('status'),), code='bad_data')
    secrets_found = secret_keys(data)
    if secrets_found:
        raise ReportError('data.%s looks like a secret and reports never carry secrets: leave it out of data' % secrets_found[0],
                          code='secret_in_data')


# --------------------------------------------------------------------------------------------
# History rows and the trend
# --------------------------------------------------------------------------------------------

def merge_history(rows, row):
    """Return ``rows`` with ``row`` replacing the row of the same name, or appended."""
    merged = [item for item in rows if item.get('name') != row['name']]
    if len(merged) == len(rows):
        return list(rows) + [row]
    return [row if item.get('name') == row['name'] else item for item in rows]


def trend(rows, size):
    """The last ``size`` rows (oldest first)."""
    return list(rows[-size:]) if size > 0 else []


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

def ensure_directory(path, check_mode=False):
    """Create ``path`` (mode 0700, parents too) when it is missing; return True when it was (or would be) created."""
    if os.path.isdir(path):
        return False
    if os.path.lexists(path):
        raise ReportError('%s exists and is not a directory: choose a directory for the reports' % path, code='bad_destination')
    if not check_mode:
        try:
            os.makedirs(path, DIRECTORY_MODE)
        except OSError as exc:
            raise ReportError('cannot create %s: %s; fix the permissions or choose another directory' % (path, exc.strerror or exc),
                              code='bad_destination') from None
    return True


def _read_bytes(path):
    try:
        with open(path, 'rb') as fileobj:
            return fileobj.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ReportError('%s is a directory: move it away or choose another report name' % path, code='bad_destination') from None


def write_if_changed(path, content, check_mode=False):
    """Atomically (re)write ``path`` with ``content`` (bytes) unless it already holds exactly that; return True when changed."""
    if _read_bytes(path) == content:
        return False
    if not check_mode:
        try:
            with AtomicArtifactWriter(os.path.dirname(path), os.path.basename(path), mode=FILE_MODE, replace=True) as writer:
                writer.write(content)
                writer.commit()
        except (ArtifactError, OSError, ValueError) as exc:
            raise ReportError('cannot write %s: %s' % (path, exc), code='write_failed') from None
    return True


def parse_history(text):
    """Return ``(rows, skipped)`` of a JSON-lines history: lines that are not JSON objects are counted, not fatal."""
    rows, skipped = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if isinstance(row, dict) and row.get('name'):
            rows.append(row)
        else:
            skipped += 1
    return rows, skipped


def history_bytes(rows):
    return ''.join(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str) + '\n' for row in rows).encode('utf-8')


def read_history(path):
    """``(rows, skipped)`` of the history at ``path``; no file is an empty history."""
    content = _read_bytes(path)
    if content is None:
        return [], 0
    return parse_history(content.decode('utf-8', 'replace'))


def update_history(path, row, check_mode=False, lock_timeout=HISTORY_LOCK_TIMEOUT):
    """Upsert ``row`` into the history at ``path`` under its lock; return ``(rows, changed, skipped)``.

    Lines that are not JSON objects are counted in ``skipped`` and dropped when the file is rewritten.
    """
    directory = os.path.dirname(os.path.abspath(path))
    ensure_directory(directory, check_mode)
    if check_mode:
        rows, skipped = read_history(path) if os.path.isdir(directory) else ([], 0)
        merged = merge_history(rows, row)
        return merged, merged != rows, skipped
    try:
        with BackupLock(directory, os.path.basename(path), purpose='update of the report history %s' % path, timeout=lock_timeout):
            rows, skipped = read_history(path)
            merged = merge_history(rows, row)
            changed = write_if_changed(path, history_bytes(merged)) if merged != rows else False
    except ReportError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        raise ReportError('cannot update the history %s: %s' % (path, exc), code='history_failed') from None
    return merged, changed, skipped


def report_paths(report_dir, name, formats):
    """``{format: path}`` of the report files."""
    return dict((fmt, os.path.join(report_dir, name + EXTENSIONS[fmt])) for fmt in formats)


def write_report(report_dir, name, kind, data, formats=FORMATS, history=None, trend_size=10, check_mode=False):
    """Write the report files (and the history row); return the module's result (without ``msg``).

    In check mode nothing is written; ``changed`` says whether anything would be, and the trend is
    the one the history would show.
    """
    check_data(data, kind, name)
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown or not formats:
        raise ReportError('formats must be a non-empty list of %s, not %s' % (', '.join(FORMATS), ', '.join(unknown) or 'empty'),
                          code='bad_option')
    if trend_size < 1:
        raise ReportError('trend_size must be at least 1', code='bad_option')
    report_dir = os.path.abspath(report_dir)
    changed = ensure_directory(report_dir, check_mode)
    row = summary_row(data, kind, name)
    trend_rows, skipped = [], 0
    history_path = os.path.abspath(history) if history else None
    if history_path:
        rows, history_changed, skipped = update_history(history_path, row, check_mode)
        changed = changed or history_changed
        trend_rows = trend(rows, trend_size)
    paths = report_paths(report_dir, name, formats)
    renderers = {
        'json': lambda: render_json(data, kind, name),
        'markdown': lambda: render_markdown(data, kind, name, trend_rows).encode('utf-8'),
        'junit': lambda: render_junit(data, kind, name),
    }
    written = []
    for fmt in FORMATS:
        if fmt in paths and write_if_changed(paths[fmt], renderers[fmt](), check_mode):
            written.append(paths[fmt])
    return {
        'changed': bool(changed or written),
        'json_path': paths.get('json'),
        'markdown_path': paths.get('markdown'),
        'junit_path': paths.get('junit'),
        'history_path': history_path,
        'history_skipped_lines': skipped,
        'written': written,
        'trend': trend_rows,
        'summary': summary_line(data, kind, name),
        'status': data['status'],
    }
