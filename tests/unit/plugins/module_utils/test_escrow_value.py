# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""_escrow.value: the key or the age identity inside a secret's value; no message ever holds the value."""

from __future__ import annotations

import base64
import json

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.errors import EscrowError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.value import (
    Where, key_from_secret, secret_string_for, text_from_secret)

KEY = bytes(range(100, 132))
HEX = KEY.hex()
B64 = base64.b64encode(KEY).decode('ascii')
RAW = 'k3y-of-32-characters-exactly-ok!'
assert len(RAW) == 32


def malformed(value, field=None, **kwargs):
    with pytest.raises(EscrowError) as err:
        key_from_secret(value, field, **kwargs)
    assert err.value.code == 'malformed_secret'
    return err.value


def assert_secret_free(exc, *secrets):
    text = str(exc) + json.dumps(exc.to_result(), default=str)
    for secret in secrets:
        assert secret not in text
    assert '\n' not in str(exc)


@pytest.mark.parametrize('value', [HEX, HEX.upper(), B64, B64.rstrip('='), base64.urlsafe_b64encode(KEY).decode(),
                                   '  %s\n' % HEX])
def test_raw_key_encodings(value):
    assert key_from_secret(value) == KEY


def test_raw_32_characters_are_the_key():
    assert key_from_secret(RAW) == RAW.encode('ascii')


def test_binary_secret_of_32_bytes_is_the_raw_key():
    binary = bytes([0xff]) + KEY[1:]
    assert key_from_secret(binary) == binary
    assert key_from_secret(HEX.encode('ascii')) == KEY


def test_json_default_field():
    assert key_from_secret(json.dumps({'ENCRYPTION_KEY': HEX, 'DB_PASSWORD': 'x'})) == KEY


def test_json_named_field():
    assert key_from_secret(json.dumps({'APP_KEY': B64}), 'APP_KEY') == KEY
    assert key_from_secret(json.dumps({'APP_KEY': RAW, 'ENCRYPTION_KEY': 'ignored'}), 'APP_KEY') == RAW.encode()


def test_json_without_the_field_names_safe_fields_only():
    value = json.dumps({'DB_PASSWORD': 'pw-123456', 'APP_KEY': HEX, HEX: 'a key as a field name'})
    exc = malformed(value, where='fleet/prod/key')
    text = str(exc)
    assert 'fleet/prod/key' in text and 'without the field ENCRYPTION_KEY' in text
    assert 'APP_KEY, DB_PASSWORD' in text and 'set secret_field' in text
    assert_secret_free(exc, HEX, 'pw-123456')
    exc = malformed(json.dumps({'OTHER': HEX}), 'APP_KEY', option='encryption_key_secret_field')
    assert 'without the field APP_KEY' in str(exc) and 'set encryption_key_secret_field' in str(exc)


def test_json_field_that_is_not_a_string():
    exc = malformed(json.dumps({'ENCRYPTION_KEY': 12345678}))
    assert 'is int, not a string' in str(exc)
    assert 'is null' in str(malformed(json.dumps({'ENCRYPTION_KEY': None})))


@pytest.mark.parametrize('value', ['abcdef', HEX[:-2], HEX + 'ab', B64[:-4], 'x' * 33, 'é' * 32])
def test_wrong_length_or_alphabet(value):
    exc = malformed(value, where=Where('fleet/prod/key', 'v-123', ['AWSCURRENT']))
    text = str(exc)
    assert text.startswith('the vault secret fleet/prod/key (version v-123, AWSCURRENT) does not hold a 32-byte key: ')
    assert 'put the ENCRYPTION_KEY' in text and 'set secret_field' in text
    assert_secret_free(exc, value)


def test_wrong_key_in_a_json_field():
    exc = malformed(json.dumps({'ENCRYPTION_KEY': HEX[:40]}))
    assert 'the value of its field ENCRYPTION_KEY is 40 hexadecimal characters' in str(exc)
    assert_secret_free(exc, HEX[:40])


@pytest.mark.parametrize('value', [HEX, RAW, '["not", "an object"]', '{"broken": '])
def test_not_a_json_object_when_a_field_is_set(value):
    exc = malformed(value, 'APP_KEY', where='fleet/prod/key')
    assert 'is not a JSON object, but secret_field is set to APP_KEY' in str(exc)
    assert_secret_free(exc, value)


def test_json_that_is_not_an_object_is_read_raw():
    # A 32-character key made of digits is valid JSON (a number): it is still the raw key.
    digits = '12345678901234567890123456789012'
    assert key_from_secret(digits) == digits.encode()
    # A JSON string is raw text too: with its quotes it is 66 characters, not a key.
    assert 'is 66 characters' in str(malformed(json.dumps(HEX)))


def test_binary_that_is_not_text():
    exc = malformed(b'\xff\xfe' + bytes(40))
    assert 'does not hold a 32-byte key' in str(exc)
    exc = malformed(b'\xff\xfe' + bytes(40), 'APP_KEY')
    assert 'binary data, not text' in str(exc)


def test_no_value():
    assert 'has no value' in str(malformed(None, 'APP_KEY'))


def test_secret_string_for_round_trips():
    for key_text in (HEX, HEX.upper(), B64, ' %s ' % B64):
        created = secret_string_for(key_text)
        assert created == HEX and key_from_secret(created) == KEY
    assert secret_string_for(KEY) == HEX
    assert secret_string_for(RAW) == RAW.encode('ascii').hex()
    assert json.loads(secret_string_for(KEY, 'APP_KEY')) == {'APP_KEY': HEX}
    assert key_from_secret(secret_string_for(B64, 'APP_KEY'), 'APP_KEY') == KEY


IDENTITY = '# created: 2026-01-01\n# public key: age1...\nAGE-SECRET-KEY-1QQQQ\n'


def test_identity_text_raw_and_json():
    assert text_from_secret(IDENTITY) == IDENTITY
    assert text_from_secret(json.dumps({'AGE_IDENTITY': IDENTITY})) == IDENTITY
    assert text_from_secret(json.dumps({'id': IDENTITY}), 'id') == IDENTITY
    assert text_from_secret(IDENTITY.encode('utf-8')) == IDENTITY


def test_identity_errors_hold_no_text():
    for value, field, words in ((json.dumps({'other': IDENTITY}), None, 'without the field AGE_IDENTITY'),
                                (IDENTITY, 'id', 'is not a JSON object'),
                                ('   \n', None, 'is empty'),
                                (b'\xff' * 40, None, 'binary data')):
        with pytest.raises(EscrowError) as err:
            text_from_secret(value, field, where='fleet/prod/age', option='age_identity_secret_field')
        assert err.value.code == 'malformed_secret' and words in str(err.value), str(err.value)
        assert_secret_free(err.value, 'AGE-SECRET-KEY-1QQQQ')
