# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Backup freshness: the newest verified backup of each database, locally and at each offsite target, the last DR drill,
the problems an operator must hear about, and the same figures as metric families for ``_metrics``.

Internal to fleet_telemetry.dr: not a public API, it may change without notice.

Read only: nothing here writes, deletes or downloads a backup. "Verified" is retention's check (``_retention_apply``): a
manifest that reads and validates, describes this artifact, and whose size is the artifact's. The checksum is not
recomputed: the backup run that made an artifact verified it (checksum and table of contents), and a check that runs every
few minutes must not read every byte of every backup. A backup's time is its snapshot time (the manifest's
``started_at``): what a restore of it gives back.

A problem is ``{'code', 'database', 'target', 'msg'}``, ``msg`` one sentence with the cause and what to do; the codes are
``PROBLEM_CODES``. The offsite lag is how long a backup has waited for its copy: from when the oldest verified local backup
newer than the target's newest verified one finished, to now (0 when the target holds the newest). A copy made right after
each backup is never late; a copy that failed is late ``max_offsite_lag`` after the backup it missed finished.

The drill is read from the drill history the dr_drill role keeps (``dr_report``'s JSON lines, one row per drill); the
message of a failed drill from its JSON report in the drill report directory, when it is there.
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import parse_artifact_name, parse_timestamp
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.fetch import complete_artifacts
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import OffsiteError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._report import read_history
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._report_render import format_seconds, format_size
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._retention_apply import local_entry, size_problem
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._verification import list_artifacts

PROBLEM_CODES = ('backup_missing', 'backup_stale', 'drill_missing', 'drill_failed', 'drill_stale', 'offsite_missing',
                 'offsite_lagging', 'offsite_unreachable')
LIMITS = ('max_backup_age', 'max_drill_age', 'max_offsite_lag')
CHECK_METRIC = 'fleet_dr_freshness_check_timestamp_seconds'
# (name, help) of every metric family, in the order of the file; all gauges.
METRICS = (
    ('fleet_dr_backup_last_success_timestamp_seconds', 'Snapshot time (manifest started_at) of the newest verified local backup; 0 when none.'),
    ('fleet_dr_backup_size_bytes', 'Size in bytes of the newest verified local backup.'),
    ('fleet_dr_backup_rows', 'Rows of each counted table in the newest verified local backup (its manifest).'),
    ('fleet_dr_offsite_last_success_timestamp_seconds', 'Snapshot time of the newest verified backup at an offsite target; 0 when none.'),
    ('fleet_dr_offsite_size_bytes', 'Size in bytes of the newest verified backup at an offsite target.'),
    ('fleet_dr_offsite_lag_seconds', 'How long the oldest local backup newer than the target\'s newest had waited for its copy, at the check.'),
    ('fleet_dr_drill_last_timestamp_seconds', 'Start of the last DR drill; 0 when none.'),
    ('fleet_dr_drill_success', '1 when the last DR drill passed, else 0.'),
    ('fleet_dr_drill_rto_seconds', 'RTO of the last DR drill: from its start until the restored database verified.'),
    ('fleet_dr_drill_rpo_seconds', 'RPO of the last DR drill: the age of the backup it restored when it started.'),
    ('fleet_dr_freshness_problems', 'Problems the last freshness check found, by code.'),
    ('fleet_dr_freshness_ok', '1 when the last freshness check found no problem, else 0.'),
    (CHECK_METRIC, 'When the last freshness check ran.'),
)
_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}
_DURATION_PART = re.compile(r'(\d+(?:\.\d+)?)([smhdw])')
_SECONDS = re.compile(r'\A\d+(?:\.\d+)?\Z')
BACKUP_FIX = 'run playbooks/backup.yml and check that its schedule runs and succeeds'
COPY_FIX = 'check the offsite copy of playbooks/backup.yml (fleet_dr_offsite_targets) and the target\'s credentials'


class FreshnessError(FleetDrError):
    """An option the check cannot work with."""

    code = 'bad_option'


