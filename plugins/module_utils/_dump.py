# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""pg_dump command lines and the streaming pipeline. Internal to fleet_telemetry.dr.

The dump never sits in memory: pg_dump's stdout goes (through a chain of filter processes - a compressor, then
``age -e`` for an encrypted backup - connected by OS pipes) into a sink in chunks; the sink checksums while it writes.
A failure of any process in the pipeline is a failure of the dump, whatever the exit code of the last one
(``pg_dump | gzip`` without pipefail is a trap: see OFFLINE.md; ``age -e`` of a cut stream is a valid, cut, file).
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


def stream_pipeline(argv, env, sink, compressor=None, progress=None, chunk_size=CHUNK_SIZE, progress_every=2.0, filters=()):
    """Run ``argv`` | ``compressor`` | ``filters``... and write the last stdout into ``sink.write``; return stats.

    ``argv`` (the producer) gets ``env``; the filters (the compressor, then e.g. ``age -e``) the caller's environment, so
    a password for pg_dump never reaches them. Raises TransportError (code ``dump_failed``) when any process exits
    non-zero (pipefail), with the stderr of the one that caused it; its attribute ``process`` is that one's position
    in the chain (0 is ``argv``).
    Exceptions from the sink (e.g. disk full) stop the processes and propagate.
    """
    chain = [list(argv)] + ([list(compressor)] if compressor else []) + [list(f) for f in filters or ()]
    procs, errs = [], []
    started = time.time()
    try:
        source = _start_chain(chain, env, procs, errs)
        written = _pump(source, sink, progress, chunk_size, progress_every, started)
        source.close()
        rcs = [proc.wait() for proc in procs]
        failure = _chain_failure(procs, rcs, errs)
    except BaseException:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
        raise
    finally:
        for err in errs:
            err.close()
    if failure:
        raise failure
    return {'bytes': written, 'seconds': round(time.time() - started, 3)}


def _start_chain(chain, env, procs, errs):
    """Start every process of ``chain``, each reading the previous one's stdout; return the last stdout."""
    source = None
    for index, argv in enumerate(chain):
        err = tempfile.TemporaryFile()
        errs.append(err)
        try:
            proc = subprocess.Popen(argv, stdin=source, stdout=subprocess.PIPE, stderr=err, env=env if index == 0 else None)
        except FileNotFoundError as exc:
            raise TransportError('%s is not installed or not on PATH' % (exc.filename or argv[0]), code='missing_binary')
        procs.append(proc)
        if source is not None:
            source.close()
        source = proc.stdout
    return widen_pipe(source)


def _pump(source, sink, progress, chunk_size, progress_every, started):
    written = 0
    last_report = started
    while True:
        data = source.read(chunk_size)
        if not data:
            return written
        sink.write(data)
        written += len(data)
        now = time.time()
        if progress and now - last_report >= progress_every:
            progress(written, now - started)
            last_report = now


# A process that wrote into a pipe whose reader died: killed by SIGPIPE, or told EPIPE and failed.
_BROKEN_PIPE_RCS = (-13, 141)


def _chain_failure(procs, rcs, errs):
    """The TransportError of the process that made the chain fail, or None when every process exited 0.

    An upstream process that only failed because a later one died (broken pipe) is not the cause: the later one is.
    """
    failures = []
    for index, (proc, rc, err) in enumerate(zip(procs, rcs, errs)):
        if rc != 0:
            err.seek(0)
            failures.append((index, proc.args, rc, err.read().decode('utf-8', 'replace')))
    if not failures:
        return None
    last = failures[-1][0]
    causes = [f for f in failures if f[0] == last or not (f[2] in _BROKEN_PIPE_RCS or 'Broken pipe' in f[3])]
    index, args, rc, text = causes[0]
    name = args[0] if args[0] != 'docker' else 'pg_dump (in the container)'
    failure = TransportError('%s exited with rc=%s' % (name, rc), code='dump_failed', rc=rc, stderr=text.strip()[-4000:])
    failure.process = index
    return failure
