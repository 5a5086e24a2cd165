# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The module's glue: options, the client it asks for, the photo proof over psql, results and failures (boto3 and psql
stood in)."""

from __future__ import annotations

import json
import re
from unittest import mock

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow import client as escrow_client
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _pg
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _photo_crypto as pc
from ansible_collections.fleet_telemetry.dr.plugins.modules import key_escrow

from ansible_collections.fleet_telemetry.dr.tests.unit.plugins.module_utils.test_escrow import SECRET, FakeSecretsManager, key
from ansible_collections.fleet_telemetry.dr.tests.unit.support.module_harness import AnsibleExitJson, AnsibleFailJson, patched_exits

LIVE = key(1)
SECRET_KEY = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'
DB_PASSWORD = 'db-pass-never-shown'
JPEG = b'\xff\xd8\xff\xe0' + bytes(60)


@pytest.fixture(autouse=True)
def module_exits():
    with patched_exits():
        yield


class FakeSession(object):
    """Answers _photos.iter_photos's batch queries from memory; records the statements."""

    instances = []
    photos = []

    def __init__(self, conn, *args, **kwargs):
        self.conn = conn
        self.sql = []
        FakeSession.instances.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def begin(self):
        self.sql.append('BEGIN')
        return 'snap'

    def finish(self):
        self.sql.append('COMMIT')

    def query(self, sql):
        self.sql.append(sql)
        after = int(re.search(r'"id" > (-?\d+)', sql).group(1))
        limit = int(re.search(r'LIMIT (\d+)', sql).group(1))
        return [[str(i), data.hex()] for i, data in self.photos if i > after][:limit]


def _run(args, sm=None, check_mode=False, photos_key=LIVE, count=5, damaged=0):
    sm = sm if sm is not None else FakeSecretsManager()
    FakeSession.photos = [(i, pc.encrypt(photos_key, JPEG) if i > damaged else bytes(80)) for i in range(1, count + 1)]
    FakeSession.instances = []
    base = {'secret_id': SECRET, 'encryption_key': LIVE.hex(), 'project_src': '/srv/telemetry', 'region': 'us-east-1',
            'access_key': 'FLEETDRUNITACCESSKEY', 'secret_key': SECRET_KEY, 'db_password': DB_PASSWORD}
    base.update(args)
    base = dict((k, v) for k, v in base.items() if v is not None)
    if check_mode:
        base['_ansible_check_mode'] = True
    with mock.patch.object(AnsibleAWSModule, 'client', return_value=sm) as factory, \
            mock.patch.object(_pg, 'SnapshotSession', FakeSession), patch_module_args(base):
        try:
            key_escrow.main()
        except AnsibleExitJson as exc:
            return 'exit', exc.args[0], sm, factory
        except AnsibleFailJson as exc:
            return 'fail', exc.args[0], sm, factory
    raise AssertionError('the module neither exited nor failed')


def test_creates_then_is_idempotent():
    outcome, result, sm, factory = _run({'kms_key_id': 'alias/escrow'})
    assert outcome == 'exit', result
    assert result['changed'] and result['status'] == 'created' and result['created']
    assert result['fingerprint'] == pc.key_fingerprint(LIVE) and result['photos_checked'] == 5 and result['proven']
    assert factory.call_args[0] == ('secretsmanager',) and factory.call_args[1]['config']['connect_timeout'] == 10
    assert sm.secrets[SECRET]['kms_key_id'] == 'alias/escrow'
    assert FakeSession.instances[0].conn.project_src == '/srv/telemetry'
    assert FakeSession.instances[0].sql[0] == 'BEGIN' and 'LIMIT 20' in FakeSession.instances[0].sql[1]
    assert 'started_at' in result and 'finished_at' in result
    outcome, result, sm, dummy = _run({}, sm=sm)
    assert outcome == 'exit' and not result['changed'] and result['status'] == 'exists'
    assert len(sm.secrets[SECRET]['versions']) == 1


def test_check_mode():
    outcome, result, sm, dummy = _run({}, check_mode=True)
    assert outcome == 'exit' and result['changed'] and result['status'] == 'would_create'
    assert SECRET not in sm.secrets and result['photos_checked'] == 5


def test_drift_fails_with_one_sentence():
    sm = FakeSecretsManager()
    sm.add(SECRET, key(2).hex())
    outcome, result, dummy, dummy2 = _run({'encryption_key': None, 'create': False}, sm=sm)
    assert outcome == 'fail' and result['error_code'] == 'vault_drift' and not result['changed']
    assert result['msg'].startswith('the vault secret %s no longer holds the key that opens the photos' % SECRET)
    assert result['secret_id'] == SECRET


def test_no_database_needed_without_photo_proof():
    sm = FakeSecretsManager()
    sm.add(SECRET, LIVE.hex())
    outcome, result, dummy, dummy2 = _run({'project_src': None, 'key_check_photos': 0}, sm=sm)
    assert outcome == 'exit' and result['photos_checked'] == 0 and FakeSession.instances == []
    outcome, result, dummy, dummy2 = _run({'project_src': None}, sm=sm)
    assert outcome == 'fail' and result['error_code'] == 'bad_option' and 'project_src' in result['msg']
    outcome, result, dummy, dummy2 = _run({'project_src': None, 'prove': False}, sm=sm)
    assert outcome == 'exit' and not result['proven']


def test_damaged_photos_warn():
    sm = FakeSecretsManager()
    sm.add(SECRET, LIVE.hex())
    with mock.patch.object(AnsibleAWSModule, 'warn') as warn:
        outcome, result, dummy, dummy2 = _run({}, sm=sm, damaged=2)
    assert outcome == 'exit' and result['proven'] and (result['photos_checked'], result['photos_failed']) == (5, 2)
    assert [failure['id'] for failure in result['photo_failures']] == [1, 2]
    assert any('2 of the 5 photos checked do not decrypt' in str(call) for call in warn.call_args_list)


def test_secrets_never_appear_in_results():
    sm = FakeSecretsManager()
    sm.add(SECRET, key(2).hex())
    for args in ({}, {'encryption_key': None}, {'create': False, 'encryption_key': None, 'key_check_photos': 0}):
        outcome, result, dummy, dummy2 = _run(args, sm=sm)
        text = json.dumps(result)
        for secret in (LIVE.hex(), key(2).hex(), SECRET_KEY, DB_PASSWORD):
            assert secret not in text, (args, result)


def test_bad_key_option():
    outcome, result, dummy, dummy2 = _run({'encryption_key': 'too-short-secret'})
    assert outcome == 'fail' and result['error_code'] == 'bad_key' and 'too-short-secret' not in json.dumps(result)


def test_boto3_missing():
    with mock.patch.object(escrow_client, 'HAS_BOTO3', False):
        outcome, result, dummy, dummy2 = _run({})
    assert outcome == 'fail' and result['error_code'] == 'boto3_missing'