def parse_duration(value, option):
    """Seconds of ``value``: a number of seconds, or numbers with units s, m, h, d, w (``26h``, ``90m``, ``1d12h``)."""
    text = str(value).replace(' ', '')
    parts = _DURATION_PART.findall(text)
    if _SECONDS.match(text):
        seconds = float(text)
    elif parts and ''.join(number + unit for number, unit in parts) == text:
        seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    else:
        seconds = 0
    if seconds <= 0:
        raise FreshnessError('%s %r is not a duration: give seconds, or a number with s, m, h, d or w (26h, 8d, 1d12h)' % (option, value))
    return seconds


def _age(moment, now):
    return round((now - moment).total_seconds(), 3)


def _time(text):
    try:
        return parse_timestamp(text)
    except ValueError:
        return None


def _problem(code, database, target, msg):
    return {'code': code, 'database': database, 'target': target, 'msg': msg}


def _has_prefix(name, prefix):
    parsed = parse_artifact_name(name)
    return not prefix or (parsed is not None and parsed['prefix'] == prefix)


# --------------------------------------------------------------------------------------------
# The backups of a place
# --------------------------------------------------------------------------------------------

def local_candidates(backup_dir, prefix):
    """``{database: [entry]}`` of ``backup_dir``, newest first; an entry is ``local_backups``'s plus ``manifest`` (each
    manifest read once)."""
    if not os.path.isdir(backup_dir):
        return {}
    found = {}
    for artifact in list_artifacts(backup_dir):
        entry = local_entry(artifact, prefix)
        if entry is not None:
            found.setdefault(artifact['manifest']['database'], []).append(dict(entry, manifest=artifact['manifest']))
    return found


def target_candidates(target, prefix):
    """``{database: [entry]}`` of the complete artifacts at ``target`` (``complete_artifacts``), newest first."""
    found = {}
    for entry in complete_artifacts(target):
        if _has_prefix(entry['name'], prefix):
            found.setdefault(entry['manifest']['database'], []).append(entry)
    return found


def newest_at_target(target, entries):
    """``(newest entry whose object has its manifest's size, [{name, problem}] of newer ones that do not)``."""
    skipped = []
    for entry in entries:
        stat = target.stat(entry['name'])
        problem = size_problem(entry['name'], entry['manifest'], stat['size'] if stat else None)
        if problem is None:
            return entry, skipped
        skipped.append({'name': entry['name'], 'problem': problem})
    return None, skipped


def backup_facts(entry, now):
    """What the result says of a backup (``entry`` from ``local_candidates`` or ``target_candidates``)."""
    manifest = entry['manifest']
    return {'name': entry['name'], 'started_at': manifest['started_at'], 'finished_at': manifest['finished_at'],
            'age_seconds': _age(entry['started_at'], now), 'size': manifest['size'], 'sha256': manifest['sha256'],
            'row_counts': manifest['row_counts'], 'dump_format': manifest['dump_format'],
            'encrypted': manifest.get('encryption') == 'age'}


# --------------------------------------------------------------------------------------------
# Decisions (plain data in, a problem or None out)
# --------------------------------------------------------------------------------------------

def backup_problem(database, backup, skipped, where, max_age):
    """``backup_missing`` or ``backup_stale`` of the newest verified local ``backup`` (facts or None), else None."""
    if backup is None:
        why = ' (the newest there, %s, does not verify: %s)' % (skipped[0]['name'], skipped[0]['problem']) if skipped else ''
        return _problem('backup_missing', database, None, '%s: no verified backup in %s%s: %s' % (database, where, why, BACKUP_FIX))
    if backup['age_seconds'] > max_age:
        return _problem('backup_stale', database, None, '%s: the newest verified backup, %s, is %s old, older than max_backup_age (%s): %s'
                        % (database, backup['name'], format_seconds(backup['age_seconds']), format_seconds(max_age), BACKUP_FIX))
    return None


