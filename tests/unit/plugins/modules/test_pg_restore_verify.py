# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import binascii
import datetime
import json
import stat
from unittest import mock

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _artifact as ar
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _atomic, _manifest
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _pg
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import encrypt, key_fingerprint
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import run as _run
from ansible_collections.fleet_telemetry.dr.plugins.modules import pg_restore_verify
from ansible_collections.fleet_telemetry.dr.tests.unit.support.module_harness import AnsibleExitJson, AnsibleFailJson, patched_exits

KEY_HEX = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff'
KEY = bytes.fromhex(KEY_HEX)
OTHER_HEX = 'ff' * 32
PASSWORD = 'db-pass-never-shown'
STARTED = datetime.datetime(2026, 1, 31, 2, 0, 5, tzinfo=datetime.timezone.utc)
PNG = b'\x89PNG\r\n\x1a\n' + b'\x00' * 40


@pytest.fixture(autouse=True)
def module_exits():
    with patched_exits():
        yield


def _photos(count, key=KEY):
    return [(i, encrypt(key, PNG)) for i in range(1, count + 1)]


def make_dump(photos, audit=3, clean=True):
    lines = [b'--', b'-- PostgreSQL database dump', b'--', b'']
    if clean:
        lines += [b'DROP TABLE IF EXISTS public.photo;']
    lines += [b'CREATE TABLE public.photo (id bigint, data bytea);', b'']
    lines += [b'COPY public.audit_log (id, actor) FROM stdin;'] + [b'%d\tops' % i for i in range(1, audit + 1)] + [b'\\.', b'']
    lines += [b'COPY public.photo (id, data) FROM stdin;']
    lines += [b'%d\t\\\\x%s' % (i, binascii.hexlify(data)) for i, data in photos] + [b'\\.', b'']
    lines += [b'--', b'-- PostgreSQL database dump complete', b'--', b'']
    return b'\n'.join(lines)


def publish(directory, data, fingerprint=True, row_counts=None):
    """A plain artifact with a manifest, written the way pg_logical_backup writes it."""
    name = ar.artifact_name(STARTED, 'plain', 'none')
    with _atomic.AtomicArtifactWriter(str(directory), name) as writer:
        writer.write(data)
        result = writer.commit()
    manifest = _manifest.build_manifest(
        collection_version='0.1.0', file=name, dump_format='plain', compression='none', size=result['size'],
        sha256=result['sha256'], database='telemetry_db', server_version='15.18', pg_dump_version='15.18',
        started_at=STARTED, finished_at=STARTED + datetime.timedelta(seconds=2),
        row_counts={'photo': 4, 'audit_log': 3} if row_counts is None else row_counts, transport='direct',
        key_fingerprint=key_fingerprint(KEY) if fingerprint else None, cipher='aes-256-gcm' if fingerprint else None)
    _manifest.write_manifest(result['path'], manifest)
    return result['path']


class FakeSession(object):
    """Stands in for the psql session (the database boundary): target facts, counts, ANALYZE; ``copy_photos`` reads
    ``photos`` (the binary COPY parsing is tested in test_restore.py)."""

    instances = []
    counts = {}
    photos = []

    def __init__(self, conn, *args, **kwargs):
        self.conn = conn
        self.queries = []
        FakeSession.instances.append(self)

    def query(self, sql):
        self.queries.append(sql)
        if sql.startswith('SELECT current_database()'):
            return [[self.conn.database, '150018', '15.18']]
        if sql == _pg.USER_TABLES_QUERY:
            return [[t] for t in sorted(self.counts)]
        if 'count(*)' in sql:
            return [[t, str(n)] for t, n in self.counts.items() if "'%s'" % t in sql]
        if sql == 'ANALYZE':
            return []
        raise AssertionError(sql)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def database():
    FakeSession.instances = []
    FakeSession.counts = {'photo': 4, 'audit_log': 3}
    FakeSession.photos = _photos(4)

    def copy_photos(conn, table, limit, sample_every):
        rows = [(i, d, ()) for i, d in FakeSession.photos if i % (sample_every or 1) == 0]
        return iter(rows[:limit])
    with mock.patch.object(_run, 'PsqlSession', FakeSession), mock.patch.object(_run, 'copy_photos', copy_photos):
        yield FakeSession


