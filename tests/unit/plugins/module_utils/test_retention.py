# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of _retention (the pure plan) and _retention_apply (listing a place, deleting what a plan says)."""

from __future__ import annotations

import datetime
import json
import os
import random

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _retention as rt
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _retention_apply as ra
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import artifact_name
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._digest import artifact_digest
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._manifest import build_manifest, manifest_bytes, write_manifest
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import (
    OffsiteError,
    OffsiteLockedError,
    OffsiteTarget,
    manifest_name,
)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


def T(stamp):
    """'2026-11-21 02:00' -> aware UTC datetime."""
    return datetime.datetime.strptime(stamp, '%Y-%m-%d %H:%M').replace(tzinfo=UTC)


def N(stamp, prefix='backup'):
    """The artifact name of a backup started at ``stamp``."""
    return artifact_name(T(stamp), prefix=prefix)


def B(stamp, verified=True, locked=False, name=None):
    """A backup in plan_retention's input shape; ``stamp`` None makes it undated (then ``name`` is needed)."""
    backup = {'name': name or N(stamp), 'started_at': T(stamp) if stamp else None, 'verified': verified}
    if locked:
        backup['locked'] = True
    return backup


def daily(day):
    return 'daily: newest of day %s' % day


def weekly(week):
    return 'weekly: newest of week %s' % week


def monthly(month):
    return 'monthly: newest of month %s' % month


def names(entries):
    return [entry['name'] for entry in entries]


# --------------------------------------------------------------------------------------------
# plan_retention: the table
# --------------------------------------------------------------------------------------------

