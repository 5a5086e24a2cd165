# -*- coding: utf-8 -*-
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The photo cipher of the fleet-telemetry application.

Internal to the fleet_telemetry.dr collection: not a public API, it may change without notice.

The application stores every photo in ``photo.data`` encrypted with the 32-byte ``ENCRYPTION_KEY``.
Two schemes are supported; the choice is configuration (the ``cipher`` setting, ``PHOTO_CIPHER`` in
the example app) because the stored bytes do not say which one wrote them:

``aes-256-gcm`` (default)
    ``12-byte random nonce || ciphertext || 16-byte tag``, no associated data.
``fernet``
    A Fernet token (``cryptography.fernet``) whose key is ``urlsafe_b64encode`` of the 32 raw key
    bytes. Stored as the token text; the base64-decoded token bytes are accepted on decryption too.

This file is loaded three ways: as an Ansible module_util, by the collection's plugins, and by file path
from plain scripts (``importlib.util.spec_from_file_location``). It therefore needs nothing from the
collection (its errors derive from the collection's error base class when it is there, from ``Exception``
when loaded by path), and it imports without ``cryptography`` (see ``HAS_CRYPTOGRAPHY``): only ``encrypt`` and
``decrypt`` need it. It must keep compiling on Python 3.8.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import traceback

try:
    from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError as _ErrorBase
except ImportError:  # loaded by file path, without the collection
    _ErrorBase = Exception

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.fernet import Fernet, InvalidToken
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

    class _CryptographyUnavailable(Exception):
        """Stands in for cryptography's exception classes; never raised."""

    InvalidTag = InvalidToken = _CryptographyUnavailable
    AESGCM = Fernet = None
else:
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None


AES_256_GCM = 'aes-256-gcm'
FERNET = 'fernet'
SCHEMES = (AES_256_GCM, FERNET)
DEFAULT_SCHEME = AES_256_GCM

KEY_SIZE = 32
GCM_NONCE_SIZE = 12
GCM_TAG_SIZE = 16

# version (1) + timestamp (8) + IV (16) + at least one AES block (16) + HMAC-SHA256 (32)
_FERNET_MIN_SIZE = 73
_FERNET_FIXED_SIZE = 57
_FERNET_VERSION = 0x80
# Every Fernet token starts with version byte 0x80 followed by a 64-bit timestamp whose high bytes
# are zero for centuries, so its base64url text starts with this prefix.
_FERNET_TEXT_PREFIX = b'gAAAAA'

FINGERPRINT_LABEL = b'fleet_telemetry.dr key fingerprint v1'
FINGERPRINT_PREFIX = 'v1:'
FINGERPRINT_HEX_CHARS = 32

_EXPECTED_KEY = 'expected 32 raw bytes, 64 hex characters or base64 of 32 bytes'
_HEX_RE = re.compile(r'\A[0-9a-fA-F]*\Z')
_B64_STD_RE = re.compile(r'\A[A-Za-z0-9+/]*={0,2}\Z')
_B64_URL_RE = re.compile(r'\A[A-Za-z0-9_-]*={0,2}\Z')
_B64_URL_BYTES_RE = re.compile(br'\A[A-Za-z0-9_-]*={0,2}\Z')

_JPEG_MAGIC = b'\xff\xd8\xff'
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


class PhotoCryptoError(_ErrorBase):
    """Base class of every error raised here; the message is one sentence an operator can act on."""

    code = 'bad_key'


class KeyFormatError(PhotoCryptoError, ValueError):
    """The key is not 32 bytes in any accepted encoding. The message never contains the key."""


class SchemeError(PhotoCryptoError, ValueError):
    """The cipher setting names a scheme that is not supported."""


class MissingCryptographyError(PhotoCryptoError, ImportError):
    """The Python library cryptography is needed for this operation and cannot be imported."""


class DecryptError(PhotoCryptoError):
    """A photo does not decrypt. ``reason`` is a stable code for reports and tests.

    Codes: ``too_short``, ``not_encrypted``, ``looks_like_fernet``, ``looks_like_aes_256_gcm``,
    ``not_fernet``, ``authentication_failed``.
    """

    def __init__(self, message, reason):
        super().__init__(message)
        self.reason = reason


def normalize_scheme(scheme):
    """Return the canonical name of ``scheme`` (case and surrounding blanks ignored); None means the default."""
    if scheme is None:
        return DEFAULT_SCHEME
    name = str(scheme).strip().lower()
    if name not in SCHEMES:
        raise SchemeError('cipher %r is not supported; choose one of %s' % (str(scheme), ', '.join(SCHEMES)))
    return name