def offsite_lag(local_verified, remote, now):
    """``(seconds, name)``: how long the oldest of ``local_verified`` (entries, newest first) newer than ``remote`` (the target's
    newest verified entry, or None) has waited since it finished, and its name; ``(0, None)`` when none waits."""
    waiting = [entry for entry in local_verified if remote is None or entry['started_at'] > remote['started_at']]
    if not waiting:
        return 0, None
    finished = _time(waiting[-1]['manifest']['finished_at']) or waiting[-1]['started_at']
    return max(0, _age(finished, now)), waiting[-1]['name']


def offsite_problem(database, label, remote, lag, waiting, max_lag):
    """``offsite_missing`` or ``offsite_lagging`` of target ``label``, else None (``remote``: facts or None)."""
    if remote is None:
        return _problem('offsite_missing', database, label, '%s: %s holds no verified backup of it: %s' % (database, label, COPY_FIX))
    if lag > max_lag:
        waited, limit = format_seconds(lag), format_seconds(max_lag)
        return _problem('offsite_lagging', database, label, '%s: %s has waited %s for its copy to %s (whose newest verified backup is %s), '
                        'longer than max_offsite_lag (%s): %s' % (database, waiting, waited, label, remote['name'], limit, COPY_FIX))
    return None


def last_drill(rows, database):
    """The history row of the last drill of ``database`` (or of no database named) by its start, or None."""
    best, best_time = None, None
    for row in rows:
        if row.get('kind', 'drill') != 'drill' or row.get('database') not in (database, None):
            continue
        when = _time(row.get('started_at')) or _time(row.get('finished_at'))
        if when is not None and (best_time is None or when >= best_time):
            best, best_time = row, when
    return best


def drill_facts(row, report_dir, now):
    """What the result says of the drill of history ``row``: the row's figures, the message and Markdown path of its report
    (in ``report_dir``)."""
    directory = os.path.abspath(report_dir)
    report = os.path.join(directory, '%s.json' % row['name'])
    try:
        with open(report) as fileobj:
            document = json.load(fileobj)
    except (OSError, ValueError):
        document = {}
    markdown = os.path.join(directory, '%s.md' % row['name'])
    when = _time(row.get('started_at')) or _time(row.get('finished_at'))
    return {'name': row['name'], 'status': row.get('status'), 'started_at': row.get('started_at'), 'finished_at': row.get('finished_at'),
            'age_seconds': _age(when, now), 'rto_seconds': row.get('rto_seconds'), 'rpo_seconds': row.get('rpo_seconds'),
            'failed_step': row.get('failed_step'), 'artifact': row.get('artifact'),
            'msg': document.get('msg') if isinstance(document, dict) else None,
            'report': markdown if os.path.isfile(markdown) else None}


def drill_problems(database, drill, history, max_age, report_dir=None):
    """``drill_missing``, or ``drill_failed`` and/or ``drill_stale`` of the last drill (facts or None)."""
    if drill is None:
        return [_problem('drill_missing', database, None, '%s: no DR drill in %s: run playbooks/dr_drill.yml, and schedule it (weekly, for '
                         'example)' % (database, history))]
    problems = []
    if drill['status'] != 'passed':
        where = ' at step %s' % drill['failed_step'] if drill['failed_step'] else ''
        why = ': %s' % drill['msg'] if drill['msg'] else ''
        report = drill['report'] or os.path.join(os.path.abspath(report_dir or os.path.dirname(history)), drill['name'] + '.json')
        problems.append(_problem('drill_failed', database, None, '%s: the last DR drill, %s, failed%s%s; fix what its report %s says, '
                                 'then run playbooks/dr_drill.yml again' % (database, drill['name'], where, why, report)))
    if drill['age_seconds'] > max_age:
        age, limit = format_seconds(drill['age_seconds']), format_seconds(max_age)
        problems.append(_problem('drill_stale', database, None, '%s: the last DR drill, %s, is %s old, older than max_drill_age (%s): '
                                 'check that the scheduled drill (playbooks/dr_drill.yml) runs' % (database, drill['name'], age, limit)))
    return problems


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------

