# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The escrow (plugins/module_utils/_escrow) against Secrets Manager and KMS of a real moto server over HTTP: no Docker.

Versions are made the way an operator rotates the key (put-secret-value, with or without --version-stages), then the
escrow must find each one by fingerprint. Tests that switch on moto's IAM authentication get a server of their own (it
is global to the server process).

Run: ``python -m pytest -q -p no:cacheprovider tests/system/test_key_escrow_moto.py``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess

import boto3
import pytest
from botocore.config import Config

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _age
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow import resolve, secrets
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.errors import EscrowError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.prove import EscrowRequest, run_escrow
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.value import secret_string_for
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import key_fingerprint
from ansible_collections.fleet_telemetry.dr.tests.support import moto_server as moto_support
from ansible_collections.fleet_telemetry.dr.tests.support.sshd import closed_port
from conftest import HOST, parse_host_result


def new_key():
    return os.urandom(32)


def fp(key):
    return key_fingerprint(key)


@pytest.fixture(scope='module')
def moto():
    server = moto_support.start_moto_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope='module')
def sm(moto):
    return moto.client('secretsmanager', retries={'max_attempts': 2, 'mode': 'standard'})


@pytest.fixture(scope='module')
def kms_key(moto):
    return moto.client('kms').create_key(Description='fleet-dr escrow test')['KeyMetadata']['Arn']


@pytest.fixture
def name(request):
    """A secret name of this test's own."""
    return 'fleet/test/%s-%s' % (request.node.originalname, os.urandom(4).hex())


def secret_free(exc, *values):
    text = str(exc) + json.dumps(exc.to_result(), default=str)
    return not any(value in text for value in values)


def rotate(sm, name, value, stages=None):
    """What an operator does to rotate (or keep aside) a key: PutSecretValue, AWSCURRENT unless other stages are given."""
    args = {'SecretId': name, 'SecretString': value}
    if stages:
        args['VersionStages'] = stages
    return sm.put_secret_value(**args)['VersionId']


# -- create -----------------------------------------------------------------------------------------------------------

def test_create_with_a_kms_key_then_exists(sm, kms_key, name):
    key = new_key()
    value = secret_string_for(key.hex())
    assert secrets.create_if_absent(sm, name, value, kms_key_id=kms_key, description='fleet escrow') == 'created'
    described = sm.describe_secret(SecretId=name)
    assert described['KmsKeyId'] in (kms_key, kms_key.rsplit('/', 1)[-1]) and described['Description'] == 'fleet escrow'
    found, info = resolve.current_key(sm, name)
    assert found == key and info['stages'] == ['AWSCURRENT'] and info['fingerprint'] == fp(key)

    other = secret_string_for(new_key().hex())
    assert secrets.create_if_absent(sm, name, other, kms_key_id=kms_key) == 'exists'
    assert secrets.create_if_absent(sm, name, other, check_mode=True) == 'exists'
    assert sm.get_secret_value(SecretId=name)['SecretString'] == value
    assert len(sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)['Versions']) == 1


def test_check_mode_creates_nothing(sm, name):
    assert secrets.create_if_absent(sm, name, secret_string_for(new_key().hex()), check_mode=True) == 'would_create'
    with pytest.raises(EscrowError) as err:
        secrets.get_version(sm, name)
    assert err.value.code == 'no_secret'


def test_run_escrow_creates_once_and_proves(sm, kms_key, name):
    key = new_key()
    text = base64.b64encode(key).decode('ascii')
    first = run_escrow(sm, EscrowRequest(name, key_text=text, kms_key_id=kms_key))
    assert (first['status'], first['created'], first['fingerprint']) == ('created', True, fp(key))
    again = run_escrow(sm, EscrowRequest(name, key_text=text))
    assert (again['status'], again['created'], again['version_id']) == ('exists', False, first['version_id'])
    assert sm.get_secret_value(SecretId=name)['SecretString'] == key.hex()
    with pytest.raises(EscrowError) as err:
        run_escrow(sm, EscrowRequest(name, key_text=new_key().hex()))
    assert err.value.code == 'secret_exists_differs'
    assert len(sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)['Versions']) == 1


