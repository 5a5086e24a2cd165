# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os
import stat
import threading
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _report as rp
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _report_render as rr
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._lock import BackupLock


def drill_data(**overrides):
    data = {
        'status': 'passed',
        'msg': 'restored and verified telemetry_db in the scratch stack',
        'started_at': '2026-12-01T18:30:00Z',
        'finished_at': '2026-12-01T18:31:02Z',
        'rto_seconds': 62.1,
        'rpo_seconds': 45030.0,
        'artifact': {'path': '/var/backups/t/backup_2026-12-01_06-00-00.sql.zst', 'size': 17825792, 'sha256': 'ab' * 32,
                     'dump_format': 'plain', 'started_at': '2026-12-01T06:00:00Z'},
        'database': 'telemetry_db',
        'target': {'project_name': 'fleetdrill1', 'port': 45432},
        'tables': [{'table': 'audit_log', 'expected': 300, 'actual': 300, 'ok': True},
                   {'table': 'photo', 'expected': 24, 'actual': 24, 'ok': True}],
        'photos': {'checked': 24, 'failed': 0, 'total': 24},
        'steps': [{'name': 'select artifact', 'ok': True, 'seconds': 0.4},
                  {'name': 'restore and verify', 'ok': True, 'seconds': 41.2, 'msg': 'restored | verified'}],
    }
    data.update(overrides)
    return data


def failed_data():
    return drill_data(status='failed', failed_step='restore and verify', msg='photo 7 does not decrypt: the artifact is damaged',
                      steps=[{'name': 'select artifact', 'ok': True, 'seconds': 0.4},
                             {'name': 'restore and verify', 'ok': False, 'seconds': 3.0, 'msg': 'photo 7 does not decrypt'}],
                      tables=[{'table': 'photo', 'expected': 24, 'actual': 23, 'ok': False}])


# --------------------------------------------------------------------------------------------
# Checks of the data
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('data, code', [
    ({}, 'bad_data'),
    ({'status': 'ok'}, 'bad_data'),
    ('passed', 'bad_data'),
    ({'status': 'passed', 'target': {'password': 'x'}}, 'secret_in_data'),
    ({'status': 'passed', 'encryption_key': 'x'}, 'secret_in_data'),
    ({'status': 'passed', 'steps': [{'name': 'a', 'db_token': 'x'}]}, 'secret_in_data'),
])
def test_check_data_refuses(data, code):
    with pytest.raises(rp.ReportError) as err:
        rp.check_data(data, 'drill', 'drill_1')
    assert err.value.code == code


@pytest.mark.parametrize('kind, name', [('backup', 'x'), ('drill', ''), ('drill', 'a/b'), ('drill', '.hidden')])
def test_check_data_refuses_bad_options(kind, name):
    with pytest.raises(rp.ReportError) as err:
        rp.check_data({'status': 'passed'}, kind, name)
    assert err.value.code == 'bad_option'


def test_secret_keys_names_the_nested_path():
    assert rp.secret_keys({'a': {'b': [{'api_secret': 1}]}, 'key_fingerprint': 'v1:00'}) == ['a.b.0.api_secret']


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('value, text', [
    (None, '-'), ('x', '-'), (0.04, '0.0 s'), (12.34, '12.3 s'), (62.1, '1 min 2 s'), (45030, '12 h 30 min'),
    (90061, '1 d 1 h'), (float('nan'), '-'), ('7.5', '7.5 s'),
])
def test_format_seconds(value, text):
    assert rr.format_seconds(value) == text


@pytest.mark.parametrize('value, text', [(None, '-'), (512, '512 B'), (2048, '2.0 KiB'), (17825792, '17.0 MiB'),
                                         (3 * 1024 ** 4, '3072.0 GiB')])
def test_format_size(value, text):
    assert rr.format_size(value) == text


@pytest.mark.parametrize('values, line', [
    ([], ''),
    ([None], ''),
    ([5, 5], u'\u2585\u2585'),
    ([1, 8], u'\u2581\u2588'),
    ([0, None, 7, 3.5], u'\u2581.\u2588\u2585'),
])
def test_sparkline(values, line):
    assert rr.sparkline(values) == line


def test_markdown_cells_escape_pipes_and_newlines():
    assert rr._cell('a|b\nc') == 'a\\|b c'
    assert rr._cell(None) == '-'


# --------------------------------------------------------------------------------------------
# Rows, summary and trend
# --------------------------------------------------------------------------------------------

