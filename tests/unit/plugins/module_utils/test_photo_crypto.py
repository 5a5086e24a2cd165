# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _photo_crypto as pc

KEY = bytes(range(1, 33))
OTHER_KEY = bytes(range(101, 133))
PNG = b'\x89PNG\r\n\x1a\n' + b'\x00' * 40 + b'IEND'
JPEG = b'\xff\xd8\xff\xe0' + bytes(range(256)) * 4 + b'\xff\xd9'
GCM = pc.AES_256_GCM
FERNET = pc.FERNET


def _encodings(key):
    """Every textual form the key may take, including ones parse_key accepts."""
    std = base64.b64encode(key).decode()
    url = base64.urlsafe_b64encode(key).decode()
    return {
        'raw': key,
        'hex_lower': key.hex(),
        'hex_upper': key.hex().upper(),
        'hex_bytes': key.hex().encode(),
        'b64_std': std,
        'b64_std_unpadded': std.rstrip('='),
        'b64_url': url,
        'b64_url_unpadded': url.rstrip('='),
        'b64_bytes_with_newline': std.encode() + b'\n',
        'hex_with_blanks': '  %s\t\n' % key.hex(),
    }


# A key whose base64 uses both alphabets' special characters, so the urlsafe variants differ.
SPECIAL_KEY = binascii.unhexlify('fbff' * 16)


@pytest.mark.parametrize('scheme', pc.SCHEMES)
@pytest.mark.parametrize('plaintext', [b'', b'x', PNG, JPEG, bytes(range(256)) * 300])
def test_round_trip(scheme, plaintext):
    ciphertext = pc.encrypt(KEY, plaintext, scheme)
    assert ciphertext != plaintext
    assert pc.decrypt(KEY, ciphertext, scheme) == plaintext


def test_gcm_layout_is_nonce_ciphertext_tag():
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    ciphertext = pc.encrypt(KEY, JPEG, GCM)
    assert len(ciphertext) == 12 + len(JPEG) + 16
    assert AESGCM(KEY).decrypt(ciphertext[:12], ciphertext[12:], None) == JPEG


def test_fernet_key_is_urlsafe_base64_of_raw_key():
    from cryptography.fernet import Fernet
    token = Fernet(base64.urlsafe_b64encode(KEY)).encrypt(PNG)
    assert pc.decrypt(KEY, token, FERNET) == PNG
    assert pc.looks_like_fernet(pc.encrypt(KEY, PNG, FERNET))


def test_fernet_accepts_decoded_token_bytes():
    token = pc.encrypt(KEY, PNG, FERNET)
    raw = base64.urlsafe_b64decode(token)
    assert pc.decrypt(KEY, raw, FERNET) == PNG


def test_gcm_nonce_is_fresh():
    assert pc.encrypt(KEY, PNG, GCM)[:12] != pc.encrypt(KEY, PNG, GCM)[:12]


@pytest.mark.parametrize('key', [KEY, SPECIAL_KEY], ids=['plain', 'special'])
@pytest.mark.parametrize('form', sorted(_encodings(KEY)))
def test_parse_key_formats(key, form):
    assert pc.parse_key(_encodings(key)[form]) == key


def test_parse_key_thirty_two_characters_is_raw():
    text = 'abcdefghijklmnopqrstuvwxyz012345'
    assert pc.parse_key(text) == text.encode()
    assert pc.parse_key(' %s\n' % text) == text.encode()


def test_parse_key_raw_bytes_are_not_stripped():
    key = b' ' + KEY[1:31] + b'\n'
    assert pc.parse_key(key) == key


@pytest.mark.parametrize('scheme', pc.SCHEMES)
@pytest.mark.parametrize('form', sorted(_encodings(KEY)))
def test_round_trip_each_key_format(scheme, form):
    key = pc.parse_key(_encodings(KEY)[form])
    assert pc.decrypt(KEY, pc.encrypt(key, JPEG, scheme), scheme) == JPEG


