#!/usr/bin/env python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Backup benchmark: this collection's backup against the runbook and raw pg_dump, measured in one run.

For each scale (1 = about 1.5 GB of database, like OFFLINE.md's dataset) it brings up a scratch copy of
examples/telemetry_app (own compose project, container and port, see benchlib.py), seeds it, dumps it
once untimed (so every procedure finds the same warm cache), and times, on the same data:

* runbook: ``docker-compose exec -T db pg_dump -U challengeuser telemetry_db > backup.sql`` (the seed's command);
* pg_dump -Fc: ``docker-compose exec -T db pg_dump -Fc ... > backup.dump``;
* pg_dump -Fd -j2: inside the container, to the container's disk;
* raw: the pipelines the collection drives, by hand in a shell: ``docker exec -i pg_dump ... | zstd -1 -T0``
  (``dump_client=container``) and the host's ``pg_dump -h <container address> ... | zstd -1 -T0`` (``auto``);
* collection: ``ansible -m fleet_telemetry.dr.pg_logical_backup`` with its defaults, ``encryption_key`` and
  ``db_password`` (given, as the backup role gives ``fleet_dr_encryption_key`` and ``fleet_dr_db_password``, so the
  key is proven on sample photos and pg_dump can run on the host).

It prints wall time, artifact size and peak memory (sum of PSS over the launched process tree, sampled
every 100 ms: the host side, ansible itself included; processes inside the container are not counted),
the ratios, and whether each target of the backup issue is met. Run it on an otherwise idle machine: the
ratios come from one run, but other load slows the procedures unevenly; the load is printed with the table.
Run it with ``bash bench/run.sh [backup] ...`` (sets up the venv and collection path) or directly from that venv.
"""

import argparse
import os
import shutil
import subprocess
import sys

import benchlib
from benchlib import MIB, measure, size_of

RUNBOOK = 'runbook'
RAW = 'raw (pg_dump | zstd -1)'
RAW_HOST = 'raw, host pg_dump over the container address | zstd -1'
COLLECTION = 'collection (defaults)'
WALL_TARGET = 0.7
SIZE_TARGET = 0.6
RAW_SIZE_TARGET = 1.1
PEAK_TARGET_MIB = 100
FLAT_TARGET = 1.1
# ansible-core's own share of the whole tree: its controller and worker running a trivial module for a few seconds.
FLOOR = 'ansible -m ansible.builtin.command -a "sleep 3"'
# With --extra: the collection's other formats, to see which default could meet the targets.
EXTRA_VARIANTS = (
    ('collection (directory, gzip -1, jobs=2)', ' format=directory compression=gzip compression_level=1 jobs=2'),
)


def run_scale(stack, workdir, keep, extra=False):
    """Seed (or reuse) the stack of one scale and time every procedure; return {'results', 'load', 'db_size'}."""
    out = os.path.join(workdir, 'out-%d' % stack.scale)
    project, container = stack.project, stack.container
    results = {}
    loads = []
    vars_file = stack.vars_file(workdir, 'backup-vars-%d' % stack.scale)
    try:
        stack.ensure_seeded()
        db_size = stack.database_size()

        def fresh():
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            benchlib.sync()

        benchlib.log('scale %dx: warm-up dump (untimed)' % stack.scale)
        stack.warm_up()
        loads.append(benchlib.load_line())

        def timed(name, argv, target=None, **kwargs):
            fresh()
            benchlib.log('scale %dx: %s' % (stack.scale, name))
            run = measure(argv, **kwargs)
            results[name] = {'wall': run['wall'], 'size': size_of(target) if target else None, 'peak': run['peak'],
                             'peak_module': run['peak_subtree'], 'breakdown': run['breakdown']}
            return run

        target = os.path.join(out, 'backup.sql')
        timed(RUNBOOK, ['sh', '-c', 'docker-compose -p %s exec -T db pg_dump -U challengeuser telemetry_db > %s' % (project, target)],
              target, env=stack.env, cwd=benchlib.APP)

        target = os.path.join(out, 'backup.dump')
        timed('pg_dump -Fc', ['sh', '-c', 'docker-compose -p %s exec -T db pg_dump -Fc -U challengeuser telemetry_db > %s' % (project, target)],
              target, env=stack.env, cwd=benchlib.APP)

        try:
            timed('pg_dump -Fd -j2', ['docker', 'exec', container, 'pg_dump', '-Fd', '-j2', '-f', '/tmp/bench.dir', '-U', 'challengeuser',
                                      'telemetry_db'])
            results['pg_dump -Fd -j2']['size'] = int(subprocess.run(['docker', 'exec', container, 'du', '-sb', '/tmp/bench.dir'],
                                                                    capture_output=True, text=True, check=True).stdout.split()[0])
        finally:
            subprocess.run(['docker', 'exec', container, 'rm', '-rf', '/tmp/bench.dir'], check=False)

        target = os.path.join(out, 'raw-host.sql.zst')
        timed(RAW_HOST, ['bash', '-o', 'pipefail', '-c', 'pg_dump -h %s -U challengeuser -d telemetry_db --format=plain --clean --if-exists '
                         '| zstd -q -c -1 -T0 > %s' % (stack.address(), target)], target, env=dict(stack.env, PGPASSWORD=stack.password))

        target = os.path.join(out, 'raw.sql.zst')
        timed(RAW, ['bash', '-o', 'pipefail', '-c', 'docker exec -i %s pg_dump -U challengeuser -d telemetry_db --format=plain --clean '
                    '--if-exists | zstd -q -c -1 -T0 > %s' % (container, target)], target)

        if extra:
            for level in (0, 1):
                name = 'pg_dump -Fd -j2 -Z%d' % level
                try:
                    timed(name, ['docker', 'exec', container, 'pg_dump', '-Fd', '-j2', '-Z%d' % level, '-f', '/tmp/bench.dir', '-U', 'challengeuser',
                                 'telemetry_db'])
                    results[name]['size'] = int(subprocess.run(['docker', 'exec', container, 'du', '-sb', '/tmp/bench.dir'],
                                                               capture_output=True, text=True, check=True).stdout.split()[0])
                finally:
                    subprocess.run(['docker', 'exec', container, 'rm', '-rf', '/tmp/bench.dir'], check=False)

        variants = [(COLLECTION, '')] + (list(EXTRA_VARIANTS) if extra else [])
        for name, options in variants:
            run = timed(name, benchlib.ansible_module_argv(benchlib.MODULE_BACKUP, stack.module_args('backup_dir=%s%s' % (out, options)),
                                                           vars_file), env=stack.env)
            result = benchlib.module_result(run['stdout'])
            results[name]['size'] = size_of(result['path'])
            results[name]['artifact'] = os.path.basename(result['path'])
            results[name]['timings'] = result['timings']
            results[name]['dump_client'] = result.get('dump_client')
        benchlib.log('scale %dx: ansible-core alone (%s)' % (stack.scale, FLOOR))
        floor = measure(benchlib.ansible_module_argv('ansible.builtin.command', 'sleep 3', vars_file))
        loads.append(benchlib.load_line())
    finally:
        shutil.rmtree(out, ignore_errors=True)
        os.unlink(vars_file)
        if not keep:
            stack.down()
    return {'results': results, 'loads': loads, 'db_size': db_size, 'floor': {'peak': floor['peak'], 'breakdown': floor['breakdown']}}


def print_table(scale, measured):
    results = measured['results']
    base, ours = results[RUNBOOK], results[COLLECTION]
    # The raw command the collection drives: the host's pg_dump when it chose the host (dump_client=auto with a password).
    raw = results[RAW_HOST] if (ours.get('dump_client') or {}).get('used') == 'host' else results[RAW]
    print('\n### Backup, scale %sx (database %.2f GB, runbook .sql %.2f GB)\n' % (scale, measured['db_size'] / 1e9, base['size'] / 1e9))
    print('Load: %s\n' % ' / '.join(measured['loads']))
    rows = []
    for name, res in results.items():
        rows.append([name, '%.1f' % res['wall'], '%.2f' % (res['size'] / 1e9), '%.0f' % (res['peak'] / MIB), '%.2f' % (res['wall'] / base['wall']),
                     '%.2f' % (res['size'] / base['size']), '%.2f' % (res['size'] / raw['size'])])
    print(benchlib.markdown_table(['procedure', 'wall s', 'size GB', 'peak MiB PSS (host side)', 'wall / runbook', 'size / runbook',
                                   'size / raw'], rows))
    print('\ncollection artifact: %s; its peak sample (MiB PSS): %s' % (ours['artifact'], benchlib.describe_breakdown(ours['breakdown'])))
    floor = measured['floor']
    print('ansible-core alone, %s: peak %.0f MiB PSS (%s)' % (FLOOR, floor['peak'] / MIB, benchlib.describe_breakdown(floor['breakdown'])))
    for name, res in results.items():
        if 'timings' in res:
            timings = ', '.join('%s %.1f' % kv for kv in sorted(res['timings'].items()))
            rest = res['wall'] - res['timings'].get('total_seconds', 0)
            print('%s: module timings %s; ansible and the rest %.1f s; pg_dump ran on the %s (%s)'
                  % (name, timings, rest, (res.get('dump_client') or {}).get('used'), (res.get('dump_client') or {}).get('reason')))
    print('')
    checks = [('wall time <= %.1fx runbook' % WALL_TARGET, ours['wall'] / base['wall'], WALL_TARGET),
              ('size <= %.1fx runbook .sql' % SIZE_TARGET, ours['size'] / base['size'], SIZE_TARGET),
              ('size <= %.1fx raw pg_dump | zstd' % RAW_SIZE_TARGET, ours['size'] / raw['size'], RAW_SIZE_TARGET)]
    rows = [[label, '%.2fx' % value, benchlib.verdict(value <= limit)] for label, value, limit in checks]
    rows.append(['peak memory <= %d MiB (whole tree: ansible, its worker, the module and its commands)' % PEAK_TARGET_MIB,
                 '%.0f MiB' % (ours['peak'] / MIB), benchlib.verdict(ours['peak'] / MIB <= PEAK_TARGET_MIB)])
    rows.append(['peak memory <= %d MiB (the module process and its commands only)' % PEAK_TARGET_MIB,
                 '%.0f MiB' % (ours['peak_module'] / MIB), benchlib.verdict(ours['peak_module'] / MIB <= PEAK_TARGET_MIB)])
    rows.append(['(for reference) whole tree minus ansible-core alone with a trivial module', '%.0f MiB' % ((ours['peak'] - floor['peak']) / MIB),
                 ''])
    print(benchlib.markdown_table(['target', 'measured', ''], rows))


def print_flatness(all_results):
    scales = sorted(all_results)
    print('\n### Backup memory from %dx to %dx\n' % (scales[0], scales[-1]))
    series = [('collection peak MiB PSS, %s' % label, dict((s, all_results[s]['results'][COLLECTION][key]) for s in scales))
              for key, label in (('peak', 'whole tree'), ('peak_module', 'module and its commands'))]
    print(benchlib.flatness_table(series, FLAT_TARGET))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--scales', default='1', help='comma-separated dataset scales, 1 = about 1.5 GB (default: %(default)s; the memory check uses 1,4)')
    parser.add_argument('--workdir', default=benchlib.DEFAULT_WORKDIR, help='where artifacts are written (default: %(default)s)')
    parser.add_argument('--extra', action='store_true', help='also time pg_dump -Fd -j2 -Z0/-Z1 and the collection with format=directory, '
                                                             'gzip -1, jobs=2 (the candidates for a faster default)')
    parser.add_argument('--keep', action='store_true', help='keep the seeded stacks for the next run, of this or the restore benchmark '
                                                            '(seeding is the slow part; remove them with bash bench/run.sh clean)')
    args = parser.parse_args()
    benchlib.terminate_on_sigterm()
    os.makedirs(args.workdir, exist_ok=True)
    all_results = {}
    for scale in benchlib.parse_scales(args.scales):
        all_results[scale] = run_scale(benchlib.Stack(scale, args.workdir), args.workdir, args.keep, args.extra)
        print_table(scale, all_results[scale])
        sys.stdout.flush()
    if len(all_results) > 1:
        print_flatness(all_results)


if __name__ == '__main__':
    main()
