# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The whole run: restore an artifact into a database and prove the result. Internal to fleet_telemetry.dr; not a
public API.

The order is the safety argument, and nothing in it writes until every check before it passed:

1. the artifact verifies (``_verification.verify_artifact``: checksum and manifest; a runbook ``.sql`` without a
   manifest is accepted as ``kind: runbook``); for an artifact encrypted with age (``.age``) an identity is given and
   one of its public keys is among the manifest's ``recipients`` (``identity_preflight``), and every later read of it
   goes through ``age -d`` (no clear file on disk);
2. the key preflight (``key_preflight``): the key's fingerprint equals the manifest's, and photos read from the
   artifact itself decrypt with it (a plain dump's ``COPY photo`` block, or ``pg_restore -a -t photo -f -`` of an
   archive);
3. the target database exists;
4. restore: a plain dump is streamed through this process into ``psql -X -v ON_ERROR_STOP=1`` inside one
   transaction that is committed only after the whole stream was seen to be complete (pg_dump's trailer, every
   ``COPY`` block terminated, ``COPY`` row counts equal to the manifest's); custom and directory archives go to
   ``pg_restore --exit-on-error``, in parallel where the format allows;
5. verify: exact row counts, every photo decrypts, ``ANALYZE``.
"""

from __future__ import annotations

import functools
import os
import time

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _age, _artifact, _manifest, _verification
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._pg import PsqlSession
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photos import copy_photos
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.commands import (
    archive_restore_argv,
    archive_restore_plan,
    needs_schema_reset,
    plain_restore_argv,
    restore_archive,
    restore_plain,
    schema_reset_sql,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.errors import RestoreError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.preflight import (
    artifact_refusal,
    identity_preflight,
    key_preflight,
    public_artifact,
    public_preflight,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.scanner import completeness_problems
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.source import (
    artifact_compression,
    scan_plain,
    toc_runner_for,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.verify import (
    expected_counts,
    verify_database,
    verify_failure_sentence,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import TransportError, pick_client, run


class RestoreRequest(object):
    """What to restore or verify, and how; built from module parameters. ``key`` is the 32 raw bytes; ``identity`` the text
    of an age identity (``AGE-SECRET-KEY-1...`` lines) for an encrypted artifact, or None. Both are secrets: they reach
    no result, message or argv (``repr`` leaves them out)."""

    def __init__(self, artifact=None, manifest=None, key=None, cipher='aes-256-gcm', verify_only=False, preflight_only=False,
                 clean=True, jobs=2, photo_table='photo', photo_sample=0, preflight_photos=20, analyze=True, preflight_scan=False,
                 restore_client='auto', identity=None):
        self.identity = identity
        self.preflight_scan = preflight_scan
        self.restore_client = restore_client
        self.artifact = artifact.rstrip('/') if artifact else artifact
        self.manifest = manifest
        self.key = key
        self.cipher = cipher
        self.verify_only = verify_only
        self.preflight_only = preflight_only
        self.clean = clean
        self.jobs = jobs
        self.photo_table = photo_table
        self.photo_sample = photo_sample
        self.preflight_photos = preflight_photos
        self.analyze = analyze

    def __repr__(self):
        return 'RestoreRequest(artifact=%r, manifest=%r, mode=%r)' % (self.artifact, self.manifest, self.mode)

    @property
    def mode(self):
        if self.preflight_only:
            return 'preflight_only'
        if self.verify_only:
            return 'verify_only'
        return 'restore'


def _target_facts(conn):
    """The target database must exist: its name and server version (read-only)."""
    with PsqlSession(conn) as session:
        rows = session.query("SELECT current_database(), current_setting('server_version_num'), current_setting('server_version')")
    database, version_num, version = rows[0]
    return {'database': database, 'server_version_num': int(version_num), 'server_version': version}


def _manifest_from_path(path):
    try:
        manifest = _manifest.read_manifest(path)
    except _manifest.ManifestError as exc:
        raise RestoreError('%s: point manifest at the .manifest.json of a backup' % exc, code='manifest_invalid')
    problems = _manifest.validate_manifest(manifest)
    if problems:
        raise RestoreError('manifest %s is invalid: %s' % (path, problems[0]), code='manifest_invalid',
                           mismatches=[{'kind': 'manifest', 'msg': p} for p in problems])
    return manifest


def preflight(conn, req, full_scan=False, runner=run, clock=time.time):
    """Artifact verification, the identity of an encrypted artifact and the key preflight, read-only; return
    ``(result_part, artifact_info, manifest, scan)``. ``artifact_info['encrypted']`` says whether the artifact is read
    through ``age -d`` (with ``req.identity``)."""
    started = clock()
    part = {}
    info = None
    manifest = None
    toc_runner = None
    identity = None
    if req.artifact:
        path = req.artifact
        # An encrypted archive's table of contents cannot be read on the host (it has no identity, by design).
        if is_archive_path(path) and not _verification.is_encrypted_artifact(path):
            toc_runner = toc_runner_for(conn, runner)
        info = _verification.verify_artifact(path, toc_runner=toc_runner, require_manifest=False)
        part['artifact'] = public_artifact(info)
        refusal = artifact_refusal(info)
        if refusal:
            exc = RestoreError(refusal + ': nothing was written', code='artifact_invalid',
                               mismatches=[{'kind': 'artifact', 'msg': p} for p in info['problems']])
            exc.partial.update(part)
            raise exc
        manifest = info['manifest']
        part['kind'] = info['kind']
        part['dump_format'] = info['dump_format']
        if info['dump_format'] == _artifact.PLAIN:
            part['compression'] = artifact_compression(info)
        if info['encrypted']:
            try:
                part['encryption'] = identity_preflight(path, manifest, req.identity)
            except RestoreError as exc:
                exc.partial.update(part)
                exc.partial['timings'] = {'preflight_seconds': round(clock() - started, 3)}
                raise
            identity = req.identity
    elif req.manifest:
        manifest = _manifest_from_path(req.manifest)
        part['kind'] = 'manifest'
    part['manifest_path'] = info['manifest_path'] if info and manifest else req.manifest
    if manifest:
        part['manifest'] = dict((k, manifest.get(k)) for k in ('file', 'database', 'dump_format', 'compression', 'started_at',
                                                               'finished_at', 'row_counts', 'key_fingerprint', 'cipher',
                                                               'encryption', 'recipients'))
    try:
        key_result = key_preflight(req.key, req.cipher, artifact=info, manifest=manifest, photo_table=req.photo_table,
                                   sample=req.preflight_photos if info else 0, conn=conn, toc_runner=toc_runner,
                                   full_scan=full_scan, runner=runner, clock=clock, identity=identity)
    except RestoreError as exc:
        exc.partial.update(part)
        exc.partial['timings'] = {'preflight_seconds': round(clock() - started, 3)}
        raise
    scan = key_result['scan']
    part['preflight'] = public_preflight(key_result)
    part['preflight_seconds'] = round(clock() - started, 3)
    return part, info, manifest, scan


def is_archive_path(path):
    """A custom or directory archive, read with pg_restore (a plain dump is named .sql, .sql.gz or .sql.zst, each with
    .age after it when encrypted)."""
    return os.path.isdir(path) or not _artifact.clear_name(path).endswith(('.sql', '.sql.gz', '.sql.zst'))


def archive_client(conn, choice, runner=run):
    """``pick_client`` for a custom or directory archive, before the preflight: ``(connection, {'used', 'reason'} or None)``.

    With the host's pg_restore the preflight reads the table of contents and the photos from the file itself, seeking
    to the photo table's data, instead of streaming the archive into ``docker exec -i pg_restore`` up to it (6-7 s of
    1.6 GB, bench/RESULTS.md). When the service's container is down (a restore after a disaster) the preflight
    reads the archive on the container side, as ``tools_prefix`` does, and no choice is made (None).
    """
    try:
        return pick_client(conn, choice, 'restore_client', ('pg_restore',), runner)[:2]
    except TransportError as exc:
        if exc.code != 'container_down':
            raise
        return conn, None


def run_restore_verify(conn, req, check_mode=False, runner=run, clock=time.time):
    """Preflight, restore and verify according to ``req``; return the result dict (no secrets, no photo bytes)."""
    return RestoreRun(conn, req, check_mode, runner, clock).execute()


class RestoreRun(object):
    """One run: what it was asked (``req``), how it reaches the database (``conn``, chosen again when the host's tools can
    do the work), its clock, and what it has found so far (``result``, ``timings``) - which a failure carries with it."""

    def __init__(self, conn, req, check_mode=False, runner=run, clock=time.time):
        self.conn = conn
        self.req = req
        self.check_mode = check_mode
        self.runner = runner
        self.clock = clock
        self.started = clock()
        self.timings = {}
        self.result = {'changed': False, 'mode': req.mode, 'target': conn.describe(), 'mismatches': []}

    def execute(self):
        try:
            return self._run()
        except RestoreError as exc:
            raise self._with_partial(_header_damage(exc, exc.partial.get('encryption') or self.result.get('encryption')))
        except TransportError as exc:
            raise self._with_partial(RestoreError(str(exc), code=exc.code, rc=exc.rc, stderr=exc.stderr, cmd=exc.cmd,
                                                  changed=self.result.get('changed', False)))

    def _elapsed(self):
        return round(self.clock() - self.started, 3)

    def _with_partial(self, exc):
        partial = dict(self.result)
        partial.update(exc.partial)
        self.timings['total_seconds'] = self._elapsed()
        partial['timings'] = dict(self.timings, **exc.partial.get('timings', {}))
        exc.partial = partial
        return exc

    def _run(self):
        req, result, timings = self.req, self.result, self.timings
        # A runbook dump's expected counts come from its own COPY blocks: read to the end when no restore stream will count them.
        runbook = bool(req.artifact) and _looks_like_runbook(req.artifact)
        full_scan = (runbook and (self.check_mode or req.verify_only or req.preflight_only)) or (req.preflight_only and req.preflight_scan)
        client = None
        if req.artifact and is_archive_path(req.artifact) and not req.verify_only:
            self.conn, client = archive_client(self.conn, req.restore_client, self.runner)
            if client:
                result['restore_client'] = client
        part, info, manifest, scan = preflight(self.conn, req, full_scan=full_scan, runner=self.runner, clock=self.clock)
        identity = req.identity if info and info['encrypted'] else None
        timings['preflight_seconds'] = part.pop('preflight_seconds')
        result.update(part)
        manifest_counts = (manifest or {}).get('row_counts') or {}
        read_to_end = scan is not None and scan.get('read_to_end')
        if read_to_end:
            problems = completeness_problems(scan, manifest_counts)
            if problems:
                raise RestoreError('the dump is incomplete: %s; nothing was written' % problems[0]['msg'], code='dump_incomplete',
                                   mismatches=problems)

        if req.preflight_only:
            timings['total_seconds'] = self._elapsed()
            result.update(timings=timings, msg=_preflight_message(req, result))
            if read_to_end:
                result['expected_counts'] = expected_counts(manifest_counts, scan['counts'])[0]
            return result

        t0 = self.clock()
        # From here on the host's psql / pg_restore over the container's address when they can (restore_client), else docker exec.
        if client is None:
            tools = ('pg_restore',) if info and info['dump_format'] != _artifact.PLAIN and not req.verify_only else ('psql',)
            self.conn, result['restore_client'], dummy = pick_client(self.conn, req.restore_client, 'restore_client', tools, self.runner)
        target = _target_facts(self.conn)
        timings['target_check_seconds'] = round(self.clock() - t0, 3)
        result['server_version'] = target['server_version']

        if req.verify_only:
            return self._verify(manifest_counts, scan['counts'] if read_to_end else None, analyze=False, changed=False)

        fmt = info['dump_format']
        drops = bool(scan and scan.get('drops'))
        if fmt == _artifact.PLAIN and scan is None:
            drops = scan_plain(info['path'], result['compression'], full=False, identity=identity)['drops']
        reset = needs_schema_reset(fmt, req.clean, drops)
        plan = _describe_plan(self.conn, fmt, req, reset, self.runner, encrypted=identity is not None)
        result['restore'] = plan
        if self.check_mode:
            timings['total_seconds'] = self._elapsed()
            if read_to_end:
                result['expected_counts'] = expected_counts(manifest_counts, scan['counts'])[0]
            elif manifest_counts:
                result['expected_counts'] = dict(manifest_counts)
            result.update(changed=True, timings=timings,
                          msg='would restore %s (%s%s%s) into database %s%s' % (
                              info['path'], fmt, ', runbook dump' if info['kind'] == _verification.KIND_RUNBOOK else '',
                              ', decrypted by age' if identity is not None else '',
                              target['database'],
                              ', dropping and recreating the public schema first' if reset else
                              (', dropping the objects of the dump first' if req.clean or fmt == _artifact.PLAIN else '')))
            return result

        t0 = self.clock()
        dump_counts = None
        try:
            if fmt == _artifact.PLAIN:
                prologue = schema_reset_sql(target['server_version_num']).encode('utf-8') if reset else b''
                stream = restore_plain(self.conn, info['path'], result['compression'], prologue=prologue, manifest_counts=manifest_counts,
                                       runner=self.runner, identity=identity)
                dump_counts = stream['counts']
                result['dump'] = dict((k, v) for k, v in stream.items() if k not in ('samples', 'sample_errors', 'argv'))
            else:
                executed = restore_archive(self.conn, info['path'], fmt, req.clean, req.jobs, runner=self.runner, identity=identity)
                plan['argv'] = executed['argv']
                if 'decrypt' in executed:
                    plan['decrypt'] = executed['decrypt']
        finally:
            timings['restore_seconds'] = round(self.clock() - t0, 3)
        result['changed'] = True
        return self._verify(manifest_counts, dump_counts, analyze=req.analyze, changed=True)

    def _verify(self, manifest_counts, dump_counts, analyze, changed):
        req, result, timings = self.req, self.result, self.timings
        expected, sources = expected_counts(manifest_counts, dump_counts)
        t0 = self.clock()
        with PsqlSession(self.conn) as session:
            verification, mismatches = verify_database(session, functools.partial(copy_photos, self.conn), expected, sources, req.key,
                                                       req.cipher, req.photo_table, req.photo_sample, analyze=analyze, clock=self.clock)
        timings['verify_seconds'] = round(self.clock() - t0, 3)
        timings.update(verification.pop('timings'))
        timings['total_seconds'] = self._elapsed()
        result.update(verification)
        result.update(timings=timings, mismatches=mismatches, changed=changed)
        if mismatches:
            what = 'restored, but the database does not verify' if changed else 'the database does not verify'
            raise RestoreError('%s: %s' % (what, verify_failure_sentence(verification, mismatches, req.cipher)), code='verify_failed',
                               mismatches=mismatches, changed=changed)
        counted = ', '.join('%s=%s' % (t['table'], t['actual']) for t in verification['tables']) or 'no tables counted'
        photos = verification['photos']
        result['msg'] = '%s %s: %s; %d photo(s) decrypt%s; in %.1f s' % (
            'restored and verified' if changed else 'verified', self.conn.database, counted, photos['checked'],
            '' if req.photo_sample == 0 else ' (sample)', timings['total_seconds'])
        return result


def _header_damage(exc, encryption):
    """age says "no identity matched" also when a recipient stanza of the header is damaged: when the identity's public key is
    one of the manifest's recipients, that is what happened (``decrypt_failed``, not ``wrong_identity``)."""
    if exc.code != 'wrong_identity' or not (encryption or {}).get('matched'):
        return exc
    damaged = RestoreError('the age header of the artifact is damaged: age finds no recipient stanza it can open although the '
                           'identity\'s public key %s is one of the backup\'s recipients: use another backup or its offsite '
                           'copy%s' % (', '.join(encryption['matched']), '' if exc.changed else '; nothing was written'),
                           code='decrypt_failed',
                           mismatches=exc.mismatches, changed=exc.changed, rc=exc.rc, cmd=exc.cmd)
    damaged.partial = exc.partial
    return damaged


