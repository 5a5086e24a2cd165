# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of _freshness (the check, its decisions, its metrics) and _metrics (the textfile format, the atomic write).

Backups are real artifacts with manifests written by the collection's own functions (build_manifest, write_manifest) in
tmp_path, and an in-memory OffsiteTarget holding the same; drills are written as the dr_drill role writes them:
``_drill.report_data`` and ``_drill.report_location``, then ``_report.write_report`` (the JSON report and the history row).
Every metrics file is checked by ``textfile_problems`` below (strict, no dependency), by prometheus_client's parser when it is
installed, and by ``promtool check metrics`` when that is on PATH.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import stat
import subprocess

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _drill
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _freshness as fr
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _metrics as mt
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import OffsiteError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._report import write_report
from ansible_collections.fleet_telemetry.dr.tests.unit.plugins.module_utils.test_offsite_copy_fetch import MemoryTarget, local_backup

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 6, 9, 0, 0, tzinfo=UTC)
DB = 'telemetry_db'
HOUR = 3600.0
LIMITS = {'max_backup_age': 26 * HOUR, 'max_drill_age': 8 * 24 * HOUR, 'max_offsite_lag': 6 * HOUR}


def stamp(hours_ago):
    """'YYYY-MM-DD HH:MM' of ``hours_ago`` hours before NOW (the stamp format of local_backup and MemoryTarget)."""
    return (NOW - datetime.timedelta(hours=hours_ago)).strftime('%Y-%m-%d %H:%M')


def backup(directory, hours_ago, **overrides):
    """A real local backup started ``hours_ago`` hours before NOW (it finishes 30 s later); returns its path."""
    return local_backup(directory, stamp(hours_ago), **overrides)[0]


def drill(backup_dir, hours_ago, passed=True, database=DB, artifact=None):
    """A drill that started ``hours_ago`` hours before NOW, written as the dr_drill role writes it; returns the history path."""
    started = (NOW - datetime.timedelta(hours=hours_ago)).timestamp()
    marks = {'started': started, 'leased': started + 1, 'selected': started + 2, 'planned': started + 3, 'up': started + 10}
    failure = None
    if passed:
        marks.update(verified=started + 62.5, teardown_started=started + 63, torn_down=started + 65)
    else:
        failure = {'msg': 'photo 7 does not decrypt with the key', 'error_code': 'photo_check_failed'}
    artifact = artifact or {}
    data = _drill.report_data(marks, artifact=artifact, failure=failure, teardown={'ok': True, 'msg': 'nothing left'}, database=database)
    where = _drill.report_location(started, backup_dir)
    write_report(where['report_dir'], where['report_name'], 'drill', data, history=where['history_path'])
    return where['history_path']


def history_of(backup_dir):
    return os.path.join(backup_dir, 'drill-reports', 'drill_history.jsonl')


def check(backup_dir, targets=(), databases=(DB,), history=True, limits=None):
    history = history_of(backup_dir) if history is True else history
    return fr.FreshnessCheck(backup_dir, limits or LIMITS, NOW, targets=targets, databases=databases, history=history).run()


def codes(result):
    return [(problem['code'], problem['database'], problem['target']) for problem in result['problems']]


@pytest.fixture
def backup_dir(tmp_path):
    path = tmp_path / 'backups'
    path.mkdir()
    return str(path)


# --------------------------------------------------------------------------------------------
# A strict check of the textfile format, without any dependency
# --------------------------------------------------------------------------------------------

_NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|\Z)')
_VALUE = re.compile(r'\A(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf)\Z')
_COMMENT = re.compile(r'\A# (HELP|TYPE) (%s) (.*)\Z' % _NAME)
_SAMPLE = re.compile(r'\A(%s)(?:\{(.*)\})? (\S+)\Z' % _NAME)


def _labels(text, where):
    labels, offset = {}, 0
    while offset < len(text):
        match = _LABEL.match(text, offset)
        if not match or match.group(1) in labels:
            raise AssertionError('%s: bad or repeated label at %r' % (where, text[offset:]))
        labels[match.group(1)] = match.group(2)
        offset = match.end()
    return tuple(sorted(labels.items()))