# -- versions ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def rotated(sm, name):
    """k1 created, k2 rotated in, k3 kept aside under the label pre-rotation, k4 rotated in: AWSCURRENT k4, AWSPREVIOUS
    k2, pre-rotation k3, k1 deprecated (no stage)."""
    keys = [new_key() for dummy in range(4)]
    sm.create_secret(Name=name, SecretString=secret_string_for(keys[0], 'ENCRYPTION_KEY'))
    rotate(sm, name, keys[1].hex())
    rotate(sm, name, json.dumps({'ENCRYPTION_KEY': keys[2].hex(), 'NOTE': 'kept for old backups'}), ['pre-rotation'])
    rotate(sm, name, keys[3].hex())
    return name, keys


def test_versions_are_ordered(sm, rotated):
    name, keys = rotated
    listed = secrets.versions(sm, name)
    assert [v['stages'] for v in listed] == [['AWSCURRENT'], ['AWSPREVIOUS'], ['pre-rotation'], []]
    assert all(v['created'] and v['created'].endswith('Z') for v in listed)
    values = [sm.get_secret_value(SecretId=name, VersionId=v['version_id'])['SecretString'] for v in listed]
    assert keys[3].hex() in values[0] and keys[1].hex() in values[1] and keys[2].hex() in values[2] and keys[0].hex() in values[3]


@pytest.mark.parametrize('index, stages', [(3, ['AWSCURRENT']), (1, ['AWSPREVIOUS']), (2, ['pre-rotation']), (0, [])])
def test_key_for_manifest_picks_the_version(sm, rotated, index, stages):
    name, keys = rotated
    found, info = resolve.key_for_manifest(sm, name, None, fp(keys[index]))
    assert found == keys[index] and info['stages'] == stages and info['fingerprint'] == fp(keys[index])
    assert info['version_id'] and info['tried'][-1]['version_id'] == info['version_id']
    assert keys[index].hex() not in json.dumps(info)


def test_no_matching_version_lists_the_fingerprints(sm, rotated):
    name, keys = rotated
    wanted = fp(new_key())
    with pytest.raises(EscrowError) as err:
        resolve.key_for_manifest(sm, name, None, wanted)
    text = str(err.value)
    assert err.value.code == 'no_matching_version' and wanted in text
    for key, stages in zip(keys, ('no stage', 'AWSPREVIOUS', 'pre-rotation', 'AWSCURRENT')):
        assert '%s (%s)' % (fp(key), stages) in text
    assert secret_free(err.value, *[key.hex() for key in keys])


def test_identity_by_recipient(sm, name):
    lines = [_age.bech32_encode(_age.IDENTITY_HRP, new_key()).upper() for dummy in range(2)]
    sm.create_secret(Name=name, SecretString='# an old identity\n%s\n' % lines[0])
    rotate(sm, name, json.dumps({'AGE_IDENTITY': lines[1] + '\n'}))
    old = _age.recipient_fingerprint(_age.identity_recipients(lines[0])[0])
    text, info = resolve.identity_for_manifest(sm, name, None, [old])
    assert lines[0] in text and info['stages'] == ['AWSPREVIOUS'] and info['fingerprint'] == old


# -- failures ---------------------------------------------------------------------------------------------------------

def test_missing_secret(sm):
    # (moto 5.2 answers ListSecretVersionIds of a missing secret with a 500, AWS with ResourceNotFoundException: the
    # escrow always reads AWSCURRENT first, so it never lists a missing secret.)
    for call in (lambda: resolve.current_key(sm, 'fleet/test/none'),
                 lambda: resolve.key_for_manifest(sm, 'fleet/test/none', None, fp(new_key()))):
        with pytest.raises(EscrowError) as err:
            call()
        assert err.value.code == 'no_secret' and 'fleet/test/none' in str(err.value), str(err.value)
        assert err.value.extra['aws_code'] == 'ResourceNotFoundException'
    with pytest.raises(EscrowError) as err:
        run_escrow(sm, EscrowRequest('fleet/test/none', create=False))
    assert err.value.code == 'no_secret'