def parse_key(value, name='ENCRYPTION_KEY'):
    """Return the 32 raw key bytes encoded in ``value``.

    Accepted, tried in this order so that every input has exactly one meaning:

    1. ``bytes`` of length exactly 32: the raw key, used as is (not stripped: any byte is valid).
    2. Anything else is text (``bytes`` must be ASCII) with surrounding whitespace stripped, then:

       a. exactly 64 characters, all hexadecimal: hex;
       b. exactly 32 characters: the raw key is those 32 ASCII characters (a passphrase-style key
          used directly, as many applications do; base64 of 32 characters would be 24 bytes, so
          no valid key is lost to this rule);
       c. otherwise base64, standard (``+/``) or urlsafe (``-_``) alphabet, padding optional,
          which must decode to 32 bytes (43 characters, or 44 with padding).

    ``name`` is the setting named in error messages. Errors describe what was received (type, length,
    which rule failed) and never include the value.
    """
    if value is None:
        raise KeyFormatError('%s is not set; %s' % (name, _EXPECTED_KEY))
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    if isinstance(value, bytes):
        if len(value) == KEY_SIZE:
            return value
        try:
            text = value.decode('ascii')
        except UnicodeDecodeError:
            raise KeyFormatError('%s is %d bytes of binary data (not ASCII text); %s' % (name, len(value), _EXPECTED_KEY)) from None
    elif isinstance(value, str):
        text = value
    else:
        raise KeyFormatError('%s must be a string or bytes, not %s; %s' % (name, type(value).__name__, _EXPECTED_KEY))
    return _parse_key_text(text.strip(), name)


def _parse_key_text(text, name):
    if not text:
        raise KeyFormatError('%s is empty; %s' % (name, _EXPECTED_KEY))
    if not text.isascii():
        raise KeyFormatError('%s contains non-ASCII characters; %s' % (name, _EXPECTED_KEY))
    if len(text) == 2 * KEY_SIZE and _HEX_RE.match(text):
        return binascii.unhexlify(text)
    if len(text) == KEY_SIZE:
        return text.encode('ascii')
    decoded = _decode_base64(text)
    if (decoded is None or len(decoded) != KEY_SIZE) and _HEX_RE.match(text):
        raise KeyFormatError('%s is %d hexadecimal characters; %s' % (name, len(text), _EXPECTED_KEY))
    not_hex = ' is 64 characters but not all hexadecimal, and' if len(text) == 2 * KEY_SIZE else ''
    if decoded is None:
        raise KeyFormatError('%s%s is %d characters of neither hex nor base64; %s' % (name, not_hex, len(text), _EXPECTED_KEY))
    if len(decoded) != KEY_SIZE:
        raise KeyFormatError('%s%s is %d bytes after base64 decoding (%d characters); %s' % (name, not_hex, len(decoded), len(text), _EXPECTED_KEY))
    return decoded


def _decode_base64(text):
    """Decode standard or urlsafe base64 with optional padding; None when ``text`` is neither."""
    if _B64_STD_RE.match(text):
        alphabet = None
    elif _B64_URL_RE.match(text):
        alphabet = b'-_'
    else:
        return None
    body = text.rstrip('=')
    if len(body) % 4 == 1:
        return None
    padded = body + '=' * (-len(body) % 4)
    if len(padded) != len(text) and text.endswith('='):
        return None
    try:
        return base64.b64decode(padded, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError):
        return None


def _require_key(key_bytes):
    if not isinstance(key_bytes, bytes) or len(key_bytes) != KEY_SIZE:
        size = len(key_bytes) if isinstance(key_bytes, (bytes, bytearray)) else type(key_bytes).__name__
        raise KeyFormatError('the key must be 32 raw bytes (got %s); decode it with parse_key() first' % size)


def _require_cryptography():
    if not HAS_CRYPTOGRAPHY:
        raise MissingCryptographyError(
            'the Python library cryptography is required to encrypt or decrypt photos; install it on the host that runs this'
        )


def _fernet(key_bytes):
    return Fernet(base64.urlsafe_b64encode(key_bytes))


def encrypt(key_bytes, plaintext, scheme=DEFAULT_SCHEME):
    """Encrypt ``plaintext`` (bytes) with the 32-byte key; return the bytes to store in ``photo.data``.

    aes-256-gcm uses a fresh random nonce per call, so equal photos give different ciphertexts.
    """
    scheme = normalize_scheme(scheme)
    _require_key(key_bytes)
    _require_cryptography()
    if scheme == FERNET:
        return _fernet(key_bytes).encrypt(bytes(plaintext))
    nonce = os.urandom(GCM_NONCE_SIZE)
    return nonce + AESGCM(key_bytes).encrypt(nonce, bytes(plaintext), None)


def decrypt(key_bytes, ciphertext, scheme=DEFAULT_SCHEME):
    """Decrypt the bytes of one ``photo.data``; raise ``DecryptError`` naming the setting to change."""
    scheme = normalize_scheme(scheme)
    _require_key(key_bytes)
    _require_cryptography()
    data = bytes(ciphertext)
    if scheme == FERNET:
        return _decrypt_fernet(key_bytes, data)
    return _decrypt_gcm(key_bytes, data)


