# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""_escrow.prove: create once, never overwrite, prove the vault's key on a manifest and on photos (stood in)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.errors import EscrowError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.prove import EscrowRequest, manifest_fingerprint, run_escrow
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import key_fingerprint

from ansible_collections.fleet_telemetry.dr.tests.unit.plugins.module_utils.test_escrow import SECRET, FakeSecretsManager, key

LIVE = key(1)
OLD = key(2)
MANIFEST = '/srv/backups/backup_20260301T020000Z.sql.zst.manifest.json'


class Photos(object):
    """A stand-in of the photo check: photos that only ``opener`` decrypts (``damaged`` of them never)."""

    def __init__(self, opener=LIVE, count=20, damaged=0):
        self.opener = opener
        self.count = count
        self.damaged = damaged
        self.keys = []

    def __call__(self, candidate):
        self.keys.append(candidate)
        failures = [{'id': i, 'reason': 'authentication_failed', 'msg': 'aes-256-gcm authentication failed'}
                    for i in range(1, self.count + 1) if candidate != self.opener or i <= self.damaged]
        return {'checked': self.count, 'failed': len(failures), 'failures': failures[:20]}


def manifests(fingerprint):
    return lambda path: {'file': 'backup', 'key_fingerprint': fingerprint}


def request(key_bytes=LIVE, **kwargs):
    return EscrowRequest(SECRET, key_text=key_bytes.hex() if key_bytes else None, **kwargs)


def run(sm, req, photos=None, check_mode=False, manifest_fp=None):
    return run_escrow(sm, req, photo_checker=photos, check_mode=check_mode,
                      manifest_reader=manifests(manifest_fp) if manifest_fp else None)


def assert_secret_free(value, *secrets):
    text = json.dumps(value.to_result() if isinstance(value, EscrowError) else value, default=str) + str(value)
    for secret in secrets:
        assert secret not in text


def test_create_then_prove():
    sm, photos = FakeSecretsManager(), Photos()
    req = request(kms_key_id='alias/escrow', description='fleet key', manifest=MANIFEST)
    result = run(sm, req, photos, manifest_fp=key_fingerprint(LIVE))
    assert (result['status'], result['created'], result['proven']) == ('created', True, True)
    assert result['fingerprint'] == result['manifest_fingerprint'] == key_fingerprint(LIVE)
    assert result['stages'] == ['AWSCURRENT'] and result['version_id'] and result['photos_checked'] == 20
    assert photos.keys == [LIVE]                      # proven once, before the secret was created
    assert sm.operations() == ['GetSecretValue', 'CreateSecret', 'GetSecretValue']
    stored = sm.secrets[SECRET]
    assert stored['versions'][0]['value'] == LIVE.hex()
    assert stored['kms_key_id'] == 'alias/escrow' and stored['description'] == 'fleet key'
    assert result['msg'].startswith('created the vault secret %s (version ' % SECRET)
    assert 'it opens the 20 photos checked and it matches' in result['msg']
    assert_secret_free(result, LIVE.hex())


def test_created_with_a_field():
    sm = FakeSecretsManager()
    result = run(sm, request(field='APP_KEY', prove=False))
    assert result['status'] == 'created' and 'not proven (prove=false)' in result['msg']
    assert json.loads(sm.secrets[SECRET]['versions'][0]['value']) == {'APP_KEY': LIVE.hex()}


def test_existing_secret_is_never_written():
    sm, photos = FakeSecretsManager(), Photos()
    sm.add(SECRET, LIVE.hex())
    result = run(sm, request(), photos)
    assert (result['status'], result['created'], result['proven']) == ('exists', False, True)
    assert sm.operations() == ['GetSecretValue'] and len(sm.secrets[SECRET]['versions']) == 1
    assert 'already holds the key in AWSCURRENT' in result['msg'] and 'nothing written' in result['msg']


def test_existing_secret_without_encryption_key():
    sm = FakeSecretsManager()
    sm.add(SECRET, json.dumps({'ENCRYPTION_KEY': LIVE.hex()}))
    result = run(sm, request(None, create=False), Photos())
    assert result['status'] == 'exists' and result['fingerprint'] == key_fingerprint(LIVE)