KEY_ERRORS = [
    ('b64_31_bytes', base64.b64encode(KEY[:31]).decode(), 'is 31 bytes after base64 decoding'),
    ('b64_33_bytes', base64.b64encode(KEY + b'!').decode(), 'is 33 bytes after base64 decoding'),
    ('binary_31', bytes(range(200, 231)), 'is 31 bytes of binary data'),
    ('binary_33', KEY + b'\xff', 'is 33 bytes of binary data'),
    ('ascii_bytes_31', b'\x01' * 31, 'is 31 characters of neither hex nor base64'),
    ('non_hex_64', 'g' * 64, 'is 64 characters but not all hexadecimal'),
    ('punctuation_64', 'z!' * 32, 'is 64 characters but not all hexadecimal'),
    ('hex_62', KEY.hex()[:62], 'is 62 hexadecimal characters'),
    ('hex_66', KEY.hex() + 'ab', 'is 66 hexadecimal characters'),
    ('garbage', 'not a key at all!', 'is 17 characters of neither hex nor base64'),
    ('mixed_alphabets', 'ab+c-d' * 8, 'is 48 characters of neither hex nor base64'),
    ('extra_padding', base64.b64encode(KEY).decode() + '==', 'neither hex nor base64'),
    ('empty', '', 'is empty'),
    ('blank', '   \n', 'is empty'),
    ('none', None, 'is not set'),
    ('int', 12345, 'must be a string or bytes, not int'),
    ('non_ascii', '\u00e9' * 32, 'non-ASCII'),
]


@pytest.mark.parametrize('value, fragment', [row[1:] for row in KEY_ERRORS], ids=[row[0] for row in KEY_ERRORS])
def test_parse_key_rejects(value, fragment):
    with pytest.raises(pc.KeyFormatError) as err:
        pc.parse_key(value)
    message = str(err.value)
    assert fragment in message
    assert message.startswith('ENCRYPTION_KEY ')
    assert 'expected 32 raw bytes, 64 hex characters or base64 of 32 bytes' in message
    if isinstance(value, str) and value.strip():
        assert value.strip() not in message


def test_parse_key_names_the_setting():
    with pytest.raises(pc.KeyFormatError, match='^encryption_key is empty'):
        pc.parse_key('', name='encryption_key')


@pytest.mark.parametrize('scheme', pc.SCHEMES)
def test_wrong_key(scheme):
    ciphertext = pc.encrypt(KEY, JPEG, scheme)
    with pytest.raises(pc.DecryptError, match='wrong ENCRYPTION_KEY') as err:
        pc.decrypt(OTHER_KEY, ciphertext, scheme)
    assert err.value.reason == 'authentication_failed'


@pytest.mark.parametrize('position', [0, 11, 12, 100, -17, -1], ids=['nonce0', 'nonce11', 'body0', 'body', 'tag0', 'tag15'])
def test_gcm_tampered_byte(position):
    ciphertext = bytearray(pc.encrypt(KEY, JPEG, GCM))
    ciphertext[position] ^= 0x01
    with pytest.raises(pc.DecryptError, match='wrong cipher setting \\(try fernet\\), or corrupted photo') as err:
        pc.decrypt(KEY, bytes(ciphertext), GCM)
    assert err.value.reason == 'authentication_failed'


@pytest.mark.parametrize('position', [10, 30, 60, 100, -50])
def test_fernet_tampered_byte(position):
    token = bytearray(pc.encrypt(KEY, JPEG, FERNET))
    token[position] = ord('A') if token[position] != ord('A') else ord('B')
    with pytest.raises(pc.DecryptError) as err:
        pc.decrypt(KEY, bytes(token), FERNET)
    assert err.value.reason == 'authentication_failed'


@pytest.mark.parametrize('size', [0, 1, 12, 27])
def test_gcm_too_short(size):
    with pytest.raises(pc.DecryptError, match='is %d bytes, shorter than the 28-byte minimum' % size) as err:
        pc.decrypt(KEY, pc.encrypt(KEY, JPEG, GCM)[:size], GCM)
    assert err.value.reason == 'too_short'


