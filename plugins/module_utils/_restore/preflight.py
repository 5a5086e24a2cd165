# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The key preflight and artifact acceptance: what must hold before anything is written. Internal to
fleet_telemetry.dr; not a public API.

``identity_preflight`` proves that an age-encrypted artifact can be opened (an identity is given and one of its
public keys is among the manifest's recipients); ``key_preflight`` proves the key (fingerprint and cipher against the
manifest, photos read from the artifact itself decrypt); ``artifact_refusal`` says when a ``verify_artifact`` result
must not be restored.
"""

from __future__ import annotations

import collections
import time

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _age, _artifact, _verification
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import key_fingerprint
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photos import check_photos
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.errors import RestoreError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.source import read_artifact_photos
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import run

# A wrong key fails every sampled photo the same way: a few examples say it all.
MAX_PREFLIGHT_FAILURES = 5


# --------------------------------------------------------------------------------------------
# The identity of an encrypted artifact
# --------------------------------------------------------------------------------------------

def identity_preflight(path, manifest, identity, check_tool=_age.check_tool):
    """Before an encrypted artifact is read: the age tool runs, an identity is given, and (when the manifest lists its
    ``recipients``) one of the identity's public keys is among them. Raise ``RestoreError`` (``age_missing``,
    ``no_identity``, ``bad_identity``, ``wrong_identity``) otherwise.

    Returns the public record ``{method, recipients, identity_recipients, matched, recipients_checked}``: fingerprints
    (``_age.recipient_fingerprint``) of public keys only, never the identity.
    """
    if identity is None:
        raise RestoreError('%s is encrypted with age: give age_identity_file or age_identity_secret (the age identity whose '
                           'public key the backup was encrypted to); nothing was written' % path, code='no_identity')
    theirs = [fp for fp in ((manifest or {}).get('recipients') or []) if isinstance(fp, str)]
    try:
        check_tool()
        mine = [_age.recipient_fingerprint(recipient) for recipient in _age.identity_recipients(identity)]
    except _age.AgeError as exc:
        raise RestoreError('%s; nothing was written' % exc, code=exc.code) from None
    matched = [fp for fp in mine if fp in theirs]
    record = {'method': 'age', 'recipients': theirs, 'identity_recipients': mine, 'matched': matched,
              'recipients_checked': bool(theirs)}
    if theirs and not matched:
        exc = RestoreError('the age identity cannot open %s: the backup was encrypted to recipient(s) %s, the identity\'s public '
                           'key(s) are %s: give the identity of one of the backup\'s recipients (age_identity_file or '
                           'age_identity_secret); nothing was written' % (path, ', '.join(theirs), ', '.join(mine)),
                           code='wrong_identity',
                           mismatches=[{'kind': 'recipients', 'expected': theirs, 'actual': mine,
                                        'msg': 'no public key of the identity is a recipient of the artifact'}])
        exc.partial['encryption'] = record
        raise exc
    return record


# --------------------------------------------------------------------------------------------
# The key preflight
# --------------------------------------------------------------------------------------------

def fingerprint_problem(key, cipher, manifest):
    """``(code, sentence, mismatch)`` when the key or cipher contradicts the manifest, else None."""
    if not manifest:
        return None
    expected = manifest.get('key_fingerprint')
    if isinstance(expected, str) and expected:
        actual = key_fingerprint(key)
        if expected.split(':', 1)[0] == actual.split(':', 1)[0] and expected != actual:
            return ('wrong_key',
                    'encryption_key is not the key this backup was taken with (its fingerprint is %s, the manifest records %s): '
                    'set encryption_key to the ENCRYPTION_KEY in use when the backup was made' % (actual, expected),
                    {'kind': 'key_fingerprint', 'expected': expected, 'actual': actual})
    recorded = manifest.get('cipher')
    if isinstance(recorded, str) and recorded and recorded != cipher:
        return ('wrong_cipher',
                'the backup was taken with cipher=%s but cipher is %s: set cipher to %s' % (recorded, cipher, recorded),
                {'kind': 'cipher', 'expected': recorded, 'actual': cipher})
    return None


def photo_verdict(checks, cipher, photo_table, fingerprint_matched=False, table_seen=True):
    """``(code, sentence)`` about the photos sampled from an artifact, or None when every one decrypted."""
    if checks['checked'] == 0:
        if not table_seen:
            return ('no_photos', 'the artifact holds no data of table %s, so encryption_key cannot be proven on its photos: '
                                 'set photo_table to the table of the encrypted photos (or preflight_photos=0 to restore '
                                 'without this proof)' % photo_table)
        return ('no_photos', 'table %s is empty in the artifact, so encryption_key cannot be proven on its photos: set photo_table '
                             'to the table of the encrypted photos (or preflight_photos=0 to restore without this proof)' % photo_table)
    if checks['failed'] == 0:
        return None
    first = checks['failures'][0]
    if checks['failed'] < checks['checked']:
        return ('photo_corrupt', '%d of %d photos sampled from the artifact do not decrypt although the others do (first: photo %s: %s): '
                                 'the photo data in the artifact is damaged' % (checks['failed'], checks['checked'], first['id'], first['msg']))
    reason = collections.Counter(f['reason'] for f in checks['failures']).most_common(1)[0][0]
    if reason in ('looks_like_fernet', 'looks_like_aes_256_gcm'):
        other = 'fernet' if reason == 'looks_like_fernet' else 'aes-256-gcm'
        return ('wrong_cipher', 'the photos in the artifact were not encrypted with cipher=%s, they look like %s data: set cipher to %s'
                % (cipher, other, other))
    if reason == 'not_encrypted':
        return ('not_encrypted', 'the data column of table %s in the artifact holds plain images, not encrypted photos: '
                                 'check photo_table' % photo_table)
    if reason in ('too_short', 'not_fernet'):
        return ('wrong_cipher', 'the photos of table %s in the artifact are not what cipher=%s writes (%s): set cipher to the '
                                'application\'s scheme, or photo_table to the table of the encrypted photos'
                % (photo_table, cipher, first['msg']))
    if reason == 'not_an_image':
        return ('photo_corrupt', 'the photos sampled from the artifact decrypt but are not JPEG or PNG images: the photo data '
                                 'is not what the application stores; check photo_table')
    if fingerprint_matched:
        return ('photo_corrupt', 'none of the %d photos sampled from the artifact decrypt with cipher=%s although encryption_key '
                                 'matches the backup\'s fingerprint: the photo data is damaged, or set cipher to the scheme the '
                                 'application uses' % (checks['checked'], cipher))
    return ('wrong_key', 'none of the %d photos sampled from the artifact decrypt with encryption_key (cipher=%s): set encryption_key '
                         'to the ENCRYPTION_KEY the photos were encrypted with' % (checks['checked'], cipher))


def key_preflight(key, cipher, artifact=None, manifest=None, photo_table='photo', sample=20, conn=None,
                  toc_runner=None, full_scan=False, runner=run, clock=time.time, identity=None):
    """Prove the key before anything is written; raise ``RestoreError`` naming the setting to change.

    ``key`` is the 32 raw bytes (``_photo_crypto.parse_key``), ``cipher`` the scheme. ``artifact`` is the result
    of ``_verification.verify_artifact`` (its manifest is used when ``manifest`` is not given); without it only the
    fingerprint is checked. ``sample`` photos are read from the artifact itself and decrypted; 0 skips that.
    ``conn`` is needed for custom archives (pg_restore runs where the client tools are) and ``toc_runner`` for
    directory archives. ``full_scan`` reads a plain dump to the end (for its COPY counts). ``identity`` (the text of an
    age identity, after ``identity_preflight``) decrypts an encrypted artifact on the way.

    Error codes: ``wrong_key``, ``wrong_cipher``, ``no_photos``, ``photo_corrupt``, ``not_encrypted``,
    ``artifact_unreadable``, and for an encrypted artifact ``wrong_identity``, ``bad_identity``, ``decrypt_failed``.
    Returns ``{fingerprint, fingerprint_checked, cipher_checked, photos_checked, photos_failed, failures, photo_source,
    seconds, scan}`` (``scan``: the CopyScanner findings or None).
    """
    started = clock()
    if manifest is None and artifact is not None:
        manifest = artifact.get('manifest')
    fingerprint = key_fingerprint(key)
    result = {'fingerprint': fingerprint, 'fingerprint_checked': bool(manifest and manifest.get('key_fingerprint')),
              'cipher_checked': bool(manifest and manifest.get('cipher')), 'photos_checked': 0, 'photos_failed': 0,
              'failures': [], 'photo_source': None, 'seconds': None, 'scan': None}
    problem = fingerprint_problem(key, cipher, manifest)
    if problem:
        raise _preflight_error(problem[0], problem[1], [problem[2]], result, started, clock)
    if artifact is not None and (sample > 0 or full_scan):
        try:
            samples, scan = read_artifact_photos(artifact, photo_table, sample, conn=conn, toc_runner=toc_runner,
                                                 full_scan=full_scan, runner=runner, identity=identity)
        except RestoreError as exc:
            if exc.code in ('wrong_identity', 'bad_identity', 'decrypt_failed'):
                raise _preflight_error(exc.code, str(exc), [], result, started, clock, cause=exc) from None
            raise
        result['scan'] = scan
        result['photo_source'] = {'plain': 'the dump\'s COPY block of %s', 'custom': 'pg_restore -a -t %s',
                                  'directory': 'the data file of %s'}[artifact['dump_format']] % photo_table
        if identity is not None:
            result['photo_source'] = 'age -d, then ' + result['photo_source']
        if scan.get('sample_columns_missing'):
            raise _preflight_error('no_photos', 'table %s in the artifact has no column %s: set photo_table to the table of the '
                                                'encrypted photos (columns id and data)'
                                   % (photo_table, ' or '.join(scan['sample_columns_missing'])), [], result, started, clock)
        if sample > 0:
            checks = check_photos(samples, key, cipher, max_failures_listed=MAX_PREFLIGHT_FAILURES)
            for error in scan.get('sample_errors') or []:
                checks['checked'] += 1
                checks['failed'] += 1
                if len(checks['failures']) < MAX_PREFLIGHT_FAILURES:
                    checks['failures'].append({'id': None, 'reason': 'unreadable', 'msg': error['msg']})
            result.update(photos_checked=checks['checked'], photos_failed=checks['failed'], failures=checks['failures'])
            verdict = photo_verdict(checks, cipher, photo_table, fingerprint_matched=result['fingerprint_checked'],
                                    table_seen=scan.get('sample_table_seen', True))
            if verdict:
                mismatches = [dict(kind='photo', where='artifact', **failure) for failure in checks['failures']]
                raise _preflight_error(verdict[0], verdict[1], mismatches, result, started, clock)
    result['seconds'] = round(clock() - started, 3)
    return result


def _preflight_error(code, sentence, mismatches, result, started, clock, cause=None):
    result['seconds'] = round(clock() - started, 3)
    extra = {}
    if cause is not None:
        extra = dict(rc=cause.rc, stderr=cause.stderr, cmd=cause.cmd)
    exc = RestoreError(sentence + '; nothing was written', code=code, mismatches=mismatches, **extra)
    exc.partial['preflight'] = public_preflight(result)
    return exc


def public_preflight(result):
    """The preflight result without the scanner's samples (photo bytes never go into results)."""
    public = dict((k, v) for k, v in result.items() if k != 'scan')
    scan = result.get('scan')
    if scan is not None and scan.get('read_to_end'):
        public['dump'] = dict((k, v) for k, v in scan.items() if k not in ('samples', 'sample_errors'))
    elif scan is not None:
        # Stopped once the photos were sampled: counts and completeness of a partial read mean nothing.
        public['dump'] = {'read_to_end': False, 'bytes_read': scan['bytes']}
    return public