def _looks_like_runbook(path):
    return path.endswith('.sql') and not os.path.exists(_artifact.manifest_path(path))


# How the plan names the identity's pipe (its descriptor number is known only when age starts).
IDENTITY_PIPE_PLACEHOLDER = '/dev/fd/<identity pipe>'


def _describe_plan(conn, fmt, req, reset, runner, encrypted=False):
    if fmt == _artifact.PLAIN:
        plan = {'method': 'psql', 'argv': plain_restore_argv(conn, runner), 'single_transaction': True,
                'schema_reset': reset, 'jobs': 1}
    else:
        archive = archive_restore_plan(conn.transport, fmt, req.clean, req.jobs, encrypted=encrypted)
        where = '<temp dir in the container>/archive' if archive['source'] == 'copy' else req.artifact
        plan = {'method': 'pg_restore', 'argv': archive_restore_argv(conn, archive, where, runner),
                'single_transaction': archive['single_transaction'], 'schema_reset': False, 'jobs': archive['jobs'],
                'source': archive['source']}
    if encrypted:
        plan['decrypt'] = _age.decrypt_argv(IDENTITY_PIPE_PLACEHOLDER, req.artifact)
    return plan


def _preflight_message(req, result):
    pre = result['preflight']
    parts = ['artifact %s verifies' % req.artifact]
    encryption = result.get('encryption')
    if encryption:
        parts.append('the age identity is %s' % ('one of its recipients' if encryption['recipients_checked'] else 'given'))
    if pre['fingerprint_checked']:
        parts.append('encryption_key matches the manifest\'s fingerprint')
    if pre['photos_checked']:
        parts.append('%d photo(s) from the artifact decrypt' % pre['photos_checked'])
    return 'preflight passed: ' + ', '.join(parts)