def test_check_mode_would_create_and_still_proves():
    sm, photos = FakeSecretsManager(), Photos()
    result = run(sm, request(manifest=MANIFEST), photos, check_mode=True, manifest_fp=key_fingerprint(LIVE))
    assert (result['status'], result['created'], result['version_id']) == ('would_create', False, None)
    assert result['fingerprint'] == key_fingerprint(LIVE) and photos.keys == [LIVE] and result['proven']
    assert 'CreateSecret' not in sm.operations() and SECRET not in sm.secrets
    assert result['msg'].startswith('check mode: would create')


def test_check_mode_on_an_existing_secret_proves_it():
    sm, photos = FakeSecretsManager(), Photos()
    sm.add(SECRET, LIVE.hex())
    result = run(sm, request(), photos, check_mode=True)
    assert result['status'] == 'exists' and photos.keys == [LIVE]
    sm.rotate(SECRET, OLD.hex())
    with pytest.raises(EscrowError) as err:
        run(sm, request(None), Photos(), check_mode=True)
    assert err.value.code == 'vault_drift'


def test_drift_when_the_vault_key_opens_no_photo():
    sm = FakeSecretsManager()
    version = sm.add(SECRET, OLD.hex())
    with pytest.raises(EscrowError) as err:
        run(sm, request(), Photos())
    exc = err.value
    assert exc.code == 'vault_drift'
    text = str(exc)
    assert text.startswith('the vault secret %s no longer holds the key that opens the photos (AWSCURRENT version %s has %s; '
                           'none of the 20 photos checked decrypt with it (first: photo 1, authentication_failed); '
                           'encryption_key has %s): put the current ENCRYPTION_KEY into it as a new version'
                           % (SECRET, version, key_fingerprint(OLD), key_fingerprint(LIVE)))
    assert '\n' not in text and text.count('. ') == 0
    assert exc.extra['fingerprint'] == key_fingerprint(OLD) and exc.extra['version_id'] == version
    assert_secret_free(exc, OLD.hex(), LIVE.hex())
    assert len(sm.secrets[SECRET]['versions']) == 1 and 'CreateSecret' not in sm.operations()


def test_drift_against_the_manifest():
    sm = FakeSecretsManager()
    sm.add(SECRET, OLD.hex())
    with pytest.raises(EscrowError) as err:
        run(sm, request(None, manifest=MANIFEST), Photos(opener=OLD), manifest_fp=key_fingerprint(LIVE))
    text = str(err.value)
    assert err.value.code == 'vault_drift'
    assert text.startswith('the vault secret %s does not hold the key of the manifest %s' % (SECRET, MANIFEST))
    assert 'the manifest %s has %s' % (MANIFEST, key_fingerprint(LIVE)) in text
    assert 'the 20 photos checked decrypt with the vault key' in text
    with pytest.raises(EscrowError) as err:
        run(sm, request(None, manifest=MANIFEST), Photos(opener=LIVE), manifest_fp=key_fingerprint(LIVE))
    assert 'no longer holds the key that opens the photos' in str(err.value)
    assert 'the manifest %s has %s' % (MANIFEST, key_fingerprint(LIVE)) in str(err.value)


def test_differing_encryption_key():
    sm = FakeSecretsManager()
    sm.add(SECRET, OLD.hex())
    with pytest.raises(EscrowError) as err:
        run(sm, request(LIVE), Photos(opener=OLD))
    exc = err.value
    assert exc.code == 'secret_exists_differs'
    assert 'AWSCURRENT version' in str(exc) and key_fingerprint(OLD) in str(exc) and key_fingerprint(LIVE) in str(exc)
    assert 'the vault key opens the photos checked: correct encryption_key' in str(exc)
    assert_secret_free(exc, OLD.hex(), LIVE.hex())
    with pytest.raises(EscrowError) as err:
        run(sm, request(LIVE, prove=False))
    assert err.value.code == 'secret_exists_differs' and 'opens the photos' not in str(err.value)
    assert len(sm.secrets[SECRET]['versions']) == 1


