# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
import hashlib
import os
import stat
from unittest import mock

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _artifact as ar
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _atomic, _digest, _manifest
from ansible_collections.fleet_telemetry.dr.plugins.modules import pg_artifact_verify
from ansible_collections.fleet_telemetry.dr.tests.unit.support.module_harness import AnsibleExitJson, AnsibleFailJson, patched_exits

STARTED = datetime.datetime(2026, 1, 31, 2, 0, 5, tzinfo=datetime.timezone.utc)
PLAIN_SQL = b'--\n-- PostgreSQL database dump\n--\n\n--\n-- PostgreSQL database dump complete\n--\n\n'
TOC = '3345; 0 16390 TABLE DATA public photo app\n3346; 0 16400 TABLE DATA public audit_log app\n'


@pytest.fixture(autouse=True)
def module_exits():
    with patched_exits():
        yield


@pytest.fixture
def pg_restore(tmp_path):
    """An executable stand-in: run_command is mocked, the module only checks that the program exists."""
    path = tmp_path / 'bin' / 'pg_restore'
    path.parent.mkdir()
    path.write_text('#!/bin/sh\nexit 99\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _run(args, toc=(0, TOC, ''), check_mode=False):
    """Run the module's main(); return (outcome, result, run_command mock)."""
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with mock.patch.object(basic.AnsibleModule, 'run_command', return_value=toc) as run_command:
        with patch_module_args(args):
            try:
                pg_artifact_verify.main()
            except AnsibleExitJson as exc:
                return 'exit', exc.args[0], run_command
            except AnsibleFailJson as exc:
                return 'fail', exc.args[0], run_command
    raise AssertionError('the module neither exited nor failed')


def _publish(directory, content=PLAIN_SQL, started=STARTED, fmt='plain', database='telemetry_db', row_counts=None):
    name = ar.artifact_name(started, fmt, 'none')
    with _atomic.AtomicArtifactWriter(str(directory), name) as writer:
        writer.write(content)
        result = writer.commit()
    manifest = _manifest.build_manifest(
        collection_version='0.1.0', file=name, dump_format=fmt, compression='none', size=result['size'],
        sha256=result['sha256'], database=database, server_version='15.18', pg_dump_version='15.18',
        started_at=started, finished_at=started + datetime.timedelta(seconds=2),
        row_counts={'photo': 2, 'audit_log': 1} if row_counts is None else row_counts, transport='direct')
    _manifest.write_manifest(result['path'], manifest)
    return result['path']


def _flip_last_byte(path):
    with open(path, 'r+b') as fileobj:
        fileobj.seek(-1, os.SEEK_END)
        last = fileobj.read(1)
        fileobj.seek(-1, os.SEEK_END)
        fileobj.write(bytes([last[0] ^ 1]))


def test_plain_artifact_ok(tmp_path):
    path = _publish(tmp_path)
    outcome, result, run_command = _run({'path': path})
    assert outcome == 'exit'
    assert result['changed'] is False
    assert result['ok'] is True and result['problems'] == []
    assert result['kind'] == 'artifact'
    assert result['sha256'] == hashlib.sha256(PLAIN_SQL).hexdigest()
    assert result['size'] == len(PLAIN_SQL)
    assert result['manifest']['database'] == 'telemetry_db'
    assert result['toc_tables'] is None
    assert result['path'] == path
    assert result['manifest_path'] == path + '.manifest.json'
    run_command.assert_not_called()


@pytest.mark.parametrize('check_mode', [False, True])
def test_custom_artifact_reads_the_toc_with_an_argv_list(tmp_path, pg_restore, check_mode):
    path = _publish(tmp_path, content=b'PGDMP' + b'\0' * 50, fmt='custom')
    before = sorted(os.listdir(str(tmp_path)))
    outcome, result, run_command = _run({'path': path, 'pg_restore_path': pg_restore}, check_mode=check_mode)
    assert outcome == 'exit', result
    assert result['ok'] is True and result['changed'] is False
    assert result['toc_tables'] == ['public.audit_log', 'public.photo']
    run_command.assert_called_once()
    argv = run_command.call_args[0][0]
    assert argv == [pg_restore, '--list', path]
    assert isinstance(argv, list)
    assert sorted(os.listdir(str(tmp_path))) == before


def test_damaged_artifact_fails_with_the_first_problem(tmp_path):
    path = _publish(tmp_path)
    _flip_last_byte(path)
    outcome, result, dummy = _run({'path': path})
    assert outcome == 'fail'
    assert result['msg'].startswith('artifact %s does not verify: sha256 mismatch: manifest says ' % path)
    assert result['problems'][0].startswith('sha256 mismatch')
    assert result['ok'] is False and result['changed'] is False
    assert result['sha256'] == _digest.sha256_file(path)


def test_damaged_artifact_reported_without_failing(tmp_path):
    path = _publish(tmp_path)
    _flip_last_byte(path)
    outcome, result, dummy = _run({'path': path, 'fail_on_problems': False})
    assert outcome == 'exit'
    assert result['ok'] is False and result['problems'][0].startswith('sha256 mismatch')


def test_toc_missing_a_counted_table(tmp_path, pg_restore):
    path = _publish(tmp_path, content=b'PGDMP', fmt='custom', row_counts={'photo': 1, 'vehicle': 2})
    outcome, result, dummy = _run({'path': path, 'pg_restore_path': pg_restore})
    assert outcome == 'fail'
    assert result['msg'] == 'artifact %s does not verify: table of contents has no data for vehicle listed in the manifest' % path


def test_toc_unreadable(tmp_path, pg_restore):
    path = _publish(tmp_path, content=b'PGDMP', fmt='custom')
    toc = (1, '', 'pg_restore: error: unsupported version (1.16) in file header\n')
    outcome, result, dummy = _run({'path': path, 'pg_restore_path': pg_restore}, toc=toc)
    assert outcome == 'fail'
    assert result['problems'] == ['table of contents unreadable: pg_restore: error: unsupported version (1.16) in file header']


def test_pg_restore_not_found(tmp_path):
    path = _publish(tmp_path, content=b'PGDMP', fmt='custom')
    outcome, result, run_command = _run({'path': path, 'pg_restore_path': str(tmp_path / 'nope' / 'pg_restore')})
    assert outcome == 'fail'
    assert 'table of contents unreadable: %s was not found' % (tmp_path / 'nope' / 'pg_restore') in result['msg']
    run_command.assert_not_called()
    outcome, result, run_command = _run({'path': path, 'pg_restore_path': '/nope/pg_restore', 'read_toc': False})
    assert outcome == 'exit' and result['ok'] is True and result['toc_tables'] is None
    run_command.assert_not_called()


def test_bare_pg_restore_name_is_searched_on_path(tmp_path, pg_restore, monkeypatch):
    monkeypatch.setenv('PATH', os.path.dirname(pg_restore))
    path = _publish(tmp_path, content=b'PGDMP', fmt='custom')
    outcome, result, run_command = _run({'path': path})
    assert outcome == 'exit', result
    assert run_command.call_args[0][0] == [pg_restore, '--list', path]


@pytest.mark.parametrize('require_manifest, outcome, ok', [(True, 'fail', False), (False, 'exit', True)])
def test_runbook_backup(tmp_path, require_manifest, outcome, ok):
    path = str(tmp_path / 'backup_2026-01-30_23-00-00.sql')
    with open(path, 'wb') as fileobj:
        fileobj.write(PLAIN_SQL)
    got, result, dummy = _run({'path': path, 'require_manifest': require_manifest})
    assert got == outcome
    assert result['kind'] == 'runbook' and result['ok'] is ok and result['manifest'] is None
    if not ok:
        assert result['msg'] == 'artifact %s does not verify: no manifest: a hand-made backup; its checksum cannot be verified' % path


def test_missing_file(tmp_path):
    outcome, result, dummy = _run({'path': str(tmp_path / 'gone.dump')})
    assert outcome == 'fail'
    assert result['msg'] == 'artifact %s does not verify: file missing: %s does not exist' % (tmp_path / 'gone.dump', tmp_path / 'gone.dump')


def _later(seconds):
    return STARTED + datetime.timedelta(seconds=seconds)


def test_select_newest_verified(tmp_path):
    older = _publish(tmp_path, started=_later(0))
    newest = _publish(tmp_path, started=_later(120))
    _publish(tmp_path, started=_later(300), database='other_db')
    _flip_last_byte(newest)
    outcome, result, dummy = _run({'backup_dir': str(tmp_path), 'database': 'telemetry_db', 'select': 'newest'})
    assert outcome == 'exit'
    assert result['path'] == older and result['ok'] is True and result['changed'] is False
    assert [item['path'] for item in result['rejected']] == [newest]
    assert result['rejected'][0]['problems'][0].startswith('sha256 mismatch')


def test_select_newest_of_any_database(tmp_path):
    _publish(tmp_path, started=_later(0))
    other = _publish(tmp_path, started=_later(300), database='other_db')
    outcome, result, dummy = _run({'backup_dir': str(tmp_path)})
    assert outcome == 'exit' and result['path'] == other and result['rejected'] == []


def test_select_none_verifies(tmp_path):
    only = _publish(tmp_path)
    _flip_last_byte(only)
    outcome, result, dummy = _run({'backup_dir': str(tmp_path), 'database': 'telemetry_db'})
    assert outcome == 'fail'
    assert result['msg'].startswith('no artifact of database telemetry_db in %s verifies: the newest, %s, has sha256 mismatch' % (tmp_path, only))
    assert result['path'] is None and result['ok'] is False
    outcome, result, dummy = _run({'backup_dir': str(tmp_path), 'fail_on_problems': False})
    assert outcome == 'exit' and result['ok'] is False and result['path'] is None
    assert result['problems'][0].startswith('no artifact in %s verifies' % tmp_path)


def test_select_empty_directory(tmp_path):
    (tmp_path / 'backup_2026-01-30_23-00-00.sql').write_bytes(PLAIN_SQL)
    outcome, result, dummy = _run({'backup_dir': str(tmp_path)})
    assert outcome == 'fail'
    assert result['msg'] == 'no artifact in %s has a valid manifest: take a backup first' % tmp_path


def test_backup_dir_not_a_directory(tmp_path):
    outcome, result, dummy = _run({'backup_dir': str(tmp_path / 'missing')})
    assert outcome == 'fail'
    assert result['msg'] == 'backup_dir %s is not a directory: point it at the directory of the artifacts' % (tmp_path / 'missing')


@pytest.mark.parametrize('args, words', [
    ({}, 'one of the following is required: path, backup_dir'),
    ({'path': '/a', 'backup_dir': '/b'}, 'parameters are mutually exclusive: path|backup_dir'),
    ({'path': '/a', 'database': 'db'}, 'missing parameter(s) required by \'database\': backup_dir'),
    ({'backup_dir': '/b', 'select': 'oldest'}, 'value of select must be one of: newest'),
])
def test_argument_errors(args, words):
    outcome, result, dummy = _run(args)
    assert outcome == 'fail'
    assert words in result['msg']
