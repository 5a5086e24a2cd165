# -*- coding: utf-8 -*-
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Retention of backups: which to keep and which to delete, as pure functions (no I/O). Internal to fleet_telemetry.dr.

``plan_retention`` applies grandfather-father-son buckets (day, ISO week, month) to the backups of one place (a backup
directory, an offsite target); ``plan_safety_dumps`` keeps the newest few safety dumps of restore; ``retention_diff`` is
the plan in Ansible's diff format, so that check mode shows every deletion with its reason. Reading a place and deleting
from it is ``_retention_apply``.

A backup is a dict ``{'name', 'started_at', 'verified', 'locked'}``: ``started_at`` is the manifest's snapshot time (an
aware datetime, taken as UTC; naive means UTC) or None when it cannot be dated; ``verified`` says that its manifest is
valid and describes what is there; ``locked`` (default False) that Object Lock forbids deleting it. Other keys are ignored.

Only *managed* backups are ever deleted or fill a bucket: verified, dated, and not in the future. The others are kept and
untouched, each with its reason: unverified ones (no valid manifest, or the artifact does not match it) are not backups the
policy manages, undated ones cannot be placed in a bucket, and ones that started after ``now`` (clock skew) would push real
backups out of the newest buckets if they counted.

Each result is ``{'keep': [{'name', 'started_at', 'reasons'}], 'delete': [{'name', 'started_at', 'reason'}], 'locked':
[{'name', 'started_at', 'reason'}]}``, every list newest first (undated last); ``started_at`` is ISO 8601 UTC text or None,
``reason`` one sentence saying why the backup is not kept; ``locked`` holds the backups that would be deleted but are under
Object Lock: they are never in ``delete``.