def test_wrong_encryption_key_is_not_escrowed():
    sm = FakeSecretsManager()
    with pytest.raises(EscrowError) as err:
        run(sm, request(OLD), Photos(opener=LIVE))
    assert err.value.code == 'wrong_key' and 'does not open the photos' in str(err.value)
    assert 'nothing was written to the vault secret' in str(err.value)
    with pytest.raises(EscrowError) as err:
        run(sm, request(OLD, manifest=MANIFEST), None, manifest_fp=key_fingerprint(LIVE))
    assert err.value.code == 'wrong_key' and 'is not the key of the manifest' in str(err.value)
    assert 'CreateSecret' not in sm.operations() and SECRET not in sm.secrets
    assert_secret_free(err.value, OLD.hex(), LIVE.hex())


def test_some_damaged_photos_still_prove_the_key():
    sm = FakeSecretsManager()
    sm.add(SECRET, LIVE.hex())
    result = run(sm, request(), Photos(damaged=3))
    assert result['proven'] and (result['photos_checked'], result['photos_failed']) == (20, 3)
    assert [f['id'] for f in result['photo_failures']] == [1, 2, 3]
    assert 'it opens 17 of the 20 photos checked' in result['msg']


def test_no_photos():
    sm = FakeSecretsManager()
    sm.add(SECRET, LIVE.hex())
    result = run(sm, request(), Photos(count=0))
    assert result['proven'] and result['photos_checked'] == 0 and 'no photo in photo to check' in result['msg']
    result = run(sm, request(), None)
    assert 'photos not checked' in result['msg']


def test_missing_secret():
    sm = FakeSecretsManager()
    with pytest.raises(EscrowError) as err:
        run(sm, request(create=False))
    assert err.value.code == 'no_secret' and 'create=true' in str(err.value)
    with pytest.raises(EscrowError) as err:
        run(sm, request(None))
    assert err.value.code == 'no_secret' and 'encryption_key is not set' in str(err.value)
    assert 'CreateSecret' not in sm.operations()


def test_created_meanwhile_by_another_run():
    sm = FakeSecretsManager()
    real_create = sm.create_secret

    def racing_create(**args):
        sm.add(SECRET, OLD.hex())
        return real_create(**args)

    sm.create_secret = racing_create
    with pytest.raises(EscrowError) as err:
        run(sm, request(LIVE), None)
    assert err.value.code == 'secret_exists_differs'
    sm2 = FakeSecretsManager()
    real_create2 = sm2.create_secret

    def racing_same(**args):
        sm2.add(SECRET, LIVE.hex())
        return real_create2(**args)

    sm2.create_secret = racing_same
    result = run(sm2, request(LIVE), None)
    assert result['status'] == 'exists' and not result['created']


def test_manifest_without_fingerprint():
    with pytest.raises(EscrowError) as err:
        manifest_fingerprint(MANIFEST, reader=lambda path: {'key_fingerprint': None})
    assert err.value.code == 'bad_option' and 'records no key_fingerprint' in str(err.value)
    sm = FakeSecretsManager()
    with pytest.raises(EscrowError):
        run_escrow(sm, request(manifest=MANIFEST), manifest_reader=lambda path: {})
    assert sm.calls == []                              # before any AWS call


def test_manifest_read_from_disk(tmp_path):
    path = tmp_path / 'backup_20260301T020000Z.sql.zst.manifest.json'
    path.write_text(json.dumps({'key_fingerprint': key_fingerprint(LIVE)}))
    assert manifest_fingerprint(str(path)) == key_fingerprint(LIVE)
    assert manifest_fingerprint(str(path)[:-len('.manifest.json')]) == key_fingerprint(LIVE)


def test_bad_request():
    with pytest.raises(EscrowError) as err:
        EscrowRequest(SECRET, key_text='short-and-secret')
    assert err.value.code == 'bad_key' and 'encryption_key' in str(err.value)
    assert 'short-and-secret' not in str(err.value)
    with pytest.raises(EscrowError) as err:
        EscrowRequest('  ')
    assert err.value.code == 'bad_option'
