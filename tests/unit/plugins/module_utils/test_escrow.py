# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""_escrow.errors, _escrow.secrets and _escrow.resolve against a stand-in of the boto3 Secrets Manager client.

The Secrets Manager behaviour itself (versions, staging labels, KMS, IAM) is tested against moto in
tests/system/test_key_escrow_moto.py.
"""

from __future__ import annotations

import datetime
import json
import uuid

import pytest
from botocore.exceptions import (ClientError, ConnectTimeoutError, EndpointConnectionError, NoCredentialsError,
                                 ParamValidationError, ReadTimeoutError, SSLError)

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _age
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow import errors, resolve, secrets
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.errors import EscrowError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import key_fingerprint

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SECRET = 'fleet/prod/encryption-key'


def key(n):
    return bytes((n + i) % 256 for i in range(32))


def client_error(code, operation='GetSecretValue', message='a message', status=400):
    return ClientError({'Error': {'Code': code, 'Message': message}, 'ResponseMetadata': {'HTTPStatusCode': status}},
                       operation)


class FakeSecretsManager(object):
    """The calls of the escrow on secrets held in memory; ``calls`` records (operation, arguments without values).

    There is no ``put_secret_value``/``update_secret``: the escrow must never call them. ``rotate`` is the test's own
    way of adding a version, as an operator's put-secret-value would.
    """

    page_size = 2

    def __init__(self):
        self.secrets = {}
        self.calls = []
        self.fail = {}

    # -- test helpers --
    def add(self, name, value, created=T0, kms_key_id=None):
        self.secrets[name] = {'versions': [], 'kms_key_id': kms_key_id, 'description': None}
        return self.rotate(name, value, created=created)

    def rotate(self, name, value, stages=None, created=None, version_id=None):
        versions = self.secrets[name]['versions']
        stages = list(stages or ['AWSCURRENT'])
        if 'AWSCURRENT' in stages:
            for version in versions:
                version['stages'] = [s for s in version['stages'] if s != 'AWSPREVIOUS']
            for version in versions:
                if 'AWSCURRENT' in version['stages']:
                    version['stages'] = [s for s in version['stages'] if s != 'AWSCURRENT'] + ['AWSPREVIOUS']
        for version in versions:
            version['stages'] = [s for s in version['stages'] if s not in stages or s == 'AWSPREVIOUS' and 'AWSCURRENT' in stages]
        version = {'id': version_id or str(uuid.uuid4()), 'value': value, 'stages': stages,
                   'created': created or T0 + datetime.timedelta(days=len(versions))}
        versions.append(version)
        return version['id']

    def _call(self, operation, args):
        self.calls.append((operation, dict((k, v) for k, v in args.items() if k not in ('SecretString', 'SecretBinary'))))
        failure = self.fail.get(operation)
        if isinstance(failure, dict):
            failure = failure.get(args.get('VersionId'))
        if failure is not None:
            raise failure

    def _secret(self, name, operation):
        if name not in self.secrets:
            raise client_error('ResourceNotFoundException', operation, "Secrets Manager can't find the specified secret.")
        return self.secrets[name]

    # -- the client's methods --
    def get_secret_value(self, **args):
        self._call('GetSecretValue', args)
        secret = self._secret(args['SecretId'], 'GetSecretValue')
        for version in secret['versions']:
            if args.get('VersionId') not in (None, version['id']):
                continue
            if args.get('VersionStage') and args['VersionStage'] not in version['stages']:
                continue
            answer = {'Name': args['SecretId'], 'VersionId': version['id'], 'VersionStages': list(version['stages']),
                      'CreatedDate': version['created']}
            answer['SecretBinary' if isinstance(version['value'], bytes) else 'SecretString'] = version['value']
            return answer
        raise client_error('ResourceNotFoundException', 'GetSecretValue',
                           "Secrets Manager can't find the specified secret value for VersionId")

    def list_secret_version_ids(self, **args):
        self._call('ListSecretVersionIds', args)
        secret = self._secret(args['SecretId'], 'ListSecretVersionIds')
        listed = [v for v in secret['versions'] if v['stages'] or args.get('IncludeDeprecated')]
        start = int(args.get('NextToken') or 0)
        page = listed[start:start + self.page_size]
        answer = {'Versions': [{'VersionId': v['id'], 'VersionStages': list(v['stages']), 'CreatedDate': v['created']}
                               for v in page]}
        if start + self.page_size < len(listed):
            answer['NextToken'] = str(start + self.page_size)
        return answer

    def create_secret(self, **args):
        self._call('CreateSecret', args)
        if args['Name'] in self.secrets:
            raise client_error('ResourceExistsException', 'CreateSecret', 'The operation failed because the secret exists.')
        self.secrets[args['Name']] = {'versions': [], 'kms_key_id': args.get('KmsKeyId'), 'description': args.get('Description')}
        self.rotate(args['Name'], args['SecretString'], version_id=args['ClientRequestToken'])
        return {'Name': args['Name'], 'VersionId': args['ClientRequestToken']}

    def operations(self):
        return [operation for operation, dummy in self.calls]


def assert_secret_free(exc, *values):
    text = str(exc) + json.dumps(exc.to_result(), default=str)
    for value in values:
        assert value not in text, value
    assert '\n' not in str(exc)


# -- classification ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('exc, code, words', [
    (EndpointConnectionError(endpoint_url='http://127.0.0.1:9'), 'vault_unreachable', 'cannot be reached'),
    (ConnectTimeoutError(endpoint_url='http://10.255.255.1'), 'vault_unreachable', 'endpoint_url'),
    (ReadTimeoutError(endpoint_url='http://127.0.0.1:9'), 'vault_unreachable', 'network'),
    (SSLError(endpoint_url='https://sm.example', error='bad cert'), 'vault_unreachable', 'aws_ca_bundle'),
    (client_error('AccessDeniedException', status=400), 'vault_denied', 'secretsmanager:GetSecretValue'),
    (client_error('AccessDenied', status=403), 'vault_denied', 'secretsmanager:GetSecretValue'),
    (client_error('UnrecognizedClientException'), 'vault_denied', 'access_key and secret_key'),
    (client_error('InvalidSignatureException'), 'vault_denied', 'host clock'),
    (client_error('ExpiredToken'), 'vault_denied', 'renew the temporary credentials'),
    (client_error('ExpiredTokenException'), 'vault_denied', 'renew the temporary credentials'),
    (NoCredentialsError(), 'vault_denied', 'no AWS credentials'),
    (client_error('DecryptionFailure'), 'vault_denied', 'kms:Decrypt'),
    (client_error('ResourceNotFoundException'), 'no_secret', 'create it with fleet_telemetry.dr.key_escrow'),
    (client_error('InvalidRequestException', message='You tried to access a secret marked for deletion.'), 'no_secret',
     'restore-secret'),
    (client_error('ThrottlingException'), 'vault_error', 'run again later'),
    (client_error('InternalServiceError', status=500), 'vault_unreachable', 'run again later'),
])
def test_classification(exc, code, words):
    err = errors.classify(exc, 'GetSecretValue', SECRET)
    assert err.code == code and words in str(err), str(err)
    assert str(err).startswith('GetSecretValue of the vault secret %s failed' % SECRET)
    assert err.extra['secret_id'] == SECRET and '\n' not in str(err)


def test_classification_names_the_permission_of_each_call():
    for operation, action in (('ListSecretVersionIds', 'secretsmanager:ListSecretVersionIds'),
                              ('CreateSecret', 'secretsmanager:CreateSecret')):
        err = errors.classify(client_error('AccessDeniedException', operation), operation, SECRET)
        assert err.code == 'vault_denied' and action in str(err)
    err = errors.classify(client_error('ResourceNotFoundException'), 'GetSecretValue', SECRET, version_id='v-9')
    assert 'version v-9' in str(err) and 'no longer exists' in str(err)
    err = errors.classify(client_error('ResourceNotFoundException', 'CreateSecret'), 'CreateSecret', SECRET)
    assert 'kms_key_id' in str(err)
    err = errors.classify(client_error('EncryptionFailure', 'CreateSecret'), 'CreateSecret', SECRET)
    assert err.code == 'vault_denied' and 'kms:GenerateDataKey' in str(err)


def test_xml_error_body_behind_a_bare_status():
    xml = ('<?xml version="1.0" encoding="utf-8"?>\n<ErrorResponse><Errors><Error><Code>%s</Code><Message>%s</Message>'
           '</Error></Errors></ErrorResponse>')
    err = errors.classify(client_error('403', message=xml % ('AccessDenied', 'not authorized'), status=403),
                          'ListSecretVersionIds', SECRET)
    assert (err.code, err.extra['aws_code']) == ('vault_denied', 'AccessDenied')
    assert 'secretsmanager:ListSecretVersionIds' in str(err) and '<' not in str(err)
    err = errors.classify(client_error('403', message=xml % ('InvalidClientTokenId', 'invalid'), status=403),
                          'GetSecretValue', SECRET)
    assert (err.code, err.extra['aws_code']) == ('vault_denied', 'InvalidClientTokenId')
    err = errors.classify(client_error('403', message='Forbidden', status=403), 'GetSecretValue', SECRET)
    assert err.code == 'vault_denied' and 'access denied or credentials refused' in str(err)
    err = errors.classify(client_error('500', message='<!doctype html>\n<html>\n<title>500</title>', status=500),
                          'ListSecretVersionIds', SECRET)
    assert err.code == 'vault_unreachable' and '\n' not in str(err) and '<' not in str(err)
    err = errors.classify(client_error('ValidationException', message='<html>\nproxy page</html>'), 'GetSecretValue', SECRET)
    assert err.code == 'vault_error' and 'not an AWS error' in str(err) and '\n' not in str(err)
    err = errors.classify(client_error('400', message=xml % ('Weird', 'odd thing'), status=400), 'GetSecretValue', SECRET)
    assert err.code == 'vault_error' and str(err).endswith('(Weird): odd thing')


def test_unknown_errors_quote_aws_without_secrets():
    value = '{"ENCRYPTION_KEY": "%s"}' % key(1).hex()
    err = errors.classify(client_error('LimitExceededException', 'CreateSecret', 'too many: %s.' % value),
                          'CreateSecret', SECRET, secrets=(value,))
    assert err.code == 'vault_error' and 'too many: <redacted>' in str(err)
    assert_secret_free(err, value, key(1).hex())
    err = errors.classify(ParamValidationError(report='Invalid type for parameter SecretString, value: %s' % value),
                          'CreateSecret', SECRET)
    assert 'botocore refused the request parameters' in str(err)
    assert_secret_free(err, value, key(1).hex())
    local = errors.classify(ValueError('odd %s' % value), 'GetSecretValue', SECRET, secrets=(value,))
    assert local.code == 'vault_error' and 'ValueError' in str(local)
    assert_secret_free(local, value)
    same = EscrowError('already')
    assert errors.classify(same, 'GetSecretValue', SECRET) is same


# -- versions and reads -----------------------------------------------------------------------------------------------

def test_versions_order_and_pagination():
    sm = FakeSecretsManager()
    first = sm.add(SECRET, key(1).hex(), created=T0)
    old = sm.rotate(SECRET, key(2).hex(), created=T0 + datetime.timedelta(days=1))
    labelled = sm.rotate(SECRET, key(3).hex(), stages=['pre-rotation-2026'], created=T0 + datetime.timedelta(days=2))
    previous = sm.rotate(SECRET, key(4).hex(), created=T0 + datetime.timedelta(days=3))
    current = sm.rotate(SECRET, key(5).hex(), created=T0 + datetime.timedelta(days=4))
    listed = secrets.versions(sm, SECRET)
    assert [v['version_id'] for v in listed] == [current, previous, labelled, old, first]
    assert listed[0]['stages'] == ['AWSCURRENT'] and listed[1]['stages'] == ['AWSPREVIOUS'] and listed[3]['stages'] == []
    assert listed[0]['created'] == '2026-03-05T12:00:00Z'
    calls = [args for operation, args in sm.calls if operation == 'ListSecretVersionIds']
    assert len(calls) == 3 and all(args['IncludeDeprecated'] is True for args in calls)
    assert [args.get('NextToken') for args in calls] == [None, '2', '4']


def test_order_of_equal_or_unknown_times():
    items = [{'version_id': 'a', 'stages': [], 'created': T0}, {'version_id': 'b', 'stages': [], 'created': T0},
             {'version_id': 'c', 'stages': [], 'created': None}, {'version_id': 'd', 'stages': ['AWSPREVIOUS'], 'created': T0},
             {'version_id': 'e', 'stages': ['x', 'AWSCURRENT'], 'created': None}]
    assert [v['version_id'] for v in secrets.order_versions(items)] == ['e', 'd', 'b', 'a', 'c']


def test_get_version_arguments():
    sm = FakeSecretsManager()
    vid = sm.add(SECRET, 'v1')
    assert secrets.get_version(sm, SECRET)['version_id'] == vid
    assert secrets.secret_string(sm, SECRET, version_id=vid) == 'v1'
    assert secrets.secret_string(sm, SECRET, stage='AWSCURRENT') == 'v1'
    assert [args for dummy, args in sm.calls] == [
        {'SecretId': SECRET, 'VersionStage': 'AWSCURRENT'}, {'SecretId': SECRET, 'VersionId': vid},
        {'SecretId': SECRET, 'VersionStage': 'AWSCURRENT'}]
    sm.secrets[SECRET]['versions'][0]['value'] = b'\x00' * 32
    assert secrets.secret_string(sm, SECRET) == b'\x00' * 32
    with pytest.raises(EscrowError) as err:
        secrets.get_version(sm, 'nope')
    assert err.value.code == 'no_secret' and err.value.extra['aws_code'] == 'ResourceNotFoundException'


# -- create_if_absent -------------------------------------------------------------------------------------------------

def test_create_with_kms_key_and_token():
    sm = FakeSecretsManager()
    value = json.dumps({'ENCRYPTION_KEY': key(1).hex()})
    assert secrets.create_if_absent(sm, SECRET, value, kms_key_id='alias/escrow', description='the key') == 'created'
    operation, args = sm.calls[-1]
    assert operation == 'CreateSecret' and args['KmsKeyId'] == 'alias/escrow' and args['Description'] == 'the key'
    assert str(uuid.UUID(args['ClientRequestToken'])) == args['ClientRequestToken']
    assert secrets.secret_string(sm, SECRET) == value
    assert sm.secrets[SECRET]['kms_key_id'] == 'alias/escrow'


def test_create_never_overwrites():
    sm = FakeSecretsManager()
    sm.add(SECRET, 'the first value')
    assert secrets.create_if_absent(sm, SECRET, 'another value') == 'exists'
    assert secrets.secret_string(sm, SECRET) == 'the first value'
    assert len(sm.secrets[SECRET]['versions']) == 1
    assert 'PutSecretValue' not in sm.operations() and not hasattr(sm, 'put_secret_value')
    token = 'c0ffee00-0000-4000-8000-000000000000'
    secrets.create_if_absent(sm, 'other', 'v', client_request_token=token)
    assert sm.calls[-1][1]['ClientRequestToken'] == token


def test_create_in_check_mode_writes_nothing():
    sm = FakeSecretsManager()
    assert secrets.create_if_absent(sm, SECRET, 'v', check_mode=True) == 'would_create'
    sm.add(SECRET, 'w')
    assert secrets.create_if_absent(sm, SECRET, 'v', check_mode=True) == 'exists'
    assert 'CreateSecret' not in sm.operations()


def test_create_failure_holds_no_secret():
    sm = FakeSecretsManager()
    value = json.dumps({'ENCRYPTION_KEY': key(7).hex()})
    sm.fail['CreateSecret'] = client_error('AccessDeniedException', 'CreateSecret', 'User: arn:... is not authorized')
    with pytest.raises(EscrowError) as err:
        secrets.create_if_absent(sm, SECRET, value)
    assert err.value.code == 'vault_denied' and 'secretsmanager:CreateSecret' in str(err.value)
    assert_secret_free(err.value, value, key(7).hex())


# -- resolve ----------------------------------------------------------------------------------------------------------

def rotated_secret(sm=None):
    """AWSCURRENT key(5), AWSPREVIOUS key(4), a labelled key(3), a deprecated key(2), a deprecated malformed value."""
    sm = sm or FakeSecretsManager()
    sm.add(SECRET, 'not a key at all', created=T0)
    sm.rotate(SECRET, json.dumps({'ENCRYPTION_KEY': key(2).hex()}), created=T0 + datetime.timedelta(days=1))
    sm.rotate(SECRET, key(3).hex(), stages=['pre-2026'], created=T0 + datetime.timedelta(days=2))
    sm.rotate(SECRET, key(4).hex(), created=T0 + datetime.timedelta(days=3))
    sm.rotate(SECRET, key(5).hex(), created=T0 + datetime.timedelta(days=4))
    return sm


def test_current_matches_without_listing():
    sm = rotated_secret()
    found, info = resolve.key_for_manifest(sm, SECRET, None, key_fingerprint(key(5)))
    assert found == key(5) and info['stages'] == ['AWSCURRENT'] and info['fingerprint'] == key_fingerprint(key(5))
    assert sm.operations() == ['GetSecretValue']
    assert info['tried'] == [{'version_id': info['version_id'], 'stages': ['AWSCURRENT'], 'fingerprint': key_fingerprint(key(5))}]


def test_no_fingerprint_takes_current():
    sm = rotated_secret()
    assert resolve.key_for_manifest(sm, SECRET, None, None)[0] == key(5)
    assert resolve.current_key(sm, SECRET)[0] == key(5)
    assert 'ListSecretVersionIds' not in sm.operations()


@pytest.mark.parametrize('n, stages, reads', [(4, ['AWSPREVIOUS'], 2), (3, ['pre-2026'], 3), (2, [], 4)])
def test_older_version_found_by_fingerprint(n, stages, reads):
    sm = rotated_secret()
    found, info = resolve.key_for_manifest(sm, SECRET, None, key_fingerprint(key(n)))
    assert found == key(n) and info['stages'] == stages
    assert [entry['stages'] for entry in info['tried']][:2] == [['AWSCURRENT'], ['AWSPREVIOUS']][:reads]
    assert len(info['tried']) == reads and sm.operations().count('GetSecretValue') == reads
    assert json.dumps(info).find(key(n).hex()) == -1


def test_no_match_lists_the_fingerprints():
    sm = rotated_secret()
    wanted = key_fingerprint(key(9))
    with pytest.raises(EscrowError) as err:
        resolve.key_for_manifest(sm, SECRET, None, wanted)
    exc = err.value
    assert exc.code == 'no_matching_version'
    text = str(exc)
    assert text.startswith('none of the 5 version(s) of the vault secret %s holds the key of fingerprint %s' % (SECRET, wanted))
    for n, stages in ((5, 'AWSCURRENT'), (4, 'AWSPREVIOUS'), (3, 'pre-2026'), (2, 'no stage')):
        assert '%s (%s)' % (key_fingerprint(key(n)), stages) in text
    assert 'malformed_secret for version' in text and 'put-secret-value' in text
    assert [entry.get('problem') for entry in exc.extra['tried']] == [None, None, None, None, 'malformed_secret']
    assert_secret_free(exc, *[key(n).hex() for n in range(2, 6)] + ['not a key at all'])


def test_malformed_current_is_skipped_when_a_fingerprint_is_wanted():
    sm = FakeSecretsManager()
    sm.add(SECRET, key(1).hex())
    sm.rotate(SECRET, 'garbage')
    found, info = resolve.key_for_manifest(sm, SECRET, None, key_fingerprint(key(1)))
    assert found == key(1) and info['stages'] == ['AWSPREVIOUS']
    assert info['tried'][0]['problem'] == 'malformed_secret' and info['tried'][0]['version_id']
    with pytest.raises(EscrowError) as err:
        resolve.key_for_manifest(sm, SECRET, None, None)
    assert err.value.code == 'malformed_secret' and 'AWSCURRENT' in str(err.value)
    assert_secret_free(err.value, 'garbage')


def test_field_and_option_reach_the_value():
    sm = FakeSecretsManager()
    sm.add(SECRET, json.dumps({'APP_KEY': key(1).hex()}))
    assert resolve.key_for_manifest(sm, SECRET, 'APP_KEY', key_fingerprint(key(1)))[0] == key(1)
    with pytest.raises(EscrowError) as err:
        resolve.key_for_manifest(sm, SECRET, None, None, option='encryption_key_secret_field')
    assert 'set encryption_key_secret_field' in str(err.value)


def test_errors_of_the_vault_propagate():
    sm = rotated_secret()
    sm.fail['GetSecretValue'] = EndpointConnectionError(endpoint_url='http://127.0.0.1:9')
    with pytest.raises(EscrowError) as err:
        resolve.key_for_manifest(sm, SECRET, None, key_fingerprint(key(1)))
    assert err.value.code == 'vault_unreachable'
    sm = rotated_secret()
    sm.fail['ListSecretVersionIds'] = client_error('AccessDeniedException', 'ListSecretVersionIds')
    with pytest.raises(EscrowError) as err:
        resolve.key_for_manifest(sm, SECRET, None, key_fingerprint(key(4)))
    assert err.value.code == 'vault_denied' and 'secretsmanager:ListSecretVersionIds' in str(err.value)
    with pytest.raises(EscrowError) as err:
        resolve.key_for_manifest(FakeSecretsManager(), SECRET, None, key_fingerprint(key(4)))
    assert err.value.code == 'no_secret'


def test_a_version_denied_is_skipped():
    sm = rotated_secret()
    previous = secrets.versions(sm, SECRET)[1]['version_id']
    sm.fail['GetSecretValue'] = {previous: client_error('AccessDeniedException')}
    found, info = resolve.key_for_manifest(sm, SECRET, None, key_fingerprint(key(3)))
    assert found == key(3) and info['tried'][1] == {'version_id': previous, 'stages': ['AWSPREVIOUS'], 'problem': 'vault_denied'}


def identity(seed):
    private = bytes((seed * 7 + i) % 256 for i in range(32))
    line = _age.bech32_encode(_age.IDENTITY_HRP, private).upper()
    return '# created: 2026-03-01T12:00:00Z\n# public key: %s\n%s\n' % (_age.identity_recipients(line)[0], line), line


def test_identity_for_manifest():
    sm = FakeSecretsManager()
    old_text, old_line = identity(1)
    new_text, new_line = identity(2)
    sm.add(SECRET, old_text)
    sm.rotate(SECRET, json.dumps({'AGE_IDENTITY': new_text}))
    old_fp = _age.recipient_fingerprint(_age.identity_recipients(old_text)[0])
    new_fp = _age.recipient_fingerprint(_age.identity_recipients(new_text)[0])
    text, info = resolve.identity_for_manifest(sm, SECRET, None, [new_fp])
    assert text == new_text and info['fingerprint'] == new_fp and info['stages'] == ['AWSCURRENT']
    text, info = resolve.identity_for_manifest(sm, SECRET, None, ['sha256:0000000000000000', old_fp])
    assert text == old_text and info['stages'] == ['AWSPREVIOUS']
    assert resolve.identity_for_manifest(sm, SECRET, None, [])[0] == new_text
    with pytest.raises(EscrowError) as err:
        resolve.identity_for_manifest(sm, SECRET, None, ['sha256:0000000000000000'])
    assert err.value.code == 'no_matching_version' and old_fp in str(err.value) and new_fp in str(err.value)
    assert 'an age identity' in str(err.value)
    assert_secret_free(err.value, old_line, new_line)


def test_identity_that_does_not_parse():
    sm = FakeSecretsManager()
    sm.add(SECRET, 'AGE-SECRET-KEY-1NOTVALID')
    with pytest.raises(EscrowError) as err:
        resolve.identity_for_manifest(sm, SECRET, None, None)
    assert err.value.code == 'malformed_secret' and 'does not hold a usable age identity' in str(err.value)
    assert_secret_free(err.value, 'AGE-SECRET-KEY-1NOTVALID')


def test_every_sentence_names_a_fix():
    for code in ('AccessDeniedException', 'UnrecognizedClientException', 'InvalidSignatureException', 'ExpiredToken',
                 'ResourceNotFoundException', 'DecryptionFailure', 'EncryptionFailure'):
        for operation in ('GetSecretValue', 'ListSecretVersionIds', 'CreateSecret'):
            text = str(errors.classify(client_error(code, operation), operation, SECRET))
            assert text.count(': ') >= 1 and not text.endswith('.'), text
            assert any(word in text for word in ('grant', 'check', 'renew', 'create', 'correct', 'run again')), text