def test_gcm_truncated_but_long_enough():
    ciphertext = pc.encrypt(KEY, JPEG, GCM)
    with pytest.raises(pc.DecryptError) as err:
        pc.decrypt(KEY, ciphertext[:len(ciphertext) // 2], GCM)
    assert err.value.reason == 'authentication_failed'


@pytest.mark.parametrize('cut', [0, 5, 50, -1, -10])
def test_fernet_truncated(cut):
    token = pc.encrypt(KEY, JPEG, FERNET)
    with pytest.raises(pc.DecryptError):
        pc.decrypt(KEY, token[:cut] if cut else b'', FERNET)


def test_fernet_data_under_gcm_setting():
    with pytest.raises(pc.DecryptError, match='looks like a Fernet token.*set the cipher to fernet') as err:
        pc.decrypt(KEY, pc.encrypt(KEY, PNG, FERNET), GCM)
    assert err.value.reason == 'looks_like_fernet'


def test_gcm_data_under_fernet_setting():
    with pytest.raises(pc.DecryptError, match='looks like aes-256-gcm data; set the cipher to aes-256-gcm') as err:
        pc.decrypt(KEY, pc.encrypt(KEY, PNG, GCM), FERNET)
    assert err.value.reason == 'looks_like_aes_256_gcm'


@pytest.mark.parametrize('scheme', pc.SCHEMES)
@pytest.mark.parametrize('image, kind', [(PNG, 'PNG'), (JPEG, 'JPEG')])
def test_plain_image_is_reported_as_not_encrypted(scheme, image, kind):
    with pytest.raises(pc.DecryptError, match='plain %s image, not encrypted' % kind) as err:
        pc.decrypt(KEY, image, scheme)
    assert err.value.reason == 'not_encrypted'


@pytest.mark.parametrize('scheme, expected', [
    (None, GCM), ('aes-256-gcm', GCM), (' AES-256-GCM ', GCM), ('Fernet', FERNET),
])
def test_normalize_scheme(scheme, expected):
    assert pc.normalize_scheme(scheme) == expected


@pytest.mark.parametrize('scheme', ['aes-128-gcm', 'chacha20', ''])
def test_unknown_scheme(scheme):
    with pytest.raises(pc.SchemeError, match='choose one of aes-256-gcm, fernet'):
        pc.encrypt(KEY, PNG, scheme)


@pytest.mark.parametrize('func', [pc.encrypt, pc.decrypt])
@pytest.mark.parametrize('key', [KEY.hex(), KEY[:31], None])
def test_functions_require_parsed_key(func, key):
    with pytest.raises(pc.KeyFormatError, match='parse_key'):
        func(key, PNG, GCM)


def test_missing_cryptography(monkeypatch):
    monkeypatch.setattr(pc, 'HAS_CRYPTOGRAPHY', False)
    with pytest.raises(pc.MissingCryptographyError, match='cryptography is required'):
        pc.encrypt(KEY, PNG)
    assert pc.parse_key(KEY.hex()) == KEY
    assert pc.key_fingerprint(KEY).startswith('v1:')


def test_fingerprint_definition():
    expected = hmac.new(KEY, b'fleet_telemetry.dr key fingerprint v1', hashlib.sha256).hexdigest()[:32]
    assert pc.key_fingerprint(KEY) == 'v1:' + expected


def test_fingerprint_stable_and_distinct():
    assert pc.key_fingerprint(KEY) == pc.key_fingerprint(pc.parse_key(KEY.hex()))
    fingerprints = {pc.key_fingerprint(bytes([i]) * 32) for i in range(64)}
    assert len(fingerprints) == 64
    assert pc.key_fingerprint(KEY) != pc.key_fingerprint(OTHER_KEY)


@pytest.mark.parametrize('key', [KEY, SPECIAL_KEY, b'0123456789abcdef0123456789abcdef'])
def test_fingerprint_does_not_contain_key(key):
    fingerprint = pc.key_fingerprint(key)
    haystack = fingerprint.lower()
    for form, encoded in _encodings(key).items():
        text = encoded.decode('latin-1') if isinstance(encoded, bytes) else encoded
        text = text.strip().lower()
        for start in range(0, len(text) - 8 + 1):
            assert text[start:start + 8] not in haystack, form
    assert hashlib.sha256(key).hexdigest()[:32] not in fingerprint


@pytest.mark.parametrize('data, expected', [
    (JPEG, 'jpeg'), (PNG, 'png'), (b'GIF89a', None), (b'', None), (b'\xff\xd8', None), (bytearray(PNG), 'png'),
])
def test_detect_image_type(data, expected):
    assert pc.detect_image_type(data) == expected


def test_detect_image_type_on_real_images():
    io = pytest.importorskip('io')
    image_module = pytest.importorskip('PIL.Image')
    for fmt, expected in (('JPEG', 'jpeg'), ('PNG', 'png')):
        buf = io.BytesIO()
        image_module.new('RGB', (8, 8), (10, 20, 30)).save(buf, format=fmt)
        assert pc.detect_image_type(buf.getvalue()) == expected