def textfile_problems(text):
    """What node_exporter (or promtool) would object to in ``text``, stricter than either: every family's ``# HELP`` then
    ``# TYPE`` (gauge, counter or untyped) come once, before its samples, which follow each other; names, labels and values
    are well formed; no series comes twice; the text ends with one line feed and has no blank line."""
    problems, families, series, current = [], {}, set(), None
    if not text.endswith('\n') or text.endswith('\n\n'):
        problems.append('the text must end with exactly one line feed')
    for number, line in enumerate(text[:-1].split('\n') if text else [], 1):
        where = 'line %d' % number
        comment, sample = _COMMENT.match(line), _SAMPLE.match(line)
        if comment:
            kind, name, rest = comment.groups()
            family = families.setdefault(name, {})
            if kind in family or (kind == 'TYPE' and 'HELP' not in family) or family.get('samples'):
                problems.append('%s: # %s of %s is repeated, out of order or after its samples' % (where, kind, name))
            if kind == 'TYPE' and rest not in ('gauge', 'counter', 'untyped'):
                problems.append('%s: type %r' % (where, rest))
            family[kind] = rest
            current = name
        elif sample:
            name, labels, value = sample.groups()
            if name != current or 'TYPE' not in families.get(name, {}):
                problems.append('%s: sample of %s outside its family' % (where, name))
            if not _VALUE.match(value):
                problems.append('%s: value %r' % (where, value))
            try:
                key = (name, _labels(labels or '', where))
            except AssertionError as exc:
                problems.append(str(exc))
                continue
            if key in series:
                problems.append('%s: series %r twice' % (where, key))
            series.add(key)
            families.setdefault(name, {})['samples'] = True
        else:
            problems.append('%s: not a HELP, TYPE or sample line: %r' % (where, line))
    return problems


def parsed_samples(text):
    """``{(name, ((label, value), ...)): value}`` of ``text``, after every check this machine can run."""
    assert textfile_problems(text) == []
    promtool = shutil.which('promtool')
    if promtool:
        proc = subprocess.run([promtool, 'check', 'metrics'], input=text, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            samples[(match.group(1), _labels(match.group(2) or '', line))] = float(match.group(3))
    return samples


def client_samples(text):
    """The same, read by prometheus_client's parser (skipped until the package is installed)."""
    parser = pytest.importorskip('prometheus_client.parser')
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        assert family.type == 'gauge'
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.mark.parametrize('text, problem', [
    ('x 1\n', 'outside its family'),
    ('# TYPE x gauge\nx 1\n', 'out of order'),
    ('# HELP x h\n# TYPE x gauge\nx 1\nx 2\n', 'twice'),
    ('# HELP x h\n# TYPE x gauge\nx{a="1"} one\n', "value 'one'"),
    ('# HELP x h\n# TYPE x gauge\nx{a="1",a="2"} 1\n', 'repeated label'),
    ('# HELP x h\n# TYPE x gauge\nx{a="b"c"} 1\n', 'bad or repeated label'),
    ('# HELP x h\n# TYPE x summaryish\nx 1\n', "type 'summaryish'"),
    ('# HELP x h\n# TYPE x gauge\nx 1', 'exactly one line feed'),
    ('# HELP x h\n# TYPE x gauge\nx 1\n# HELP y h\n# TYPE y gauge\ny 1\nx 2\n', 'outside its family'),
])
def test_the_strict_check_catches_what_node_exporter_rejects(text, problem):
    assert any(problem in found for found in textfile_problems(text)), textfile_problems(text)


# --------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('value, seconds', [
    ('26h', 93600), ('90m', 5400), ('1d12h', 129600), ('8d', 691200), ('2w', 1209600), ('3600', 3600), (3600, 3600),
    ('1.5h', 5400), (' 1d 2h ', 93600), ('45s', 45),
])
def test_durations(value, seconds):
    assert fr.parse_duration(value, 'max_backup_age') == seconds


