# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""pg_logical_backup's encryption options reach the backup; pg_artifact_verify reports an encrypted artifact."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from unittest import mock

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _age, _atomic, _manifest
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _artifact as ar
from ansible_collections.fleet_telemetry.dr.plugins.modules import pg_artifact_verify, pg_logical_backup
from ansible_collections.fleet_telemetry.dr.tests.unit.support.module_harness import run_main

RECIPIENT = 'age1q9z9uv0z65699zee3dvwcd4u8t9dzqg4hqm9pweeg6df36j93p8q73nxs7'
STARTED = datetime.datetime(2026, 1, 31, 2, 0, 5, tzinfo=datetime.timezone.utc)


def _backup_args(tmp_path, **extra):
    args = {'transport': 'direct', 'db_host': 'db.example', 'backup_dir': str(tmp_path)}
    args.update(extra)
    return args


def test_options_reach_the_request(tmp_path):
    seen = {}

    def fake_run_backup(conn, req, check_mode=False):
        seen['req'] = req
        return {'changed': True, 'encryption': {'method': req.encryption, 'recipients': []}}
    with mock.patch.object(pg_logical_backup, 'run_backup', fake_run_backup):
        outcome, result = run_main(pg_logical_backup.main, _backup_args(tmp_path, encryption='age', age_recipients=[RECIPIENT]))
    assert outcome == 'exit', result
    assert seen['req'].encryption == 'age' and seen['req'].recipients == [RECIPIENT]


def test_defaults_are_clear(tmp_path):
    seen = {}

    def fake_run_backup(conn, req, check_mode=False):
        seen['req'] = req
        return {'changed': True}
    with mock.patch.object(pg_logical_backup, 'run_backup', fake_run_backup):
        outcome, dummy = run_main(pg_logical_backup.main, _backup_args(tmp_path))
    assert outcome == 'exit' and seen['req'].encryption == 'none' and seen['req'].recipients == []


def test_a_bad_recipient_fails_the_task_with_its_code(tmp_path):
    outcome, result = run_main(pg_logical_backup.main, _backup_args(tmp_path, encryption='age', age_recipients=['age1oops']))
    assert outcome == 'fail' and result['error_code'] == 'bad_recipient' and 'age1oops' in result['msg']


def test_age_missing_fails_the_task_before_connecting(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))
    outcome, result = run_main(pg_logical_backup.main, _backup_args(tmp_path, encryption='age', age_recipients=[RECIPIENT]),
                               check_mode=True)
    assert outcome == 'fail' and result['error_code'] == 'age_missing' and 'apt-get install age' in result['msg']


@pytest.mark.skipif(shutil.which('age') is None, reason='the age CLI is needed (apt-get install age)')
def test_artifact_verify_reports_encrypted(tmp_path):
    data = subprocess.run(['age', '-e', '-r', RECIPIENT], input=b'-- dump\n', stdout=subprocess.PIPE, check=True).stdout
    name = ar.artifact_name(STARTED, 'plain', 'none', encrypted=True)
    with _atomic.AtomicArtifactWriter(str(tmp_path), name) as writer:
        writer.write(data)
        written = writer.commit()
    _manifest.write_manifest(written['path'], _manifest.build_manifest(
        collection_version='0.1.0', file=name, dump_format='plain', compression='none', size=written['size'],
        sha256=written['sha256'], database='telemetry_db', server_version='15.18', pg_dump_version='15.18',
        started_at=STARTED, finished_at=STARTED, row_counts={'photo': 1}, transport='direct', encryption='age',
        recipients=[_age.recipient_fingerprint(RECIPIENT)]))
    outcome, result = run_main(pg_artifact_verify.main, {'path': written['path']})
    assert outcome == 'exit' and result['ok'] and result['encrypted'] is True, result
    outcome, result = run_main(pg_artifact_verify.main, {'backup_dir': str(tmp_path)})
    assert outcome == 'exit' and result['encrypted'] is True and result['path'] == written['path']
