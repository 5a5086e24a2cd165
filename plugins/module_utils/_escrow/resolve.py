# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Which version of a vault secret holds the key of a backup, or an identity of its age recipients. Internal to
fleet_telemetry.dr; not a public API.

AWSCURRENT is read first (only ``secretsmanager:GetSecretValue`` is needed when it matches, the usual case). When it
does not match, the versions are listed (``secretsmanager:ListSecretVersionIds``, deprecated ones included) and read
one by one: AWSPREVIOUS, then the rest newest first. A version is recognised by its fingerprint only
(``_photo_crypto.key_fingerprint`` of the key, ``_age.recipient_fingerprint`` of an identity's recipients), which is
what results and messages show; the values never are.

This file must keep compiling on Python 3.8.
"""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.errors import EscrowError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.secrets import CURRENT, get_version, versions
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.value import Where, key_from_secret, text_from_secret
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import key_fingerprint

_MAX_LISTED = 12


class _Reader(object):
    """How a kind of secret value is read: ``parse(value, where)`` -> (secret, [fingerprints])."""

    def __init__(self, what, parse, fix):
        self.what = what
        self.parse = parse
        self.fix = fix


def _key_reader(field, option):
    def parse(value, where):
        key = key_from_secret(value, field, where=where, option=option)
        return key, [key_fingerprint(key)]
    return _Reader('the key', parse, 'put the ENCRYPTION_KEY that made the backup into the secret as a new version '
                                     '(aws secretsmanager put-secret-value --version-stages with a label of its own, so '
                                     'that AWSCURRENT keeps the current key), or give the key directly')


def _identity_reader(field, option):
    def parse(value, where):
        # Imported here: only an identity needs _age (and cryptography).
        from ansible_collections.fleet_telemetry.dr.plugins.module_utils._age import (  # pylint: disable=import-outside-toplevel
            AgeError, identity_recipients, recipient_fingerprint)
        text = text_from_secret(value, field, where=where, option=option)
        try:
            recipients = identity_recipients(text)
        except AgeError as exc:
            raise EscrowError('%s does not hold a usable age identity: %s' % (where, exc), code='malformed_secret',
                              secret_id=where.secret_id) from None
        return text, [recipient_fingerprint(recipient) for recipient in recipients]
    return _Reader('an age identity', parse, 'put the age identity whose recipient is in the manifest into the secret as '
                                             'a new version, or give the identity directly')


def _info(secret_id, version, fingerprints, tried):
    return {'secret_id': secret_id, 'version_id': version['version_id'], 'stages': list(version['stages']),
            'fingerprint': fingerprints[0] if len(fingerprints) == 1 else list(fingerprints), 'tried': tried}


def _tried(version, fingerprints=None, problem=None):
    entry = {'version_id': version['version_id'], 'stages': list(version['stages'])}
    if fingerprints is not None:
        entry['fingerprint'] = fingerprints[0] if len(fingerprints) == 1 else list(fingerprints)
    if problem is not None:
        entry['problem'] = problem
    return entry


def _describe(entry):
    stages = ', '.join(entry['stages']) or 'no stage'
    if 'fingerprint' in entry:
        fingerprint = entry['fingerprint']
        text = fingerprint if isinstance(fingerprint, str) else '/'.join(fingerprint)
        return '%s (%s)' % (text, stages)
    return '%s for version %s (%s)' % (entry.get('problem', 'unreadable'), entry['version_id'], stages)


def _read(client, secret_id, reader, version_id=None, stage=None, listed=None):
    """``(version, secret, fingerprints)`` of one version; ``listed`` gives the stages of a listed version."""
    version = get_version(client, secret_id, version_id=version_id, stage=stage)
    if listed is not None and not version['stages']:
        version['stages'] = list(listed['stages'])
    where = Where(secret_id, version['version_id'], version['stages'])
    secret, fingerprints = reader.parse(version['value'], where)
    version.pop('value', None)
    return version, secret, fingerprints


def _resolve(client, secret_id, wanted, reader):
    """``(secret, info)`` of the first version (AWSCURRENT, AWSPREVIOUS, the rest newest first) one of whose
    fingerprints is in ``wanted``; AWSCURRENT as it is when ``wanted`` is empty."""
    wanted = [fingerprint for fingerprint in (wanted or ()) if fingerprint]
    tried = []
    try:
        current, secret, fingerprints = _read(client, secret_id, reader, stage=CURRENT)
    except EscrowError as exc:
        if not wanted or exc.code not in ('malformed_secret',):
            raise
        tried.append({'version_id': None, 'stages': [CURRENT], 'problem': exc.code})
        current = None
    else:
        tried.append(_tried(current, fingerprints))
        if not wanted or set(fingerprints) & set(wanted):
            return secret, _info(secret_id, current, fingerprints, tried)
    for listed in versions(client, secret_id):
        if current is not None and listed['version_id'] == current['version_id']:
            continue
        if current is None and CURRENT in listed['stages']:
            tried[0]['version_id'] = listed['version_id']
            continue
        try:
            version, secret, fingerprints = _read(client, secret_id, reader, version_id=listed['version_id'], listed=listed)
        except EscrowError as exc:
            # A version this role may not read (its KMS key, say) is listed as such; another may still match.
            if exc.code == 'vault_unreachable':
                raise
            tried.append(_tried(listed, problem=exc.code))
            continue
        tried.append(_tried(version, fingerprints))
        if set(fingerprints) & set(wanted):
            return secret, _info(secret_id, version, fingerprints, tried)
    held = [_describe(entry) for entry in tried[:_MAX_LISTED]]
    more = ' and %d more' % (len(tried) - _MAX_LISTED) if len(tried) > _MAX_LISTED else ''
    raise EscrowError('none of the %d version(s) of the vault secret %s holds %s of fingerprint %s (they hold: %s%s): %s'
                      % (len(tried), secret_id, reader.what, ' or '.join(wanted), '; '.join(held), more, reader.fix),
                      code='no_matching_version', secret_id=secret_id, wanted=wanted, tried=tried)


def current_key(client, secret_id, field=None, option='secret_field'):
    """``(key bytes, info)`` of the AWSCURRENT version of ``secret_id`` (see ``key_for_manifest`` for ``info``)."""
    return _resolve(client, secret_id, None, _key_reader(field, option))


def key_for_manifest(client, secret_id, field, fingerprint, option='secret_field'):
    """``(key bytes, info)`` of the version of ``secret_id`` whose key has ``fingerprint`` (a manifest's
    ``key_fingerprint``; None takes AWSCURRENT).

    ``info``: ``secret_id``, ``version_id``, ``stages``, ``fingerprint``, and ``tried`` (the versions read, in order, each
    ``{'version_id', 'stages', 'fingerprint'}`` or ``{..., 'problem': error code}``). No version matches:
    EscrowError ``no_matching_version`` listing the fingerprints found. ``field`` and ``option``: see
    ``value.key_from_secret``.
    """
    return _resolve(client, secret_id, [fingerprint] if fingerprint else None, _key_reader(field, option))


def identity_for_manifest(client, secret_id, field, recipient_fingerprints, option='secret_field'):
    """``(identity text, info)`` of the version of ``secret_id`` holding an age identity one of whose recipients has a
    fingerprint in ``recipient_fingerprints`` (a manifest's ``recipients``; empty takes AWSCURRENT).

    ``info`` as for ``key_for_manifest``; its ``fingerprint`` is the recipient fingerprint of the identity (a list when
    the secret holds several identities). The text is checked with ``_age.identity_recipients``: an unreadable identity
    is ``malformed_secret``, whose message never holds the text.
    """
    return _resolve(client, secret_id, recipient_fingerprints, _identity_reader(field, option))
