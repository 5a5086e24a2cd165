# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The run of the key_escrow module: escrow the ENCRYPTION_KEY once, then prove that the vault still holds the key that
opens the photos. Internal to fleet_telemetry.dr; not a public API.

1. The manifest (when given) is read first: a manifest without ``key_fingerprint`` fails before anything is written.
2. AWSCURRENT of the secret is read and parsed. An existing secret is never written. An absent one is created from
   ``encryption_key`` (``create``), after ``encryption_key`` itself was proven, and read back.
3. Proof (``prove``): the fingerprint of the vault's key equals the manifest's ``key_fingerprint``, and the key decrypts
   sample photos of the live database; any mismatch is ``vault_drift``. A given ``encryption_key`` that differs from
   the vault's key is ``secret_exists_differs``.

In check mode nothing is created; the read-only proof runs on the key that would be escrowed.

This file must keep compiling on Python 3.8.
"""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.errors import EscrowError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.resolve import current_key
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.secrets import create_if_absent
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.value import secret_string_for
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import KeyFormatError, key_fingerprint, parse_key

_PUT_FIX = ('put the current ENCRYPTION_KEY into it as a new version (aws secretsmanager put-secret-value --secret-id %s '
            '--secret-string file://FILE, from a file only root can read, so that AWSCURRENT holds it), then run key_escrow again')


class EscrowRequest(object):
    """What key_escrow does, from the module's options (``key_text`` is ``encryption_key``, never logged)."""

    def __init__(self, secret_id, key_text=None, field=None, kms_key_id=None, description=None, create=True,
                 prove=True, manifest=None, cipher='aes-256-gcm', option='secret_field'):
        if not secret_id or not str(secret_id).strip():
            raise EscrowError('secret_id is empty: set it to the name or ARN of the Secrets Manager secret',
                              code='bad_option')
        self.secret_id = str(secret_id).strip()
        self.key_text = key_text.strip() if key_text else None
        try:
            self.key = parse_key(self.key_text, name='encryption_key') if self.key_text else None
        except KeyFormatError as exc:
            raise EscrowError(str(exc), code='bad_key') from None
        self.field = field or None
        self.kms_key_id = kms_key_id or None
        self.description = description or None
        self.create = create
        self.prove = prove
        self.manifest = manifest or None
        self.cipher = cipher
        self.option = option


def manifest_fingerprint(path, reader=None):
    """The ``key_fingerprint`` of the manifest at ``path`` (the manifest or its artifact); ``bad_option`` without one."""
    if reader is None:
        from ansible_collections.fleet_telemetry.dr.plugins.module_utils._manifest import read_manifest  # pylint: disable=import-outside-toplevel
        reader = read_manifest
    fingerprint = reader(path).get('key_fingerprint')
    if not fingerprint or not isinstance(fingerprint, str):
        raise EscrowError('the manifest %s records no key_fingerprint (that backup ran without encryption_key): give the '
                          'manifest of a backup taken with encryption_key, or leave manifest unset' % path, code='bad_option')
    return fingerprint


def photo_check(conn, table='photo', limit=20, cipher='aes-256-gcm'):
    """A ``check(key)`` that decrypts up to ``limit`` photos of ``table`` (in id order, read-only) with ``key``; it returns
    ``_photos.check_photos``'s counts (``checked``, ``failed``, ``failures``)."""
    def check(key):
        # Imported here: the escrow without the photo proof needs no psql.
        from ansible_collections.fleet_telemetry.dr.plugins.module_utils._pg import SnapshotSession  # pylint: disable=import-outside-toplevel
        from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photos import check_photos, iter_photos  # pylint: disable=import-outside-toplevel
        with SnapshotSession(conn) as session:
            session.begin()
            result = check_photos(iter_photos(session, table=table, limit=limit), key, cipher)
            session.finish()
        return result
    return check


def _photo_problem(photos):
    """The clause of a photo check in which no photo decrypted, else None (some photos failing is damage, not drift)."""
    if not photos or not photos['checked'] or photos['failed'] < photos['checked']:
        return None
    first = photos['failures'][0] if photos['failures'] else {'id': '?', 'reason': 'unknown'}
    return 'none of the %d photos checked decrypt with it (first: photo %s, %s)' % (photos['checked'], first['id'], first['reason'])


def _proof(key, fingerprint, manifest, manifest_fp, photo_checker):
    """``(photos, problems)`` of the proof of ``key``: the photo check's counts (None without one), and the clauses of
    what does not match (empty when the key is proven)."""
    problems = []
    if manifest_fp is not None and manifest_fp != fingerprint:
        problems.append('the manifest %s has %s' % (manifest, manifest_fp))
    photos = photo_checker(key) if photo_checker is not None else None
    problem = _photo_problem(photos)
    if problem:
        problems.append(problem)
    return photos, problems


def _proof_words(result, req, photos, table):
    words = []
    if not req.prove:
        return 'not proven (prove=false)'
    if photos is None:
        words.append('photos not checked')
    elif photos['checked'] == 0:
        words.append('no photo in %s to check' % table)
    elif photos['failed']:
        words.append('it opens %d of the %d photos checked (the others are damaged)'
                     % (photos['checked'] - photos['failed'], photos['checked']))
    else:
        words.append('it opens the %d photos checked' % photos['checked'])
    if result['manifest_fingerprint']:
        words.append("it matches the manifest's key_fingerprint")
    return ' and '.join(words)


def _record(result, photos):
    if photos is not None:
        result['photos_checked'] = photos['checked']
        result['photos_failed'] = photos['failed']
        result['photo_failures'] = photos['failures'] if photos['failed'] else []