# --------------------------------------------------------------------------------------------
# Artifact acceptance
# --------------------------------------------------------------------------------------------

def artifact_refusal(info):
    """One sentence when a ``verify_artifact`` result must not be restored, else None."""
    if info['kind'] == _verification.KIND_UNKNOWN and info['manifest'] is None and not info['problems']:
        return ('%s has no manifest beside it (%s): only a plain .sql backup can be restored without one; '
                'point artifact at a backup of this collection' % (info['path'], info['manifest_path']))
    if info['problems']:
        return 'artifact %s does not verify: %s' % (info['path'], info['problems'][0])
    if info['dump_format'] not in _artifact.DUMP_FORMATS:
        return ('the format of %s is unknown: restore a .sql, .sql.gz, .sql.zst, .dump or .dir artifact (or one of the first '
                'four with .age after it, encrypted)' % info['path'])
    if info['dump_format'] == _artifact.DIRECTORY and info.get('encrypted'):
        return 'the directory archive %s cannot be encrypted with age: restore a plain or custom artifact' % info['path']
    return None


def public_artifact(info):
    keys = ('path', 'manifest_path', 'kind', 'ok', 'problems', 'sha256', 'size', 'dump_format', 'toc_tables', 'encrypted')
    return dict((key, info.get(key)) for key in keys)