@pytest.mark.parametrize('value, field, words', [
    ('hello, not a key', None, 'does not hold a 32-byte key'),
    (json.dumps({'OTHER': 'x'}), None, 'without the field ENCRYPTION_KEY'),
    ('00' * 31, None, 'is 62 hexadecimal characters'),
    ('00' * 32, 'APP_KEY', 'is not a JSON object'),
])
def test_malformed_secret(sm, name, value, field, words):
    sm.create_secret(Name=name, SecretString=value)
    with pytest.raises(EscrowError) as err:
        resolve.current_key(sm, name, field)
    assert err.value.code == 'malformed_secret' and words in str(err.value), str(err.value)
    assert name in str(err.value) and 'AWSCURRENT' in str(err.value)
    assert secret_free(err.value, value)


def test_binary_secret_of_32_raw_bytes(sm, name):
    key = new_key()
    sm.create_secret(Name=name, SecretBinary=key)
    assert resolve.current_key(sm, name)[0] == key


def test_unreachable_endpoint():
    client = boto3.session.Session().client(
        'secretsmanager', region_name='us-east-1', endpoint_url='http://127.0.0.1:%d' % closed_port(),
        aws_access_key_id='AKIAFLEETDRTEST', aws_secret_access_key='not-a-secret',
        config=Config(retries={'max_attempts': 1}, connect_timeout=2, read_timeout=2))
    for call in (lambda: resolve.current_key(client, 'fleet/x'), lambda: secrets.versions(client, 'fleet/x'),
                 lambda: secrets.create_if_absent(client, 'fleet/x', secret_string_for('ab' * 32))):
        with pytest.raises(EscrowError) as err:
            call()
        assert err.value.code == 'vault_unreachable', str(err.value)
        assert 'fleet/x' in str(err.value) and 'endpoint_url' in str(err.value)
        assert secret_free(err.value, 'ab' * 32, 'not-a-secret')


@pytest.fixture(scope='module')
def auth_moto():
    """A server of its own with IAM authentication on: a user that may only read the secret's value, one allowed
    nothing, and a secret with two versions."""
    server = moto_support.start_moto_server()
    try:
        iam, admin = server.client('iam'), server.client('secretsmanager')
        keys = [new_key(), new_key()]
        admin.create_secret(Name='fleet/auth/key', SecretString=keys[0].hex())
        rotate(admin, 'fleet/auth/key', keys[1].hex())
        users = {}
        for user, actions in (('reader', ['secretsmanager:GetSecretValue']), ('nobody', None)):
            iam.create_user(UserName=user)
            if actions:
                iam.put_user_policy(UserName=user, PolicyName='escrow', PolicyDocument=json.dumps(
                    {'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': actions, 'Resource': '*'}]}))
            users[user] = iam.create_access_key(UserName=user)['AccessKey']
        server.enable_auth()
        server.users = users
        server.keys = keys
        yield server
    finally:
        server.stop()