def test_summary_row_of_a_full_report():
    row = rr.summary_row(drill_data(), 'drill', 'drill_1')
    assert row == {
        'name': 'drill_1', 'kind': 'drill', 'status': 'passed', 'failed_step': None,
        'started_at': '2026-12-01T18:30:00Z', 'finished_at': '2026-12-01T18:31:02Z', 'rto_seconds': 62.1, 'rpo_seconds': 45030.0,
        'database': 'telemetry_db', 'target': 'fleetdrill1', 'artifact': 'backup_2026-12-01_06-00-00.sql.zst',
        'size': 17825792, 'sha256': 'ab' * 32, 'counts': {'audit_log': 300, 'photo': 24}, 'photos_checked': 24, 'photos_failed': 0,
    }


def test_summary_row_survives_missing_and_odd_keys():
    row = rr.summary_row({'status': 'failed', 'tables': 'nope', 'artifact': ['x'], 'photos': None, 'rto_seconds': 'soon'}, 'drill', 'n')
    assert row['counts'] == {} and row['artifact'] is None and row['rto_seconds'] is None and row['photos_checked'] is None


def test_summary_line_of_a_failure_names_the_step_and_the_cause():
    line = rr.summary_line(failed_data(), 'drill', 'drill_2')
    assert line.startswith('drill drill_2 failed at step restore and verify: telemetry_db from backup_2026-12-01_06-00-00.sql.zst')
    assert line.endswith('photo 7 does not decrypt: the artifact is damaged')
    assert 'photo=23' in line


def test_merge_history_appends_or_replaces_in_place():
    rows = [{'name': 'a', 'v': 1}, {'name': 'b', 'v': 1}]
    assert rp.merge_history(rows, {'name': 'c', 'v': 1}) == rows + [{'name': 'c', 'v': 1}]
    assert rp.merge_history(rows, {'name': 'a', 'v': 2}) == [{'name': 'a', 'v': 2}, {'name': 'b', 'v': 1}]


def test_trend_keeps_the_newest_rows():
    rows = [{'name': str(i)} for i in range(15)]
    assert [row['name'] for row in rp.trend(rows, 3)] == ['12', '13', '14']
    assert rp.trend(rows[:2], 10) == rows[:2]


def test_render_trend_table_and_sparkline():
    rows = [rr.summary_row(drill_data(rto_seconds=rto, started_at='2026-12-0%dT00:00:00Z' % day), 'drill', 'd%d' % day)
            for day, rto in ((1, 10.0), (2, 40.0), (3, 25.0))]
    lines = rr.render_trend(rows, 'drill')
    assert lines[0] == '## Trend (last 3 drills)'
    table = [line for line in lines if line.startswith('| 2026-')]
    assert [line.split(' | ')[2] for line in table] == ['10.0 s', '40.0 s', '25.0 s']
    assert 'audit_log=300, photo=24' in table[0]
    assert u'RTO `\u2581\u2588\u2585` (oldest to newest; min 10.0 s, max 40.0 s)' in lines
    assert rr.render_trend([], 'drill') == []


# --------------------------------------------------------------------------------------------
# Renderers
# --------------------------------------------------------------------------------------------

def test_render_json_keeps_the_data_and_adds_the_metadata():
    document = json.loads(rr.render_json(drill_data(extra={'x': 1}), 'drill', 'drill_1'))
    assert document['format_version'] == 1 and document['kind'] == 'drill' and document['name'] == 'drill_1'
    assert document['extra'] == {'x': 1} and document['tables'][1]['actual'] == 24
    assert document['summary'].startswith('drill drill_1 passed')


def test_render_json_is_deterministic():
    assert rr.render_json(drill_data(), 'drill', 'n') == rr.render_json(drill_data(), 'drill', 'n')


def test_render_markdown_sections():
    text = rr.render_markdown(drill_data(), 'drill', 'drill_1')
    assert text.startswith('# DR drill report: drill_1\n')
    assert '| status | PASSED |' in text
    assert '| RTO (start to verified) | 1 min 2 s |' in text
    assert '| RPO (age of the backup) | 12 h 30 min |' in text
    assert '| target | port=45432, project_name=fleetdrill1 |' in text
    assert '| restore and verify | ok | 41.2 | restored \\| verified |' in text
    assert '| photo | 24 | 24 | ok |' in text
    assert '24 of 24 photo(s) decrypted with the key, 0 failed.' in text
    assert '## Trend' not in text and '## Safety dump' not in text


def test_render_markdown_of_a_restore_with_safety_dump_and_recovery():
    data = drill_data(safety_dump={'path': '/b/safety_x.sql.zst', 'sha256': 'cd' * 32}, recovery='restore /b/safety_x.sql.zst with restore.yml')
    text = rr.render_markdown(data, 'restore', 'restore_1')
    assert text.startswith('# Restore report: restore_1\n')
    assert '| /b/safety_x.sql.zst | %s |' % ('cd' * 32) in text
    assert '## How to get back\n\nrestore /b/safety_x.sql.zst with restore.yml\n' in text