@pytest.mark.parametrize('value', ['', 'abc', '26x', '0', '0h', '-5h', 'h', '1h30', 'inf', 'nan', '1e3'])
def test_a_bad_duration_names_the_option_and_the_forms(value):
    with pytest.raises(fr.FreshnessError) as err:
        fr.parse_duration(value, 'max_drill_age')
    assert err.value.code == 'bad_option'
    assert str(err.value).startswith('max_drill_age %r is not a duration: give seconds, or a number with s, m, h, d or w' % (value,))


# --------------------------------------------------------------------------------------------
# Local backups
# --------------------------------------------------------------------------------------------

def test_fresh_backups_a_copy_and_a_passed_drill_are_ok(backup_dir):
    path = backup(backup_dir, 3)
    backup(backup_dir, 27)
    target = MemoryTarget()
    target.add_backup(stamp(3), data=open(path, 'rb').read())
    history = drill(backup_dir, 30)
    result = check(backup_dir, targets=[('offsite-s3', target)])
    assert result['ok'] is True and result['problems'] == []
    facts = result['databases'][DB]
    assert facts['backup']['name'] == os.path.basename(path) and facts['backup']['age_seconds'] == 3 * HOUR
    assert facts['backup']['size'] == os.path.getsize(path) and facts['backup']['row_counts'] == {'photo': 5}
    assert facts['skipped'] == []
    assert facts['offsite'] == [{'target': 'offsite-s3', 'backup': facts['backup'], 'skipped': [], 'lag_seconds': 0, 'waiting': None,
                                 'error': None}]
    assert facts['drill']['status'] == 'passed' and facts['drill']['age_seconds'] == 30 * HOUR
    assert facts['drill']['rto_seconds'] == 62.5 and facts['drill']['msg'] == 'the drill passed'
    assert facts['drill']['report'] == os.path.join(os.path.dirname(history), facts['drill']['name'] + '.md')
    assert target.mutations() == []
    line = fr.summary(result)
    assert line.startswith('%s: newest backup %s, 3 h 0 min old (' % (DB, os.path.basename(path)))
    assert ', at offsite-s3 too, last drill passed 1 d 6 h ago (RTO 1 min 2 s, RPO -)' in line


def test_a_stale_backup_is_a_problem_with_its_age_and_the_limit(backup_dir):
    path = backup(backup_dir, 30)
    drill(backup_dir, 1)
    result = check(backup_dir)
    assert codes(result) == [('backup_stale', DB, None)]
    assert result['problems'][0]['msg'] == (
        '%s: the newest verified backup, %s, is 1 d 6 h old, older than max_backup_age (1 d 2 h): run playbooks/backup.yml and check '
        'that its schedule runs and succeeds' % (DB, os.path.basename(path)))
    assert result['ok'] is False


def test_a_backup_just_under_the_limit_is_fresh(backup_dir):
    backup(backup_dir, 25.9)
    drill(backup_dir, 1)
    assert check(backup_dir)['problems'] == []


@pytest.mark.parametrize('databases, expected', [((DB,), [('backup_missing', DB, None), ('drill_missing', DB, None)]),
                                                 ((), [('backup_missing', None, None)])])
def test_no_backup_at_all(backup_dir, databases, expected):
    result = check(backup_dir, databases=databases)
    assert codes(result) == expected
    assert result['problems'][0]['msg'].endswith('in %s: run playbooks/backup.yml and check that its schedule runs and succeeds' % backup_dir)


def test_a_missing_backup_dir_is_no_backup_not_an_error(tmp_path):
    result = check(str(tmp_path / 'nowhere'), history=None)
    assert codes(result) == [('backup_missing', DB, None)]


def test_a_newer_artifact_that_does_not_verify_is_skipped_and_named(backup_dir):
    good = backup(backup_dir, 5)
    damaged = backup(backup_dir, 1)
    with open(damaged, 'ab') as handle:
        handle.write(b'more bytes than the manifest says')
    drill(backup_dir, 1)
    facts = check(backup_dir)['databases'][DB]
    assert facts['backup']['name'] == os.path.basename(good)
    assert facts['skipped'] == [{'name': os.path.basename(damaged), 'problem': facts['skipped'][0]['problem']}]
    assert facts['skipped'][0]['problem'].startswith('size mismatch')


