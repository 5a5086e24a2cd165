# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The key, or the age identity, inside a secret's value. Internal to fleet_telemetry.dr; not a public API.

A secret holds either the value itself (raw) or a JSON object with the value in one field (Secrets Manager's key/value
form). With a ``field`` the secret must be a JSON object holding that field. Without one, a JSON object is read at the
default field (``ENCRYPTION_KEY`` for the key, ``AGE_IDENTITY`` for an identity) and anything else is the raw value.

The key is parsed by ``_photo_crypto.parse_key``: 64 hex characters, base64 of 32 bytes, or 32 raw characters (a
``SecretBinary`` of 32 bytes is the raw key). No message here contains the value or part of it; field names of a JSON
object are named only when they could not themselves be a key.

This file must keep compiling on Python 3.8.
"""

from __future__ import annotations

import json

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.errors import EscrowError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import KeyFormatError, parse_key

DEFAULT_KEY_FIELD = 'ENCRYPTION_KEY'
DEFAULT_IDENTITY_FIELD = 'AGE_IDENTITY'
_KEY_FIX = ('put the ENCRYPTION_KEY (64 hex characters, base64 of 32 bytes or 32 characters) into the secret as a new '
            'version, or set %s to the JSON field that holds it')
_MAX_FIELD_NAME = 40
_MAX_FIELDS_LISTED = 10


def _malformed(message, where):
    return EscrowError(message, code='malformed_secret', **({'secret_id': where.secret_id} if where.secret_id else {}))


class Where(object):
    """How a message names a secret value: the secret id, and the version when known (never the value)."""

    def __init__(self, secret_id=None, version_id=None, stages=None):
        self.secret_id = secret_id
        self.version_id = version_id
        self.stages = list(stages or [])

    def __str__(self):
        name = 'the vault secret %s' % self.secret_id if self.secret_id else 'the secret'
        if self.version_id:
            stages = ', '.join(self.stages) if self.stages else 'no stage'
            name += ' (version %s, %s)' % (self.version_id, stages)
        return name


def _where(where):
    if isinstance(where, Where):
        return where
    return Where(where)


def _as_text(value, where, what):
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode('utf-8')
        except UnicodeDecodeError:
            raise _malformed('%s is binary data, not text: store %s as SecretString' % (where, what), where) from None
    if isinstance(value, str):
        return value
    if value is None:
        raise _malformed('%s has no value (neither SecretString nor SecretBinary): put %s into it as a new version'
                         % (where, what), where)
    raise _malformed('%s is a %s, not text' % (where, type(value).__name__), where)


def _json_object(text):
    """The JSON object ``text`` holds, else None (a raw value, or JSON that is not an object)."""
    stripped = text.strip()
    if not stripped.startswith('{'):
        return None
    try:
        parsed = json.loads(stripped)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _safe_field_names(obj):
    """The field names of ``obj`` that can be named in a message: short, and not themselves a key."""
    names = []
    for name in sorted(str(key) for key in obj):
        if len(name) > _MAX_FIELD_NAME:
            continue
        try:
            parse_key(name)
        except KeyFormatError:
            names.append(name)
    return names[:_MAX_FIELDS_LISTED]


def _field(obj, field, where, option, what):
    if field not in obj:
        names = _safe_field_names(obj)
        has = ' (its fields: %s)' % ', '.join(names) if names else ''
        raise _malformed('%s is a JSON object without the field %s%s: set %s to the field that holds %s, or add %s to '
                         'the secret as a new version' % (where, field, has, option, what, field), where)
    value = obj[field]
    if not isinstance(value, str):
        kind = 'null' if value is None else type(value).__name__
        raise _malformed('the field %s of %s is %s, not a string: store %s there as a JSON string'
                         % (field, where, kind, what), where)
    return value


def _select(secret_string, field, default_field, where, option, what):
    """``(value, field used or None)`` of a secret value, per the rules of this file's docstring."""
    binary = isinstance(secret_string, (bytes, bytearray, memoryview))
    if binary and field is None:
        try:
            text = bytes(secret_string).decode('utf-8')
        except UnicodeDecodeError:
            return bytes(secret_string), None
    else:
        text = _as_text(secret_string, where, what)
    obj = _json_object(text)
    if field:
        if obj is None:
            raise _malformed('%s is not a JSON object, but %s is set to %s: store the secret as a JSON object with the '
                             'field %s, or unset %s to read the value raw' % (where, option, field, field, option), where)
        return _field(obj, field, where, option, what), field
    if obj is not None:
        return _field(obj, default_field, where, option, what), default_field
    return text, None


def key_from_secret(secret_string, field=None, where=None, option='secret_field'):
    """The 32 key bytes of a secret value (``SecretString`` text, or ``SecretBinary`` bytes).

    ``field``: the JSON field that holds the key (the secret must then be a JSON object); None reads a JSON object at
    ``ENCRYPTION_KEY`` and anything else raw. ``where`` (a secret id or a ``Where``) and ``option`` (the module option
    of ``field``) name the secret and the fix in the ``malformed_secret`` error, which never holds the value.
    """
    where = _where(where)
    value, used = _select(secret_string, field, DEFAULT_KEY_FIELD, where, option, 'the key')
    label = 'the value' if used is None else 'the value of its field %s' % used
    try:
        return parse_key(value, name=label)
    except KeyFormatError as exc:
        raise _malformed('%s does not hold a 32-byte key: %s: %s' % (where, str(exc).rstrip('.'), _KEY_FIX % option),
                         where) from None


def text_from_secret(secret_string, field=None, where=None, option='secret_field'):
    """The text of a secret value that holds an age identity (raw text, or the JSON ``field``; None reads a JSON object
    at ``AGE_IDENTITY``). Blank text is a ``malformed_secret`` error; the text itself is checked by ``_age``."""
    where = _where(where)
    value, dummy = _select(secret_string, field, DEFAULT_IDENTITY_FIELD, where, option, 'the age identity')
    if isinstance(value, bytes):
        raise _malformed('%s is binary data, not text: store the age identity as SecretString' % where, where)
    if not value.strip():
        raise _malformed('%s is empty: put the age identity (the file age-keygen wrote) into it as a new version'
                         % where, where)
    return value


def secret_string_for(key, field=None):
    """The SecretString that escrows ``key`` (the 32 key bytes, or the key's text in any form ``parse_key`` reads): the
    key as 64 lowercase hex characters, or with ``field`` the JSON object ``{field: hex}``; ``key_from_secret`` reads
    either back (with the same ``field``)."""
    key_bytes = key if isinstance(key, bytes) and len(key) == 32 else parse_key(key, name='encryption_key')
    text = key_bytes.hex()
    return json.dumps({field: text}) if field else text
