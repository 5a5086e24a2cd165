#!/usr/bin/env python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Restore benchmark: this collection's verified restore against the runbook's and pg_restore -j2, in one run.

On the stack of one scale (1 = about 1.5 GB, shared with the backup benchmark, see benchlib.py) it first
takes, untimed and from the same data, the artifacts the procedures restore: the runbook's ``backup.sql``,
a ``pg_dump -Fc -Z0`` file, and backups by ``fleet_telemetry.dr.pg_logical_backup`` (with its defaults,
which is what a user restores, and as a custom archive without compression). Then it times each
procedure end to end into a freshly recreated stack, every one starting with ``docker-compose down -v``,
``up -d db`` and waiting until the server accepts connections:

* runbook: ``cat backup.sql | docker-compose exec -T db psql -U challengeuser -d telemetry_db``, exactly
  as written. The example stack's init scripts create the (empty) tables, so the dump's ``CREATE`` and
  ``ADD CONSTRAINT`` statements fail and the ``COPY`` of every table that references one loaded after it
  fails on the foreign key: psql exits 0 with rows missing (the table shows which).
* runbook, empty schema: the same command after ``DROP SCHEMA public CASCADE; CREATE SCHEMA public``,
  i.e. into an empty database as when the application creates its own schema; this one restores every
  row and is the baseline of the target.
* pg_restore -j2: ``docker cp`` of the ``-Fc -Z0`` file into the container, then
  ``pg_restore -j2 --clean --if-exists --no-owner`` there.
* collection: ``ansible -m fleet_telemetry.dr.pg_restore_verify`` with its defaults (checksum, key
  preflight, restore, exact row counts, every photo decrypted, ANALYZE), of each collection backup.

