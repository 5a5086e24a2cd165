# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of the backup_freshness module's glue: real backups and drill reports in tmp_path, the clock fixed, the
offsite target in memory (``make_target`` is the boundary), the metrics file read back and checked."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.modules import backup_freshness
from ansible_collections.fleet_telemetry.dr.tests.unit.plugins.module_utils.test_freshness import (
    DB,
    NOW,
    MemoryTarget,
    backup,
    client_samples,
    drill,
    parsed_samples,
    stamp,
)
from ansible_collections.fleet_telemetry.dr.tests.unit.support.module_harness import run_main

S3 = {'name': 'offsite-s3', 'kind': 's3', 'bucket': 'acme-fleet-backups', 'prefix': 'prod/'}


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    monkeypatch.setattr(backup_freshness, 'utc_now', lambda: NOW.replace(microsecond=123456))


@pytest.fixture
def target(monkeypatch):
    """The in-memory target every ``targets`` entry becomes; records the options the module validated."""
    memory = MemoryTarget()
    memory.options = []
    monkeypatch.setattr(backup_freshness, 'make_target', lambda module, options: memory.options.append(options) or memory)
    return memory


@pytest.fixture
def place(tmp_path):
    backups = tmp_path / 'backups'
    textfiles = tmp_path / 'textfile'
    backups.mkdir()
    textfiles.mkdir()
    return {'backup_dir': str(backups), 'metrics': str(textfiles / 'fleet_dr.prom')}


def fresh(place, target):
    path = backup(place['backup_dir'], 3)
    with open(path, 'rb') as handle:
        target.add_backup(stamp(3), data=handle.read())
    drill(place['backup_dir'], 30)
    return path


def _run(place, check_mode=False, **args):
    args = dict({'backup_dir': place['backup_dir'], 'databases': [DB], 'metrics_file': place['metrics']}, **args)
    return run_main(backup_freshness.main, args, check_mode)


def metrics(place):
    with open(place['metrics']) as handle:
        text = handle.read()
    return parsed_samples(text), text


def test_fresh_backups_pass_and_the_metrics_file_is_written(place, target):
    path = fresh(place, target)
    outcome, result = _run(place, targets=[S3])
    assert outcome == 'exit', result['msg']
    assert result['ok'] is True and result['problems'] == [] and result['changed'] is True
    assert result['checked_at'] == '2026-12-06T09:00:00Z' and result['metrics_file'] == place['metrics']
    assert result['databases'][DB]['backup']['name'] == os.path.basename(path)
    assert result['msg'].startswith('%s: newest backup %s, 3 h 0 min old' % (DB, os.path.basename(path)))
    assert target.options[0]['bucket'] == 'acme-fleet-backups' and target.options[0]['part_size_mb'] == 8
    assert target.mutations() == []
    samples, text = metrics(place)
    assert samples[('fleet_dr_freshness_ok', ())] == 1
    assert samples[('fleet_dr_offsite_lag_seconds', (('database', DB), ('target', 'offsite-s3')))] == 0
    assert stat.S_IMODE(os.stat(place['metrics']).st_mode) == 0o644
    assert client_samples(text) == samples


def test_a_second_run_rewrites_the_file_and_reports_no_change(place, target):
    fresh(place, target)
    _run(place, targets=[S3])
    os.utime(place['metrics'], (0, 0))
    outcome, result = _run(place, targets=[S3])
    assert outcome == 'exit' and result['changed'] is False
    assert os.stat(place['metrics']).st_mtime > 0


def test_stale_backup_fails_with_every_problem_and_still_writes_the_metrics(place, target):
    backup(place['backup_dir'], 30)
    outcome, result = _run(place, targets=[S3])
    assert outcome == 'fail' and result['error_code'] == 'not_fresh' and result['changed'] is True
    assert [problem['code'] for problem in result['problems']] == ['backup_stale', 'offsite_missing', 'drill_missing']
    assert result['msg'] == '; '.join(problem['msg'] for problem in result['problems'])
    samples, dummy = metrics(place)
    assert samples[('fleet_dr_freshness_ok', ())] == 0
    assert samples[('fleet_dr_freshness_problems', (('code', 'backup_stale'),))] == 1


def test_no_backup_and_a_failed_drill(place):
    drill(place['backup_dir'], 2, passed=False)
    outcome, result = _run(place)
    assert outcome == 'fail'
    assert [problem['code'] for problem in result['problems']] == ['backup_missing', 'drill_failed']
    assert result['databases'][DB]['backup'] is None and result['databases'][DB]['drill']['status'] == 'failed'