def test_only_unverified_backups_are_missing_and_the_message_says_why(backup_dir):
    damaged = backup(backup_dir, 1)
    os.truncate(damaged, 3)
    result = check(backup_dir, history=None)
    assert codes(result) == [('backup_missing', DB, None)]
    assert '(the newest there, %s, does not verify: size mismatch' % os.path.basename(damaged) in result['problems'][0]['msg']


def test_other_databases_and_other_prefixes_are_apart(backup_dir):
    backup(backup_dir, 40)
    backup(backup_dir, 2, database='other_db')
    os.makedirs(os.path.join(backup_dir, 'safety'))
    result = check(backup_dir, databases=(), history=None)
    assert sorted(result['databases']) == ['other_db', DB]
    assert codes(result) == [('backup_stale', DB, None)]


# --------------------------------------------------------------------------------------------
# Offsite
# --------------------------------------------------------------------------------------------

def test_a_copy_that_failed_last_night_lags_once_max_offsite_lag_has_passed(backup_dir):
    today = backup(backup_dir, 7)
    backup(backup_dir, 31)
    target = MemoryTarget()
    yesterday = target.add_backup(stamp(31))
    drill(backup_dir, 1)
    result = check(backup_dir, targets=[('offsite-s3', target)])
    offsite = result['databases'][DB]['offsite'][0]
    assert offsite['backup']['name'] == yesterday and offsite['waiting'] == os.path.basename(today)
    assert offsite['lag_seconds'] == 7 * HOUR - 30
    assert codes(result) == [('offsite_lagging', DB, 'offsite-s3')]
    assert result['problems'][0]['msg'] == (
        '%s: %s has waited 6 h 59 min for its copy to offsite-s3 (whose newest verified backup is %s), longer than max_offsite_lag '
        '(6 h 0 min): check the offsite copy of playbooks/backup.yml (fleet_dr_offsite_targets) and the target\'s credentials'
        % (DB, os.path.basename(today), yesterday))


def test_a_copy_under_way_does_not_lag_yet(backup_dir):
    today = backup(backup_dir, 1)
    target = MemoryTarget()
    target.add_backup(stamp(25))
    drill(backup_dir, 1)
    result = check(backup_dir, targets=[('offsite-s3', target)])
    assert result['problems'] == []
    assert result['databases'][DB]['offsite'][0]['waiting'] == os.path.basename(today)


def test_the_oldest_backup_not_copied_sets_the_lag(backup_dir):
    backup(backup_dir, 1)
    oldest = backup(backup_dir, 10)
    target = MemoryTarget()
    target.add_backup(stamp(50))
    lag = check(backup_dir, targets=[('t', target)], history=None)['databases'][DB]['offsite'][0]
    assert lag['waiting'] == os.path.basename(oldest) and lag['lag_seconds'] == 10 * HOUR - 30


def test_a_target_without_the_database_is_missing_and_a_bad_copy_there_is_skipped(backup_dir):
    backup(backup_dir, 2)
    target = MemoryTarget()
    short = target.add_backup(stamp(2))
    target.objects[short] = target.objects[short][:5]
    target.add_backup(stamp(2), database='other_db', seq=2)
    result = check(backup_dir, targets=[('backup-server', target)], history=None)
    offsite = result['databases'][DB]['offsite'][0]
    assert offsite['backup'] is None and offsite['skipped'][0]['name'] == short
    assert codes(result) == [('offsite_missing', DB, 'backup-server')]
    assert result['problems'][0]['msg'].startswith('%s: backup-server holds no verified backup of it: check the offsite copy' % DB)


class UnreachableTarget(MemoryTarget):
    def list_names(self):
        raise OffsiteError('the SSH server of backup-server cannot be reached (Connection refused): check the host name')


def test_an_unreachable_target_is_a_problem_and_the_others_are_still_checked(backup_dir):
    path = backup(backup_dir, 2)
    good = MemoryTarget()
    good.add_backup(stamp(2), data=open(path, 'rb').read())
    result = check(backup_dir, targets=[('backup-server', UnreachableTarget()), ('offsite-s3', good)], history=None)
    assert codes(result) == [('offsite_unreachable', None, 'backup-server')]
    assert result['problems'][0]['msg'] == ('offsite target backup-server cannot be listed: the SSH server of backup-server cannot be '
                                            'reached (Connection refused): check the host name')
    first, second = result['databases'][DB]['offsite']
    assert first['error'] == 'the target cannot be listed' and first['backup'] is None
    assert second['error'] is None and second['backup']['name'] == os.path.basename(path)