# id, backups, now, counts, keep {name: reasons} (in result order), delete [names], locked [names]
CASES = [
    ('one backup only',
     [B('2026-11-21 02:00')], NOW, {},
     {N('2026-11-21 02:00'): [rt.NEWEST, daily('2026-11-21'), weekly('2026-W47')]}, [], []),

    ('gaps do not count (restic: the N newest days that have a backup)',
     [B('2026-11-01 02:00'), B('2026-11-02 02:00'), B('2026-11-10 02:00'), B('2026-11-20 02:00'), B('2026-11-21 02:00')],
     NOW, {'daily': 3, 'weekly': 0},
     {N('2026-11-21 02:00'): [rt.NEWEST, daily('2026-11-21')],
      N('2026-11-20 02:00'): [daily('2026-11-20')],
      N('2026-11-10 02:00'): [daily('2026-11-10')]},
     [N('2026-11-02 02:00'), N('2026-11-01 02:00')], []),

    ('two backups in one day: the newer keeps the day',
     [B('2026-11-21 02:00'), B('2026-11-21 11:00'), B('2026-11-20 02:00')], NOW, {'weekly': 0},
     {N('2026-11-21 11:00'): [rt.NEWEST, daily('2026-11-21')], N('2026-11-20 02:00'): [daily('2026-11-20')]},
     [N('2026-11-21 02:00')], []),

    ('two backups in one day: the older kept by another reason (protect)',
     [B('2026-11-21 02:00'), B('2026-11-21 11:00')], NOW, {'weekly': 0, 'protect': N('2026-11-21 02:00')},
     {N('2026-11-21 11:00'): [rt.NEWEST, daily('2026-11-21')], N('2026-11-21 02:00'): [rt.PROTECTED]}, [], []),

    ('turn of the year: 2026-12-28 .. 2027-01-03 is ISO week 2026-W53',
     [B('2026-12-%02d 02:00' % day) for day in range(26, 32)] + [B('2027-01-%02d 02:00' % day) for day in range(1, 6)],
     T('2027-01-05 12:00'), {'daily': 0, 'weekly': 3},
     {N('2027-01-05 02:00'): [rt.NEWEST, weekly('2027-W01')],
      N('2027-01-03 02:00'): [weekly('2026-W53')],
      N('2026-12-27 02:00'): [weekly('2026-W52')]},
     [N('2027-01-04 02:00'), N('2027-01-02 02:00'), N('2027-01-01 02:00')] + [N('2026-12-%02d 02:00' % d) for d in (31, 30, 29, 28, 26)],
     []),

    ('a clock in the future: kept, and it fills no bucket',
     [B('2026-11-25 02:00'), B('2026-11-21 02:00'), B('2026-11-20 02:00'), B('2026-11-19 02:00')], NOW,
     {'daily': 2, 'weekly': 0},
     {N('2026-11-25 02:00'): [rt.FUTURE % '2026-11-21T12:00:00Z'],
      N('2026-11-21 02:00'): [rt.NEWEST, daily('2026-11-21')],
      N('2026-11-20 02:00'): [daily('2026-11-20')]},
     [N('2026-11-19 02:00')], []),

    ('all counts 0 keep only the newest',
     [B('2026-11-21 02:00'), B('2026-11-20 02:00'), B('2026-10-01 02:00')], NOW, {'daily': 0, 'weekly': 0, 'monthly': 0},
     {N('2026-11-21 02:00'): [rt.NEWEST]}, [N('2026-11-20 02:00'), N('2026-10-01 02:00')], []),

    ('undated backups are kept and fill no bucket',
     [B(None, name='hand-made.sql'), B('2026-11-21 02:00'), B('2026-11-20 02:00')], NOW, {'daily': 1, 'weekly': 0},
     {N('2026-11-21 02:00'): [rt.NEWEST, daily('2026-11-21')], 'hand-made.sql': [rt.UNDATED]},
     [N('2026-11-20 02:00')], []),

    ('unverified backups are untouched and never keep a bucket',
     [B('2026-11-21 11:00', verified=False), B('2026-11-21 02:00'), B('2026-11-10 02:00', verified=False), B('2026-11-09 02:00')],
     NOW, {'daily': 1, 'weekly': 0},
     {N('2026-11-21 11:00'): [rt.UNVERIFIED],
      N('2026-11-21 02:00'): [rt.NEWEST, daily('2026-11-21')],
      N('2026-11-10 02:00'): [rt.UNVERIFIED]},
     [N('2026-11-09 02:00')], []),

    ('locked backups are never in delete',
     [B('2026-11-21 02:00'), B('2026-11-20 02:00', locked=True), B('2026-11-19 02:00')], NOW, {'daily': 1, 'weekly': 0},
     {N('2026-11-21 02:00'): [rt.NEWEST, daily('2026-11-21')]}, [N('2026-11-19 02:00')], [N('2026-11-20 02:00')]),

    ('a locked bucket keeper is simply kept',
     [B('2026-11-21 02:00', locked=True)], NOW, {'daily': 0, 'weekly': 0},
     {N('2026-11-21 02:00'): [rt.NEWEST]}, [], []),

    ('monthly buckets',
     [B('2026-09-15 02:00'), B('2026-10-01 02:00'), B('2026-10-31 02:00'), B('2026-11-05 02:00'), B('2026-11-20 02:00')],
     NOW, {'daily': 0, 'weekly': 0, 'monthly': 2},
     {N('2026-11-20 02:00'): [rt.NEWEST, monthly('2026-11')], N('2026-10-31 02:00'): [monthly('2026-10')]},
     [N('2026-11-05 02:00'), N('2026-10-01 02:00'), N('2026-09-15 02:00')], []),

    ('a backup kept for several reasons lists them all',
     [B('2026-11-21 02:00'), B('2026-11-14 02:00')], NOW, {'daily': 1, 'weekly': 2, 'monthly': 1, 'protect': N('2026-11-21 02:00')},
     {N('2026-11-21 02:00'): [rt.PROTECTED, rt.NEWEST, daily('2026-11-21'), weekly('2026-W47'), monthly('2026-11')],
      N('2026-11-14 02:00'): [weekly('2026-W46')]}, [], []),

    ('protect keeps a backup no bucket keeps',
     [B('2026-11-21 02:00'), B('2026-11-01 02:00')], NOW, {'daily': 1, 'weekly': 0, 'protect': N('2026-11-01 02:00')},
     {N('2026-11-21 02:00'): [rt.NEWEST, daily('2026-11-21')], N('2026-11-01 02:00'): [rt.PROTECTED]}, [], []),

    ('no backup at all',
     [], NOW, {}, {}, [], []),

    ('only future and unverified backups: nothing is deleted, nothing is newest',
     [B('2026-12-01 02:00'), B('2026-11-01 02:00', verified=False)], NOW, {'daily': 0, 'weekly': 0},
     {N('2026-12-01 02:00'): [rt.FUTURE % '2026-11-21T12:00:00Z'], N('2026-11-01 02:00'): [rt.UNVERIFIED]}, [], []),
]