def _decrypt_gcm(key_bytes, data):
    minimum = GCM_NONCE_SIZE + GCM_TAG_SIZE
    if len(data) < minimum:
        raise DecryptError(
            'photo data is %d bytes, shorter than the %d-byte minimum of aes-256-gcm (12-byte nonce + 16-byte tag): '
            'the photo is truncated or was not written by this cipher' % (len(data), minimum),
            'too_short',
        )
    try:
        return AESGCM(key_bytes).decrypt(data[:GCM_NONCE_SIZE], data[GCM_NONCE_SIZE:], None)
    except InvalidTag:
        raise _diagnose_gcm_failure(data) from None


def _diagnose_gcm_failure(data):
    """Explain an aes-256-gcm authentication failure; only called after decryption failed."""
    if looks_like_fernet(data):
        return DecryptError(
            'photo data looks like a Fernet token, not aes-256-gcm data; set the cipher to fernet', 'looks_like_fernet'
        )
    kind = detect_image_type(data)
    if kind is not None:
        return DecryptError('photo data is a plain %s image, not encrypted; it was stored without ENCRYPTION_KEY' % kind.upper(), 'not_encrypted')
    return DecryptError(
        'aes-256-gcm authentication failed: wrong ENCRYPTION_KEY, wrong cipher setting (try fernet), or corrupted photo',
        'authentication_failed',
    )


def _decrypt_fernet(key_bytes, data):
    token = _fernet_token(data)
    if token is None:
        kind = detect_image_type(data)
        if kind is not None:
            raise DecryptError('photo data is a plain %s image, not encrypted; it was stored without ENCRYPTION_KEY' % kind.upper(), 'not_encrypted')
        if len(data) >= GCM_NONCE_SIZE + GCM_TAG_SIZE:
            raise DecryptError(
                'photo data is not a Fernet token (binary, not base64 text starting with gAAAAA); '
                'it looks like aes-256-gcm data; set the cipher to aes-256-gcm',
                'looks_like_aes_256_gcm',
            )
        raise DecryptError(
            'photo data is %d bytes and not a Fernet token: the photo is truncated or was not written by this cipher' % len(data), 'not_fernet'
        )
    try:
        return _fernet(key_bytes).decrypt(token)
    except InvalidToken:
        other = '' if token is data else ', wrong cipher setting (try aes-256-gcm)'
        raise DecryptError('Fernet signature check failed: wrong ENCRYPTION_KEY%s, or corrupted photo' % other, 'authentication_failed') from None


def _fernet_token(data):
    """Return ``data`` as Fernet token text when it has the shape of one (text or decoded), else None."""
    if looks_like_fernet(data):
        return data
    if _fernet_raw_shape(data):
        return base64.urlsafe_b64encode(data)
    return None


def _fernet_raw_shape(raw):
    return len(raw) >= _FERNET_MIN_SIZE and raw[0] == _FERNET_VERSION and (len(raw) - _FERNET_FIXED_SIZE) % 16 == 0


def looks_like_fernet(data):
    """True when ``data`` has the shape of Fernet token text: base64url of a well-formed version-0x80 token."""
    data = bytes(data)
    if not data.startswith(_FERNET_TEXT_PREFIX) or not _B64_URL_BYTES_RE.match(data):
        return False
    try:
        raw = base64.urlsafe_b64decode(data + b'=' * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return False
    return _fernet_raw_shape(raw)


def key_fingerprint(key_bytes):
    """Return a fingerprint of the key that identifies it without revealing it, e.g. ``v1:3f1c...``.

    It is ``HMAC-SHA256(key=the 32 raw key bytes, msg=FINGERPRINT_LABEL)``, hex, truncated to 128 bits
    and prefixed with its version. It cannot reveal the key: HMAC-SHA256 is a pseudorandom function of
    its key, so the output gives no information about the key short of trying every key (2**256 for
    a random key), and the fixed label keeps the value distinct from any other use of the key (it is
    not a ciphertext, MAC or hash that the application itself produces). Only a weak passphrase-style
    key could be guessed from it, by the same dictionary attack that would work on the ciphertexts.
    """
    _require_key(key_bytes)
    digest = hmac.new(key_bytes, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()
    return FINGERPRINT_PREFIX + digest[:FINGERPRINT_HEX_CHARS]


def detect_image_type(data):
    """Return ``'jpeg'`` or ``'png'`` from the magic bytes at the start of ``data``, else None."""
    head = bytes(data[:8])
    if head.startswith(_JPEG_MAGIC):
        return 'jpeg'
    if head.startswith(_PNG_MAGIC):
        return 'png'
    return None