@pytest.fixture
def fake_psql(tmp_path, monkeypatch):
    """A psql stand-in in pg_bin_dir that records what it receives on stdin."""
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    path = bindir / 'psql'
    path.write_text('#!/bin/sh\necho "$@" > "$FAKE_OUT.argv"\nenv > "$FAKE_OUT.env"\ncat > "$FAKE_OUT"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv('FAKE_OUT', str(tmp_path / 'received'))
    return tmp_path


def run_module(args, check_mode=False):
    args = dict(args)
    if check_mode:
        args['_ansible_check_mode'] = True
    with patch_module_args(args):
        try:
            pg_restore_verify.main()
        except AnsibleExitJson as exc:
            return 'exit', exc.args[0]
        except AnsibleFailJson as exc:
            return 'fail', exc.args[0]
    raise AssertionError('the module neither exited nor failed')


def direct(**kwargs):
    args = {'transport': 'direct', 'db_host': '127.0.0.1', 'db_password': PASSWORD, 'encryption_key': KEY_HEX}
    args.update(kwargs)
    return args


def assert_no_secrets(result):
    text = json.dumps(result, default=repr)
    assert KEY_HEX not in text and PASSWORD not in text and KEY_HEX.upper() not in text


@pytest.mark.parametrize('args, fragment', [
    ({'artifact': '/x.sql', 'encryption_key': None}, 'encryption_key is required'),
    ({'manifest': '/x.sql.manifest.json'}, 'manifest is only used with verify_only=true'),
    ({'manifest': '/x.sql.manifest.json', 'preflight_only': True}, 'manifest is only used with verify_only=true'),
    ({'artifact': '/x.sql', 'jobs': 0}, 'jobs must be at least 1'),
    ({'artifact': '/x.sql', 'photo_sample': -1}, 'photo_sample must be at least 0'),
])
def test_option_problems(args, fragment):
    outcome, result = run_module(direct(**args))
    assert outcome == 'fail'
    assert fragment in result['msg']
    assert result['error_code'] == 'bad_option'


def test_bad_key_format_never_echoes_the_key():
    outcome, result = run_module(direct(artifact='/x.sql', encryption_key='not-a-key-at-all'))
    assert outcome == 'fail' and result['error_code'] == 'bad_key'
    assert 'not-a-key-at-all' not in json.dumps(result)


def test_preflight_only_needs_no_database(tmp_path, database):
    path = publish(tmp_path, make_dump(_photos(4)))
    outcome, result = run_module(direct(artifact=path, preflight_only=True))
    assert outcome == 'exit', result
    assert result['changed'] is False and result['mode'] == 'preflight_only'
    assert result['preflight']['fingerprint_checked'] and result['preflight']['photos_checked'] == 4
    assert result['kind'] == 'artifact' and result['artifact']['ok']
    assert 'preflight passed' in result['msg']
    assert database.instances == []
    assert_no_secrets(result)


@pytest.mark.parametrize('key, cipher, fingerprint, code, setting', [
    (OTHER_HEX, 'aes-256-gcm', True, 'wrong_key', 'encryption_key'),
    (OTHER_HEX, 'aes-256-gcm', False, 'wrong_key', 'encryption_key'),
    (KEY_HEX, 'fernet', True, 'wrong_cipher', 'cipher'),
    (KEY_HEX, 'fernet', False, 'wrong_cipher', 'cipher'),
])
def test_wrong_key_or_cipher_fails_before_anything_is_written(tmp_path, database, fake_psql, key, cipher, fingerprint, code, setting):
    path = publish(tmp_path, make_dump(_photos(4)), fingerprint=fingerprint)
    outcome, result = run_module(direct(artifact=path, encryption_key=key, cipher=cipher, pg_bin_dir=str(fake_psql / 'bin')))
    assert outcome == 'fail'
    assert result['error_code'] == code
    assert 'set %s' % setting in result['msg'] and result['msg'].endswith('nothing was written')
    assert result['changed'] is False and result['mismatches']
    assert 'preflight_seconds' in result['timings']
    assert database.instances == []
    assert not (fake_psql / 'received').exists()
    assert_no_secrets(result)


def test_artifact_without_photos(tmp_path, database):
    path = publish(tmp_path, make_dump([]), row_counts={'photo': 0})
    outcome, result = run_module(direct(artifact=path, preflight_only=True))
    assert outcome == 'fail' and result['error_code'] == 'no_photos' and 'photo_table' in result['msg']
    outcome, result = run_module(direct(artifact=path, preflight_only=True, preflight_photos=0))
    assert outcome == 'exit'


def test_damaged_artifact_is_refused(tmp_path, database):
    path = publish(tmp_path, make_dump(_photos(4)))
    with open(path, 'r+b') as fileobj:
        fileobj.seek(10)
        fileobj.write(b'X')
    outcome, result = run_module(direct(artifact=path))
    assert outcome == 'fail' and result['error_code'] == 'artifact_invalid'
    assert 'sha256 mismatch' in result['msg']
    assert database.instances == []


def test_check_mode_reports_the_plan_and_writes_nothing(tmp_path, database, fake_psql):
    path = publish(tmp_path, make_dump(_photos(4)))
    outcome, result = run_module(direct(artifact=path, pg_bin_dir=str(fake_psql / 'bin')), check_mode=True)
    assert outcome == 'exit', result
    assert result['changed'] is True and 'would restore' in result['msg']
    assert result['restore']['method'] == 'psql' and result['restore']['schema_reset'] is False
    assert result['expected_counts'] == {'photo': 4, 'audit_log': 3}
    assert not (fake_psql / 'received').exists()
    assert [q for s in database.instances for q in s.queries if not q.startswith('SELECT current_database()')] == []
    assert_no_secrets(result)


def test_check_mode_of_a_runbook_dump_counts_its_copy_blocks(tmp_path, database, fake_psql):
    path = tmp_path / 'backup_2026-01-30_23-00-00.sql'
    path.write_bytes(make_dump(_photos(4), audit=7, clean=False))
    outcome, result = run_module(direct(artifact=str(path), pg_bin_dir=str(fake_psql / 'bin')), check_mode=True)
    assert outcome == 'exit', result
    assert result['kind'] == 'runbook'
    assert result['expected_counts'] == {'photo': 4, 'audit_log': 7}
    assert result['restore']['schema_reset'] is True
    assert 'dropping and recreating the public schema' in result['msg']


def test_restore_and_verify(tmp_path, database, fake_psql):
    data = make_dump(_photos(4))
    path = publish(tmp_path, data)
    outcome, result = run_module(direct(artifact=path, pg_bin_dir=str(fake_psql / 'bin')))
    assert outcome == 'exit', result
    assert result['changed'] is True and result['mode'] == 'restore'
    assert (fake_psql / 'received').read_bytes() == b'BEGIN;\n' + data + b'COMMIT;\n'
    assert 'PGPASSWORD=%s' % PASSWORD in (fake_psql / 'received.env').read_text()
    assert PASSWORD not in (fake_psql / 'received.argv').read_text()
    assert [t['ok'] for t in result['tables']] == [True, True]
    assert result['photos'] == {'checked': 4, 'failed': 0, 'failures': [], 'total': 4, 'sample': 'all'}
    assert result['analyzed'] is True
    assert set(result['timings']) >= {'preflight_seconds', 'restore_seconds', 'verify_seconds', 'total_seconds'}
    assert result['mismatches'] == []
    assert 'restored and verified' in result['msg']
    assert_no_secrets(result)


def test_restore_then_verification_fails(tmp_path, database, fake_psql):
    path = publish(tmp_path, make_dump(_photos(4)))
    database.counts = {'photo': 4, 'audit_log': 2}
    database.photos = _photos(3) + [(4, encrypt(bytes(32), PNG))]
    outcome, result = run_module(direct(artifact=path, pg_bin_dir=str(fake_psql / 'bin'), analyze=False))
    assert outcome == 'fail'
    assert result['error_code'] == 'verify_failed' and result['changed'] is True
    assert result['msg'].startswith('restored, but the database does not verify')
    assert {(m['kind'], m.get('table'), m.get('id')) for m in result['mismatches']} == {('row_count', 'audit_log', None), ('photo', None, 4)}
    assert result['photos']['failed'] == 1
    assert result['analyzed'] is False
    assert_no_secrets(result)


def test_verify_only_against_a_manifest(tmp_path, database):
    path = publish(tmp_path, make_dump(_photos(4)))
    outcome, result = run_module(direct(manifest=path + '.manifest.json', verify_only=True, photo_sample=2))
    assert outcome == 'exit', result
    assert result['changed'] is False and result['kind'] == 'manifest'
    assert result['photos']['checked'] == 2 and result['photos']['sample'] == 2
    assert result['analyzed'] is False
    assert 'ANALYZE' not in [q for s in database.instances for q in s.queries]


def test_verify_only_with_the_wrong_key_fails_on_the_fingerprint(tmp_path, database):
    path = publish(tmp_path, make_dump(_photos(4)))
    outcome, result = run_module(direct(manifest=path + '.manifest.json', verify_only=True, encryption_key=OTHER_HEX))
    assert outcome == 'fail' and result['error_code'] == 'wrong_key'
    assert result['mismatches'][0]['kind'] == 'key_fingerprint'


def test_invalid_manifest(tmp_path, database):
    manifest = tmp_path / 'x.manifest.json'
    manifest.write_text('{"format_version": 1}')
    outcome, result = run_module(direct(manifest=str(manifest), verify_only=True))
    assert outcome == 'fail' and result['error_code'] == 'manifest_invalid'