@pytest.mark.parametrize('backups, now, counts, keep, delete, locked', [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_plan_retention_table(backups, now, counts, keep, delete, locked):
    plan = rt.plan_retention(backups, now, **counts)
    assert dict((entry['name'], entry['reasons']) for entry in plan['keep']) == keep
    assert names(plan['delete']) == delete
    assert names(plan['locked']) == locked
    all_names = set(names(plan['keep']) + names(plan['delete']) + names(plan['locked']))
    assert all_names == set(backup['name'] for backup in backups)
    assert not set(names(plan['delete'])) & set(backup['name'] for backup in backups if backup.get('locked'))


def test_iso_week_53_of_2026_is_real():
    assert T('2026-12-28 00:00').isocalendar()[:2] == (2026, 53)
    assert T('2027-01-03 23:59').isocalendar()[:2] == (2026, 53)
    assert T('2027-01-04 00:00').isocalendar()[:2] == (2027, 1)
    assert rt.bucket('weekly', T('2026-12-31 02:00')) == rt.bucket('weekly', T('2027-01-01 02:00')) == '2026-W53'


def test_buckets_are_utc_days():
    paris = datetime.timezone(datetime.timedelta(hours=1))
    late = datetime.datetime(2026, 11, 21, 0, 30, tzinfo=paris)  # 2026-11-20 23:30 UTC
    plan = rt.plan_retention([{'name': 'a.sql', 'started_at': late, 'verified': True}], NOW, weekly=0)
    assert plan['keep'][0]['reasons'] == [rt.NEWEST, daily('2026-11-20')]
    assert plan['keep'][0]['started_at'] == '2026-11-20T23:30:00Z'


# --------------------------------------------------------------------------------------------
# plan_retention: reasons, order, determinism, refusals
# --------------------------------------------------------------------------------------------

def test_delete_reasons_name_every_bucket():
    backups = [B('2026-11-21 11:00'), B('2026-11-21 02:00'), B('2026-11-14 02:00'), B('2026-11-13 02:00')]
    plan = rt.plan_retention(backups, NOW, daily=1, weekly=1, monthly=0)
    reasons = dict((entry['name'], entry['reason']) for entry in plan['delete'])
    assert reasons[N('2026-11-21 02:00')] == (
        'not kept: day 2026-11-21 is kept by %s; week 2026-W47 is kept by %s; no month kept (monthly=0)'
        % (N('2026-11-21 11:00'), N('2026-11-21 11:00')))
    assert reasons[N('2026-11-13 02:00')] == (
        'not kept: day 2026-11-13 is older than the 1 newest day with a backup; '
        'week 2026-W46 is older than the 1 newest week with a backup; no month kept (monthly=0)')
    plan = rt.plan_retention(backups, NOW, daily=2, weekly=0)
    assert plan['delete'][-1]['reason'].startswith('not kept: day 2026-11-13 is older than the 2 newest days with a backup; ')


def test_locked_entries_carry_the_reason_they_would_be_deleted():
    plan = rt.plan_retention([B('2026-11-21 02:00'), B('2026-11-01 02:00', locked=True)], NOW, daily=1, weekly=0)
    assert plan['locked'] == [{'name': N('2026-11-01 02:00'), 'started_at': '2026-11-01T02:00:00Z',
                               'reason': 'not kept: day 2026-11-01 is older than the 1 newest day with a backup; '
                                         'no week kept (weekly=0); no month kept (monthly=0)'}]


def test_order_is_newest_first_with_sequence_within_a_second_and_undated_last():
    second = T('2026-11-21 02:00')
    backups = [{'name': 'backup_2026-11-21_02-00-00.sql', 'started_at': second, 'verified': True},
               {'name': 'backup_2026-11-21_02-00-00_2.sql', 'started_at': second, 'verified': True},
               {'name': 'backup_2026-11-21_02-00-00_10.sql', 'started_at': second, 'verified': True},
               B(None, name='b-undated.sql'), B(None, name='a-undated.sql'), B('2026-11-22 02:00', verified=False)]
    plan = rt.plan_retention(backups, NOW, daily=0, weekly=0)
    assert names(plan['keep']) == [N('2026-11-22 02:00'), 'backup_2026-11-21_02-00-00_10.sql', 'a-undated.sql', 'b-undated.sql']
    assert names(plan['delete']) == ['backup_2026-11-21_02-00-00_2.sql', 'backup_2026-11-21_02-00-00.sql']


def test_plan_is_deterministic_whatever_the_input_order():
    backups = [B('2026-%02d-%02d %02d:00' % (month, day, hour)) for month in (9, 10, 11) for day in (1, 9, 17, 20) for hour in (2, 14)]
    backups += [B(None, name='x.sql'), B('2026-11-20 03:00', verified=False), B('2026-10-09 05:00', locked=True)]
    expected = rt.plan_retention(backups, NOW, daily=3, weekly=2, monthly=2)
    rng = random.Random(7)
    for dummy in range(20):
        shuffled = list(backups)
        rng.shuffle(shuffled)
        assert rt.plan_retention(shuffled, NOW, daily=3, weekly=2, monthly=2) == expected
    assert json.loads(json.dumps(expected)) == expected


def test_input_is_not_modified():
    backups = [B('2026-11-21 02:00'), B('2026-11-01 02:00')]
    before = [dict(backup) for backup in backups]
    rt.plan_retention(backups, NOW, daily=1, weekly=0)
    assert backups == before


@pytest.mark.parametrize('protect, backups', [
    ('backup_2026-11-21_02-00-00.sql', [B('2026-11-20 02:00')]),
    ('backup_2026-11-21_02-00-00.sql', [B('2026-11-21 02:00', verified=False), B('2026-11-20 02:00')]),
])
def test_protect_that_is_not_a_verified_backup_stops_everything(protect, backups):
    with pytest.raises(rt.RetentionError) as err:
        rt.plan_retention(backups, NOW, daily=0, weekly=0, protect=protect, where='/var/backups/fleet')
    assert str(err.value) == ("retention skipped: this run's backup backup_2026-11-21_02-00-00.sql is not a verified backup in "
                              "/var/backups/fleet; nothing was deleted")
    assert err.value.code == 'retention_skipped'
    assert err.value.to_result()['backup'] == protect


@pytest.mark.parametrize('counts', [{'daily': -1}, {'weekly': 1.5}, {'monthly': True}, {'daily': '7'}])
def test_counts_must_be_whole_numbers(counts):
    with pytest.raises(ValueError):
        rt.plan_retention([B('2026-11-21 02:00')], NOW, **counts)


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match='listed twice'):
        rt.plan_retention([B('2026-11-21 02:00'), B('2026-11-21 02:00')], NOW)


# --------------------------------------------------------------------------------------------
# plan_safety_dumps
# --------------------------------------------------------------------------------------------

def S(stamp, **kwargs):
    return B(stamp, name=N(stamp, 'safety') if stamp else kwargs.pop('name'), **kwargs)


def test_safety_dumps_keep_the_newest_two():
    dumps = [S('2026-11-01 10:00'), S('2026-11-21 10:00'), S('2026-11-10 10:00'), S('2026-11-05 10:00')]
    plan = rt.plan_safety_dumps(dumps)
    assert plan['keep'] == [
        {'name': N('2026-11-21 10:00', 'safety'), 'started_at': '2026-11-21T10:00:00Z', 'reasons': ['one of the 2 newest safety dumps']},
        {'name': N('2026-11-10 10:00', 'safety'), 'started_at': '2026-11-10T10:00:00Z', 'reasons': ['one of the 2 newest safety dumps']}]
    assert names(plan['delete']) == [N('2026-11-05 10:00', 'safety'), N('2026-11-01 10:00', 'safety')]
    assert plan['delete'][0]['reason'] == 'not kept: older than the 2 newest safety dumps (keep=2)'
    assert plan['locked'] == []


def test_safety_dumps_undated_unverified_locked_protect_and_keep_zero():
    dumps = [S(None, name='safety-by-hand.sql'), S('2026-11-21 10:00', verified=False), S('2026-11-20 10:00'),
             S('2026-11-19 10:00', locked=True), S('2026-11-18 10:00')]
    plan = rt.plan_safety_dumps(dumps, keep=0, protect=N('2026-11-18 10:00', 'safety'))
    assert dict((e['name'], e['reasons']) for e in plan['keep']) == {
        N('2026-11-21 10:00', 'safety'): [rt.UNVERIFIED], N('2026-11-18 10:00', 'safety'): [rt.PROTECTED],
        'safety-by-hand.sql': [rt.UNDATED]}
    assert names(plan['delete']) == [N('2026-11-20 10:00', 'safety')]
    assert names(plan['locked']) == [N('2026-11-19 10:00', 'safety')]


def test_safety_dumps_in_the_future_do_not_count_when_now_is_given():
    dumps = [S('2026-12-01 10:00'), S('2026-11-20 10:00'), S('2026-11-19 10:00')]
    plan = rt.plan_safety_dumps(dumps, keep=1, now=NOW)
    assert names(plan['keep']) == [N('2026-12-01 10:00', 'safety'), N('2026-11-20 10:00', 'safety')]
    assert names(plan['delete']) == [N('2026-11-19 10:00', 'safety')]
    with pytest.raises(rt.RetentionError):
        rt.plan_safety_dumps(dumps, protect='safety_missing.sql')
    with pytest.raises(ValueError):
        rt.plan_safety_dumps(dumps, keep=-1)


# --------------------------------------------------------------------------------------------
# retention_diff
# --------------------------------------------------------------------------------------------

def test_retention_diff_shows_every_deletion_with_its_reason():
    backups = [B('2026-11-21 02:00'), B('2026-11-20 02:00', locked=True), B('2026-11-19 02:00'), B(None, name='hand.sql')]
    plan = rt.plan_retention(backups, NOW, daily=1, weekly=0)
    diff = rt.retention_diff(plan, '/var/backups/fleet')
    gone = 'not kept: day 2026-11-19 is older than the 1 newest day with a backup; no week kept (weekly=0); no month kept (monthly=0)'
    locked = gone.replace('2026-11-19', '2026-11-20')
    kept = '%s  (keep: %s, %s)\n' % (N('2026-11-21 02:00'), rt.NEWEST, daily('2026-11-21'))
    assert diff == {
        'before': (kept + '%s  (locked, not deleted: %s)\n' % (N('2026-11-20 02:00'), locked)
                   + '%s  (delete: %s)\n' % (N('2026-11-19 02:00'), gone) + 'hand.sql  (keep: %s)\n' % rt.UNDATED),
        'after': kept + '%s  (locked, not deleted: %s)\n' % (N('2026-11-20 02:00'), locked) + 'hand.sql  (keep: %s)\n' % rt.UNDATED,
        'before_header': '/var/backups/fleet', 'after_header': '/var/backups/fleet'}


def test_retention_diff_without_deletions_is_unchanged():
    diff = rt.retention_diff(rt.plan_retention([B('2026-11-21 02:00')], NOW), 's3://bucket/fleet/')
    assert diff['before'] == diff['after'] != ''
    assert rt.retention_diff({'keep': [], 'delete': [], 'locked': []}, 'x')['before'] == ''


# --------------------------------------------------------------------------------------------
# local_backups
# --------------------------------------------------------------------------------------------

def _manifest(path, started_at, **overrides):
    sha256, size = artifact_digest(path)
    fields = dict(collection_version='0.1.0', file=os.path.basename(path), dump_format='plain', compression='none',
                  size=size, sha256=sha256, database='telemetry_db', server_version='15.18', pg_dump_version='15.18',
                  started_at=started_at, finished_at=started_at + datetime.timedelta(seconds=25), row_counts={'photo': 1},
                  transport='compose')
    fields.update(overrides)
    return build_manifest(**fields)


def _backup(directory, stamp, prefix='backup', data=b'-- dump\n', **overrides):
    """Write an artifact and its manifest in ``directory``; return its path."""
    path = os.path.join(str(directory), N(stamp, prefix))
    with open(path, 'wb') as fileobj:
        fileobj.write(data)
    write_manifest(path, _manifest(path, T(stamp), **overrides))
    return path


def test_local_backups_lists_managed_artifacts_with_a_cheap_verification(tmp_path):
    good = _backup(tmp_path, '2026-11-21 02:00')
    grown = _backup(tmp_path, '2026-11-20 02:00')
    with open(grown, 'ab') as fileobj:
        fileobj.write(b'more')
    _backup(tmp_path, '2026-11-19 02:00', database='other_db')
    moved = _backup(tmp_path, '2026-11-18 02:00', file='backup_elsewhere.sql')
    (tmp_path / 'backup_2026-11-17_02-00-00.sql').write_bytes(b'no manifest: hand-made, not managed')
    (tmp_path / 'backup_2026-11-16_02-00-00.sql').write_bytes(b'x')
    (tmp_path / 'backup_2026-11-16_02-00-00.sql.manifest.json').write_bytes(b'{not json')
    directory = tmp_path / N('2026-11-15 02:00').replace('.sql', '.dir')
    directory.mkdir()
    (directory / 'toc.dat').write_bytes(b'toc')
    (directory / '3345.dat.gz').write_bytes(b'12345')
    write_manifest(str(directory), _manifest(str(directory), T('2026-11-15 02:00'), dump_format='directory', compression='gzip'))

    listed = ra.local_backups(str(tmp_path), database='telemetry_db')
    assert [(b['name'], b['verified'], b['locked']) for b in listed] == [
        (os.path.basename(good), True, False), (os.path.basename(grown), False, False), (os.path.basename(moved), False, False),
        (directory.name, True, False)]
    assert listed[0] == {'name': os.path.basename(good), 'started_at': T('2026-11-21 02:00'), 'verified': True, 'locked': False,
                         'problem': None, 'path': good}
    assert listed[1]['problem'] == 'size mismatch: the manifest says 8 bytes, the artifact has 12'
    assert listed[2]['problem'] == 'the manifest describes backup_elsewhere.sql, not %s' % os.path.basename(moved)
    assert len(ra.local_backups(str(tmp_path))) == 5


def test_local_backups_filters_on_prefix_for_safety_dumps(tmp_path):
    safety = tmp_path / 'safety'
    safety.mkdir()
    dump = _backup(safety, '2026-11-21 10:00', prefix='safety')
    _backup(safety, '2026-11-20 10:00', prefix='backup')
    assert names(ra.local_backups(str(safety), prefix='safety')) == [os.path.basename(dump)]
    assert ra.local_backups(str(tmp_path / 'missing'), prefix='safety') == []


def test_local_retention_end_to_end(tmp_path):
    paths = [_backup(tmp_path, stamp) for stamp in ('2026-11-21 02:00', '2026-11-20 02:00', '2026-11-01 02:00')]
    plan = rt.plan_retention(ra.local_backups(str(tmp_path)), NOW, daily=2, weekly=0, protect=os.path.basename(paths[0]),
                             where=str(tmp_path))
    result = ra.apply_plan(plan, ra.local_remover(str(tmp_path)))
    assert names(result['deleted']) == [os.path.basename(paths[2])] and result['errors'] == [] and result['locked'] == []
    assert sorted(os.listdir(str(tmp_path))) == sorted(os.path.basename(p) + suffix for p in paths[:2] for suffix in ('', '.manifest.json'))


def test_local_remover_removes_the_manifest_first(tmp_path, monkeypatch):
    path = _backup(tmp_path, '2026-11-21 02:00')
    order = []
    real_unlink = os.unlink
    monkeypatch.setattr(os, 'unlink', lambda target: (order.append(os.path.basename(target)), real_unlink(target)))
    ra.local_remover(str(tmp_path))(os.path.basename(path))
    assert order == [os.path.basename(path) + '.manifest.json', os.path.basename(path)]


# --------------------------------------------------------------------------------------------
# target_backups and apply_plan over a fake target
# --------------------------------------------------------------------------------------------

class FakeTarget(OffsiteTarget):
    """An in-memory OffsiteTarget: objects by name, Object Lock per name, failures on demand, a log of deletions."""

    kind = 'fake'
    label = 'fake://bucket/fleet/'

    def __init__(self):
        self.objects = {}
        self.locks = {}
        self.unreadable = set()
        self.failing_deletes = {}
        self.deleted = []

    def location(self, name):
        return self.label + name

    def list_names(self):
        return set(self.objects)

    def stat(self, name):
        if name not in self.objects:
            return None
        locked_until, legal_hold = self.locks.get(name, (None, False))
        return {'size': len(self.objects[name]), 'locked_until': locked_until, 'legal_hold': legal_hold}

    def get_bytes(self, name, limit):
        if name in self.unreadable or name not in self.objects:
            raise OffsiteError('%s cannot be read: access denied; grant s3:GetObject' % self.location(name))
        if len(self.objects[name]) > limit:
            raise OffsiteError('%s is larger than %d bytes' % (self.location(name), limit))
        return self.objects[name]

    def delete(self, name):
        if name in self.failing_deletes:
            raise self.failing_deletes[name]
        self.deleted.append(name)
        del self.objects[name]

    def add(self, stamp, data=b'-- dump\n', **overrides):
        name = N(stamp)
        self.objects[name] = data
        manifest = dict(file=name, dump_format='plain', compression='none', size=len(data), sha256='ab' * 32,
                        database='telemetry_db', server_version='15.18', pg_dump_version='15.18', collection_version='0.1.0',
                        started_at=T(stamp), finished_at=T(stamp), row_counts={'photo': 1}, transport='compose')
        manifest.update(overrides)
        self.objects[manifest_name(name)] = manifest_bytes(build_manifest(**manifest))
        return name


def test_target_backups_reads_manifests_sizes_and_locks():
    target = FakeTarget()
    good = target.add('2026-11-21 02:00')
    short = target.add('2026-11-20 02:00')
    target.objects[short] = b'-- du'
    locked = target.add('2026-11-19 02:00')
    target.locks[locked] = (T('2026-12-01 00:00'), False)
    expired = target.add('2026-11-18 02:00')
    target.locks[expired] = (T('2026-11-20 00:00'), False)
    held = target.add('2026-11-17 02:00')
    target.locks[held] = (None, True)
    unreadable = target.add('2026-11-16 02:00')
    target.unreadable.add(manifest_name(unreadable))
    broken = target.add('2026-11-15 02:00')
    target.objects[manifest_name(broken)] = b'{"file": '
    invalid = target.add('2026-11-14 02:00')
    target.objects[manifest_name(invalid)] = b'{"file": "x"}'
    other = target.add('2026-11-13 02:00', database='other_db')
    target.objects['backup_2026-11-12_02-00-00.sql'] = b'no manifest: incomplete upload'
    target.objects['backup_2026-11-11_02-00-00.sql.manifest.json'] = b'{}'

    listed = dict((b['name'], b) for b in ra.target_backups(target, database='telemetry_db', now=NOW))
    assert sorted(listed) == sorted([good, short, locked, expired, held, unreadable, broken, invalid])
    assert listed[good] == {'name': good, 'started_at': T('2026-11-21 02:00'), 'verified': True, 'locked': False, 'problem': None}
    assert listed[short]['verified'] is False and listed[short]['problem'].startswith('size mismatch')
    assert [listed[n]['locked'] for n in (locked, expired, held)] == [True, False, True]
    for name in (unreadable, broken, invalid):
        assert listed[name]['verified'] is False and listed[name]['started_at'] is None
    assert 'access denied' in listed[unreadable]['problem']
    assert listed[broken]['problem'].startswith('the manifest is not valid JSON')
    assert listed[invalid]['problem'].startswith('the manifest is invalid: missing field(s)')
    assert other in names(ra.target_backups(target, now=NOW))

    plan = rt.plan_retention(list(listed.values()), NOW, daily=1, weekly=0, protect=good, where=target.label)
    assert names(plan['delete']) == [expired]
    assert names(plan['locked']) == [locked, held]
    assert set(names(plan['keep'])) == set([good, short, unreadable, broken, invalid])


def test_target_backups_stat_failure_is_unverified():
    target = FakeTarget()
    name = target.add('2026-11-21 02:00')

    def stat(dummy):
        raise OffsiteError('HEAD failed: timeout')
    target.stat = stat
    assert ra.target_backups(target, now=NOW)[0]['problem'] == 'the artifact cannot be examined: HEAD failed: timeout'
    assert ra.target_backups(target, now=NOW)[0]['name'] == name


def test_apply_plan_over_a_target_deletes_manifest_first_and_collects_errors():
    target = FakeTarget()
    for day in range(14, 22):
        target.add('2026-11-%02d 02:00' % day)
    refused = N('2026-11-18 02:00')
    target.failing_deletes[manifest_name(refused)] = OffsiteLockedError('%s is under Object Lock until 2026-12-01' % refused)
    failing = N('2026-11-16 02:00')
    target.failing_deletes[failing] = OffsiteError('delete failed: access denied')
    plan = rt.plan_retention(ra.target_backups(target, now=NOW), NOW, daily=3, weekly=0)
    plan['locked'].append({'name': 'already-locked.sql', 'started_at': None, 'reason': 'not kept: ...'})

    result = ra.apply_plan(plan, ra.target_remover(target))
    deleted = [N('2026-11-%02d 02:00' % day) for day in (17, 15, 14)]
    assert names(result['deleted']) == deleted
    assert result['deleted'][0]['reason'].startswith('not kept: day 2026-11-17 is older than the 3 newest days')
    assert names(result['locked']) == ['already-locked.sql', refused]
    assert result['locked'][1]['msg'] == '%s is under Object Lock until 2026-12-01' % refused
    assert result['errors'] == [{'name': failing, 'msg': 'could not delete %s: delete failed: access denied' % failing}]
    # every artifact's manifest goes before the artifact; the failed one lost its manifest only, and is no backup any more
    for name in deleted:
        assert target.deleted.index(manifest_name(name)) == target.deleted.index(name) - 1
    assert manifest_name(failing) in target.deleted and failing in target.objects
    assert refused in target.objects and manifest_name(refused) in target.objects


def test_apply_plan_collects_os_errors_and_goes_on():
    calls = []

    def remove(name):
        calls.append(name)
        if name == 'b.sql':
            raise PermissionError(13, 'Permission denied')
    plan = {'keep': [], 'locked': [], 'delete': [{'name': n, 'started_at': None, 'reason': 'r'} for n in ('a.sql', 'b.sql', 'c.sql')]}
    result = ra.apply_plan(plan, remove)
    assert calls == ['a.sql', 'b.sql', 'c.sql']
    assert names(result['deleted']) == ['a.sql', 'c.sql']
    assert result['errors'] == [{'name': 'b.sql', 'msg': 'could not delete b.sql: Permission denied'}]
    assert ra.apply_plan({'keep': [], 'delete': [], 'locked': []}, remove) == {'deleted': [], 'locked': [], 'errors': []}


def test_plan_retention_needs_now():
    with pytest.raises(ValueError, match='current time'):
        rt.plan_retention([B('2026-11-21 02:00')], None)


def test_lock_extensions_follow_the_retention_class_of_each_keeper():
    plan = {'keep': [
        {'name': 'a', 'started_at': '2026-11-30T02:00:00Z',
         'reasons': ['newest: the newest verified backup', 'daily: newest of day 2026-11-30', 'weekly: newest of week 2026-W49']},
        {'name': 'b', 'started_at': '2026-11-01T02:00:00Z', 'reasons': ['monthly: newest of month 2026-11']},
        {'name': 'c', 'started_at': '2026-11-29T02:00:00Z', 'reasons': ['daily: newest of day 2026-11-29']},
        {'name': 'd', 'started_at': None, 'reasons': ['undated: the policy cannot date it']},
    ]}
    wanted = dict(ra.lock_extensions(plan, {'weekly': 35, 'monthly': 400}))
    assert wanted == {'a': T('2027-01-04 02:00'), 'b': T('2027-12-06 02:00')}
    assert ra.lock_extensions(plan, {'weekly': 0, 'monthly': 0}) == []


class LockingTarget(object):
    """A target that records Object Lock extensions; ``locked`` holds the current retain-until of each name."""

    def __init__(self, locked):
        self.locked = dict(locked)
        self.calls = []

    def extend_lock(self, name, mode, until):
        self.calls.append((name, mode, until))
        if self.locked.get(name) is not None and self.locked[name] >= until:
            return False
        self.locked[name] = until
        return True


def test_extend_locks_extends_manifest_first_and_never_shortens():
    target = LockingTarget({'a': T('2027-06-01 00:00'), 'a.manifest.json': T('2027-06-01 00:00'), 'b': None})
    extended = ra.extend_locks(target, 'GOVERNANCE', [('a', T('2027-01-04 02:00')), ('b', T('2027-12-06 02:00'))])
    assert extended == [{'name': 'b', 'locked_until': '2027-12-06T02:00:00Z'}]
    assert [call[0] for call in target.calls] == ['a.manifest.json', 'a', 'b.manifest.json', 'b']
    assert target.locked['a'] == T('2027-06-01 00:00')