This file imports from the collection only ``_artifact`` and the error base class, and must keep compiling on Python 3.8.
"""

from __future__ import annotations

import datetime

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import format_timestamp, parse_artifact_name
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError

NEWEST = 'newest: the newest verified backup'
PROTECTED = "this run's backup"
UNDATED = 'undated: the policy cannot date it'
UNVERIFIED = 'unverified: not a backup the policy manages'
FUTURE = 'in the future: it started after now (%s); the clock may be wrong'

# (count keyword, bucket word, plural) in the order the reasons are written.
_KINDS = (('daily', 'day', 'days'), ('weekly', 'week', 'weeks'), ('monthly', 'month', 'months'))


class RetentionError(FleetDrError):
    """Retention was not applied (nothing was deleted); the message says why and what to do."""

    code = 'retention_error'


# --------------------------------------------------------------------------------------------
# Buckets and order
# --------------------------------------------------------------------------------------------

def _utc(moment):
    """Return ``moment`` as an aware UTC datetime (naive means UTC), None for None."""
    if moment is None:
        return None
    if not isinstance(moment, datetime.datetime):
        raise ValueError('%r is not a datetime' % (moment,))
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def bucket(kind, moment):
    """Return the bucket of a UTC ``moment``: ``2026-11-21`` (daily), ``2026-W47`` (weekly, ISO year and week), ``2026-11`` (monthly)."""
    if kind == 'daily':
        return moment.strftime('%Y-%m-%d')
    if kind == 'weekly':
        iso = moment.isocalendar()
        return '%04d-W%02d' % (iso[0], iso[1])
    if kind == 'monthly':
        return '%04d-%02d' % (moment.year, moment.month)
    raise ValueError('unknown bucket kind %r' % (kind,))


def _sequence(name):
    """The ``_2``, ``_3`` ... of an artifact name (1 when none, or not an artifact name): it orders backups within one second."""
    parsed = parse_artifact_name(name)
    return parsed['sequence'] if parsed else 1


def _newest_first(items, key):
    """Return ``items`` newest first by (``key(item)``, sequence, name); those whose key is None last, by name."""
    dated = sorted((item for item in items if key(item) is not None),
                   key=lambda item: (key(item), _sequence(item['name']), item['name']), reverse=True)
    undated = sorted((item for item in items if key(item) is None), key=lambda item: item['name'])
    return dated + undated


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------

def _check_count(value, what):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError('%s must be a whole number of 0 or more, not %r' % (what, value))


def _normalise(backups):
    """Return copies ``{'name', 'started_at' (UTC or None), 'verified', 'locked'}`` of ``backups``; refuse duplicate names."""
    items, seen = [], set()
    for backup in backups:
        name = backup['name']
        if name in seen:
            raise ValueError('the backup %s is listed twice' % name)
        seen.add(name)
        items.append({'name': name, 'started_at': _utc(backup.get('started_at')),
                      'verified': bool(backup.get('verified')), 'locked': bool(backup.get('locked'))})
    return items


def _check_protect(items, protect, where):
    """Raise RetentionError unless ``protect`` (when given) is a verified backup among ``items``."""
    if protect is None:
        return
    if not any(item['name'] == protect and item['verified'] for item in items):
        raise RetentionError("retention skipped: this run's backup %s is not a verified backup in %s; nothing was deleted"
                             % (protect, where or 'the listed backups'), code='retention_skipped', backup=protect)


def _untouched_reason(item, now):
    """The reason an item is kept outside the policy (unverified, undated, in the future), or None when it is managed."""
    if not item['verified']:
        return UNVERIFIED
    if item['started_at'] is None:
        return UNDATED
    if now is not None and item['started_at'] > now:
        return FUTURE % format_timestamp(now)
    return None


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def _stamp(item):
    return format_timestamp(item['started_at']) if item['started_at'] is not None else None


def _result(items, reasons, delete_reasons):
    """Assemble the result from the kept reasons and delete reasons per name; locked deletions go to ``locked``."""
    result = {'keep': [], 'delete': [], 'locked': []}
    for item in _newest_first(items, lambda entry: entry['started_at']):
        name = item['name']
        if name in delete_reasons:
            where = 'locked' if item['locked'] else 'delete'
            result[where].append({'name': name, 'started_at': _stamp(item), 'reason': delete_reasons[name]})
        else:
            result['keep'].append({'name': name, 'started_at': _stamp(item), 'reasons': reasons[name]})
    return result


def _split(items, now, protect):
    """Return ``(managed newest first, {name: [reasons]})`` with the reasons of the untouched and protected backups."""
    reasons = {item['name']: [] for item in items}
    managed = []
    for item in items:
        if item['name'] == protect:
            reasons[item['name']].append(PROTECTED)
        untouched = _untouched_reason(item, now)
        if untouched:
            reasons[item['name']].append(untouched)
        else:
            managed.append(item)
    return _newest_first(managed, lambda entry: entry['started_at']), reasons


# --------------------------------------------------------------------------------------------
# Grandfather-father-son
# --------------------------------------------------------------------------------------------

def _keepers(managed, kind, count):
    """Return ``{bucket: keeper name}`` for the ``count`` newest distinct buckets of ``kind`` among ``managed`` (newest first)."""
    keepers = {}
    for item in managed:
        key = bucket(kind, item['started_at'])
        if key not in keepers:
            if len(keepers) >= count:
                break
            keepers[key] = item['name']
    return keepers


def _not_kept(item, counts, keepers):
    """One sentence: why ``item`` is kept by none of the buckets."""
    parts = []
    for kind, word, plural in _KINDS:
        count = counts[kind]
        key = bucket(kind, item['started_at'])
        if count == 0:
            parts.append('no %s kept (%s=0)' % (word, kind))
        elif key in keepers[kind]:
            parts.append('%s %s is kept by %s' % (word, key, keepers[kind][key]))
        else:
            parts.append('%s %s is older than the %d newest %s with a backup' % (word, key, count, word if count == 1 else plural))
    return 'not kept: %s' % '; '.join(parts)


def plan_retention(backups, now, daily=7, weekly=4, monthly=0, protect=None, where=None):
    """Decide which backups to keep and which to delete; return ``{keep, delete, locked}`` (see the module docstring).

    The buckets follow restic's ``--keep-daily/--keep-weekly/--keep-monthly``: ``daily=N`` keeps the newest managed backup of
    each of the N most recent UTC days *that have a managed backup* - not of the N calendar days back from ``now`` - so
    nights without a (verified) backup do not count and never push the last good backups out. Likewise ``weekly`` with ISO
    weeks (``isocalendar()`` year and week: 2026-12-31 and 2027-01-01 are both in 2026-W53) and ``monthly`` with (year,
    month). A backup kept for several reasons lists them all: this run's backup, ``newest``, then daily, weekly, monthly.

    The newest managed backup is always kept, even with all counts 0. ``protect`` names the backup this run just made and
    verified: it is always kept, and when it is not a verified backup in the list, RetentionError is raised (``where`` names
    the place in that sentence) and nothing is deleted. With ``protect`` None (a run that only prunes) there is no such check,
    and none is needed: only verified backups fill buckets, so failed nights cannot make retention delete good backups, and
    when no backup is verified nothing is deleted at all.

    Backups that started after ``now`` (an aware datetime, required) are kept and fill no bucket: if they counted, a clock set wrong
    once would keep bogus backups instead of real ones. Unverified and undated backups are kept and untouched.
    """
    counts = {'daily': daily, 'weekly': weekly, 'monthly': monthly}
    for kind in sorted(counts):
        _check_count(counts[kind], kind)
    if now is None:
        raise ValueError('plan_retention needs the current time (an aware UTC datetime) to recognise backups from the future')
    now = _utc(now)
    items = _normalise(backups)
    _check_protect(items, protect, where)
    managed, reasons = _split(items, now, protect)
    keepers = dict((kind, _keepers(managed, kind, count)) for kind, count in counts.items())
    if managed:
        reasons[managed[0]['name']].append(NEWEST)
    for kind, word, dummy in _KINDS:
        for key, name in sorted(keepers[kind].items()):
            reasons[name].append('%s: newest of %s %s' % (kind, word, key))
    delete_reasons = dict((item['name'], _not_kept(item, counts, keepers)) for item in managed if not reasons[item['name']])
    return _result(items, reasons, delete_reasons)


def plan_safety_dumps(dumps, keep=2, protect=None, now=None):
    """Keep the newest ``keep`` managed safety dumps (by started_at, then name), delete the others; same result as ``plan_retention``.

    Unverified, undated and (when ``now`` is given) future dumps are kept and do not count, as in ``plan_retention``;
    ``protect`` (a dump this run just took) is always kept, and must be a verified dump. ``keep=0`` deletes every managed dump
    but a protected one.
    """
    _check_count(keep, 'keep')
    items = _normalise(dumps)
    _check_protect(items, protect, None)
    managed, reasons = _split(items, _utc(now), protect)
    delete_reasons = {}
    for index, item in enumerate(managed):
        if index < keep:
            reasons[item['name']].append('one of the %d newest safety dumps' % keep)
        elif not reasons[item['name']]:
            delete_reasons[item['name']] = 'not kept: older than the %d newest safety dumps (keep=%d)' % (keep, keep)
    return _result(items, reasons, delete_reasons)


# --------------------------------------------------------------------------------------------
# Check mode
# --------------------------------------------------------------------------------------------

def _diff_lines(plan, with_deletions):
    entries = [(entry, 'keep: %s' % ', '.join(entry['reasons'])) for entry in plan.get('keep', [])]
    entries += [(entry, 'locked, not deleted: %s' % entry['reason']) for entry in plan.get('locked', [])]
    if with_deletions:
        entries += [(entry, 'delete: %s' % entry['reason']) for entry in plan.get('delete', [])]
    ordered = _newest_first([dict(entry, text=text) for entry, text in entries], lambda entry: entry.get('started_at'))
    return ''.join('%s  (%s)\n' % (entry['name'], entry['text']) for entry in ordered)


def retention_diff(plan, where):
    """Return an Ansible diff of ``plan`` at ``where``: one line per backup, newest first, each with its reasons.

    Kept and locked backups read the same before and after; each deletion is a line of ``before`` only, with its reason.
    """
    return {'before': _diff_lines(plan, True), 'after': _diff_lines(plan, False), 'before_header': where, 'after_header': where}