def test_a_database_only_offsite_is_found_when_no_database_is_named(backup_dir):
    target = MemoryTarget()
    target.add_backup(stamp(2))
    result = check(backup_dir, targets=[('offsite-s3', target)], databases=(), history=None)
    assert codes(result) == [('backup_missing', DB, None)]
    assert result['databases'][DB]['offsite'][0]['lag_seconds'] == 0


# --------------------------------------------------------------------------------------------
# Drills
# --------------------------------------------------------------------------------------------

def test_a_failed_drill_names_its_step_its_message_and_its_report(backup_dir):
    backup(backup_dir, 2)
    drill(backup_dir, 50)
    history = drill(backup_dir, 3, passed=False)
    result = check(backup_dir)
    assert codes(result) == [('drill_failed', DB, None)]
    facts = result['databases'][DB]['drill']
    assert facts['status'] == 'failed' and facts['failed_step'] == 'restore and verify' and facts['rto_seconds'] is None
    report = os.path.join(os.path.dirname(history), facts['name'] + '.md')
    assert result['problems'][0]['msg'] == (
        '%s: the last DR drill, %s, failed at step restore and verify: photo 7 does not decrypt with the key; fix what its report %s '
        'says, then run playbooks/dr_drill.yml again' % (DB, facts['name'], report))


def test_an_old_drill_is_stale_and_a_later_drill_of_another_database_does_not_count(backup_dir):
    backup(backup_dir, 2)
    drill(backup_dir, 9 * 24)
    drill(backup_dir, 1, database='other_db')
    result = check(backup_dir)
    assert codes(result) == [('drill_stale', DB, None)]
    assert 'is 9 d 0 h old, older than max_drill_age (8 d 0 h): check that the scheduled drill' in result['problems'][0]['msg']


def test_an_old_failed_drill_is_both(backup_dir):
    backup(backup_dir, 2)
    drill(backup_dir, 9 * 24, passed=False)
    assert [code for code, dummy, dummy2 in codes(check(backup_dir))] == ['drill_failed', 'drill_stale']


def test_no_drill_history_is_a_missing_drill_and_no_check_is_none(backup_dir):
    backup(backup_dir, 2)
    result = check(backup_dir)
    assert codes(result) == [('drill_missing', DB, None)]
    assert result['problems'][0]['msg'] == ('%s: no DR drill in %s: run playbooks/dr_drill.yml, and schedule it (weekly, for example)'
                                            % (DB, history_of(backup_dir)))
    unchecked = check(backup_dir, history=None)
    assert unchecked['problems'] == [] and unchecked['databases'][DB]['drill'] is None


def test_an_unreadable_history_is_a_problem(backup_dir):
    backup(backup_dir, 2)
    os.makedirs(history_of(backup_dir))
    result = check(backup_dir)
    assert [code for code, dummy, dummy2 in codes(result)] == ['drill_missing', 'drill_missing']
    assert result['problems'][0]['msg'].startswith('the drill history %s cannot be read (' % history_of(backup_dir))


def test_last_drill_orders_by_start_and_skips_rows_without_a_time():
    rows = [{'name': 'b', 'kind': 'drill', 'database': DB, 'started_at': '2026-12-02T00:00:00Z'},
            {'name': 'a', 'kind': 'drill', 'database': None, 'started_at': '2026-12-03T00:00:00Z'},
            {'name': 'r', 'kind': 'restore', 'database': DB, 'started_at': '2026-12-04T00:00:00Z'},
            {'name': 'x', 'kind': 'drill', 'database': DB, 'started_at': None, 'finished_at': 'garbage'}]
    assert fr.last_drill(rows, DB)['name'] == 'a'
    assert fr.last_drill(rows[:1], 'other_db') is None


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------

def metrics_of(result):
    text = mt.render(fr.metric_families(result, NOW))
    samples = parsed_samples(text)
    return text, samples


