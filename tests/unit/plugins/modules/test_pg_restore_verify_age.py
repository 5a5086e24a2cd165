# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""pg_restore_verify on encrypted artifacts, and its secrets from AWS Secrets Manager: the identity from a file or the
vault, the key from the vault (``_escrow.resolve`` stood in), and no secret in any result. Real ``age``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from unittest import mock

import pytest

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _age, _manifest
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import key_fingerprint
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import secrets as _secrets
from ansible_collections.fleet_telemetry.dr.tests.unit.plugins.modules.test_pg_restore_verify import (  # pylint: disable=unused-import
    KEY,
    KEY_HEX,
    PASSWORD,
    STARTED,
    _photos,
    database,
    direct,
    fake_psql,
    make_dump,
    module_exits,
    run_module,
)

pytestmark = pytest.mark.skipif(not (shutil.which('age') and shutil.which('age-keygen') and shutil.which('zstd')),
                                reason='age, age-keygen and zstd are needed')


class Identity(object):
    def __init__(self):
        self.text = subprocess.run(['age-keygen'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout.decode()
        self.recipient = subprocess.run(['age-keygen', '-y'], input=self.text.encode(), stdout=subprocess.PIPE,
                                        check=True).stdout.decode().strip()
        self.fingerprint = _age.recipient_fingerprint(self.recipient)
        self.secret_line = [line for line in self.text.splitlines() if line.startswith('AGE-SECRET-KEY-1')][0]


@pytest.fixture(scope='module')
def ident():
    return Identity()


@pytest.fixture(scope='module')
def other():
    return Identity()


def identity_file(directory, ident, mode=0o600):
    path = directory / 'identity.txt'
    path.write_text(ident.text)
    os.chmod(str(path), mode)
    return str(path)


def publish_encrypted(directory, data, ident, fingerprint=True):
    """A zstd plain artifact encrypted to ``ident`` with its manifest, as pg_logical_backup writes it."""
    name = 'backup_2026-01-31_02-00-05.sql.zst.age'
    compressed = subprocess.run(['zstd', '-q', '-c'], input=data, stdout=subprocess.PIPE, check=True).stdout
    blob = subprocess.run(['age', '-e', '-r', ident.recipient], input=compressed, stdout=subprocess.PIPE, check=True).stdout
    path = directory / name
    path.write_bytes(blob)
    manifest = _manifest.build_manifest(
        collection_version='0.1.0', file=name, dump_format='plain', compression='zstd', size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(), database='telemetry_db', server_version='15.18', pg_dump_version='15.18',
        started_at=STARTED, finished_at=STARTED, row_counts={'photo': 4, 'audit_log': 3}, transport='direct',
        key_fingerprint=key_fingerprint(KEY) if fingerprint else None, cipher='aes-256-gcm', encryption='age',
        recipients=[ident.fingerprint])
    _manifest.write_manifest(str(path), manifest)
    return str(path)


def assert_no_secrets(result, *identities):
    text = json.dumps(result, default=repr)
    assert KEY_HEX not in text and KEY_HEX.upper() not in text and PASSWORD not in text
    for ident in identities:
        assert ident.secret_line not in text and ident.secret_line.lower() not in text


class FakeEscrow(object):
    """Stands in for ``_escrow.resolve``: records the calls, returns the key / identity, or raises ``error``."""

    def __init__(self, key=KEY, identity=None, error=None):
        self.key = key
        self.identity = identity
        self.error = error
        self.calls = []

    def key_for_manifest(self, client, secret_id, field, fingerprint, option=None):
        self.calls.append(('key', client, secret_id, field, fingerprint))
        if self.error:
            raise self.error
        return self.key, {'secret_id': secret_id, 'version_id': 'v-key-1', 'stages': ['AWSCURRENT'],
                          'fingerprint': key_fingerprint(self.key), 'tried': [{'version_id': 'v-key-1', 'stages': ['AWSCURRENT']}]}

    def identity_for_manifest(self, client, secret_id, field, recipient_fingerprints, option=None):
        self.calls.append(('identity', client, secret_id, field, list(recipient_fingerprints)))
        if self.error:
            raise self.error
        return self.identity.text, {'secret_id': secret_id, 'version_id': 'v-id-7', 'stages': ['AWSPREVIOUS'],
                                    'fingerprint': self.identity.fingerprint, 'tried': []}


@pytest.fixture
def vault(monkeypatch):
    """The vault: ``_escrow.resolve`` replaced, and the boto3 client AnsibleAWSModule would make replaced by a sentinel."""
    escrow = FakeEscrow()
    monkeypatch.setattr(_secrets, '_escrow_resolve', lambda: escrow)
    client = object()
    with mock.patch.object(AnsibleAWSModule, 'client', return_value=client) as factory:
        escrow.client = client
        escrow.factory = factory
        yield escrow


def test_preflight_of_an_encrypted_artifact_with_an_identity_file(tmp_path, database, ident, vault):
    path = publish_encrypted(tmp_path, make_dump(_photos(4)), ident)
    outcome, result = run_module(direct(artifact=path, preflight_only=True, age_identity_file=identity_file(tmp_path, ident)))
    assert outcome == 'exit', result
    assert result['artifact']['encrypted'] is True
    assert result['encryption'] == {'method': 'age', 'recipients': [ident.fingerprint], 'identity_recipients': [ident.fingerprint],
                                    'matched': [ident.fingerprint], 'recipients_checked': True}
    assert result['preflight']['photos_checked'] == 4
    assert result['identity_source'] == {'from': 'file', 'path': str(tmp_path / 'identity.txt'), 'recipients': [ident.fingerprint]}
    assert result['key_source'] == {'from': 'option', 'fingerprint': key_fingerprint(KEY)}
    assert vault.factory.call_count == 0 and vault.calls == []
    assert database.instances == []
    assert_no_secrets(result, ident)


def test_no_identity_fails_before_anything_is_written(tmp_path, database, fake_psql, ident, vault):
    path = publish_encrypted(tmp_path, make_dump(_photos(4)), ident)
    outcome, result = run_module(direct(artifact=path, pg_bin_dir=str(fake_psql / 'bin')))
    assert outcome == 'fail'
    assert result['error_code'] == 'no_identity'
    assert 'is encrypted with age: give age_identity_file or age_identity_secret' in result['msg']
    assert not (fake_psql / 'received').exists() and database.instances == []
    assert result['changed'] is False


def test_wrong_identity_fails_before_anything_is_written(tmp_path, database, fake_psql, ident, other, vault):
    path = publish_encrypted(tmp_path, make_dump(_photos(4)), ident)
    outcome, result = run_module(direct(artifact=path, pg_bin_dir=str(fake_psql / 'bin'), age_identity_file=identity_file(tmp_path, other)))
    assert outcome == 'fail'
    assert result['error_code'] == 'wrong_identity'
    assert ident.fingerprint in result['msg'] and other.fingerprint in result['msg']
    assert result['identity_source']['recipients'] == [other.fingerprint]
    assert not (fake_psql / 'received').exists() and database.instances == []
    assert_no_secrets(result, ident, other)


def test_restore_with_the_key_and_the_identity_from_the_vault(tmp_path, database, fake_psql, ident, vault):
    vault.identity = ident
    data = make_dump(_photos(4))
    path = publish_encrypted(tmp_path, data, ident)
    outcome, result = run_module(direct(artifact=path, pg_bin_dir=str(fake_psql / 'bin'), encryption_key=None,
                                        encryption_key_secret='prod/key', encryption_key_secret_field='ENCRYPTION_KEY',
                                        age_identity_secret='prod/age', region='eu-west-1'))
    assert outcome == 'exit', result
    assert (fake_psql / 'received').read_bytes() == b'BEGIN;\n' + data + b'COMMIT;\n'
    assert result['changed'] is True and result['mismatches'] == []
    assert vault.factory.call_count == 1 and vault.factory.call_args[0] == ('secretsmanager',)
    assert vault.calls == [('key', vault.client, 'prod/key', 'ENCRYPTION_KEY', key_fingerprint(KEY)),
                           ('identity', vault.client, 'prod/age', None, [ident.fingerprint])]
    assert result['key_source'] == {'from': 'secrets_manager', 'secret_id': 'prod/key', 'version_id': 'v-key-1',
                                    'stages': ['AWSCURRENT'], 'fingerprint': key_fingerprint(KEY),
                                    'tried': [{'version_id': 'v-key-1', 'stages': ['AWSCURRENT']}]}
    assert result['identity_source']['from'] == 'secrets_manager' and result['identity_source']['version_id'] == 'v-id-7'
    assert result['identity_source']['recipients'] == [ident.fingerprint]
    assert result['restore']['decrypt'][:3] == ['age', '-d', '-i']
    assert_no_secrets(result, ident)


def test_the_vault_is_not_asked_for_an_identity_of_a_clear_artifact(tmp_path, database, vault):
    from ansible_collections.fleet_telemetry.dr.tests.unit.plugins.modules.test_pg_restore_verify import publish
    path = publish(tmp_path, make_dump(_photos(4)))
    outcome, result = run_module(direct(artifact=path, preflight_only=True, encryption_key=None, encryption_key_secret='prod/key',
                                        age_identity_secret='prod/age'))
    assert outcome == 'exit', result
    assert [call[0] for call in vault.calls] == ['key']
    assert 'identity_source' not in result and 'encryption' not in result
    assert result['key_source']['secret_id'] == 'prod/key'


def test_a_vault_failure_is_the_result(tmp_path, database, ident, vault):
    path = publish_encrypted(tmp_path, make_dump(_photos(4)), ident)
    vault.error = FleetDrError('none of the 2 version(s) of the vault secret prod/key holds the key of fingerprint v1:ab',
                               code='no_matching_version')
    outcome, result = run_module(direct(artifact=path, preflight_only=True, encryption_key=None, encryption_key_secret='prod/key',
                                        age_identity_file=identity_file(tmp_path, ident)))
    assert outcome == 'fail' and result['error_code'] == 'no_matching_version'
    assert 'prod/key' in result['msg']


def test_the_key_option_wins_over_the_secret(tmp_path, database, ident, vault):
    path = publish_encrypted(tmp_path, make_dump(_photos(4)), ident)
    outcome, result = run_module(direct(artifact=path, preflight_only=True, encryption_key_secret='prod/key',
                                        age_identity_file=identity_file(tmp_path, ident)))
    assert outcome == 'exit', result
    assert result['key_source']['from'] == 'option' and vault.calls == []


def test_neither_key_nor_secret():
    outcome, result = run_module(direct(artifact='/x.sql.zst.age', encryption_key=None))
    assert outcome == 'fail' and result['error_code'] == 'bad_option'
    assert 'encryption_key is required' in result['msg'] and 'encryption_key_secret' in result['msg']


def test_a_world_readable_identity_file_is_warned_about(tmp_path, database, ident, vault):
    path = publish_encrypted(tmp_path, make_dump(_photos(4)), ident)
    with mock.patch.object(AnsibleAWSModule, 'warn') as warn:
        outcome, result = run_module(direct(artifact=path, preflight_only=True,
                                            age_identity_file=identity_file(tmp_path, ident, mode=0o644)))
    assert outcome == 'exit', result
    assert 'chmod 600' in warn.call_args[0][0]
    assert ident.secret_line not in repr(warn.call_args_list)


@pytest.mark.parametrize('content, code', [(None, 'no_identity'), ('not an identity\n', 'bad_identity'),
                                           ('AGE-SECRET-KEY-1QQQQQQQQQQQQQQQ\n', 'bad_identity')])
def test_unreadable_or_bad_identity_files(tmp_path, database, ident, vault, content, code):
    path = publish_encrypted(tmp_path, make_dump(_photos(4)), ident)
    identity = tmp_path / 'identity.txt'
    if content is not None:
        identity.write_text(content)
        os.chmod(str(identity), 0o600)
    outcome, result = run_module(direct(artifact=path, preflight_only=True, age_identity_file=str(identity)))
    assert outcome == 'fail' and result['error_code'] == code, result
    assert 'QQQQQQQQ' not in result['msg']


def test_secrets_of_the_run_never_reach_a_failure(tmp_path, database, fake_psql, ident, vault):
    """A damaged stream (with a manifest that agrees with it) fails in the preflight: the identity is nowhere in the result."""
    path = publish_encrypted(tmp_path, make_dump(_photos(4)), ident)
    with open(path, 'r+b') as handle:
        handle.seek(-3, os.SEEK_END)
        handle.write(b'\x00\x00\x00')
    mpath = path + '.manifest.json'
    manifest = json.loads(open(mpath).read())
    blob = open(path, 'rb').read()
    manifest.update(size=len(blob), sha256=hashlib.sha256(blob).hexdigest())
    os.remove(mpath)
    _manifest.write_manifest(path, manifest)
    vault.identity = ident
    outcome, result = run_module(direct(artifact=path, pg_bin_dir=str(fake_psql / 'bin'), age_identity_secret='prod/age'))
    assert outcome == 'fail' and result['error_code'] == 'decrypt_failed', result
    assert not (fake_psql / 'received').exists()
    assert_no_secrets(result, ident)
