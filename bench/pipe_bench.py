#!/usr/bin/env python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The restore's pass-through alone, without a database: ``zstd -dc`` -> this process (CopyScanner) -> a reader.

Writes a synthetic plain dump (``--mib`` MiB: a photo COPY block of 200 KB hex lines and a telemetry block of short
lines), compresses it with zstd, then times ``_restore.pass_through``, the loop ``restore_plain`` runs, with the
default 64 KiB pipes and with ``widen_pipe``'s 1 MiB ones, next to ``zstd -dc | cat`` as the floor. Run it with
``bash bench/run.sh pipe [--mib N]``.
"""

import argparse
import binascii
import os
import shutil
import subprocess
import tempfile
import time

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.commands import pass_through
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.scanner import CopyScanner
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.source import StreamSource, decompress_argv
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import widen_pipe

DEFAULT_PIPE_SIZE = 65536


def write_dump(path, mib):
    photo_line = b'%d\t\\\\x' + binascii.hexlify(os.urandom(100000)) + b'\n'
    gps_line = b'12345\t2026-01-01 00:00:00+00\t12.3456\t-45.6789\t88.1\n'
    half = mib * 1024 * 1024 // 2
    with open(path, 'wb') as out:
        out.write(b'COPY public.photo (id, data) FROM stdin;\n')
        for i in range(half // len(photo_line)):
            out.write(photo_line % i)
        out.write(b'\\.\nCOPY public.gps (id, at, lat, lon, speed) FROM stdin;\n')
        out.write(gps_line * (half // len(gps_line)))
        out.write(b'\\.\n-- PostgreSQL database dump complete\n')


def timed_pass_through(path, widen):
    started = time.monotonic()
    scanner = CopyScanner()
    source = StreamSource(argv=decompress_argv('zstd', path), path=path)
    sink = subprocess.Popen(['cat'], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    if widen:
        widen_pipe(sink.stdin)
    else:
        # StreamSource widened its pipe: put it back to Linux's default, to measure the difference.
        widen_pipe(source.proc.stdout, DEFAULT_PIPE_SIZE)
    pass_through(source, scanner, sink.stdin)
    sink.stdin.close()
    sink.wait()
    assert source.close(complete=True)[0] == 0 and scanner.finish()['complete']
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--mib', type=int, default=2048, help='size of the synthetic dump (default: %(default)s)')
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix='fleet-dr-pipe-bench-', dir='/var/tmp')
    try:
        dump = os.path.join(work, 'dump.sql')
        write_dump(dump, args.mib)
        subprocess.run(['zstd', '-q', '-1', '-T0', '--rm', dump], check=True)
        dump += '.zst'
        started = time.monotonic()
        subprocess.run('zstd -dc %s | cat > /dev/null' % dump, shell=True, check=True)
        floor = time.monotonic() - started
        default = timed_pass_through(dump, widen=False)
        widened = timed_pass_through(dump, widen=True)
        print('| %d MiB dump | wall s | / zstd -dc \\| cat |' % args.mib)
        print('|---|---|---|')
        print('| zstd -dc \\| cat | %.1f | 1.00 |' % floor)
        print('| pass-through with CopyScanner, 64 KiB pipes | %.1f | %.2f |' % (default, default / floor))
        print('| pass-through with CopyScanner, 1 MiB pipes (widen_pipe) | %.1f | %.2f |' % (widened, widened / floor))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