def test_access_denied(auth_moto):
    reader, nobody = auth_moto.users['reader'], auth_moto.users['nobody']
    keys = auth_moto.keys
    as_reader = auth_moto.client('secretsmanager', reader['AccessKeyId'], reader['SecretAccessKey'], retries={'max_attempts': 1})
    # GetSecretValue is all the usual case needs.
    assert resolve.key_for_manifest(as_reader, 'fleet/auth/key', None, fp(keys[1]))[0] == keys[1]
    with pytest.raises(EscrowError) as err:
        resolve.key_for_manifest(as_reader, 'fleet/auth/key', None, fp(keys[0]))
    assert err.value.code == 'vault_denied' and 'secretsmanager:ListSecretVersionIds' in str(err.value), str(err.value)
    with pytest.raises(EscrowError) as err:
        secrets.create_if_absent(as_reader, 'fleet/auth/new', secret_string_for(keys[0].hex()))
    assert err.value.code == 'vault_denied' and 'secretsmanager:CreateSecret' in str(err.value)
    assert secret_free(err.value, keys[0].hex(), reader['SecretAccessKey'])

    as_nobody = auth_moto.client('secretsmanager', nobody['AccessKeyId'], nobody['SecretAccessKey'], retries={'max_attempts': 1})
    with pytest.raises(EscrowError) as err:
        resolve.current_key(as_nobody, 'fleet/auth/key')
    assert err.value.code == 'vault_denied' and 'secretsmanager:GetSecretValue' in str(err.value)
    assert secret_free(err.value, *[key.hex() for key in keys] + [nobody['SecretAccessKey']])

    for access_key, secret_key in (('AKIAFLEETDRUNKNOWN00', 'whatever'), (reader['AccessKeyId'], 'not-the-secret')):
        client = auth_moto.client('secretsmanager', access_key, secret_key, retries={'max_attempts': 1})
        with pytest.raises(EscrowError) as err:
            resolve.current_key(client, 'fleet/auth/key')
        assert err.value.code == 'vault_denied' and 'check access_key and secret_key' in str(err.value), str(err.value)
        assert secret_free(err.value, secret_key)


# -- the module, ad hoc through ansible -------------------------------------------------------------------------------

def run_module(ansible, tmp_path, args, check=False):
    """``ansible -m fleet_telemetry.dr.key_escrow`` with the key in a vars file (never on a command line)."""
    key_hex = args.pop('key_hex', None)
    vars_file = str(tmp_path / 'escrow-vars.json')
    with open(os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as handle:
        json.dump({'escrow_key': key_hex or ''}, handle)
    if key_hex:
        args['encryption_key'] = '{{ escrow_key }}'
    argv = [ansible.ansible, HOST, '-i', ansible.inventory, '-m', 'fleet_telemetry.dr.key_escrow',
            '-a', json.dumps(args), '-e', '@' + vars_file] + (['--check'] if check else [])
    proc = subprocess.run(argv, cwd=ansible.workdir, env=ansible.env(json_output=True), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=300, check=False)
    return proc.returncode, parse_host_result(proc.stdout, proc.stderr), proc.stdout + proc.stderr


def test_module_against_moto(moto, sm, kms_key, ansible, tmp_path, name):
    key = new_key()
    aws = {'secret_id': name, 'region': moto_support.REGION, 'endpoint_url': moto.url, 'access_key': moto_support.ACCESS_KEY,
           'secret_key': moto_support.SECRET_KEY, 'key_check_photos': 0}
    rc, result, output = run_module(ansible, tmp_path, dict(aws, key_hex=key.hex()), check=True)
    assert rc == 0 and result['changed'] and result['status'] == 'would_create', output[-3000:]
    rc, result, output = run_module(ansible, tmp_path, dict(aws, key_hex=key.hex(), kms_key_id=kms_key))
    assert rc == 0 and result['changed'] and result['status'] == 'created', output[-3000:]
    assert result['fingerprint'] == fp(key) and result['stages'] == ['AWSCURRENT']
    rc, result, output = run_module(ansible, tmp_path, dict(aws, key_hex=key.hex()))
    assert rc == 0 and not result['changed'] and result['status'] == 'exists', output[-3000:]
    rotate(sm, name, new_key().hex())
    rc, result, output = run_module(ansible, tmp_path, dict(aws, key_hex=key.hex()))
    assert rc != 0 and result['error_code'] == 'secret_exists_differs', output[-3000:]
    assert key.hex() not in output and moto_support.SECRET_KEY not in output
