# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Prometheus metrics in the text format that node_exporter's textfile collector reads, and writing such a file atomically.

Internal to fleet_telemetry.dr: not a public API, it may change without notice.

A family is ``{'name', 'help', 'type', 'samples': [(labels dict, value)]}``. ``render`` writes each family as its ``# HELP``
and ``# TYPE`` lines followed by its samples, label values escaped (backslash, double quote, line feed), families without
a sample left out. node_exporter drops a whole file it cannot parse, so ``render`` refuses what it would not parse: a bad
metric or label name, the same series twice. ``write_textfile`` publishes the file under a temporary dot-name, fsynced, then
renamed over the old one with mode 0644 (node_exporter reads only ``*.prom`` names, so it never sees a half-written file).

This file imports from the collection only ``_atomic`` and ``_errors``, and must keep compiling on Python 3.8.
"""

from __future__ import annotations

import math
import os
import re

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._atomic import AtomicArtifactWriter
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError

METRIC_NAME_RE = re.compile(r'\A[a-zA-Z_:][a-zA-Z0-9_:]*\Z')
LABEL_NAME_RE = re.compile(r'\A[a-zA-Z_][a-zA-Z0-9_]*\Z')
TYPES = ('gauge', 'counter', 'untyped')
FILE_MODE = 0o644
SUFFIX = '.prom'


class MetricsError(FleetDrError):
    """The metrics file cannot be written."""

    code = 'metrics_failed'


def escape_label_value(value):
    return str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def escape_help(text):
    return str(text).replace('\\', '\\\\').replace('\n', '\\n')


def format_value(value):
    """A sample value as the format writes it: booleans as 1 and 0, integers exactly, floats by ``repr``."""
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return 'NaN'
    if math.isinf(value):
        return '+Inf' if value > 0 else '-Inf'
    return repr(value)


def sample_line(name, labels, value):
    """``name{label="value",...} value``; labels in the order given."""
    for label in labels:
        if not LABEL_NAME_RE.match(label) or label.startswith('__'):
            raise ValueError('%r is not a usable Prometheus label name' % (label,))
    text = ','.join('%s="%s"' % (label, escape_label_value(labels[label])) for label in labels)
    return '%s%s %s' % (name, '{%s}' % text if text else '', format_value(value))


def render(families):
    """The text of ``families`` (see the module docstring), ending with a line feed; ValueError for what cannot be parsed."""
    lines, seen = [], set()
    for family in families:
        name, samples = family['name'], family['samples']
        if not METRIC_NAME_RE.match(name) or family['type'] not in TYPES or name in seen:
            raise ValueError('metric family %r (type %r) is not usable or comes twice' % (name, family['type']))
        seen.add(name)
        if not samples:
            continue
        lines.append('# HELP %s %s' % (name, escape_help(family['help'])))
        lines.append('# TYPE %s %s' % (name, family['type']))
        series = set()
        for labels, value in samples:
            key = tuple(sorted((str(label), str(text)) for label, text in labels.items()))
            if key in series:
                raise ValueError('metric %s has the series %r twice' % (name, dict(key)))
            series.add(key)
            lines.append(sample_line(name, labels, value))
    return ''.join(line + '\n' for line in lines)


def _read_text(path):
    try:
        with open(path, 'rb') as fileobj:
            return fileobj.read().decode('utf-8', 'replace')
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MetricsError('cannot read the metrics file %s (%s): move it away or set another metrics_file' % (path, exc.strerror or exc)) from None


def _samples_except(text, volatile):
    return [line for line in text.splitlines() if line.split('{', 1)[0].split(' ', 1)[0] not in volatile]


def write_textfile(path, text, check_mode=False, volatile=()):
    """Publish ``text`` at ``path`` atomically (mode 0644), every run, so its modification time says when it was written.

    Returns whether a sample changed, the samples of the metrics named in ``volatile`` (a check's own time) aside. In check
    mode nothing is written. The directory must exist (it is node_exporter's, not ours to create).
    """
    if not path.endswith(SUFFIX):
        raise MetricsError('metrics_file %s must end in %s: node_exporter\'s textfile collector reads only those files' % (path, SUFFIX),
                           code='bad_option')
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise MetricsError('the directory of metrics_file %s does not exist: create it (node_exporter\'s '
                           '--collector.textfile.directory) or set another metrics_file' % path, code='bad_option')
    if not os.access(directory, os.W_OK | os.X_OK):
        raise MetricsError('the directory of metrics_file %s is not writable by uid %d: give that user write access there '
                           '(node_exporter only reads it) or set another metrics_file' % (path, os.geteuid()), code='bad_option')
    old = _read_text(path)
    changed = old is None or _samples_except(old, volatile) != _samples_except(text, volatile)
    if check_mode:
        return changed
    try:
        with AtomicArtifactWriter(directory, os.path.basename(path), mode=FILE_MODE, replace=True) as writer:
            writer.write(text.encode('utf-8'))
            writer.commit()
    except (FleetDrError, OSError) as exc:
        raise MetricsError('cannot write the metrics file %s: %s' % (path, exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)) from None
    return changed
