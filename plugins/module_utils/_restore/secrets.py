# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Where a restore's secrets come from: ENCRYPTION_KEY and the age identity, given as options, read from a file on the
host, or taken from AWS Secrets Manager (the version that fits the backup's manifest). Internal to fleet_telemetry.dr;
not a public API.

``resolve_key`` and ``resolve_identity`` return the secret and a public record of its source (``key_source``,
``identity_source``: secret ids, version ids, stages, fingerprints; never the secret). The Secrets Manager client is
made only when a ``*_secret`` option is used (``client_factory``), and the vault is read through
``_escrow.resolve``.
"""

from __future__ import annotations

import base64
import os
import stat

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _age, _artifact, _manifest, _verification
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import PhotoCryptoError, key_fingerprint, parse_key
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.errors import RestoreError

_SOURCE_KEYS = ('secret_id', 'version_id', 'stages', 'fingerprint', 'tried', 'recipients')


def _escrow_resolve():
    """``_escrow.resolve`` (imported when a secret is used: a restore with its secrets as options needs no vault code)."""
    from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow import resolve
    return resolve


def _public(info):
    """The secret-free fields of an ``_escrow.resolve`` record."""
    return dict((key, info[key]) for key in _SOURCE_KEYS if isinstance(info, dict) and key in info)


def manifest_for(artifact=None, manifest=None):
    """The manifest the secrets must fit: ``manifest``'s, else the one beside ``artifact``; None when there is none or it
    does not read (the run reports that itself)."""
    path = manifest or (_artifact.manifest_path(artifact) if artifact else None)
    if not path:
        return None
    try:
        found = _manifest.read_manifest(path)
    except (_manifest.ManifestError, OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def encrypted(artifact, manifest):
    """Whether the artifact must be read through ``age -d`` (``_verification.is_encrypted_artifact``)."""
    return bool(artifact) and _verification.is_encrypted_artifact(artifact, manifest)


def resolve_key(params, client_factory, manifest):
    """``(32 key bytes, key_source)`` from ``encryption_key``, else from the secret ``encryption_key_secret``.

    From the vault, the version whose fingerprint is the manifest's ``key_fingerprint`` (``AWSCURRENT`` without one).
    ``(None, None)`` when neither option is given.
    """
    if params.get('encryption_key'):
        try:
            key = parse_key(params['encryption_key'])
        except PhotoCryptoError as exc:
            raise PhotoCryptoError('encryption_key: %s' % exc) from None
        return key, {'from': 'option', 'fingerprint': key_fingerprint(key)}
    secret_id = params.get('encryption_key_secret')
    if not secret_id:
        return None, None
    expected = (manifest or {}).get('key_fingerprint')
    key, info = _escrow_resolve().key_for_manifest(client_factory(), secret_id, params.get('encryption_key_secret_field'),
                                                   expected if isinstance(expected, str) and expected else None,
                                                   option='encryption_key_secret_field')
    source = {'from': 'secrets_manager', 'secret_id': secret_id}
    source.update(_public(info))
    source['fingerprint'] = key_fingerprint(key)
    return key, source


def read_identity_file(path):
    """``(identity text, warnings)`` of an identity file on the host; ``no_identity`` when it cannot be read.

    A file that other users can read gets a warning (``chmod 600``): it opens every backup encrypted to it.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise RestoreError('age_identity_file %s is not a file: give the identity file age-keygen wrote' % path,
                               code='no_identity')
        with open(path, 'rb') as handle:
            data = handle.read(_age.MAX_IDENTITY_BYTES + 1)
    except OSError as exc:
        raise RestoreError('age_identity_file %s cannot be read (%s): give the path of the identity file age-keygen wrote, '
                           'readable by the user that runs the restore' % (path, exc.strerror or exc), code='no_identity') from None
    if len(data) > _age.MAX_IDENTITY_BYTES:
        raise RestoreError('age_identity_file %s is larger than %d bytes: it is not an age identity file' % (path, _age.MAX_IDENTITY_BYTES),
                           code='bad_identity')
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError:
        raise RestoreError('age_identity_file %s is not text: give the identity file age-keygen wrote' % path,
                           code='bad_identity') from None
    warnings = []
    if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append('age_identity_file %s can be read by other users (mode %04o): it opens every backup encrypted to '
                        'it, chmod 600 it' % (path, stat.S_IMODE(info.st_mode)))
    return text, warnings


def _identity_fingerprints(text, what):
    """The recipient fingerprints of an identity's public keys; ``bad_identity`` naming ``what`` (never the text)."""
    try:
        return [_age.recipient_fingerprint(recipient) for recipient in _age.identity_recipients(text)]
    except _age.AgeError as exc:
        raise RestoreError('%s: %s' % (what, exc), code=exc.code) from None


def resolve_identity(params, client_factory, manifest, needed=True):
    """``(identity text or None, identity_source or None, warnings)`` from ``age_identity_file`` or the secret
    ``age_identity_secret`` (the version whose public key is one of the manifest's ``recipients``).

    Nothing is read when the artifact is not encrypted (``needed`` false): the identity is then not used.
    """
    if not needed:
        return None, None, []
    path = params.get('age_identity_file')
    if path:
        text, warnings = read_identity_file(path)
        return text, {'from': 'file', 'path': path,
                      'recipients': _identity_fingerprints(text, 'age_identity_file %s' % path)}, warnings
    secret_id = params.get('age_identity_secret')
    if not secret_id:
        return None, None, []
    recipients = [fp for fp in ((manifest or {}).get('recipients') or []) if isinstance(fp, str)]
    text, info = _escrow_resolve().identity_for_manifest(client_factory(), secret_id, params.get('age_identity_secret_field'),
                                                         recipients, option='age_identity_secret_field')
    source = {'from': 'secrets_manager', 'secret_id': secret_id}
    source.update(_public(info))
    source['recipients'] = _identity_fingerprints(text, 'the age identity in secret %s' % secret_id)
    return text, source, []


def masked_forms(key=None, identity=None):
    """The spellings of a key and an identity read from a vault or a file, for the module's ``no_log_values``: should a
    later bug put one in a result, Ansible masks it."""
    forms = set()
    if key:
        forms.update((key.hex(), key.hex().upper(), base64.b64encode(key).decode('ascii'),
                      base64.urlsafe_b64encode(key).decode('ascii')))
    for line in (identity or '').splitlines():
        if line.strip().upper().startswith('AGE-SECRET-KEY-'):
            forms.update((line.strip(), line.strip().lower()))
    return forms


def lazy_client(make):
    """A ``client_factory`` that calls ``make()`` once, on first use."""
    made = []

    def factory():
        if not made:
            made.append(make())
        return made[0]
    return factory
