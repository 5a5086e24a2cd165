# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.modules import dr_report
from ansible_collections.fleet_telemetry.dr.tests.unit.support.module_harness import run_main


def _run(args, check_mode=False):
    return run_main(dr_report.main, args, check_mode)


def _args(tmp_path, **extra):
    args = {'report_dir': str(tmp_path / 'reports'), 'name': 'drill_2026-12-01_18-30-00',
            'data': {'status': 'passed', 'rto_seconds': 3.5, 'tables': [{'table': 'photo', 'expected': 2, 'actual': 2, 'ok': True}],
                     'steps': [{'name': 'restore', 'ok': True, 'seconds': 3.0}]}}
    args.update(extra)
    return args


def test_writes_the_three_files_and_says_where(tmp_path):
    outcome, result = _run(_args(tmp_path, history=str(tmp_path / 'history.jsonl')))
    assert outcome == 'exit' and result['changed'] is True
    assert result['markdown_path'] == str(tmp_path / 'reports' / 'drill_2026-12-01_18-30-00.md')
    assert result['msg'].endswith('; report %s' % result['markdown_path'])
    assert sorted(os.listdir(str(tmp_path / 'reports'))) == ['drill_2026-12-01_18-30-00.json', 'drill_2026-12-01_18-30-00.md',
                                                             'drill_2026-12-01_18-30-00.xml']
    assert [row['counts'] for row in result['trend']] == [{'photo': 2}]
    assert json.loads((tmp_path / 'history.jsonl').read_text())['rto_seconds'] == 3.5


def test_second_run_is_unchanged(tmp_path):
    _run(_args(tmp_path))
    outcome, result = _run(_args(tmp_path))
    assert outcome == 'exit' and result['changed'] is False


def test_check_mode_writes_nothing(tmp_path):
    outcome, result = _run(_args(tmp_path, history=str(tmp_path / 'h.jsonl')), check_mode=True)
    assert outcome == 'exit' and result['changed'] is True and result['trend'][0]['name'] == 'drill_2026-12-01_18-30-00'
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('data, code', [({'status': 'maybe'}, 'bad_data'), ({'status': 'passed', 'password': 's3cr3t-value'}, 'secret_in_data')])
def test_failures_have_an_error_code_and_no_secret(tmp_path, data, code):
    outcome, result = _run(_args(tmp_path, data=data))
    assert outcome == 'fail' and result['error_code'] == code and result['changed'] is False
    assert 's3cr3t-value' not in json.dumps(result)
    assert not os.path.exists(str(tmp_path / 'reports'))


def test_kind_and_formats_are_validated(tmp_path):
    outcome, result = _run(_args(tmp_path, kind='restore', formats=['json']))
    assert outcome == 'exit' and result['junit_path'] is None
    assert json.load(open(result['json_path']))['kind'] == 'restore'