def test_render_markdown_of_the_bare_minimum():
    text = rr.render_markdown({'status': 'failed'}, 'drill', 'n')
    assert '| status | FAILED |' in text and '## Steps' not in text


def _junit(data, kind='drill', name='drill_1'):
    return ET.fromstring(rr.render_junit(data, kind, name))


def test_junit_one_testcase_per_step():
    root = _junit(drill_data())
    suite = root.find('testsuite')
    assert root.get('tests') == '2' and root.get('failures') == '0'
    assert suite.get('name') == 'drill_1' and suite.get('timestamp') == '2026-12-01T18:30:00Z' and suite.get('time') == '62.100'
    cases = suite.findall('testcase')
    assert [(case.get('name'), case.get('time'), case.find('failure')) for case in cases] == [
        ('select artifact', '0.400', None), ('restore and verify', '41.200', None)]
    props = dict((prop.get('name'), prop.get('value')) for prop in suite.find('properties'))
    assert props['count.photo'] == '24' and props['status'] == 'passed' and props['rpo_seconds'] == '45030.0'


def test_junit_failed_step_has_a_failure_element():
    suite = _junit(failed_data()).find('testsuite')
    assert suite.get('failures') == '1'
    failing = [case for case in suite.findall('testcase') if case.find('failure') is not None]
    assert [case.get('name') for case in failing] == ['restore and verify']
    assert failing[0].find('failure').get('message') == 'photo 7 does not decrypt'


def test_junit_failed_report_is_never_green():
    data = drill_data(status='failed', failed_step='teardown', msg='the scratch stack could not be removed')
    cases = _junit(data).find('testsuite').findall('testcase')
    assert cases[-1].get('name') == 'teardown' and cases[-1].find('failure').text == 'the scratch stack could not be removed'
    bare = _junit({'status': 'failed', 'msg': 'x'}).find('testsuite').findall('testcase')
    assert len(bare) == 1 and bare[0].get('name') == 'drill' and bare[0].find('failure') is not None
    passed = _junit({'status': 'passed'}, kind='restore').find('testsuite').findall('testcase')
    assert len(passed) == 1 and passed[0].get('name') == 'restore' and passed[0].find('failure') is None


def test_junit_escapes_markup_in_messages():
    data = failed_data()
    data['steps'][1]['msg'] = '<b>&"quoted"</b>'
    failure = _junit(data).find('testsuite').findall('testcase')[1].find('failure')
    assert failure.get('message') == '<b>&"quoted"</b>'


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

def test_write_report_writes_all_formats_with_private_modes(tmp_path):
    report_dir = str(tmp_path / 'reports' / 'nested')
    result = rp.write_report(report_dir, 'drill_1', 'drill', drill_data())
    assert result['changed'] is True and result['status'] == 'passed'
    assert stat.S_IMODE(os.stat(report_dir).st_mode) == 0o700
    for key, ext in (('json_path', '.json'), ('markdown_path', '.md'), ('junit_path', '.xml')):
        assert result[key] == os.path.join(report_dir, 'drill_1' + ext)
        assert stat.S_IMODE(os.stat(result[key]).st_mode) == 0o600
    assert sorted(result['written']) == sorted([result['json_path'], result['markdown_path'], result['junit_path']])
    assert json.load(open(result['json_path']))['rto_seconds'] == 62.1
    assert result['history_path'] is None and result['trend'] == []
    assert sorted(os.listdir(report_dir)) == ['drill_1.json', 'drill_1.md', 'drill_1.xml']


def test_write_report_twice_changes_nothing_and_new_data_rewrites(tmp_path):
    args = (str(tmp_path), 'drill_1', 'drill')
    history = str(tmp_path / 'history.jsonl')
    rp.write_report(*args, data=drill_data(), history=history)
    again = rp.write_report(*args, data=drill_data(), history=history)
    assert again['changed'] is False and again['written'] == []
    changed = rp.write_report(*args, data=drill_data(rto_seconds=1.0), history=history)
    assert changed['changed'] is True and len(changed['written']) == 3
    rows, skipped = rp.read_history(history)
    assert [row['rto_seconds'] for row in rows] == [1.0] and skipped == 0


def test_write_report_only_the_chosen_formats(tmp_path):
    result = rp.write_report(str(tmp_path), 'n', 'restore', {'status': 'passed'}, formats=['junit'])
    assert result['json_path'] is None and result['markdown_path'] is None
    assert os.listdir(str(tmp_path)) == ['n.xml']


@pytest.mark.parametrize('formats, trend_size', [([], 10), (['pdf'], 10), (['json'], 0)])
def test_write_report_bad_options(tmp_path, formats, trend_size):
    with pytest.raises(rp.ReportError) as err:
        rp.write_report(str(tmp_path), 'n', 'drill', {'status': 'passed'}, formats=formats, trend_size=trend_size)
    assert err.value.code == 'bad_option'
    assert os.listdir(str(tmp_path)) == []


