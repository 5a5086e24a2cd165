#!/usr/bin/env python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Parallel-load probe: how much loading a plain dump's tables in parallel sessions could gain on this machine.

Not a feature of the collection: an upper bound that decides whether one is worth building (issue #14). On the stack of
one scale (1 = about 1.5 GB, shared with the other benchmarks) it takes one clear plain dump (``pg_dump`` in the
container, untimed) and loads it into a new database of the same server, alternately:

* ``one session``: ``psql -1 -f dump.sql``, as the restore loads a plain dump (one session, one transaction);
* ``N sessions``: the dump split into files first (untimed): the pre-data in one transaction, then the COPY blocks of
  the tables in N sessions at once (tables dealt by size, largest first, to the least loaded session), then each
  session's primary keys, unique constraints and indexes in N sessions at once, then the foreign keys and the rest.
  Each part is read from its own file, so the sessions never wait on one another's input: the most that splitting the
  load can give. A restore reads one stream, so it would get less.

Both loads go through ``docker exec -i <db container> psql``, and every load is checked by exact row counts against
the seeded ones. It prints the medians and their ratio, the load average and the command. Run it with
``bash bench/run.sh parallel-load [--repeat 3] [--sessions 2] [--keep]``.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import benchlib

PROBE_DB = 'parallel_probe'
COPY_HEADER = re.compile(r'^COPY (\S+) ')


def docker_psql(stack, database, *args):
    return ['docker', 'exec', '-i', stack.container, 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-U', benchlib.DB_USER,
            '-d', database] + list(args)


def run_file(stack, path, single=True):
    with open(path, 'rb') as handle:
        subprocess.run(docker_psql(stack, PROBE_DB, *(['-1'] if single else [])), stdin=handle, check=True,
                       stdout=subprocess.DEVNULL)


def run_parallel(stack, paths):
    procs = []
    for path in paths:
        handle = open(path, 'rb')
        procs.append((subprocess.Popen(docker_psql(stack, PROBE_DB, '-1'), stdin=handle, stdout=subprocess.DEVNULL), handle))
    failed = []
    for proc, handle in procs:
        if proc.wait() != 0:
            failed.append(proc.args)
        handle.close()
    if failed:
        raise benchlib.CommandFailed('parallel psql failed: %r' % failed)


def split_dump(dump, out, sessions):
    """Split a plain dump into ``pre.sql``, per-session ``data-<i>.sql`` and ``index-<i>.sql``, and ``last.sql``."""
    header, pre, between, post = [], [], [], []
    blocks = {}
    table = None
    seen_copy = False
    with open(dump, 'rb') as handle:
        for line in handle:
            if table is not None:
                blocks[table].append(line)
                if line == b'\\.\n':
                    table = None
                continue
            match = COPY_HEADER.match(line.decode('utf-8', 'replace'))
            if match:
                table, seen_copy = match.group(1), True
                blocks.setdefault(table, []).append(line)
                continue
            if not seen_copy:
                pre.append(line)
                if line.startswith((b'SET ', b'SELECT pg_catalog.set_config')):
                    header.append(line)
            else:
                (between if not line.startswith(b'--') else post).append(line)
    # Everything after the last COPY block that is not a comment is post-data; the SEQUENCE SETs between blocks too.
    sizes = sorted(((sum(len(line) for line in lines), name) for name, lines in blocks.items()), reverse=True)
    owner, loads = {}, [0] * sessions
    for size, name in sizes:
        index = loads.index(min(loads))
        owner[name], loads[index] = index, loads[index] + size
    statements = [s.strip() for s in b''.join(between).decode('utf-8').split(';\n') if s.strip()]
    per_session, last = [[] for dummy in range(sessions)], []
    for statement in statements:
        body = '\n'.join(line for line in statement.splitlines() if not line.startswith(('--', '\\'))).strip()
        if not body:
            continue
        target = next((owner[name] for name in owner if re.search(r'\b%s\b' % re.escape(name), body)), None)
        if 'FOREIGN KEY' in body or target is None or not body.startswith(('ALTER TABLE', 'CREATE INDEX', 'CREATE UNIQUE INDEX')):
            last.append(body + ';\n')
        else:
            per_session[target].append(body + ';\n')
    head = b''.join(header)
    with open(os.path.join(out, 'pre.sql'), 'wb') as handle:
        handle.write(b''.join(line for line in pre if not line.startswith(b'\\')))
    for index in range(sessions):
        with open(os.path.join(out, 'data-%d.sql' % index), 'wb') as handle:
            handle.write(head)
            for name in owner:
                if owner[name] == index:
                    handle.write(b''.join(blocks[name]))
        with open(os.path.join(out, 'index-%d.sql' % index), 'wb') as handle:
            handle.write(head + ''.join(per_session[index]).encode('utf-8'))
    with open(os.path.join(out, 'last.sql'), 'wb') as handle:
        handle.write(head + ''.join(last).encode('utf-8'))
    return dict((name, owner[name]) for dummy, name in sizes)


def fresh_database(stack):
    stack.psql('DROP DATABASE IF EXISTS %s' % PROBE_DB)
    stack.psql('CREATE DATABASE %s' % PROBE_DB)
    benchlib.sync()


def probe_counts(stack, reference):
    query = ' UNION ALL '.join("SELECT '%s', count(*) FROM public.%s" % (t, t) for t in sorted(reference))
    out = subprocess.run(docker_psql(stack, PROBE_DB, '-At', '-c', query), capture_output=True, text=True, check=True).stdout
    counts = dict((name, int(n)) for name, n in (line.split('|') for line in out.split()))
    return dict((t, (counts.get(t), n)) for t, n in reference.items() if counts.get(t) != n)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--scale', type=int, default=1, help='dataset scale, 1 = about 1.5 GB (default: %(default)s)')
    parser.add_argument('--sessions', type=int, default=2, help='parallel sessions (default: %(default)s, the cores here)')
    args = benchlib.parse_run_args(parser, 'the clear dump and its parts go to <workdir>/parallel-load-<scale>')
    benchlib.terminate_on_sigterm()
    os.makedirs(args.workdir, exist_ok=True)
    stack = benchlib.Stack(args.scale, args.workdir)
    out = os.path.join(args.workdir, 'parallel-load-%d' % args.scale)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    runs = {'one': [], 'split': []}
    complete = False
    try:
        reference = stack.ensure_seeded()
        dump = os.path.join(out, 'dump.sql')
        benchlib.log('clear plain dump (untimed)')
        subprocess.run(['sh', '-c', 'docker exec %s pg_dump -U %s %s > %s' % (stack.container, benchlib.DB_USER, benchlib.DB_NAME, dump)],
                       check=True)
        owners = split_dump(dump, out, args.sessions)
        loads = [benchlib.load_line()]
        for rep in range(args.repeat):
            for name in ('one', 'split') if rep % 2 == 0 else ('split', 'one'):
                benchlib.log('run %d/%d: %s' % (rep + 1, args.repeat, name))
                fresh_database(stack)
                started = time.monotonic()
                if name == 'one':
                    run_file(stack, dump)
                else:
                    run_file(stack, os.path.join(out, 'pre.sql'))
                    run_parallel(stack, [os.path.join(out, 'data-%d.sql' % i) for i in range(args.sessions)])
                    run_parallel(stack, [os.path.join(out, 'index-%d.sql' % i) for i in range(args.sessions)])
                    run_file(stack, os.path.join(out, 'last.sql'))
                runs[name].append(time.monotonic() - started)
                wrong = probe_counts(stack, reference)
                if wrong:
                    raise benchlib.CommandFailed('%s load: counts differ %r' % (name, wrong))
        loads.append(benchlib.load_line())
        complete = True
    finally:
        shutil.rmtree(out, ignore_errors=True)
        stack.psql('DROP DATABASE IF EXISTS %s' % PROBE_DB)
        if not args.keep or not complete:
            stack.down()
    one, split = statistics.median(runs['one']), statistics.median(runs['split'])
    command = ' '.join(['bash bench/run.sh parallel-load'] + sys.argv[1:])
    print('\n'.join([
        '## Parallel-load probe, %dx, medians of %d runs' % (args.scale, args.repeat), '',
        'Command: `%s`' % command, '', 'Load: %s' % ' / '.join(loads), '',
        benchlib.markdown_table(['load of the clear plain dump into a new database', 'median s', 'ratio'], [
            ['one session, one transaction (`psql -1`)', '%.1f' % one, '1.00'],
            ['%d sessions, each part from its own file' % args.sessions, '%.1f' % split, '%.2f' % (split / one)],
        ]), '',
        'All runs (s): one %s; split %s. Tables by session: %s. Every load: exact row counts equal to the seeded ones.' % (
            ' '.join('%.1f' % r for r in runs['one']), ' '.join('%.1f' % r for r in runs['split']),
            ', '.join('%s %d' % (t, s) for t, s in owners.items())),
    ]))


if __name__ == '__main__':
    main()
