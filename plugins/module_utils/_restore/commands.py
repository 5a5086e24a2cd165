# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Restore commands: the psql and pg_restore argv, copies into the container, and running the restore
(``restore_plain``, ``restore_archive``). Internal to fleet_telemetry.dr; not a public API.
"""

from __future__ import annotations

import posixpath
import subprocess
import tempfile

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _artifact
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.errors import RestoreError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.scanner import (
    CHUNK_SIZE,
    CopyScanner,
    completeness_problems,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.source import (
    StreamSource,
    decompress_argv,
    decrypt_error,
    decrypt_failed,
    start_decrypt,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import (
    TransportError,
    client_argv,
    client_env,
    fail_from_stderr,
    resolve_container,
    run,
    widen_pipe,
)


def needs_schema_reset(dump_format, clean, drops):
    """A plain dump without DROP statements (the runbook's pg_dump has no --clean) needs an empty public schema.

    A fresh stack's init scripts created the tables already, so its CREATE TABLE would fail.
    """
    return dump_format == _artifact.PLAIN and bool(clean) and not drops


def schema_reset_sql(server_version_num):
    """SQL that drops and recreates the public schema as initdb creates it (owner and privileges of the version)."""
    if server_version_num and int(server_version_num) >= 150000:
        create = ('CREATE SCHEMA public AUTHORIZATION pg_database_owner;\n'
                  'GRANT USAGE ON SCHEMA public TO PUBLIC;\n')
    else:
        create = ('CREATE SCHEMA public;\n'
                  'GRANT ALL ON SCHEMA public TO PUBLIC;\n')
    return ('DROP SCHEMA IF EXISTS public CASCADE;\n' + create +
            "COMMENT ON SCHEMA public IS 'standard public schema';\n")


def plain_restore_argv(conn, runner=run):
    """psql reading the dump from stdin; the transaction is ours (see ``restore_plain``), so no --single-transaction."""
    return client_argv(conn, 'psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', '-'], runner=runner, stdin=True)


def archive_restore_plan(transport, dump_format, clean, jobs, encrypted=False):
    """How pg_restore gets the archive: ``{'source': stdin|copy|path, 'jobs', 'single_transaction', 'args'}``.

    Over compose a custom archive is streamed into the container's pg_restore on stdin, which cannot seek: no
    ``-j`` then, and the restore runs as one transaction. With ``jobs > 1`` it is copied into the container
    (``docker cp``) first. A directory archive is always copied over compose. One job means one transaction.
    An ``encrypted`` archive always comes out of ``age -d`` on stdin (one job, one transaction, nothing clear on disk).
    """
    jobs = 1 if encrypted else max(1, int(jobs or 1))
    if encrypted:
        source = 'stdin'
    elif transport == 'compose':
        source = 'stdin' if dump_format == _artifact.CUSTOM and jobs == 1 else 'copy'
    else:
        source = 'path'
    single = jobs == 1
    args = ['--exit-on-error', '--no-owner']
    if clean:
        args += ['--clean', '--if-exists']
    args.append('--single-transaction' if single else '--jobs=%d' % jobs)
    return {'source': source, 'jobs': jobs, 'single_transaction': single, 'args': args}


def archive_restore_argv(conn, plan, archive_path=None, runner=run):
    """``pg_restore ... -d <db> [archive]`` for a plan; ``archive_path`` is the path where pg_restore runs."""
    args = list(plan['args'])
    if plan['source'] != 'stdin':
        args.append(archive_path)
    return client_argv(conn, 'pg_restore', args, runner=runner, stdin=plan['source'] == 'stdin')


CONTAINER_TEMP_PREFIX = '/tmp/fleet-dr-restore.'


def stale_copies_argv(docker_cli, container):
    """Removes the copies that killed restores left in the container's /tmp (only the collection's own entries)."""
    return [docker_cli, 'exec', '-u', '0', container, 'find', '/tmp', '-maxdepth', '1', '-name', 'fleet-dr-restore.*',
            '-exec', 'rm', '-rf', '--', '{}', '+']


def container_copy_argv(conn, src, container_dir):
    return [conn.docker_cli, 'cp', src, '%s:%s' % (conn.container, posixpath.join(container_dir, 'archive'))]


def _copy_into_container(conn, src, runner=run):
    """``docker cp`` an archive into a fresh temp dir of the container, owned by the exec user; return its path there."""
    container = resolve_container(conn, runner)
    # A killed restore leaves its copy behind; the run's lease says no other restore of this database runs now.
    runner(stale_copies_argv(conn.docker_cli, container), timeout=600)
    rc, out, err = runner([conn.docker_cli, 'exec', container, 'mktemp', '-d', CONTAINER_TEMP_PREFIX + 'XXXXXX'], timeout=60)
    if rc != 0:
        raise TransportError('could not create a temp dir in the database container: %s' % (err.strip() or rc), code='copy_failed',
                             rc=rc, stderr=err)
    container_dir = out.strip()
    argv = container_copy_argv(conn, src, container_dir)
    rc, dummy, err = runner(argv)
    if rc != 0:
        _remove_from_container(conn, container_dir, runner)
        raise TransportError('docker cp of %s into the database container failed: %s' % (src, err.strip()[-300:]), code='copy_failed',
                             rc=rc, stderr=err, cmd=argv)
    rc, uid, dummy = runner([conn.docker_cli, 'exec', container, 'id', '-u'], timeout=60)
    if rc == 0 and uid.strip() not in ('', '0'):
        runner([conn.docker_cli, 'exec', '-u', '0', container, 'chown', '-R', uid.strip(), container_dir], timeout=600)
    return container_dir


def _remove_from_container(conn, container_dir, runner=run):
    runner([conn.docker_cli, 'exec', '-u', '0', conn.container, 'rm', '-rf', '--', container_dir], timeout=600)


def pass_through(source, scanner, sink, chunk_size=CHUNK_SIZE):
    """Move a decompressed dump from ``source`` (``read(n)``) into ``sink`` (``write``), feeding ``scanner`` on the way."""
    while True:
        data = source.read(chunk_size)
        if not data:
            return
        scanner.feed(data)
        sink.write(data)


def restore_plain(conn, path, compression, prologue=b'', manifest_counts=None, runner=run, chunk_size=CHUNK_SIZE,
                  sample_table=None, identity=None):
    """Stream a plain dump into psql inside one transaction; commit only a complete stream; return the scan.

    ``BEGIN`` (and ``prologue``, e.g. the schema reset) go first. The dump is decompressed by ``zstd -dc`` /
    ``gzip -dc`` processes and passed through this process, which counts its COPY blocks on the way. ``COMMIT``
    is sent only when the decompressor succeeded, the dump ends with pg_dump's trailer, no COPY block is cut and
    the COPY counts equal ``manifest_counts``; otherwise psql's input ends without COMMIT and PostgreSQL rolls
    everything back. (``psql --single-transaction`` would commit whatever arrived before the end of input: a dump
    cut at a line boundary restores with exit 0, OFFLINE.md.) With ``identity`` the file is age-encrypted and
    ``age -d`` feeds the decompressor; a failed decryption is never committed either.
    """
    argv = plain_restore_argv(conn, runner)
    scanner = CopyScanner(sample_table, 0)
    source_argv = decompress_argv(compression, None if identity is not None else path)
    decrypt_failure = None
    err_file = tempfile.TemporaryFile()
    try:
        try:
            psql = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err_file, env=client_env(conn))
        except FileNotFoundError:
            raise TransportError('%s is not installed or not on PATH' % argv[0], code='missing_binary', cmd=argv)
        widen_pipe(psql.stdin)
        broken = False
        source = None
        try:
            source = StreamSource(argv=source_argv, path=path, identity=identity)
            try:
                psql.stdin.write(b'BEGIN;\n' + prologue)
                pass_through(source, scanner, psql.stdin, chunk_size)
            except (BrokenPipeError, OSError):
                broken = True
            src_rc, src_err = source.close(complete=not broken)
            scan = scanner.finish()
            problems = [] if broken else completeness_problems(scan, manifest_counts)
            if not broken and src_rc != 0:
                if source.failed == 'decrypt':
                    decrypt_failure = (src_rc, src_err, source.failed_argv)
                    problems.insert(0, {'kind': 'artifact', 'msg': 'age -d failed'})
                else:
                    problems.insert(0, {'kind': 'artifact', 'msg': '%s -d failed: %s' % (source_argv[0], src_err.strip()[-300:])})
            if not broken and not problems:
                try:
                    psql.stdin.write(b'\n' if scanner.last_byte != b'\n' else b'')
                    psql.stdin.write(b'COMMIT;\n')
                except (BrokenPipeError, OSError):
                    broken = True
            try:
                psql.stdin.close()
            except (BrokenPipeError, OSError):
                broken = True
        except BaseException:
            if psql.poll() is None:
                psql.kill()
            psql.wait()
            if source is not None:
                source.__exit__(None, None, None)
            raise
        rc = psql.wait()
        err_file.seek(0)
        err = err_file.read().decode('utf-8', 'replace')
    finally:
        err_file.close()
    if rc != 0 or broken:
        exc = fail_from_stderr(conn, rc, err, argv, 'psql')
        raise RestoreError('the restore failed and was rolled back, nothing was committed: %s' % exc, code='restore_failed'
                           if exc.code == 'error' else exc.code, rc=rc, stderr=exc.stderr, cmd=argv, changed=False)
    if decrypt_failure:
        raise decrypt_error('the artifact did not decrypt, so the restore was rolled back and nothing was committed: ',
                            *decrypt_failure, changed=False)
    if problems:
        truncated = problems[0]['kind'] in ('truncated', 'artifact')
        raise RestoreError('the dump is %s, so the restore was rolled back and nothing was committed: %s'
                           % ('incomplete' if truncated else 'not what the manifest describes', problems[0]['msg']),
                           code='dump_incomplete' if truncated else 'count_mismatch', mismatches=problems, changed=False, cmd=argv)
    scan['argv'] = argv
    return scan


def restore_archive(conn, path, dump_format, clean, jobs, runner=run, identity=None):
    """Restore a custom or directory archive with pg_restore according to ``archive_restore_plan``; return the plan.

    With ``identity`` the custom archive is age-encrypted: ``age -d -i /dev/fd/N path | pg_restore ...`` (an OS pipe,
    pg_restore reading stdin, one transaction).
    """
    encrypted = identity is not None
    plan = archive_restore_plan(conn.transport, dump_format, clean, jobs, encrypted=encrypted)
    container_dir = None
    env = client_env(conn)
    err_file = tempfile.TemporaryFile()
    age = age_argv = age_err = None
    age_rc, age_text = 0, ''
    try:
        if plan['source'] == 'copy':
            container_dir = _copy_into_container(conn, path, runner)
            argv = archive_restore_argv(conn, plan, posixpath.join(container_dir, 'archive'), runner)
        else:
            argv = archive_restore_argv(conn, plan, path, runner)
        if encrypted:
            age, age_argv, age_err = start_decrypt(path, identity)
            stdin = widen_pipe(age.stdout)
        else:
            stdin = open(path, 'rb') if plan['source'] == 'stdin' else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=err_file, env=env)
        except FileNotFoundError:
            raise TransportError('%s is not installed or not on PATH' % argv[0], code='missing_binary', cmd=argv)
        finally:
            if stdin is not subprocess.DEVNULL:
                stdin.close()
        returncode = proc.wait()
        if age is not None:
            age_rc = age.wait()
            age_err.seek(0)
            age_text = age_err.read().decode('utf-8', 'replace')
        err_file.seek(0)
        err = err_file.read().decode('utf-8', 'replace')
    finally:
        err_file.close()
        if age is not None:
            if age.poll() is None:
                age.kill()
                age.wait()
            age_err.close()
        if container_dir:
            _remove_from_container(conn, container_dir, runner)
    if encrypted and decrypt_failed(age_rc, age_text):
        if returncode != 0:
            prefix = 'the artifact did not decrypt, so the restore was rolled back and nothing was committed: '
        else:
            # age releases only authenticated data, and a cut archive makes pg_restore fail: not expected, but said.
            prefix = ('the artifact did not decrypt although pg_restore finished: the database holds what was read before the '
                      'failure, restore again from a good backup: ')
        raise decrypt_error(prefix, age_rc, age_text, age_argv, changed=returncode == 0)
    if returncode != 0:
        exc = fail_from_stderr(conn, returncode, err, argv, 'pg_restore')
        if plan['single_transaction']:
            state = 'it was rolled back, nothing was committed'
        else:
            state = 'the target database may hold a partial restore (parallel jobs commit separately): restore again with clean=true'
        raise RestoreError('the restore failed, %s: %s' % (state, exc), code='restore_failed' if exc.code == 'error' else exc.code,
                           rc=returncode, stderr=exc.stderr, cmd=argv, changed=not plan['single_transaction'])
    plan['argv'] = argv
    if encrypted:
        plan['decrypt'] = age_argv
    return plan
