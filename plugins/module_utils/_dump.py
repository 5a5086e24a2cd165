# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""pg_dump command lines and the streaming pipeline. Internal to fleet_telemetry.dr.

The dump never sits in memory: pg_dump's stdout goes (through an optional compressor process,
connected by an OS pipe) into a sink in chunks; the sink checksums while it writes. A failure of
any process in the pipeline is a failure of the dump, whatever the exit code of the last one
(``pg_dump | gzip`` without pipefail is a trap: see OFFLINE.md).
"""

from __future__ import annotations

import subprocess
import tempfile
import time

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import TransportError, widen_pipe

FORMATS = ('plain', 'custom', 'directory')
COMPRESSIONS = ('none', 'gzip', 'zstd')
CHUNK_SIZE = 1024 * 1024

DEFAULT_LEVELS = {'gzip': 1, 'zstd': 1, 'none': 0}


def validate_format(dump_format, compression):
    """Return a sentence when the combination cannot be produced, else None."""
    if dump_format not in FORMATS:
        return 'format must be one of %s' % ', '.join(FORMATS)
    if compression not in COMPRESSIONS:
        return 'compression must be one of %s' % ', '.join(COMPRESSIONS)
    if dump_format in ('custom', 'directory') and compression == 'zstd':
        return ('pg_dump 15 compresses custom and directory archives with gzip only: '
                'use compression=gzip or none with format=%s, or format=plain with zstd' % dump_format)
    return None


def pg_dump_args(dump_format, compression='none', level=None, snapshot=None, jobs=1, target=None):
    """pg_dump options (without connection options) for a format; plain output is compressed outside pg_dump."""
    args = []
    if dump_format == 'plain':
        # --clean --if-exists: the dump restores into a database that already has the schema (a fresh
        # stack whose init scripts created the tables) with ON_ERROR_STOP, and still with the runbook's psql.
        args += ['--format=plain', '--clean', '--if-exists']
    elif dump_format == 'custom':
        args += ['--format=custom', '--compress=%d' % (level if compression == 'gzip' else 0)]
    elif dump_format == 'directory':
        args += ['--format=directory', '--compress=%d' % (level if compression == 'gzip' else 0), '--jobs=%d' % max(1, jobs)]
    if snapshot:
        args.append('--snapshot=%s' % snapshot)
    if target:
        args += ['--file', target]
    return args


def compressor_argv(dump_format, compression, level=None, threads=0):
    """The external compressor of a plain dump, or None."""
    if dump_format != 'plain' or compression == 'none':
        return None
    level = DEFAULT_LEVELS[compression] if level is None else level
    if compression == 'gzip':
        return ['gzip', '-c', '-n', '-%d' % level]
    return ['zstd', '-q', '-c', '-%d' % level, '-T%d' % threads]


def stream_pipeline(argv, env, sink, compressor=None, progress=None, chunk_size=CHUNK_SIZE, progress_every=2.0):
    """Run ``argv`` (| ``compressor``) and write its stdout into ``sink.write``; return stats.

    Raises TransportError (code ``dump_failed``) when any process exits non-zero, with the stderr of
    the one that failed. Exceptions from the sink (e.g. disk full) stop the processes and propagate.
    """
    err_dump = tempfile.TemporaryFile()
    err_comp = tempfile.TemporaryFile()
    procs = []
    started = time.time()
    written = 0
    try:
        try:
            dump = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err_dump, env=env)
            procs.append(dump)
            source = dump.stdout
            if compressor:
                comp = subprocess.Popen(compressor, stdin=dump.stdout, stdout=subprocess.PIPE, stderr=err_comp)
                procs.append(comp)
                dump.stdout.close()
                source = comp.stdout
        except FileNotFoundError as exc:
            raise TransportError('%s is not installed or not on PATH' % (exc.filename or argv[0]), code='missing_binary')
        widen_pipe(source)
        last_report = started
        while True:
            data = source.read(chunk_size)
            if not data:
                break
            sink.write(data)
            written += len(data)
            now = time.time()
            if progress and now - last_report >= progress_every:
                progress(written, now - started)
                last_report = now
        source.close()
        rcs = [proc.wait() for proc in procs]
    except BaseException:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        err_dump.close()
        err_comp.close()
        raise
    failures = []
    for proc, rc, err in zip(procs, rcs, (err_dump, err_comp)):
        err.seek(0)
        text = err.read().decode('utf-8', 'replace')
        if rc != 0:
            failures.append((proc.args, rc, text))
    err_dump.close()
    err_comp.close()
    if failures:
        args, rc, text = failures[0]
        exc = TransportError('%s exited with rc=%s' % (args[0] if args[0] != 'docker' else 'pg_dump (in the container)', rc),
                             code='dump_failed', rc=rc, stderr=text.strip()[-4000:])
        raise exc
    return {'bytes': written, 'seconds': round(time.time() - started, 3)}
