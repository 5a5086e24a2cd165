# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reading artifacts: the bytes of a plain dump, a custom or a directory archive, streamed from files, decompressors
and pg_restore, and where pg_restore reads an archive over the compose transport. Internal to fleet_telemetry.dr;
not a public API.

An artifact encrypted with age (its name ends in ``.age``) is read through ``age -d -i /dev/fd/N`` (the identity on an
anonymous pipe, ``_age.IdentityPipe``) whose stdout is the stdin of the decompressor or of ``pg_restore``: two processes
connected by an OS pipe, no clear file on disk (``StreamSource`` with ``identity``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _age, _artifact, _verification
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._backup import toc_runner_for as _backup_toc_runner
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._compose_commands import Commands as ComposeCommands
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._compose_commands import ComposeProject, compose_config, compose_files
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.errors import RestoreError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.names import normalize_table, parse_copy_header
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.scanner import CHUNK_SIZE, CopyScanner, scan_reader
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import (
    TransportError,
    client_env,
    resolve_container,
    run,
    widen_pipe,
)

GZIP_MAGIC = b'\x1f\x8b'
ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
LZ4_MAGIC = b'\x04\x22\x4d\x18'
_TOC_COPY_RE = re.compile(br'COPY [^\n\x00]{1,1000}? FROM stdin;')


def artifact_encrypted(info):
    """Whether a ``verify_artifact`` result is an age-encrypted artifact (``_verification.is_encrypted_artifact``)."""
    if 'encrypted' in info:
        return bool(info['encrypted'])
    return _verification.is_encrypted_artifact(info['path'], info.get('manifest'))


def detect_compression(path):
    """``none``, ``gzip``, ``zstd`` or ``lz4`` from a file's magic bytes."""
    with open(path, 'rb') as fileobj:
        head = fileobj.read(4)
    if head.startswith(GZIP_MAGIC):
        return 'gzip'
    if head.startswith(ZSTD_MAGIC):
        return 'zstd'
    if head.startswith(LZ4_MAGIC):
        return 'lz4'
    return 'none'


def compression_from_name(path):
    """The compression a plain dump's name says (``.sql.zst[.age]`` -> ``zstd``), or None when it says none."""
    name = _artifact.clear_name(path)
    for suffix, compression in (('.sql.gz', 'gzip'), ('.sql.zst', 'zstd'), ('.sql', 'none')):
        if name.endswith(suffix):
            return compression
    return None


def decompress_argv(compression, path):
    """The host command that writes the decompressed file to stdout, or None for an uncompressed file.

    With ``path`` None the command reads its standard input (the output of ``age -d``).
    """
    if compression in (None, 'none'):
        return None
    tail = [] if path is None else [path]
    if compression == 'gzip':
        return ['gzip', '-dc'] + (['--'] + tail if tail else [])
    if compression == 'zstd':
        return ['zstd', '-dcq'] + (['--'] + tail if tail else [])
    if compression == 'lz4':
        return ['lz4', '-dcq'] + tail
    raise TransportError('compression %s is not supported' % compression, code='bad_option')


def start_decrypt(path, identity, stdout=subprocess.PIPE, age_binary='age'):
    """Start ``age -d -i /dev/fd/N path`` with the identity on an anonymous pipe; return ``(proc, argv, stderr file)``.

    The identity never reaches argv, the environment or the disk; the caller reads (or hands on) ``proc.stdout`` and
    closes the stderr file.
    """
    err = tempfile.TemporaryFile()
    try:
        with _age.IdentityPipe(identity) as pipe:
            argv = _age.decrypt_argv(pipe.argv_path, path, binary=age_binary)
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=err, pass_fds=(pipe.fd,))
            except FileNotFoundError:
                raise _age.missing_tool_error(age_binary) from None
    except _age.AgeError as exc:
        err.close()
        raise RestoreError(str(exc), code=exc.code) from None
    except BaseException:
        err.close()
        raise
    return proc, argv, err


def decrypt_failed(rc, err):
    """Whether ``age -d`` failed by itself (not because its reader went away: SIGPIPE or a broken pipe)."""
    if rc == 0:
        return False
    return rc != -signal.SIGPIPE and 'broken pipe' not in (err or '').lower()


def decrypt_error(prefix, rc, err, argv, **kwargs):
    """The ``RestoreError`` of a failed ``age -d``: ``wrong_identity``, ``bad_identity`` or ``decrypt_failed``.

    age's stderr is kept only for ``decrypt_failed``: about an identity it may echo what it read.
    """
    code, sentence = _age.classify_stderr(err)
    return RestoreError('%s%s' % (prefix, sentence), code=code, rc=rc, stderr=(err or '')[-4000:] if code == 'decrypt_failed' else None,
                        cmd=argv, **kwargs)