def test_history_appends_rows_and_the_markdown_shows_the_trend(tmp_path):
    history = str(tmp_path / 'hist' / 'drills.jsonl')
    for index, rto in enumerate((30.0, 10.0, 20.0)):
        result = rp.write_report(str(tmp_path / 'r'), 'drill_%d' % index, 'drill', drill_data(rto_seconds=rto), history=history,
                                 trend_size=2)
    rows, dummy = rp.read_history(history)
    assert [row['name'] for row in rows] == ['drill_0', 'drill_1', 'drill_2']
    assert [row['name'] for row in result['trend']] == ['drill_1', 'drill_2']
    markdown = open(result['markdown_path']).read()
    assert '## Trend (last 2 drills)' in markdown and u'RTO `\u2581\u2588`' in markdown
    assert stat.S_IMODE(os.stat(history).st_mode) == 0o600
    assert not [name for name in os.listdir(os.path.dirname(history)) if '.partial-' in name]


def test_history_bad_lines_are_counted_and_dropped_on_rewrite(tmp_path):
    history = tmp_path / 'h.jsonl'
    history.write_text('{"name": "old", "status": "passed"}\nnot json\n[1]\n\n')
    result = rp.write_report(str(tmp_path), 'new', 'drill', {'status': 'passed'}, history=str(history))
    assert result['history_skipped_lines'] == 2
    assert [row['name'] for row in result['trend']] == ['old', 'new']
    assert rp.read_history(str(history)) == (result['trend'], 0)


def test_check_mode_writes_nothing_and_tells_the_truth(tmp_path):
    report_dir = str(tmp_path / 'reports')
    history = str(tmp_path / 'hist' / 'h.jsonl')
    result = rp.write_report(report_dir, 'n', 'drill', drill_data(), history=history, check_mode=True)
    assert result['changed'] is True and len(result['written']) == 3 and [row['name'] for row in result['trend']] == ['n']
    assert os.listdir(str(tmp_path)) == []
    rp.write_report(report_dir, 'n', 'drill', drill_data(), history=history)
    same = rp.write_report(report_dir, 'n', 'drill', drill_data(), history=history, check_mode=True)
    assert same['changed'] is False and same['written'] == []


def test_report_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / 'file'
    path.write_text('x')
    with pytest.raises(rp.ReportError) as err:
        rp.write_report(str(path), 'n', 'drill', {'status': 'passed'})
    assert err.value.code == 'bad_destination'


def test_a_symlink_under_the_report_name_is_never_replaced(tmp_path):
    target = tmp_path / 'elsewhere'
    target.write_text('keep')
    os.symlink(str(target), str(tmp_path / 'n.json'))
    with pytest.raises(rp.ReportError) as err:
        rp.write_report(str(tmp_path), 'n', 'drill', {'status': 'passed'}, formats=['json'])
    assert err.value.code == 'write_failed'
    assert target.read_text() == 'keep'


def test_secret_in_data_writes_nothing(tmp_path):
    with pytest.raises(rp.ReportError) as err:
        rp.write_report(str(tmp_path / 'r'), 'n', 'drill', {'status': 'passed', 'db_password': 'hunter2'}, history=str(tmp_path / 'h'))
    assert err.value.code == 'secret_in_data' and 'db_password' in str(err.value) and 'hunter2' not in str(err.value)
    assert os.listdir(str(tmp_path)) == []


def test_history_waits_for_its_lock(tmp_path):
    history = str(tmp_path / 'h.jsonl')
    lock = BackupLock(str(tmp_path), 'h.jsonl', purpose='test').acquire()
    done = []
    worker = threading.Thread(target=lambda: done.append(rp.update_history(history, {'name': 'a'}, lock_timeout=30)))
    worker.start()
    worker.join(0.3)
    assert not done and not os.path.exists(history)
    lock.release()
    worker.join(30)
    assert done[0][1] is True and rp.read_history(history) == ([{'name': 'a'}], 0)


def test_history_lock_held_too_long_is_an_error(tmp_path):
    history = str(tmp_path / 'h.jsonl')
    with BackupLock(str(tmp_path), 'h.jsonl', purpose='test'):
        with pytest.raises(rp.ReportError) as err:
            rp.update_history(history, {'name': 'a'}, lock_timeout=0)
    assert err.value.code == 'history_failed' and 'another test is running' in str(err.value)


def test_a_directory_under_the_report_name_is_never_replaced(tmp_path):
    (tmp_path / 'n.md').mkdir()
    with pytest.raises(rp.ReportError) as err:
        rp.write_report(str(tmp_path), 'n', 'drill', {'status': 'passed'}, formats=['markdown'])
    assert err.value.code == 'bad_destination' and (tmp_path / 'n.md').is_dir()
