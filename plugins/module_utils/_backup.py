# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The verified logical backup, step by step. Internal to fleet_telemetry.dr.

connect -> export a snapshot and count rows in it -> (prove the key on sample photos) -> pg_dump with
that snapshot streamed into an atomic artifact (sha256 while writing) -> manifest -> read-back
verification. Nothing is published under a final name unless every step before it succeeded.

With ``encryption='age'`` the stream goes through ``age -e -r <recipient>...`` after the compressor: the only bytes
written are age's output (the checksum covers them), the host needs only the recipients (public keys), and the age
tool and the recipients are checked before the lock, the dump or check mode's report.
"""

from __future__ import annotations

import datetime
import os
import posixpath
import shutil
import subprocess
import time

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _age, _artifact, _atomic, _manifest, _verification
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._dump import (
    DEFAULT_LEVELS,
    compressor_argv,
    pg_dump_args,
    stream_pipeline,
    validate_format,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._leftovers import remove_entries, stale_partials
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._lock import BackupLock, backup_lock_name, lock_path, restore_in_progress
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._pg import SnapshotSession, server_facts
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import key_fingerprint
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photos import check_photos, iter_photos, key_verdict
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import (
    TransportError,
    client_argv,
    client_env,
    fail_from_stderr,
    pick_client,
    run,
    tool_version,
)

COLLECTION_VERSION = '0.1.0'

# Share of the live data size that a dump of each kind is assumed to need at most, for the free
# space preflight. Photos are encrypted and do not compress, so compressed dumps keep a high ratio.
SIZE_RATIOS = {'none': 1.1, 'gzip': 0.8, 'zstd': 0.8}


class BackupRequest(object):
    """What to back up and how; built from module parameters."""

    def __init__(self, backup_dir, dump_format='plain', compression='zstd', compression_level=None, jobs=2,
                 count_tables=('photo', 'audit_log'), count_all_tables=False, key=None, cipher='aes-256-gcm',
                 key_check_photos=20, photo_table='photo', prefix='backup', check_free_space=True, dump_client='auto',
                 encryption='none', recipients=()):
        self.backup_dir = backup_dir
        self.encryption = encryption or 'none'
        self.recipients = list(recipients or [])
        self.dump_client = dump_client
        self.dump_format = dump_format
        self.compression = compression
        self.compression_level = DEFAULT_LEVELS[compression] if compression_level is None else compression_level
        self.jobs = jobs
        self.count_tables = list(count_tables or [])
        self.count_all_tables = count_all_tables
        self.key = key
        self.cipher = cipher
        self.key_check_photos = key_check_photos
        self.photo_table = photo_table
        self.prefix = prefix
        self.check_free_space = check_free_space


def required_space(data_size, compression):
    return int(data_size * SIZE_RATIOS.get(compression, 1.1))


def free_space_problem(backup_dir, data_size, compression, disk_usage=shutil.disk_usage):
    """A sentence when ``backup_dir`` has less free space than the estimated dump needs, else None."""
    need = required_space(data_size, compression)
    free = disk_usage(backup_dir).free
    if free < need:
        return ('%s has %d MiB free but the dump of about %d MiB of data may need up to %d MiB: free space, '
                'choose another backup_dir, or set check_free_space=false' % (backup_dir, free >> 20, data_size >> 20, need >> 20))
    return None


# 'none', or a method a manifest can record.
ENCRYPTIONS = ('none',) + _manifest.ENCRYPTIONS


def encryption_plan(req, runner=run):
    """What encrypts the artifact: ``{'method', 'recipients' (fingerprints), 'argv' (the filter, or None)}``.

    For ``age``: the tool runs and every recipient is a valid X25519 public key (AgeError ``age_missing`` /
    ``bad_recipient``), and the format is a single file; anything else is refused before the backup starts.
    """
    if req.encryption not in ENCRYPTIONS:
        raise TransportError('encryption must be one of %s, not %s' % (', '.join(ENCRYPTIONS), req.encryption), code='bad_option')
    if req.encryption == 'none':
        if req.recipients:
            raise TransportError('age_recipients are set but encryption is none: set encryption=age to encrypt the backup, '
                                 'or remove age_recipients', code='bad_option')
        return {'method': 'none', 'recipients': [], 'argv': None}
    if req.dump_format == 'directory':
        raise TransportError('a directory archive cannot be encrypted with age: use format=custom (or plain) with '
                             'encryption=age, or encryption=none with format=directory', code='bad_option')
    recipients = _age.validate_recipients(req.recipients)
    _age.check_tool(runner=runner)
    return {'method': 'age', 'recipients': [_age.recipient_fingerprint(r) for r in recipients],
            'argv': _age.encrypt_argv(recipients)}


def public_encryption(plan):
    """The result's ``encryption``: the method and the recipients' fingerprints."""
    return {'method': plan['method'], 'recipients': list(plan['recipients'])}


def _dump_directory_via_container(conn, args, target_dir, progress):
    """Directory format over compose: pg_dump -Fd inside the container, then stream it out as tar."""
    container_dir = posixpath.join('/tmp', 'fleet-dr-%d-%d' % (os.getpid(), int(time.time() * 1000)))
    dump_argv = client_argv(conn, 'pg_dump', args + ['--file', container_dir])
    env = client_env(conn)
    cleanup = [conn.docker_cli, 'exec', conn.container, 'rm', '-rf', container_dir]
    try:
        rc, dummy, err = run(dump_argv, env=env)
        if rc != 0:
            raise fail_from_stderr(conn, rc, err, dump_argv, 'pg_dump')
        tar_argv = [conn.docker_cli, 'exec', conn.container, 'tar', '-C', container_dir, '-cf', '-', '.']
        sink = _TarSink(target_dir)
        stats = stream_pipeline(tar_argv, env, sink, progress=progress)
        sink.close()
        return stats
    finally:
        run(cleanup, timeout=120)


class _TarSink(object):
    """Receives a tar stream chunk by chunk and extracts regular files into a directory."""

    def __init__(self, target_dir):
        self.proc = subprocess.Popen(['tar', '-C', target_dir, '-xf', '-', '--no-same-owner'], stdin=subprocess.PIPE)

    def write(self, data):
        self.proc.stdin.write(data)

    def close(self):
        self.proc.stdin.close()
        if self.proc.wait() != 0:
            raise TransportError('could not unpack the directory archive streamed out of the container', code='dump_failed')


def dump_failure(conn, exc, argv):
    """The error of a failed dump pipeline: classified by stderr when it says why, else ``dump_failed``.

    A filter after pg_dump (the compressor, ``age -e``) that failed is named with its own last line of stderr.
    """
    if getattr(exc, 'process', 0):
        lines = [line.strip() for line in (exc.stderr or '').splitlines() if line.strip()]
        exc.args = ('%s; nothing was published%s' % (exc, ': %s' % lines[-1][:300] if lines else ''),)
        return exc
    failure = fail_from_stderr(conn, exc.rc, exc.stderr, argv, 'pg_dump')
    if failure.code == 'error':
        failure.code = 'dump_failed'
        if exc.rc in (137, -9, 143, -15) and not (exc.stderr or '').strip():
            failure.args = ('pg_dump was killed (rc=%s) before the dump was complete; nothing was published' % exc.rc,)
    return failure


def _dump_to_file(conn, args, target):
    """pg_dump on the host writing ``target`` itself (``--file``): a directory archive, or a seekable custom one."""
    argv = client_argv(conn, 'pg_dump', args + ['--file', target])
    rc, dummy, err = run(argv, env=client_env(conn))
    if rc != 0:
        raise fail_from_stderr(conn, rc, err, argv, 'pg_dump')
    return {}


def _existing_parent(path):
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def _utc(ts):
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).isoformat().replace('+00:00', 'Z')


def run_backup(conn, req, check_mode=False, progress=None, clock=time.time, runner=run):
    """Take one verified backup; return the result dict (no secrets in it)."""
    problem = validate_format(req.dump_format, req.compression)
    if problem:
        raise TransportError(problem, code='bad_option')
    encryption = encryption_plan(req, runner)
    encrypted = encryption['method'] == 'age'
    try:
        _atomic.check_destination(req.backup_dir)
        dir_missing = False
    except _atomic.DestinationMissingError:
        # In check mode a missing directory is what a role's earlier task would create.
        if not check_mode:
            raise
        dir_missing = True
    restoring = restore_in_progress(req.backup_dir, conn.database)
    if restoring:
        raise restoring
    started = clock()
    started_dt = datetime.datetime.fromtimestamp(started, tz=datetime.timezone.utc)

    def free_name():
        return _artifact.free_artifact_name(req.backup_dir, started_dt, req.dump_format, req.compression, prefix=req.prefix,
                                            encrypted=encrypted)

    name = free_name()
    path = os.path.join(req.backup_dir, name)
    result = {'path': path, 'format': req.dump_format, 'compression': req.compression,
              'compression_level': req.compression_level, 'connection': conn.describe(),
              'lock_path': lock_path(req.backup_dir, backup_lock_name(conn.database)),
              'encryption': public_encryption(encryption)}
    timings = {}

    # The host's pg_dump and psql over the container's address when they can (dump_client), else docker exec.
    dump_conn, result['dump_client'], host_versions = pick_client(conn, req.dump_client, 'dump_client', ('pg_dump',))
    if check_mode:
        with SnapshotSession(dump_conn) as session:
            facts = server_facts(session)
        result.update(changed=True, would_write=path, estimated_data_size=facts['data_size'],
                      server_version=facts['server_version'],
                      msg='would write %s (about %d MiB of table data)' % (path, facts['data_size'] >> 20))
        if dir_missing:
            result['msg'] += '; %s does not exist yet' % req.backup_dir
        if req.check_free_space:
            result['free_space_problem'] = free_space_problem(_existing_parent(req.backup_dir), facts['data_size'], req.compression)
        stale, result['leftovers_kept'] = stale_partials(req.backup_dir)
        result['leftovers_removed'] = [os.path.join(req.backup_dir, entry) for entry in stale]
        if stale:
            result['msg'] += '; would remove %d temporary file(s) of killed backups' % len(stale)
        return result

    with BackupLock(req.backup_dir, backup_lock_name(conn.database), purpose='backup of %s to %s' % (conn.database, req.backup_dir)):
        # Chosen again under the lock: a backup of this database that started in the same second has published by now.
        name = free_name()
        path = result['path'] = os.path.join(req.backup_dir, name)
        stale, result['leftovers_kept'] = stale_partials(req.backup_dir, result['lock_path'])
        result['leftovers_removed'] = remove_entries(req.backup_dir, stale)
        # Again under the lock: a restore takes its lease, then checks this lock is free (_lock.lease_excludes), so
        # with both looks after their own marks, one of the two always sees the other.
        restoring = restore_in_progress(req.backup_dir, conn.database)
        if restoring:
            raise restoring
        with SnapshotSession(dump_conn) as session:
            facts = server_facts(session)
            if req.check_free_space:
                problem = free_space_problem(req.backup_dir, facts['data_size'], req.compression)
                if problem:
                    raise TransportError(problem, code='disk_full')
            snapshot = session.begin()
            tables = session.user_tables() if req.count_all_tables else req.count_tables
            existing = set(session.user_tables())
            missing = [t for t in tables if t not in existing]
            if missing:
                raise TransportError('table(s) %s do not exist in %s: set count_tables to tables that exist'
                                     % (', '.join(missing), conn.database), code='no_table')
            t0 = clock()
            counts = session.counts(tables) if tables else {}
            timings['count_seconds'] = round(clock() - t0, 3)

            key_fp = None
            if req.key is not None:
                t0 = clock()
                photos = check_photos(iter_photos(session, table=req.photo_table, limit=req.key_check_photos), req.key, req.cipher)
                verdict = key_verdict(photos, req.cipher)
                if verdict:
                    raise TransportError(verdict + ': check encryption_key and cipher', code='wrong_key')
                key_fp = key_fingerprint(req.key)
                result['key_check'] = {'photos_checked': photos['checked']}
                timings['key_check_seconds'] = round(clock() - t0, 3)

            pg_dump_version = host_versions.get('pg_dump') or tool_version(dump_conn, 'pg_dump')
            args = pg_dump_args(req.dump_format, req.compression, req.compression_level, snapshot=snapshot, jobs=req.jobs)
            t0 = clock()
            if req.dump_format == 'directory':
                with _atomic.AtomicDirectoryArtifact(req.backup_dir, name) as writer:
                    if dump_conn.transport == 'compose':
                        stats = _dump_directory_via_container(dump_conn, args, writer.temp_path, progress)
                    else:
                        stats = _dump_to_file(dump_conn, args, writer.temp_path)
                    writer.commit()
                    sha256, size = writer.sha256, writer.size
            elif req.dump_format == 'custom' and dump_conn.transport != 'compose' and not encrypted:
                # pg_dump writing the archive itself can seek back and store every table's data offset in the table of
                # contents: pg_restore -t (the restore's key preflight) and -j then jump to a table's data instead of
                # reading the archive up to it, as they must in an archive written to a pipe. Not when encrypted: the
                # file would hold the clear archive; age encrypts the stream instead.
                with _atomic.AtomicArtifactWriter(req.backup_dir, name) as writer:
                    stats = _dump_to_file(dump_conn, args, writer.temp_path)
                    writer.sync_from_disk()
                    writer.commit()
                    sha256, size = writer.sha256, writer.size
            else:
                argv = client_argv(dump_conn, 'pg_dump', args)
                compressor = compressor_argv(req.dump_format, req.compression, req.compression_level)
                filters = [encryption['argv']] if encrypted else []
                with _atomic.AtomicArtifactWriter(req.backup_dir, name) as writer:
                    try:
                        stats = stream_pipeline(argv, client_env(dump_conn), writer, compressor, progress, filters=filters)
                    except TransportError as exc:
                        if exc.code == 'dump_failed':
                            raise dump_failure(dump_conn, exc, argv)
                        raise
                    writer.commit()
                    sha256, size = writer.sha256, writer.size
            timings['dump_seconds'] = round(clock() - t0, 3)
            session.finish()
        finished = clock()

        manifest = _manifest.build_manifest(
            collection_version=COLLECTION_VERSION, file=name, dump_format=req.dump_format, compression=req.compression,
            compression_level=req.compression_level, size=size, sha256=sha256, database=facts['database'],
            server_version=facts['server_version'], pg_dump_version=pg_dump_version, started_at=_utc(started),
            finished_at=_utc(finished), snapshot_id=snapshot, row_counts=counts, counted_tables=list(tables),
            key_fingerprint=key_fp, cipher=req.cipher if key_fp else None, transport=conn.describe(),
            encryption='age' if encrypted else None, recipients=encryption['recipients'] if encrypted else None)
        _manifest.write_manifest(path + _artifact.MANIFEST_SUFFIX, manifest)

        t0 = clock()
        verification = _verification.verify_artifact(path, toc_runner=toc_runner_for(conn))
        timings['verify_seconds'] = round(clock() - t0, 3)
        if not verification['ok']:
            _verification.remove_artifact(path)
            raise TransportError('the backup was written but did not verify, so it was removed: %s' % verification['problems'][0],
                                 code='verify_failed')
    timings['total_seconds'] = round(clock() - started, 3)
    result.update(changed=True, path=path, manifest_path=path + _artifact.MANIFEST_SUFFIX, size=size, sha256=sha256,
                  row_counts=counts, key_fingerprint=key_fp, server_version=facts['server_version'],
                  pg_dump_version=pg_dump_version, timings=timings, stream=stats, verified=True,
                  msg='backup of %s written to %s (%d MiB, sha256 %s, %s%s) in %.1f s' % (
                      conn.database, path, size >> 20, sha256[:12],
                      ', '.join('%s=%d' % kv for kv in sorted(counts.items())) or 'no tables counted',
                      ', encrypted with age for %d recipient(s)' % len(encryption['recipients']) if encrypted else '',
                      timings['total_seconds']))
    if result['leftovers_removed']:
        result['msg'] += '; removed %d temporary file(s) of killed backups' % len(result['leftovers_removed'])
    return result


def toc_runner_for(conn, prefix=None):
    """``pg_restore -l`` of an artifact, run where the client tools are (inside the container for compose).

    ``prefix`` is the command that runs a program there: by default ``docker exec -i <container>``; a restore whose
    database is down passes a ``docker run --rm -i`` of the service's image instead.
    """
    def runner(path):
        if conn.transport == 'compose' or prefix:
            where = list(prefix or [conn.docker_cli, 'exec', '-i', conn.container])
            if os.path.isdir(path):
                # pg_restore -l of a directory archive reads only toc.dat: ship it into a scratch dir there.
                script = 'd=$(mktemp -d) && cat > "$d/toc.dat" && pg_restore -l "$d"; rc=$?; rm -rf "$d"; exit $rc'
                with open(os.path.join(path, 'toc.dat'), 'rb') as toc:
                    return _run_bytes(where + ['sh', '-c', script], toc)
            with open(path, 'rb') as archive:
                return _run_bytes(where + ['pg_restore', '-l'], archive)
        binary = os.path.join(conn.bin_dir, 'pg_restore') if conn.bin_dir else 'pg_restore'
        return run([binary, '-l', path])
    return runner


def _run_bytes(argv, stdin_file):
    proc = subprocess.run(argv, stdin=stdin_file, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return proc.returncode, proc.stdout.decode('utf-8', 'replace'), proc.stderr.decode('utf-8', 'replace')
