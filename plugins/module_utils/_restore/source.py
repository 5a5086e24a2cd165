# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reading artifacts: the bytes of a plain dump, a custom or a directory archive, streamed from files, decompressors
and pg_restore, and where pg_restore reads an archive over the compose transport. Internal to fleet_telemetry.dr;
not a public API.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _artifact, _verification
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


def decompress_argv(compression, path):
    """The host command that writes the decompressed file to stdout, or None for an uncompressed file."""
    if compression in (None, 'none'):
        return None
    if compression == 'gzip':
        return ['gzip', '-dc', '--', path]
    if compression == 'zstd':
        return ['zstd', '-dcq', '--', path]
    if compression == 'lz4':
        return ['lz4', '-dcq', path]
    raise TransportError('compression %s is not supported' % compression, code='bad_option')


class StreamSource(object):
    """The bytes of a file, or of a process's stdout (optionally fed a file on stdin), read in chunks.

    ``close(complete)`` checks the exit code when the stream was read to the end, and kills the process
    otherwise (an early stop is not a failure).
    """

    def __init__(self, argv=None, path=None, stdin_path=None, env=None, what=None):
        self.argv = argv
        self.what = what or (argv[0] if argv else path)
        self._err = None
        self._stdin = None
        self.proc = None
        self.file = None
        if argv is None:
            self.file = open(path, 'rb')
            self.read = self.file.read
            return
        self._err = tempfile.TemporaryFile()
        try:
            self._stdin = open(stdin_path, 'rb') if stdin_path else subprocess.DEVNULL
            self.proc = subprocess.Popen(argv, stdin=self._stdin, stdout=subprocess.PIPE, stderr=self._err, env=env)
        except FileNotFoundError:
            self._cleanup()
            raise TransportError('%s is not installed or not on PATH' % argv[0], code='missing_binary', cmd=argv)
        except BaseException:
            self._cleanup()
            raise
        self.read = widen_pipe(self.proc.stdout).read

    def _cleanup(self):
        if self._err is not None:
            self._err.close()
        if self._stdin not in (None, subprocess.DEVNULL):
            self._stdin.close()

    def close(self, complete=True):
        """Return ``(rc, stderr)``; rc is 0 for a file or a process stopped early on purpose."""
        if self.proc is None:
            self.file.close()
            return 0, ''
        if not complete and self.proc.poll() is None:
            self.proc.kill()
        self.proc.stdout.close()
        rc = self.proc.wait()
        self._err.seek(0)
        err = self._err.read().decode('utf-8', 'replace')
        self._cleanup()
        return (rc if complete else 0), err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.file is not None:
            self.file.close()
        self._cleanup()


def _stream_failure(source, rc, err, what):
    lines = [line.strip() for line in (err or '').splitlines() if line.strip()]
    detail = lines[-1] if lines else 'exit code %s' % rc
    return RestoreError('%s failed while reading the artifact: %s' % (what, detail), code='artifact_unreadable',
                        rc=rc, stderr=(err or '')[-4000:], cmd=source.argv)


def scan_plain(path, compression, sample_table=None, sample_limit=0, full=True, chunk_size=CHUNK_SIZE):
    """Scan a plain dump (``none``/``gzip``/``zstd``), streamed; return ``CopyScanner.finish()`` plus ``read_to_end``."""
    scanner = CopyScanner(sample_table, sample_limit)
    argv = decompress_argv(compression, path)
    with StreamSource(argv=argv, path=path, what=argv[0] if argv else None) as source:
        at_end = scan_reader(source.read, scanner, stop_when_sampled=not full, chunk_size=chunk_size)
        rc, err = source.close(complete=at_end)
    if rc != 0:
        raise _stream_failure(source, rc, err, '%s -d' % argv[0])
    result = scanner.finish()
    result['read_to_end'] = at_end
    return result


def _table_selectors(table):
    """pg_restore's ``-n schema -t table`` (or ``-t table``) for a raw table name."""
    parts = table.split('.')
    if len(parts) == 2:
        return ['-n', parts[0], '-t', parts[1]]
    return ['-t', table]


def table_data_argv(conn, path, table, runner=run):
    """``pg_restore -a -t <table> -f -``: the table's data as plain text, read where the client tools are.

    Over compose the archive goes to the container's pg_restore on stdin (``docker exec -i``); the
    ``-d`` of ``client_argv`` must not be used here, pg_restore would restore instead of printing.
    """
    args = ['-a'] + _table_selectors(table) + ['-f', '-']
    if conn.transport == 'compose':
        return tools_prefix(conn, runner) + ['pg_restore'] + args, path
    binary = os.path.join(conn.bin_dir, 'pg_restore') if conn.bin_dir else 'pg_restore'
    return [binary] + args + [path], None


def scan_custom_table(conn, path, table, sample_limit, runner=run, chunk_size=CHUNK_SIZE):
    """Sample ``table`` of a custom archive through ``pg_restore -a -t table -f -``, streamed and stopped early."""
    argv, stdin_path = table_data_argv(conn, path, table, runner)
    scanner = CopyScanner(table, sample_limit)
    with StreamSource(argv=argv, stdin_path=stdin_path, env=client_env(conn), what='pg_restore') as source:
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


def read_artifact_photos(artifact, photo_table, sample, conn=None, toc_runner=None, full_scan=False, runner=run):
    """Photos read from the artifact itself: ``(samples, scan)``; ``artifact`` is a ``verify_artifact`` result.

    A plain dump is streamed (and decompressed) on the host; ``full_scan`` reads it to the end to count every
    COPY block (a runbook dump's expected counts). Custom archives go through ``pg_restore -a -t`` over the
    transport; directory archives through their table of contents and the table's data file.
    """
    fmt = artifact['dump_format']
    path = artifact['path']
    if fmt == _artifact.PLAIN:
        scan = scan_plain(path, artifact_compression(artifact), photo_table, sample, full=full_scan)
    elif fmt == _artifact.CUSTOM:
        scan = scan_custom_table(conn, path, photo_table, sample, runner=runner)
    elif fmt == _artifact.DIRECTORY:
        scan = scan_directory_table(path, photo_table, sample, toc_runner)
    else:
        raise RestoreError('the format of %s is unknown: name it .sql, .sql.gz, .sql.zst, .dump or .dir, or restore it '
                           'with its manifest' % path, code='artifact_invalid')
    return scan['samples'], scan


def artifact_compression(artifact):
    """The compression of a plain dump: the manifest's, else from the magic bytes."""
    manifest = artifact.get('manifest') or {}
    if manifest.get('compression') in _artifact.COMPRESSIONS:
        return manifest['compression']
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
