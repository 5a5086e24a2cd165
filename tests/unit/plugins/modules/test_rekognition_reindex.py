# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The module's glue: options, the boto3 client it asks for, results and failures (boto3 and psql stood in)."""

from __future__ import annotations

import json
import re
from unittest import mock

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _photo_crypto as pc
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import TransportError
from ansible_collections.fleet_telemetry.dr.plugins.modules import rekognition_reindex

from ansible_collections.fleet_telemetry.dr.tests.unit.plugins.module_utils.test_rekognition import FakeRekognition, client_error, image_with_faces
from ansible_collections.fleet_telemetry.dr.tests.unit.support.module_harness import AnsibleExitJson, AnsibleFailJson, patched_exits

KEY = bytes(range(1, 33))
KEY_HEX = KEY.hex()
SECRET_KEY = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'
DB_PASSWORD = 'db-pass-never-shown'
FACES = [1, 0, 2, 1]


@pytest.fixture(autouse=True)
def module_exits():
    with patched_exits():
        yield


class FakePsql(object):
    """Answers the photo batch queries of _photos.iter_photos from memory; records every statement."""

    instances = []

    def __init__(self, conn, *args, **kwargs):
        self.conn = conn
        self.sql = []
        self.photos = FakePsql.photos
        FakePsql.instances.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def query(self, sql):
        self.sql.append(sql)
        after = int(re.search(r'"id" > (-?\d+)', sql).group(1))
        limit = int(re.search(r'LIMIT (\d+)', sql).group(1))
        rows = [[str(photo_id), data.hex(), external_id] for photo_id, data, external_id in self.photos if photo_id > after]
        return rows[:limit]


def photos(key=KEY):
    return [(i, pc.encrypt(key, image_with_faces(count)), 'veh-1.photo-%04d' % i) for i, count in enumerate(FACES, start=1)]


def _run(args, client=None, check_mode=False, stored=None):
    """Run main(); return (outcome, result, client, the client() mock)."""
    client = client or FakeRekognition()
    FakePsql.photos = stored if stored is not None else photos()
    FakePsql.instances = []
    base = {'project_src': '/srv/telemetry', 'encryption_key': KEY_HEX, 'collection_id': 'fleet-drivers', 'region': 'us-east-1',
            'access_key': 'FLEETDRUNITACCESSKEY', 'secret_key': SECRET_KEY, 'db_password': DB_PASSWORD, 'tps': 1000}
    base.update(args)
    if check_mode:
        base['_ansible_check_mode'] = True
    with mock.patch.object(AnsibleAWSModule, 'client', return_value=client) as factory, \
            mock.patch.object(rekognition_reindex, 'PsqlSession', FakePsql), patch_module_args(base):
        try:
            rekognition_reindex.main()
        except AnsibleExitJson as exc:
            return 'exit', exc.args[0], client, factory
        except AnsibleFailJson as exc:
            return 'fail', exc.args[0], client, factory
    raise AssertionError('the module neither exited nor failed')


def test_rebuild_returns_counts_and_face_ids():
    outcome, result, client, factory = _run({})
    assert outcome == 'exit', result
    assert result['changed'] and (result['indexed'], result['faces_indexed'], result['no_face']) == (3, 4, 1)
    assert sorted(result['face_ids']) == ['veh-1.photo-0001', 'veh-1.photo-0003', 'veh-1.photo-0004']
    factory.assert_called_once()
    assert factory.call_args[0] == ('rekognition',)
    assert factory.call_args[1]['config']['retries']['total_max_attempts'] == 1


def test_connection_options_reach_the_transport():
    outcome, dummy, dummy2, dummy3 = _run({'project_name': 'fleet', 'db_user': 'app', 'db_name': 'telemetry'})
    assert outcome == 'exit'
    conn = FakePsql.instances[0].conn
    assert (conn.transport, conn.project_src, conn.project_name, conn.user, conn.database, conn.password) == (
        'compose', '/srv/telemetry', 'fleet', 'app', 'telemetry', DB_PASSWORD)


def test_selection_options_reach_the_query():
    outcome, result, dummy, dummy2 = _run({'where': 'vehicle_id = 3', 'batch_size': 2})
    assert outcome == 'exit', result
    assert all('(vehicle_id = 3)' in sql and sql.endswith('LIMIT 2') for sql in FakePsql.instances[0].sql)


def test_secrets_never_appear_in_the_result():
    outcome, result, dummy, dummy2 = _run({})
    text = json.dumps(result)
    for secret in (KEY_HEX, SECRET_KEY, DB_PASSWORD):
        assert secret not in text


def test_a_wrong_key_fails_before_any_aws_call():
    outcome, result, client, dummy = _run({'encryption_key': bytes(range(50, 82)).hex()})
    assert outcome == 'fail' and result['error_code'] == 'bad_key'
    assert 'nothing was sent to Rekognition' in result['msg']
    assert sum(client.calls.values()) == 0


def test_a_malformed_key_names_the_option():
    outcome, result, client, dummy = _run({'encryption_key': 'short'})
    assert outcome == 'fail' and result['error_code'] == 'bad_key' and result['msg'].startswith('encryption_key:')
    assert sum(client.calls.values()) == 0


def test_the_encryption_key_is_required():
    with mock.patch.object(rekognition_reindex, 'PsqlSession', FakePsql):
        with patch_module_args({'project_src': '/srv', 'collection_id': 'c', 'region': 'us-east-1'}):
            with pytest.raises(AnsibleFailJson) as err:
                rekognition_reindex.main()
    assert 'encryption_key' in err.value.args[0]['msg']


def test_check_mode_reports_the_plan():
    outcome, result, client, dummy = _run({}, check_mode=True)
    assert outcome == 'exit' and result['changed'] and result['would_index'] == 4
    assert client.calls['index_faces'] == 0 and client.calls['create_collection'] == 0


def test_transport_failures_are_reported_with_their_code():
    class Down(FakePsql):
        def __init__(self, conn, *args, **kwargs):
            raise TransportError('the database container is not running: start the stack', code='container_down')

    with mock.patch.object(AnsibleAWSModule, 'client', return_value=FakeRekognition()), \
            mock.patch.object(rekognition_reindex, 'PsqlSession', Down), \
            patch_module_args({'project_src': '/srv', 'collection_id': 'c', 'region': 'us-east-1', 'encryption_key': KEY_HEX}):
        with pytest.raises(AnsibleFailJson) as err:
            rekognition_reindex.main()
    assert err.value.args[0]['error_code'] == 'container_down'


def test_aws_failures_are_reported_with_the_aws_code():
    client = FakeRekognition()
    client.fail['describe_collection'] = [client_error('AccessDeniedException', message='not authorized')]
    outcome, result, dummy, dummy2 = _run({}, client=client)
    assert outcome == 'fail' and result['error_code'] == 'aws_auth' and result['aws_error_code'] == 'AccessDeniedException'


def test_argument_spec_matches_the_documented_options():
    import yaml  # pylint: disable=import-outside-toplevel
    documented = yaml.safe_load(rekognition_reindex.DOCUMENTATION)['options']
    spec = rekognition_reindex.argument_spec()
    own = set(documented)
    assert own <= set(spec)
    for name, option in documented.items():
        assert option.get('type', 'str') == spec[name].get('type', 'str'), name
        assert option.get('default') == spec[name].get('default'), name
        assert bool(option.get('required')) == bool(spec[name].get('required')), name
    assert spec['encryption_key']['no_log'] and spec['db_password']['no_log']