def test_metrics_of_a_fresh_database_carry_every_figure(backup_dir):
    path = backup(backup_dir, 3)
    target = MemoryTarget()
    target.add_backup(stamp(3), data=open(path, 'rb').read())
    drill(backup_dir, 30, artifact={'path': path, 'manifest': {'started_at': '2026-12-05T02:00:00Z'}})
    text, samples = metrics_of(check(backup_dir, targets=[('offsite-s3', target)]))
    db, at = (('database', DB),), (('database', DB), ('target', 'offsite-s3'))
    started = (NOW - datetime.timedelta(hours=3)).timestamp()
    assert samples[('fleet_dr_backup_last_success_timestamp_seconds', db)] == started
    assert samples[('fleet_dr_backup_size_bytes', db)] == os.path.getsize(path)
    assert samples[('fleet_dr_backup_rows', (('database', DB), ('table', 'photo')))] == 5
    assert samples[('fleet_dr_offsite_last_success_timestamp_seconds', at)] == started
    assert samples[('fleet_dr_offsite_lag_seconds', at)] == 0
    assert samples[('fleet_dr_drill_last_timestamp_seconds', db)] == (NOW - datetime.timedelta(hours=30)).timestamp()
    assert samples[('fleet_dr_drill_success', db)] == 1 and samples[('fleet_dr_drill_rto_seconds', db)] == 62.5
    assert samples[('fleet_dr_drill_rpo_seconds', db)] == HOUR
    assert samples[('fleet_dr_freshness_ok', ())] == 1
    assert samples[('fleet_dr_freshness_check_timestamp_seconds', ())] == NOW.timestamp()
    assert all(samples[('fleet_dr_freshness_problems', (('code', code),))] == 0 for code in fr.PROBLEM_CODES)
    assert '# HELP fleet_dr_backup_size_bytes Size in bytes of the newest verified local backup.\n# TYPE fleet_dr_backup_size_bytes gauge\n' in text
    assert client_samples(text) == samples


def test_metrics_of_missing_things_are_zero_and_the_problems_are_counted(backup_dir):
    drill(backup_dir, 2, passed=False)
    target = MemoryTarget()
    text, samples = metrics_of(check(backup_dir, targets=[('offsite-s3', target), ('down', UnreachableTarget())]))
    db = (('database', DB),)
    assert samples[('fleet_dr_backup_last_success_timestamp_seconds', db)] == 0
    assert ('fleet_dr_backup_size_bytes', db) not in samples
    assert samples[('fleet_dr_offsite_last_success_timestamp_seconds', (('database', DB), ('target', 'offsite-s3')))] == 0
    assert not [key for key in samples if ('target', 'down') in key[1]]
    assert samples[('fleet_dr_drill_success', db)] == 0 and ('fleet_dr_drill_rto_seconds', db) not in samples
    assert samples[('fleet_dr_freshness_ok', ())] == 0
    counted = dict((code, samples[('fleet_dr_freshness_problems', (('code', code),))]) for code in fr.PROBLEM_CODES)
    assert counted == {'backup_missing': 1, 'backup_stale': 0, 'drill_missing': 0, 'drill_failed': 1, 'drill_stale': 0,
                       'offsite_missing': 1, 'offsite_lagging': 0, 'offsite_unreachable': 1}
    assert client_samples(text) == samples


def test_label_values_are_escaped(backup_dir):
    path = backup(backup_dir, 1)
    target = MemoryTarget()
    target.add_backup(stamp(1), data=open(path, 'rb').read())
    label = 'odd "name" \\ with\na line feed'
    text, samples = metrics_of(check(backup_dir, targets=[(label, target)], history=None))
    assert 'target="odd \\"name\\" \\\\ with\\na line feed"' in text
    assert ('fleet_dr_offsite_size_bytes', (('database', DB), ('target', 'odd \\"name\\" \\\\ with\\na line feed'))) in samples
    assert ('fleet_dr_offsite_size_bytes', (('database', DB), ('target', label))) in client_samples(text)


def test_no_drill_metrics_without_the_drill_check(backup_dir):
    backup(backup_dir, 1)
    result = check(backup_dir, history=None)
    text = mt.render(fr.metric_families(result, NOW, check_drill=False))
    assert 'fleet_dr_drill' not in text and textfile_problems(text) == []