def test_problems_without_failing(place):
    outcome, result = _run(place, fail_on_problems=False, check_drill=False)
    assert outcome == 'exit' and result['ok'] is False
    assert [problem['code'] for problem in result['problems']] == ['backup_missing']
    assert result['databases'][DB]['drill'] is None


def test_check_mode_reports_the_same_and_writes_nothing(place, target):
    fresh(place, target)
    outcome, result = _run(place, check_mode=True, targets=[S3])
    assert outcome == 'exit' and result['ok'] is True and result['changed'] is True
    assert not os.path.exists(place['metrics'])


def test_the_drill_history_option_and_no_metrics_file(place, tmp_path):
    backup(place['backup_dir'], 1)
    elsewhere = str(tmp_path / 'elsewhere')
    os.makedirs(elsewhere)
    history = drill(elsewhere, 1)
    outcome, result = _run(place, metrics_file=None, drill_history=history)
    assert outcome == 'exit' and result['changed'] is False and result['metrics_file'] is None
    assert result['databases'][DB]['drill']['status'] == 'passed'


@pytest.mark.parametrize('args, words', [
    ({'max_backup_age': 'a day'}, "max_backup_age 'a day' is not a duration"),
    ({'max_offsite_lag': '0'}, "max_offsite_lag '0' is not a duration"),
    ({'targets': [{'kind': 's3'}]}, 'targets[0]: kind is s3 but all of the following are missing: bucket'),
    ({'targets': [{'kind': 'ftp', 'host': 'h'}]}, 'targets[0]: value of kind must be one of: s3, ssh, got: ftp'),
    ({'metrics_file': '/nonexistent-dir/fleet_dr.prom'}, 'the directory of metrics_file /nonexistent-dir/fleet_dr.prom does not exist'),
    ({'targets': [S3, dict(S3, prefix='other/')]}, 'targets[0] and targets[1] are both named offsite-s3: give each target a distinct name'),
])
def test_bad_options_fail_before_anything_is_written(place, args, words):
    outcome, result = _run(place, **args)
    assert outcome == 'fail' and result['error_code'] == 'bad_option' and result['changed'] is False
    assert words in result['msg'], result['msg']
    assert not os.path.exists(place['metrics'])


def test_the_drill_report_dir_option_finds_the_history_and_the_failed_drill_s_report(place, tmp_path):
    """The dr_drill role's dr_drill_report_dir: the history and the reports are there, not under backup_dir."""
    backup(place['backup_dir'], 1)
    elsewhere = str(tmp_path / 'elsewhere')
    history = drill(elsewhere, 2, passed=False)
    outcome, result = _run(place, drill_report_dir=os.path.dirname(history))
    assert outcome == 'fail' and [p['code'] for p in result['problems']] == ['drill_failed']
    facts = result['databases'][DB]['drill']
    assert facts['msg'] == 'photo 7 does not decrypt with the key'
    assert facts['report'] == os.path.join(os.path.dirname(history), facts['name'] + '.md') and os.path.isfile(facts['report'])


@pytest.mark.parametrize('check_mode', [False, True])
def test_an_unwritable_metrics_directory_names_metrics_file_also_in_check_mode(place, target, monkeypatch, check_mode):
    """As root every directory is writable: the boundary (os.access) says no, as it does to the AWX job's user."""
    fresh(place, target)
    real = os.access
    monkeypatch.setattr(os, 'access', lambda path, mode: False if path == os.path.dirname(place['metrics']) else real(path, mode))
    outcome, result = _run(place, check_mode=check_mode, targets=[S3])
    assert outcome == 'fail' and result['error_code'] == 'bad_option'
    assert 'the directory of metrics_file %s is not writable by uid' % place['metrics'] in result['msg']
    assert 'set another metrics_file' in result['msg'] and 'backup_dir' not in result['msg']
    assert not os.path.exists(place['metrics'])


def test_no_secret_of_the_aws_options_in_the_result(place, target):
    fresh(place, target)
    outcome, result = _run(place, targets=[S3], access_key='AKIAEXAMPLEKEY', secret_key='very-secret-value-123')
    assert outcome == 'exit'
    text = json.dumps(result)
    assert 'very-secret-value-123' not in text and 'AKIAEXAMPLEKEY' not in text