class FreshnessCheck(object):
    """One check: ``run()`` returns ``{'ok', 'databases': {name: facts}, 'problems'}``.

    ``targets`` is ``[(label, OffsiteTarget)]``; ``limits`` has the seconds of ``LIMITS``; ``history`` is the drill history, None
    for no drill check; ``now`` an aware datetime, the one clock of the check.
    """

    def __init__(self, backup_dir, limits, now, targets=(), databases=(), prefix='backup', history=None, report_dir=None):
        self.backup_dir = backup_dir
        self.limits = limits
        self.now = now
        self.targets = list(targets)
        self.databases = list(databases)
        self.prefix = prefix
        self.history = history
        # The drill reports: where the history is unless told (the dr_drill role keeps both in its report directory).
        self.report_dir = report_dir or (os.path.dirname(os.path.abspath(history)) if history else None)
        self.problems = []

    def _listings(self):
        """``{label: {database: [entry]} or None}``: None when the target cannot be listed (a problem then)."""
        listings = {}
        for label, target in self.targets:
            try:
                listings[label] = target_candidates(target, self.prefix)
            except OffsiteError as exc:
                listings[label] = None
                self.problems.append(_problem('offsite_unreachable', None, label, 'offsite target %s cannot be listed: %s' % (label, exc)))
        return listings

    def _drill_rows(self):
        if self.history is None:
            return None
        try:
            return read_history(self.history)[0]
        except (FleetDrError, OSError) as exc:
            self.problems.append(_problem('drill_missing', None, None, 'the drill history %s cannot be read (%s): fix it or set drill_history'
                                          % (self.history, exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)))
            return []

    def _offsite(self, database, local_verified, label, target, entries):
        facts = {'target': label, 'backup': None, 'skipped': [], 'lag_seconds': None, 'waiting': None, 'error': None}
        if entries is None:
            facts['error'] = 'the target cannot be listed'
            return facts
        try:
            remote, facts['skipped'] = newest_at_target(target, entries.get(database, []))
        except OffsiteError as exc:
            facts['error'] = str(exc)
            self.problems.append(_problem('offsite_unreachable', database, label, '%s: the backups at %s cannot be examined: %s' % (database, label, exc)))
            return facts
        facts['backup'] = backup_facts(remote, self.now) if remote else None
        facts['lag_seconds'], facts['waiting'] = offsite_lag(local_verified, remote, self.now)
        problem = offsite_problem(database, label, facts['backup'], facts['lag_seconds'], facts['waiting'], self.limits['max_offsite_lag'])
        if problem:
            self.problems.append(problem)
        return facts

    def _database(self, database, entries, listings, rows):
        verified = [entry for entry in entries if entry['verified']]
        skipped = [{'name': entry['name'], 'problem': entry['problem']} for entry in entries
                   if not entry['verified'] and (not verified or entry['started_at'] > verified[0]['started_at'])]
        backup = backup_facts(verified[0], self.now) if verified else None
        problem = backup_problem(database, backup, skipped, self.backup_dir, self.limits['max_backup_age'])
        if problem:
            self.problems.append(problem)
        facts = {'backup': backup, 'skipped': skipped, 'drill': None,
                 'offsite': [self._offsite(database, verified, label, target, listings[label]) for label, target in self.targets]}
        if rows is not None:
            row = last_drill(rows, database)
            facts['drill'] = drill_facts(row, self.report_dir, self.now) if row else None
            self.problems.extend(drill_problems(database, facts['drill'], self.history, self.limits['max_drill_age'], self.report_dir))
        return facts

    def run(self):
        local = local_candidates(self.backup_dir, self.prefix)
        listings = self._listings()
        rows = self._drill_rows()
        names = self.databases or sorted(set(local).union(*[set(found) for found in listings.values() if found]))
        if not names:
            self.problems.append(_problem('backup_missing', None, None, 'no verified backup of any database in %s: %s' % (self.backup_dir, BACKUP_FIX)))
        databases = dict((name, self._database(name, local.get(name, []), listings, rows)) for name in names)
        return {'ok': not self.problems, 'databases': databases, 'problems': self.problems}