After each procedure the exact row count of every table is compared (untimed) with the source
database's. It prints wall times (with the phases), peak memory of the host-side process tree, the
ratios and whether the target (collection restore, verification included, <= 0.8x the runbook's restore)
is met. Run it with ``bash bench/run.sh restore ...``.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

import benchlib
from benchlib import MIB, MODULE_BACKUP, MODULE_RESTORE, measure

TARGET = 0.8
PROCEDURES = ('runbook', 'runbook-empty', 'pg_restore', 'collection', 'collection-container', 'collection-custom', 'collection-directory')
DEFAULT_PROCEDURES = 'runbook,runbook-empty,pg_restore,collection,collection-custom'
LABELS = {
    'runbook': 'runbook `cat backup.sql | psql`, as written',
    'runbook-empty': 'runbook `cat backup.sql | psql`, empty schema',
    'pg_restore': '`pg_restore -j2` of a `-Fc -Z0` file in the container',
    'collection': 'collection, default backup (%s)',
    'collection-container': 'collection, default backup, restore_client=container (docker exec)',
    'collection-custom': 'collection, custom -Z0 backup, jobs=2',
    'collection-directory': 'collection, directory gzip -1 backup, jobs=2',
}
# Backup options of the collection's artifacts, per procedure (the default backup gets none).
BACKUP_OPTIONS = {
    'collection': '',
    'collection-custom': ' format=custom compression=none',
    'collection-directory': ' format=directory compression=gzip compression_level=1 jobs=2',
}
# Restore options of the collection's procedures that restore another procedure's artifact.
SAME_ARTIFACT = {'collection-container': ('collection', ' restore_client=container')}
BASELINE = 'runbook-empty'


class Bench(benchlib.StackWork):
    def __init__(self, stack, workdir):
        super(Bench, self).__init__(stack, workdir, 'restore')
        self.artifacts = {}
        self.reference = None

    def make_artifacts(self, procedures):
        """Untimed: every artifact the procedures restore, from the same data."""
        stack = self.stack
        shutil.rmtree(self.out, ignore_errors=True)
        os.makedirs(self.out)
        self.reference = stack.counts()
        if 'runbook' in procedures or 'runbook-empty' in procedures:
            benchlib.log('artifact: runbook backup.sql')
            path = os.path.join(self.out, 'backup.sql')
            subprocess.run(['sh', '-c', 'docker-compose -p %s exec -T db pg_dump -U challengeuser telemetry_db > %s' % (stack.project, path)],
                           env=stack.env, cwd=benchlib.APP, check=True)
            self.artifacts['runbook'] = self.artifacts['runbook-empty'] = path
        if 'pg_restore' in procedures:
            benchlib.log('artifact: pg_dump -Fc -Z0')
            path = os.path.join(self.out, 'backup.dump')
            subprocess.run(['sh', '-c', 'docker exec %s pg_dump -Fc -Z0 -U challengeuser -d telemetry_db > %s' % (stack.container, path)],
                           check=True)
            self.artifacts['pg_restore'] = path
        wanted = set(procedures) | set(SAME_ARTIFACT[p][0] for p in procedures if p in SAME_ARTIFACT)
        for name, options in BACKUP_OPTIONS.items():
            if name not in wanted:
                continue
            benchlib.log('artifact: %s backup%s' % (MODULE_BACKUP, options or ' (defaults)'))
            backup_dir = os.path.join(self.out, name)
            os.makedirs(backup_dir)
            result = benchlib.module_result(self.ansible(MODULE_BACKUP, 'backup_dir=%s%s' % (backup_dir, options))['stdout'])
            self.artifacts[name] = result['path']
        for name, (source, dummy) in SAME_ARTIFACT.items():
            if name in procedures:
                self.artifacts[name] = self.artifacts[source]
        if stack.counts() != self.reference:
            raise benchlib.CommandFailed('the source database changed while the artifacts were taken')
        benchlib.sync()
        return dict((name, (path, benchlib.size_of(path))) for name, path in self.artifacts.items())

    def run(self, name):
        """Time one procedure end to end; return its measurements."""
        stack = self.stack
        artifact = self.artifacts[name]
        phases, peaks, extra = {}, [], {}
        benchlib.log('restore: %s' % name)
        started = time.monotonic()
        # The runbook's first steps: down -v, up -d db, wait until ready (timed as one phase).
        phases['recreate'], compose_peaks = stack.recreate()
        peaks.extend(compose_peaks)
        t0 = time.monotonic()
        if name in ('runbook', 'runbook-empty'):
            psql = 'docker-compose -p %s exec -T db psql -U challengeuser -d telemetry_db' % stack.project
            if name == 'runbook-empty':
                peaks.append(measure(['sh', '-c', '%s -q -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"' % psql], env=stack.env,
                                     cwd=benchlib.APP)['peak'])
            run = measure(['sh', '-c', 'cat %s | %s' % (artifact, psql)], env=stack.env, cwd=benchlib.APP)
            extra['psql_errors'] = run['stderr'].count('ERROR:')
        elif name == 'pg_restore':
            peaks.append(measure(['docker', 'cp', artifact, '%s:/tmp/bench.dump' % stack.container])['peak'])
            phases['copy'] = time.monotonic() - t0
            run = measure(['docker', 'exec', stack.container, 'pg_restore', '-j2', '--clean', '--if-exists', '--no-owner',
                           '-U', 'challengeuser', '-d', 'telemetry_db', '/tmp/bench.dump'], check=False)
            subprocess.run(['docker', 'exec', stack.container, 'rm', '-f', '/tmp/bench.dump'], check=False)
            extra['rc'] = run['rc']
        else:
            run = self.ansible(MODULE_RESTORE, 'artifact=%s%s' % (artifact, SAME_ARTIFACT.get(name, (None, ''))[1]))
            result = benchlib.module_result(run['stdout'])
            extra['module'] = result['timings']
            extra['msg'] = result['msg']
            extra['client'] = result.get('restore_client', {}).get('used')
        phases['restore'] = time.monotonic() - t0
        peaks.append(run['peak'])
        wall = time.monotonic() - started
        breakdown = run['breakdown']
        peak_module = run['peak_subtree']
        wrong = stack.count_differences(self.reference)
        return {'wall': wall, 'phases': phases, 'peak': max(peaks), 'peak_module': peak_module, 'breakdown': breakdown, 'wrong': wrong, 'extra': extra}


PROFILE_QUERIES = (
    ('photos as hex rows through `docker exec psql`', 'host',
     "SELECT id, encode(data, 'hex') FROM photo ORDER BY id"),
    ('photos as binary COPY through `docker exec psql` (the verification with restore_client=container)', 'host',
     'COPY (SELECT id, data FROM photo ORDER BY id) TO STDOUT (FORMAT binary)'),
    ('photos as hex rows, psql inside the container', 'container', "SELECT id, encode(data, 'hex') FROM photo ORDER BY id"),
    ('photos as binary COPY, psql inside the container', 'container', 'COPY (SELECT id, data FROM photo ORDER BY id) TO STDOUT (FORMAT binary)'),
)


def profile(stack):
    """Where the photo verification's time goes: server-side hex encoding vs the bytes through ``docker exec``."""
    rows = []
    psql = ['psql', '-X', '-At', '-U', benchlib.DB_USER, '-d', benchlib.DB_NAME, '-c']
    for label, where, sql in PROFILE_QUERIES:
        if where == 'host':
            argv = ['sh', '-c', 'docker exec %s %s "%s" | wc -c' % (stack.container, ' '.join(psql), sql)]
        else:
            argv = ['docker', 'exec', stack.container, 'sh', '-c', '%s "%s" | wc -c' % (' '.join(psql), sql)]
        run = measure(argv)
        rows.append([label, '%.1f' % run['wall'], '%.2f' % (int(run['stdout'].split()[0]) / 1e9)])
    run = measure(['sh', '-c', 'head -c 1000000000 /dev/zero | docker exec -i %s sh -c "cat > /dev/null"' % stack.container])
    rows.append(['1 GB of zeros into `docker exec -i cat`', '%.1f' % run['wall'], '1.00'])
    return rows


def print_report(stack, db_size, artifacts, results, reference, loads, procedures):
    default_label = LABELS['collection'] % os.path.basename(artifacts['collection'][0]).split('.', 1)[1] if 'collection' in artifacts else ''
    print('\n### Restore, scale %dx (database %.2f GB)\n' % (stack.scale, db_size / 1e9))
    print('Load: %s\n' % ' / '.join(loads))
    base = benchlib.median_run(results[BASELINE]) if BASELINE in results else None
    rows = []
    for name in procedures:
        res = benchlib.median_run(results[name])
        phases = res['phases']
        detail = 'recreate %.1f s' % phases['recreate']
        if 'copy' in phases:
            detail += ', docker cp %.1f s' % phases['copy']
        module = res['extra'].get('module')
        if module:
            detail += ', module (%s client): preflight %.1f s, restore %.1f s, verify %.1f s (photos %.1f s, ANALYZE %.1f s), ansible %.1f s' % (
                res['extra'].get('client'), module.get('preflight_seconds', 0), module.get('restore_seconds', 0), module.get('verify_seconds', 0),
                module.get('photo_seconds', 0), module.get('analyze_seconds', 0), phases['restore'] - module.get('total_seconds', 0))
        else:
            detail += ', restore %.1f s' % phases['restore']
        if res['extra'].get('psql_errors'):
            detail += ', %d psql ERRORs (exit 0)' % res['extra']['psql_errors']
        if res['extra'].get('rc'):
            detail += ', rc=%d' % res['extra']['rc']
        label = default_label if name == 'collection' else LABELS[name]
        size = artifacts[name][1]
        rows.append([label, '%.1f' % res['wall'], '%.2f' % (res['wall'] / base['wall']) if base else '-', '%.2f' % (size / 1e9),
                     '%.0f' % (res['peak'] / MIB), benchlib.describe_rows(reference, res['wrong']), detail])
    print(benchlib.markdown_table(['procedure (end to end, from `down -v`)', 'wall s', 'wall / runbook (empty schema)', 'artifact GB',
                                   'peak MiB PSS (host side)', 'rows after restore', 'phases'], rows))
    repeats = len(results[procedures[0]])
    if repeats > 1:
        print('\nmedian of %d runs; all wall times: %s' % (repeats, '; '.join(
            '%s %s' % (name, ' '.join('%.1f' % r['wall'] for r in results[name])) for name in procedures)))
    if base:
        targets = []
        for name in procedures:
            if name.startswith('collection'):
                ratio = benchlib.median_run(results[name])['wall'] / base['wall']
                ok = ratio <= TARGET and not benchlib.median_run(results[name])['wrong']
                label = default_label if name == 'collection' else LABELS[name]
                targets.append(['%s: wall <= %.1fx runbook restore, verification included' % (label, TARGET), '%.2fx' % ratio,
                                benchlib.verdict(ok)])
        print('\n' + benchlib.markdown_table(['target', 'measured', ''], targets))
    for name in procedures:
        res = benchlib.median_run(results[name])
        print('\n%s: peak sample (MiB PSS): %s%s' % (name, benchlib.describe_breakdown(res['breakdown']), '; module and its commands: %.0f' % (
            res['peak_module'] / MIB) if res['peak_module'] else ''))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--scale', type=int, default=1, help='dataset scale, 1 = about 1.5 GB (default: %(default)s)')
    parser.add_argument('--procedures', default=DEFAULT_PROCEDURES,
                        help='comma-separated procedures among %s (default: %%(default)s; %s is the baseline of the ratios)'
                        % (', '.join(PROCEDURES), BASELINE))
    parser.add_argument('--repeat', type=int, default=1, help='run every procedure this many times, in turn, and report the median '
                                                              '(default: %(default)s)')
    parser.add_argument('--workdir', default=benchlib.DEFAULT_WORKDIR, help='where artifacts are written (default: %(default)s)')
    parser.add_argument('--profile', action='store_true', help='then time the ways of reading every photo out of the restored database')
    parser.add_argument('--keep', action='store_true', help='keep the stack (it ends holding the restored rows, checked equal to the '
                                                            'seeded ones) for the next run; remove it with bash bench/run.sh clean')
    args = parser.parse_args()
    procedures = [p for p in args.procedures.split(',') if p]
    unknown = [p for p in procedures if p not in PROCEDURES]
    if unknown:
        parser.error('unknown procedure(s): %s' % ', '.join(unknown))
    benchlib.terminate_on_sigterm()
    os.makedirs(args.workdir, exist_ok=True)
    stack = benchlib.Stack(args.scale, args.workdir)
    bench = Bench(stack, args.workdir)
    complete = False
    try:
        stack.ensure_seeded()
        db_size = stack.database_size()
        artifacts = bench.make_artifacts(procedures)
        loads = [benchlib.load_line()]
        results = dict((name, []) for name in procedures)
        for dummy in range(args.repeat):
            for name in procedures:
                results[name].append(bench.run(name))
        loads.append(benchlib.load_line())
        complete = not results[procedures[-1]][-1]['wrong']
        print_report(stack, db_size, artifacts, results, bench.reference, loads, procedures)
        sys.stdout.flush()
        if args.profile and complete:
            benchlib.log('profile of the photo reads')
            print('\n#### Photo reads (profile), load %s\n' % benchlib.load_line())
            print(benchlib.markdown_table(['read', 'wall s', 'GB'], profile(stack)))
    finally:
        bench.finish(args.keep, complete)


if __name__ == '__main__':
    main()