class StreamSource(object):
    """The bytes of a file, or of a process's stdout (optionally fed a file on stdin), read in chunks.

    With ``identity`` (the text of an age identity) ``path`` is encrypted: ``age -d`` decrypts it, and ``argv`` (if
    any) reads age's output on its stdin; ``stdin_path`` is not used then. ``close(complete)`` checks the exit codes
    when the stream was read to the end, and kills the processes otherwise (an early stop is not a failure).
    ``failed`` then says which stage failed: ``decrypt`` (age) or ``read`` (the decompressor or pg_restore).
    """

    def __init__(self, argv=None, path=None, stdin_path=None, env=None, what=None, identity=None, age_binary='age'):
        self.argv = argv
        self.what = what or (argv[0] if argv else ('age -d' if identity is not None else path))
        self.stages = []
        self.decrypting = identity is not None
        self.failed = None
        self.failed_argv = None
        self._stdin = None
        self.proc = None
        self.file = None
        if argv is None and identity is None:
            self.file = open(path, 'rb')
            self.read = self.file.read
            return
        try:
            upstream = None
            if identity is not None:
                upstream, age_argv, age_err = start_decrypt(path, identity, age_binary=age_binary)
                self.stages.append((age_argv, upstream, age_err))
                stdin = widen_pipe(upstream.stdout)
            if argv is not None:
                if upstream is None:
                    self._stdin = stdin = open(stdin_path, 'rb') if stdin_path else subprocess.DEVNULL
                err = tempfile.TemporaryFile()
                try:
                    proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=err, env=env)
                except FileNotFoundError:
                    err.close()
                    raise TransportError('%s is not installed or not on PATH' % argv[0], code='missing_binary', cmd=argv) from None
                except BaseException:
                    err.close()
                    raise
                self.stages.append((argv, proc, err))
                if upstream is not None:
                    # age's output now belongs to the reader alone: it sees EOF, age sees the reader go.
                    upstream.stdout.close()
        except BaseException:
            self._abort()
            raise
        self.proc = self.stages[-1][1]
        self.read = widen_pipe(self.proc.stdout).read

    def _abort(self):
        for dummy, proc, dummy_err in self.stages:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self._cleanup()

    def _cleanup(self):
        for dummy, dummy_proc, err in self.stages:
            err.close()
        if self._stdin not in (None, subprocess.DEVNULL):
            self._stdin.close()
            self._stdin = None

    def close(self, complete=True):
        """Return ``(rc, stderr)`` of the stage that failed (age's own failure first); rc is 0 for a file, for processes
        that all succeeded, or for processes stopped early on purpose."""
        if not self.stages:
            self.file.close()
            return 0, ''
        if not complete:
            for dummy, proc, dummy_err in self.stages:
                if proc.poll() is None:
                    proc.kill()
        self.proc.stdout.close()
        outcomes = []
        for argv, proc, err in self.stages:
            rc = proc.wait()
            err.seek(0)
            outcomes.append((argv, rc, err.read().decode('utf-8', 'replace')))
        self._cleanup()
        if not complete:
            return 0, ''
        readers = outcomes[1:] if self.decrypting else outcomes
        if self.decrypting and decrypt_failed(outcomes[0][1], outcomes[0][2]):
            self.failed, self.failed_argv = 'decrypt', outcomes[0][0]
            return outcomes[0][1], outcomes[0][2]
        for argv, rc, err in readers:
            if rc != 0:
                self.failed, self.failed_argv = 'read', argv
                return rc, err
        return 0, ''

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.stages:
            for dummy, proc, dummy_err in self.stages:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if proc.stdout is not None and not proc.stdout.closed:
                    proc.stdout.close()
        if self.file is not None:
            self.file.close()
        self._cleanup()


def _stream_failure(source, rc, err, what):
    if source.failed == 'decrypt':
        return decrypt_error('', rc, err, source.failed_argv)
    lines = [line.strip() for line in (err or '').splitlines() if line.strip()]
    detail = lines[-1] if lines else 'exit code %s' % rc
    return RestoreError('%s failed while reading the artifact: %s' % (what, detail), code='artifact_unreadable',
                        rc=rc, stderr=(err or '')[-4000:], cmd=source.failed_argv or source.argv)


def scan_plain(path, compression, sample_table=None, sample_limit=0, full=True, chunk_size=CHUNK_SIZE, identity=None):
    """Scan a plain dump (``none``/``gzip``/``zstd``), streamed; return ``CopyScanner.finish()`` plus ``read_to_end``.

    With ``identity`` the file is age-encrypted: ``age -d`` decrypts it into the decompressor.
    """
    scanner = CopyScanner(sample_table, sample_limit)
    argv = decompress_argv(compression, None if identity is not None else path)
    with StreamSource(argv=argv, path=path, what=argv[0] if argv else None, identity=identity) as source:
        at_end = scan_reader(source.read, scanner, stop_when_sampled=not full, chunk_size=chunk_size)
        rc, err = source.close(complete=at_end)
    if rc != 0:
        raise _stream_failure(source, rc, err, '%s -d' % (argv[0] if argv else 'age'))
    result = scanner.finish()
    result['read_to_end'] = at_end
    return result