@pytest.mark.parametrize('value, text', [(True, '1'), (False, '0'), (12, '12'), (0.5, '0.5'), (1e21, '1e+21'),
                                         (float('nan'), 'NaN'), (float('inf'), '+Inf'), (float('-inf'), '-Inf')])
def test_values(value, text):
    assert mt.format_value(value) == text


@pytest.mark.parametrize('families, words', [
    ([{'name': 'bad-name', 'help': 'h', 'type': 'gauge', 'samples': [({}, 1)]}], 'not usable'),
    ([{'name': 'x', 'help': 'h', 'type': 'histogram', 'samples': [({}, 1)]}], 'not usable'),
    ([{'name': 'x', 'help': 'h', 'type': 'gauge', 'samples': []}] * 2, 'comes twice'),
    ([{'name': 'x', 'help': 'h', 'type': 'gauge', 'samples': [({'a': 1}, 1), ({'a': '1'}, 2)]}], 'twice'),
    ([{'name': 'x', 'help': 'h', 'type': 'gauge', 'samples': [({'bad-label': 1}, 1)]}], 'label name'),
    ([{'name': 'x', 'help': 'h', 'type': 'gauge', 'samples': [({'__name__': 1}, 1)]}], 'label name'),
])
def test_render_refuses_what_would_not_parse(families, words):
    with pytest.raises(ValueError) as err:
        mt.render(families)
    assert words in str(err.value)


def test_render_leaves_out_empty_families_and_escapes_help():
    text = mt.render([{'name': 'a', 'help': 'empty', 'type': 'gauge', 'samples': []},
                      {'name': 'b', 'help': 'back\\slash\nline', 'type': 'gauge', 'samples': [({}, 1)]}])
    assert text == '# HELP b back\\\\slash\\nline\n# TYPE b gauge\nb 1\n'
    assert textfile_problems(text) == []


# --------------------------------------------------------------------------------------------
# Writing the file
# --------------------------------------------------------------------------------------------

TEXT = '# HELP x h\n# TYPE x gauge\nx 1\n# HELP %s h\n# TYPE %s gauge\n%s %%s\n' % ((fr.CHECK_METRIC,) * 3)


def test_the_file_is_published_atomically_with_mode_0644(tmp_path):
    path = str(tmp_path / 'fleet_dr.prom')
    assert mt.write_textfile(path, TEXT % 1, volatile=(fr.CHECK_METRIC,)) is True
    assert open(path).read() == TEXT % 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(str(tmp_path)) == ['fleet_dr.prom']
    inode = os.stat(path).st_ino
    assert mt.write_textfile(path, TEXT % 2, volatile=(fr.CHECK_METRIC,)) is False
    assert open(path).read() == TEXT % 2 and os.stat(path).st_ino != inode
    assert mt.write_textfile(path, (TEXT % 3).replace('x 1', 'x 2'), volatile=(fr.CHECK_METRIC,)) is True
    assert os.listdir(str(tmp_path)) == ['fleet_dr.prom']


def test_check_mode_writes_nothing_and_says_whether_it_would_change(tmp_path):
    path = str(tmp_path / 'fleet_dr.prom')
    assert mt.write_textfile(path, TEXT % 1, check_mode=True) is True
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('name, code, words', [
    ('nowhere/fleet_dr.prom', 'bad_option', 'does not exist: create it (node_exporter\'s --collector.textfile.directory)'),
    ('fleet_dr.txt', 'bad_option', 'must end in .prom'),
    ('taken.prom', 'metrics_failed', 'taken.prom (Is a directory): move it away or set another metrics_file'),
])
def test_a_metrics_file_that_cannot_be_written_says_why(tmp_path, name, code, words):
    os.makedirs(str(tmp_path / 'taken.prom'))
    with pytest.raises(mt.MetricsError) as err:
        mt.write_textfile(str(tmp_path / name), TEXT % 1)
    assert err.value.code == code and words in str(err.value)
    assert sorted(os.listdir(str(tmp_path))) == ['taken.prom']