def _drift(req, info, fingerprint, problems, photos, given_fp):
    facts = ['AWSCURRENT version %s has %s' % (info['version_id'], fingerprint)] + problems
    if given_fp and given_fp != fingerprint:
        facts.append('encryption_key has %s' % given_fp)
    if _photo_problem(photos):
        head = 'the vault secret %s no longer holds the key that opens the photos' % req.secret_id
    else:
        head = 'the vault secret %s does not hold the key of the manifest %s' % (req.secret_id, req.manifest)
        if photos and photos['checked']:
            facts.append('the %d photos checked decrypt with the vault key, so that backup was taken with another key'
                         % photos['checked'])
    return EscrowError('%s (%s): %s' % (head, '; '.join(facts), _PUT_FIX % req.secret_id), code='vault_drift',
                       secret_id=req.secret_id, fingerprint=fingerprint, version_id=info['version_id'])


def run_escrow(client, req, photo_checker=None, check_mode=False, manifest_reader=None, photo_table='photo'):
    """Escrow and prove as the module docstring says; return the module's result (no secret in it).

    ``photo_checker``: ``photo_check(...)`` or None for no photo proof. ``manifest_reader``: ``_manifest.read_manifest``
    by default.
    """
    result = {'secret_id': req.secret_id, 'status': None, 'created': False, 'version_id': None, 'stages': [],
              'fingerprint': None, 'photos_checked': 0, 'photos_failed': 0, 'photo_failures': [],
              'manifest_fingerprint': None, 'proven': False}
    manifest_fp = manifest_fingerprint(req.manifest, manifest_reader) if req.prove and req.manifest else None
    result['manifest_fingerprint'] = manifest_fp
    checker = photo_checker if req.prove else None
    given_fp = key_fingerprint(req.key) if req.key is not None else None
    try:
        key, info = current_key(client, req.secret_id, req.field, option=req.option)
    except EscrowError as exc:
        if exc.code != 'no_secret' or exc.extra.get('aws_code') != 'ResourceNotFoundException' or not req.create:
            raise
        if req.key is None:
            raise EscrowError('the vault secret %s does not exist and encryption_key is not set: give encryption_key (the '
                              "application's ENCRYPTION_KEY) to create it, or correct secret_id, region or endpoint_url"
                              % req.secret_id, code='no_secret', secret_id=req.secret_id, aws_code=exc.extra.get('aws_code'))
        key = info = None

    if info is None:
        # Absent: prove encryption_key before it is escrowed, then create the secret (or say so in check mode).
        photos, problems = _proof(req.key, given_fp, req.manifest, manifest_fp, checker)
        _record(result, photos)
        if problems:
            what = 'does not open the photos' if _photo_problem(photos) else 'is not the key of the manifest %s' % req.manifest
            raise EscrowError('encryption_key %s (it has %s; %s): nothing was written to the vault secret %s; give the '
                              "application's current ENCRYPTION_KEY as encryption_key"
                              % (what, given_fp, '; '.join(problems), req.secret_id), code='wrong_key', secret_id=req.secret_id)
        result['fingerprint'] = given_fp
        result['proven'] = req.prove
        if check_mode:
            result['status'] = 'would_create'
            result['msg'] = 'check mode: would create the vault secret %s from encryption_key (fingerprint %s); %s' % (
                req.secret_id, given_fp, _proof_words(result, req, photos, photo_table))
            return result
        status = create_if_absent(client, req.secret_id, secret_string_for(req.key, req.field),
                                  kms_key_id=req.kms_key_id, description=req.description)
        key, info = current_key(client, req.secret_id, req.field, option=req.option)
        fingerprint = key_fingerprint(key)
        _fill(result, info, fingerprint, status)
        if status == 'created':
            if fingerprint != given_fp:
                raise EscrowError('the vault secret %s was created from encryption_key (%s) but its AWSCURRENT version %s '
                                  'reads back as %s: another writer changed it meanwhile; list its versions (aws '
                                  'secretsmanager list-secret-version-ids) and run key_escrow again'
                                  % (req.secret_id, given_fp, info['version_id'], fingerprint), code='vault_drift',
                                  secret_id=req.secret_id, fingerprint=fingerprint, version_id=info['version_id'])
            result['msg'] = 'created the vault secret %s (version %s) from encryption_key and read it back (fingerprint %s); %s' % (
                req.secret_id, info['version_id'], fingerprint, _proof_words(result, req, photos, photo_table))
            return result
        # Created by another run meanwhile: what it holds is proven below like any existing secret.

    fingerprint = key_fingerprint(key)
    _fill(result, info, fingerprint, 'exists')
    photos, problems = _proof(key, fingerprint, req.manifest, manifest_fp, checker)
    _record(result, photos)
    if problems:
        raise _drift(req, info, fingerprint, problems, photos, given_fp)
    if given_fp and given_fp != fingerprint:
        proven = ' (the vault key opens the photos checked: correct encryption_key)' if photos and photos['checked'] else ''
        raise EscrowError('the vault secret %s already exists and holds another key than encryption_key (AWSCURRENT '
                          'version %s has %s, encryption_key has %s)%s: nothing was written; if encryption_key is the '
                          'current key, %s' % (req.secret_id, info['version_id'], fingerprint, given_fp, proven,
                                               _PUT_FIX % req.secret_id),
                          code='secret_exists_differs', secret_id=req.secret_id, fingerprint=fingerprint,
                          version_id=info['version_id'])
    result['proven'] = req.prove
    result['msg'] = 'the vault secret %s already holds the key in AWSCURRENT (version %s, fingerprint %s), nothing written; %s' % (
        req.secret_id, info['version_id'], fingerprint, _proof_words(result, req, photos, photo_table))
    return result


def _fill(result, info, fingerprint, status):
    result.update(status=status, created=status == 'created', version_id=info['version_id'], stages=info['stages'],
                  fingerprint=fingerprint)