# --------------------------------------------------------------------------------------------
# The result in words and in metrics
# --------------------------------------------------------------------------------------------

def summary(result):
    """One line: every problem, or the newest backup, its copies and the last drill of each database."""
    if result['problems']:
        return '; '.join(problem['msg'] for problem in result['problems'])
    parts = []
    for database, facts in sorted(result['databases'].items()):
        backup = facts['backup']
        text = '%s: newest backup %s, %s old (%s)' % (database, backup['name'], format_seconds(backup['age_seconds']), format_size(backup['size']))
        for offsite in facts['offsite']:
            text += ', at %s %s' % (offsite['target'], 'too' if offsite['backup']['name'] == backup['name'] else offsite['backup']['name'])
        drill = facts['drill']
        if drill is not None:
            ages = tuple(format_seconds(drill[key]) for key in ('age_seconds', 'rto_seconds', 'rpo_seconds'))
            text += ', last drill passed %s ago (RTO %s, RPO %s)' % ages
        parts.append(text)
    return '; '.join(parts)


def _stamp(text):
    """Epoch seconds of a UTC time stamp; 0 (what the metrics say of "none") when it does not parse."""
    moment = _time(text) if text else None
    if moment is None:
        return 0
    seconds = moment.timestamp()
    return int(seconds) if seconds.is_integer() else seconds


def _number(value):
    return value is not None and not isinstance(value, bool) and isinstance(value, (int, float))


def metric_families(result, now, check_drill=True):
    """The families of ``_metrics.render`` for ``result`` (of ``FreshnessCheck.run``) checked at ``now``."""
    samples = dict((name, []) for name, dummy in METRICS)
    for database, facts in sorted(result['databases'].items()):
        labels = {'database': database}
        backup = facts['backup']
        samples['fleet_dr_backup_last_success_timestamp_seconds'].append((labels, _stamp(backup['started_at']) if backup else 0))
        if backup:
            samples['fleet_dr_backup_size_bytes'].append((labels, backup['size']))
            samples['fleet_dr_backup_rows'].extend((dict(labels, table=table), count) for table, count in sorted(backup['row_counts'].items()))
        for offsite in facts['offsite']:
            if offsite['error']:
                continue
            at = dict(labels, target=offsite['target'])
            remote = offsite['backup']
            samples['fleet_dr_offsite_last_success_timestamp_seconds'].append((at, _stamp(remote['started_at']) if remote else 0))
            if remote:
                samples['fleet_dr_offsite_size_bytes'].append((at, remote['size']))
            samples['fleet_dr_offsite_lag_seconds'].append((at, offsite['lag_seconds']))
        drill = facts['drill']
        if check_drill:
            samples['fleet_dr_drill_last_timestamp_seconds'].append((labels, _stamp(drill['started_at']) if drill and drill['started_at'] else 0))
            samples['fleet_dr_drill_success'].append((labels, bool(drill and drill['status'] == 'passed')))
        for key in ('rto_seconds', 'rpo_seconds'):
            if drill and _number(drill[key]):
                samples['fleet_dr_drill_%s' % key].append((labels, drill[key]))
    codes = [problem['code'] for problem in result['problems']]
    samples['fleet_dr_freshness_problems'] = [({'code': code}, codes.count(code)) for code in PROBLEM_CODES]
    samples['fleet_dr_freshness_ok'] = [({}, result['ok'])]
    samples[CHECK_METRIC] = [({}, round(now.timestamp(), 3))]
    return [{'name': name, 'help': text, 'type': 'gauge', 'samples': samples[name]} for name, text in METRICS]