def _table_selectors(table):
    """pg_restore's ``-n schema -t table`` (or ``-t table``) for a raw table name."""
    parts = table.split('.')
    if len(parts) == 2:
        return ['-n', parts[0], '-t', parts[1]]
    return ['-t', table]


def table_data_argv(conn, path, table, runner=run, stdin=False):
    """``pg_restore -a -t <table> -f -``: the table's data as plain text, read where the client tools are; returns
    ``(argv, path pg_restore reads on stdin or None)``.

    Over compose the archive goes to the container's pg_restore on stdin (``docker exec -i``); the
    ``-d`` of ``client_argv`` must not be used here, pg_restore would restore instead of printing. ``stdin`` makes
    the host's pg_restore read stdin too (an encrypted archive comes out of ``age -d``, which cannot seek).
    """
    args = ['-a'] + _table_selectors(table) + ['-f', '-']
    if conn.transport == 'compose':
        return tools_prefix(conn, runner) + ['pg_restore'] + args, path
    binary = os.path.join(conn.bin_dir, 'pg_restore') if conn.bin_dir else 'pg_restore'
    if stdin:
        return [binary] + args, path
    return [binary] + args + [path], None


def scan_custom_table(conn, path, table, sample_limit, runner=run, chunk_size=CHUNK_SIZE, identity=None):
    """Sample ``table`` of a custom archive through ``pg_restore -a -t table -f -``, streamed and stopped early.

    With ``identity`` the archive is age-encrypted: ``age -d`` decrypts it into pg_restore's stdin.
    """
    encrypted = identity is not None
    argv, stdin_path = table_data_argv(conn, path, table, runner, stdin=encrypted)
    scanner = CopyScanner(table, sample_limit)
    with StreamSource(argv=argv, path=path if encrypted else None, stdin_path=None if encrypted else stdin_path, env=client_env(conn),
                      what='pg_restore', identity=identity) as source:
        at_end = scan_reader(source.read, scanner, stop_when_sampled=True, chunk_size=chunk_size)
        rc, err = source.close(complete=at_end)
    if rc != 0:
        raise _stream_failure(source, rc, err, 'pg_restore -a -t %s' % table)
    result = scanner.finish()
    result['read_to_end'] = at_end
    return result


def toc_data_ids(toc_text):
    """``{table: dump id}`` of the TABLE DATA entries of ``pg_restore -l`` output (tables normalised)."""
    ids = {}
    for dump_id, table in _verification.toc_data_entries(toc_text):
        if dump_id.isdigit():
            ids[normalize_table(table)] = int(dump_id)
    return ids


def toc_copy_headers(toc_bytes):
    """``{table: COPY line}`` of the COPY statements stored verbatim in a directory archive's ``toc.dat``."""
    headers = {}
    for match in _TOC_COPY_RE.finditer(toc_bytes):
        parsed = parse_copy_header(match.group(0))
        if parsed:
            headers.setdefault(parsed[0], match.group(0))
    return headers


def directory_data_file(directory, dump_id):
    """The data file of entry ``dump_id`` in a directory archive and its compression, or ``(None, None)``."""
    for suffix, compression in (('', 'none'), ('.gz', 'gzip'), ('.zst', 'zstd'), ('.lz4', 'lz4')):
        candidate = os.path.join(directory, '%d.dat%s' % (dump_id, suffix))
        if os.path.isfile(candidate):
            return candidate, compression
    return None, None


def scan_directory_table(directory, table, sample_limit, toc_runner, chunk_size=CHUNK_SIZE):
    """Sample ``table`` of a directory archive: its data file, located through the table of contents, read on the host.

    ``toc_runner(path)`` is ``pg_restore -l`` through the transport; it gives the dump id of the table's data, whose
    file is ``<id>.dat[.gz|.zst|.lz4]``. The COPY statement (the column order) is stored verbatim in ``toc.dat``.
    Only the head of the data file is read (and decompressed) until the sample is complete.
    """
    rc, out, err = toc_runner(directory)
    if rc != 0:
        raise RestoreError('the table of contents of %s is unreadable: %s' % (directory, (err or out or '').strip()[-300:]),
                           code='artifact_unreadable', rc=rc, stderr=err)
    scanner = CopyScanner(table, sample_limit)
    wanted = normalize_table(table)
    dump_id = toc_data_ids(out).get(wanted)
    if dump_id is None:
        return scanner.finish()
    with open(os.path.join(directory, 'toc.dat'), 'rb') as toc:
        header = toc_copy_headers(toc.read()).get(wanted)
    data_file, compression = directory_data_file(directory, dump_id)
    if header is None or data_file is None:
        raise RestoreError('the directory archive %s lists data of table %s but its %s is missing: the archive is damaged'
                           % (directory, table, 'COPY statement' if header is None else 'data file %d.dat' % dump_id),
                           code='artifact_unreadable')
    scanner.feed(header + b'\n')
    argv = decompress_argv(compression, data_file)
    with StreamSource(argv=argv, path=data_file) as source:
        at_end = scan_reader(source.read, scanner, stop_when_sampled=True, chunk_size=chunk_size)
        rc, err = source.close(complete=at_end)
    if rc != 0:
        raise _stream_failure(source, rc, err, '%s -d' % argv[0])
    return scanner.finish()


def read_artifact_photos(artifact, photo_table, sample, conn=None, toc_runner=None, full_scan=False, runner=run, identity=None):
    """Photos read from the artifact itself: ``(samples, scan)``; ``artifact`` is a ``verify_artifact`` result.

    A plain dump is streamed (and decompressed) on the host; ``full_scan`` reads it to the end to count every
    COPY block (a runbook dump's expected counts). Custom archives go through ``pg_restore -a -t`` over the
    transport; directory archives through their table of contents and the table's data file. ``identity`` (the
    text of an age identity) decrypts an encrypted artifact on the way (``age -d``).
    """
    fmt = artifact['dump_format']
    path = artifact['path']
    if fmt == _artifact.PLAIN:
        scan = scan_plain(path, artifact_compression(artifact), photo_table, sample, full=full_scan, identity=identity)
    elif fmt == _artifact.CUSTOM:
        scan = scan_custom_table(conn, path, photo_table, sample, runner=runner, identity=identity)
    elif fmt == _artifact.DIRECTORY and identity is None:
        scan = scan_directory_table(path, photo_table, sample, toc_runner)
    else:
        raise RestoreError('the format of %s is unknown: name it .sql, .sql.gz, .sql.zst, .dump or .dir (with .age after it '
                           'when encrypted), or restore it with its manifest' % path, code='artifact_invalid')
    return scan['samples'], scan


def artifact_compression(artifact):
    """The compression of a plain dump: the manifest's, else the name's for an encrypted one, else from the magic bytes."""
    manifest = artifact.get('manifest') or {}
    if manifest.get('compression') in _artifact.COMPRESSIONS:
        return manifest['compression']
    if artifact_encrypted(artifact):
        return compression_from_name(artifact['path']) or 'none'
    return detect_compression(artifact['path'])


# --------------------------------------------------------------------------------------------
# Where pg_restore reads an archive
# --------------------------------------------------------------------------------------------

def service_image(conn, runner=run):
    """The image of the database's compose service (from ``compose config``), or None when compose cannot tell."""
    project = ComposeProject(conn.project_src, project_name=conn.project_name, docker_cli=conn.docker_cli)
    try:
        config = compose_config(ComposeCommands(project, runner=runner), compose_files(project))
    except TransportError:
        return None
    image = (((config.get('services') or {}).get(conn.service) or {}).get('image'))
    return image if isinstance(image, str) and image else None


def offline_tools_prefix(docker_cli, image):
    """Runs a program in a throw-away container of ``image`` without network (``pg_restore`` reading an archive on stdin)."""
    return [docker_cli, 'run', '--rm', '-i', '--network', 'none', '--entrypoint', '', image]


def tools_prefix(conn, runner=run, image_of=service_image):
    """Where the compose transport runs ``pg_restore`` on an archive given on stdin: ``docker exec -i`` of the running
    container; when the service's container is down (a restore after a disaster), a throw-away container of the service's
    image (its own pg_restore, so the archive's version is understood), so a custom or directory backup can still be
    checked before anything is removed. ``container_down`` when neither exists."""
    try:
        container = resolve_container(conn, runner)
    except TransportError as exc:
        if exc.code != 'container_down':
            raise
        image = image_of(conn, runner)
        if not image:
            raise
        return offline_tools_prefix(conn.docker_cli, image)
    return [conn.docker_cli, 'exec', '-i', container]


def toc_runner_for(conn, runner=run, image_of=service_image):
    """``pg_restore -l`` of an artifact through the transport (see ``tools_prefix`` for compose)."""
    def toc(path):
        if conn.transport == 'compose':
            return _backup_toc_runner(conn, prefix=tools_prefix(conn, runner, image_of))(path)
        return _backup_toc_runner(conn)(path)
    return toc
