#!/usr/bin/env python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Encryption benchmark: the collection's backup and restore with age encryption against the same without, in one run.

It makes an age identity (``age-keygen -o <workdir>/identity.txt``, 0600, removed at the end of the run) and its
recipient (``age-keygen -y``). On the stack of each scale (1 = about 1.5 GB, shared with the backup and restore
benchmarks, see benchlib.py) it dumps the database once untimed (a warm cache for every backup), then times,
``--repeat`` times and alternating which of the two goes first from one repetition to the next:

* backup, clear: ``ansible -m fleet_telemetry.dr.pg_logical_backup`` with its defaults, ``encryption_key`` and
  ``db_password`` (as in backup_bench.py and as the backup role gives them), into an empty directory;
* backup, age: the same with ``encryption=age age_recipients=[<recipient>]``.

The last backup of each kind is kept; the encrypted one is checked (untimed) to be an age file named ``.age`` whose
result reports the recipient's fingerprint, and both go through ``preflight_only=true`` of the restore module, so that
a missing option or a wrong identity fails before the first (destructive) restore. Then, ``--repeat`` times and
alternating in the same way, each is restored into the stack from the state restore_bench.py's collection procedure
starts from (``docker-compose down -v``, ``up -d db``, wait until the server accepts connections; not timed here):

* restore, clear: ``ansible -m fleet_telemetry.dr.pg_restore_verify`` with its defaults, ``encryption_key`` and
  ``db_password`` (checksum and manifest, key preflight, restore, exact row counts, every photo decrypted, ANALYZE);
* restore, age: the same with ``age_identity_file=<identity>``.

After each restore the exact row count of every table is compared (untimed) with the seeded database's.

The wall time of a procedure is the ``ansible`` command's; its memory is the peak of the summed PSS of the module's
process and the commands it runs (benchlib.measure's ``peak_subtree``: pg_dump, zstd, age, psql...; ansible's own
controller and worker are not counted, they do not change with encryption). It prints, as Markdown to paste under the
heading "Encrypted backup and restore" of bench/RESULTS.md, the medians, the ratios encrypted / clear, and whether the
targets are met: wall time of the encrypted backup and of the encrypted restore <= 1.10x the clear one's, their
memory flat (encrypted peak <= 1.1x the clear peak + 10 MiB for age itself) and, with more than one scale (``--scales
1,4``), each procedure's peak at the largest scale <= 1.1x the one at the smallest. Progress goes to stderr, the report
to stdout. Run it with ``bash bench/run.sh encryption [--scales 1] [--repeat 3] [--keep]``.
"""

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys

import benchlib
from benchlib import MIB, MODULE_BACKUP, MODULE_RESTORE

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._age import is_encrypted, recipient_fingerprint

CLEAR = 'clear'
AGE = 'age'
KINDS = (CLEAR, AGE)
BACKUP = 'backup'
RESTORE = 'restore'
WALL_TARGET = 1.10
PEAK_FACTOR = 1.1
AGE_ALLOWANCE_MIB = 10
FLAT_TARGET = 1.1
# Module options on top of the defaults, per kind; ``{identity}`` is the identity file's path.
BACKUP_OPTIONS = {CLEAR: '', AGE: ' encryption=age age_recipients={{ bench_age_recipients }}'}
RESTORE_OPTIONS = {CLEAR: '', AGE: ' age_identity_file={identity}'}
LABELS = {
    (BACKUP, CLEAR): 'backup, defaults (`%s`)',
    (BACKUP, AGE): 'backup, `encryption=age`, 1 recipient (`%s`)',
    (RESTORE, CLEAR): 'restore of the clear backup, defaults',
    (RESTORE, AGE): 'restore of the age backup, `age_identity_file`',
}
# Procedures in the order of the report.
PROCEDURES = ((BACKUP, CLEAR), (BACKUP, AGE), (RESTORE, CLEAR), (RESTORE, AGE))


def order(rep):
    """The kinds in the order of one repetition: clear first in even ones, encrypted first in odd ones."""
    return KINDS if rep % 2 == 0 else tuple(reversed(KINDS))


def make_identity(directory):
    """A new age identity file ``<directory>/identity.txt`` (0600, as age-keygen writes it) and its recipient."""
    path = os.path.join(directory, 'identity.txt')
    if os.path.exists(path):
        os.unlink(path)  # age-keygen -o never overwrites
    subprocess.run(['age-keygen', '-o', path], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    recipient = subprocess.run(['age-keygen', '-y', path], capture_output=True, text=True, check=True).stdout.strip()
    return path, recipient


def timings_line(run):
    """A run's module ``timings`` (``name seconds``, sorted by name) and the time outside the module (ansible's own)."""
    timings = run['timings'] or {}
    text = ', '.join('%s %.1f' % (k.replace('_seconds', ''), v) for k, v in sorted(timings.items()) if isinstance(v, (int, float)))
    if isinstance(timings.get('total_seconds'), (int, float)):
        text += '; ansible and the rest %.1f' % (run['wall'] - timings['total_seconds'])
    return text


class Bench(benchlib.StackWork):
    def __init__(self, stack, workdir, identity, recipient):
        super(Bench, self).__init__(stack, workdir, 'encryption', {'bench_age_recipients': [recipient]})
        self.identity, self.recipient = identity, recipient
        shutil.rmtree(self.out, ignore_errors=True)
        os.makedirs(self.out)
        self.artifacts = {}

    def _restore_options(self, kind):
        return RESTORE_OPTIONS[kind].format(identity=self.identity)

    def backup(self, kind):
        """Time one backup into an empty directory; keep its artifact for the restores."""
        backup_dir = os.path.join(self.out, 'backup-%s' % kind)
        shutil.rmtree(backup_dir, ignore_errors=True)
        os.makedirs(backup_dir)
        benchlib.sync()
        run = self.ansible(MODULE_BACKUP, 'backup_dir=%s%s' % (backup_dir, BACKUP_OPTIONS[kind]))
        result = benchlib.module_result(run['stdout'])
        self.check_artifact(kind, result)
        self.artifacts[kind] = result['path']
        return {'wall': run['wall'], 'peak_module': run['peak_subtree'], 'peak': run['peak'], 'breakdown': run['breakdown'],
                'size': benchlib.size_of(result['path']), 'artifact': os.path.basename(result['path']), 'timings': result.get('timings'),
                'client': (result.get('dump_client') or {}).get('used')}

    def check_artifact(self, kind, result):
        """Untimed: the encrypted backup is an age file for our recipient, the clear one is not encrypted."""
        path, encryption = result['path'], result.get('encryption') or {}
        if kind == AGE:
            expected = {'method': 'age', 'recipients': [recipient_fingerprint(self.recipient)]}
            problems = [] if path.endswith('.age') and is_encrypted(path) else ['%s is not an age file named .age' % path]
            if dict((k, encryption.get(k)) for k in expected) != expected:
                problems.append('its result reports encryption %r, not %r' % (encryption, expected))
        else:
            problems = ['the clear backup %s is encrypted (%r)' % (path, encryption)] if is_encrypted(path) or path.endswith('.age') else []
        if problems:
            raise benchlib.CommandFailed('backup %s: %s' % (kind, '; '.join(problems)))

    def preflight(self, kind):
        """Untimed: ``preflight_only=true`` of the restore module (artifact checks and key preflight, nothing written)."""
        benchlib.log('preflight_only of the %s backup (untimed)' % kind)
        self.ansible(MODULE_RESTORE, 'artifact=%s preflight_only=true%s' % (self.artifacts[kind], self._restore_options(kind)))

    def restore(self, kind, reference):
        """Recreate the stack (untimed), time one restore of the kept artifact, then count the rows (untimed)."""
        recreate, dummy = self.stack.recreate()
        run = self.ansible(MODULE_RESTORE, 'artifact=%s%s' % (self.artifacts[kind], self._restore_options(kind)))
        result = benchlib.module_result(run['stdout'])
        return {'wall': run['wall'], 'peak_module': run['peak_subtree'], 'peak': run['peak'], 'breakdown': run['breakdown'],
                'recreate': recreate, 'timings': result.get('timings'), 'client': (result.get('restore_client') or {}).get('used'),
                'wrong': self.stack.count_differences(reference)}


def run_scale(scale, args, identity, recipient):
    """Every procedure on the stack of one scale; return the runs, loads and sizes."""
    stack = benchlib.Stack(scale, args.workdir)
    bench = Bench(stack, args.workdir, identity, recipient)
    runs = dict((procedure, []) for procedure in PROCEDURES)
    complete = False
    try:
        reference = stack.ensure_seeded()
        db_size = stack.database_size()
        benchlib.log('scale %dx: warm-up dump (untimed)' % scale)
        stack.warm_up()
        loads = [benchlib.load_line()]
        for rep in range(args.repeat):
            for kind in order(rep):
                benchlib.log('scale %dx, run %d/%d: backup, %s' % (scale, rep + 1, args.repeat, kind))
                runs[(BACKUP, kind)].append(bench.backup(kind))
        if stack.counts() != reference:
            raise benchlib.CommandFailed('the source database changed while the backups were taken')
        for kind in KINDS:
            bench.preflight(kind)
        for rep in range(args.repeat):
            for kind in order(rep):
                benchlib.log('scale %dx, run %d/%d: restore, %s' % (scale, rep + 1, args.repeat, kind))
                runs[(RESTORE, kind)].append(bench.restore(kind, reference))
        loads.append(benchlib.load_line())
        complete = not runs[(RESTORE, order(args.repeat - 1)[-1])][-1]['wrong']
    finally:
        bench.finish(args.keep, complete)
    return {'runs': runs, 'loads': loads, 'db_size': db_size, 'reference': reference}


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------

def med(runs, key):
    return statistics.median(r[key] for r in runs)


def age_version():
    return subprocess.run(['age', '--version'], capture_output=True, text=True, check=False).stdout.strip() or '?'


def scale_report(scale, measured, command):
    runs, reference = measured['runs'], measured['reference']
    repeats = len(runs[PROCEDURES[0]])
    lines = ['### %dx (database %.2f GB), medians of %d runs' % (scale, measured['db_size'] / 1e9, repeats), '',
             'Command: `%s`; age %s.' % (command, age_version()), '', 'Load: %s' % ' / '.join(measured['loads']), '']
    rows = []
    for step, kind in PROCEDURES:
        name_runs = runs[(step, kind)]
        clear = runs[(step, CLEAR)]
        res = benchlib.median_run(name_runs)
        label = LABELS[(step, kind)]
        if step == BACKUP:
            label %= res['artifact'].split('.', 1)[1]
            detail = 'pg_dump on the %s; module: %s' % (res['client'], timings_line(res))
            rows_check = ''
        else:
            detail = 'recreate (untimed) %.1f s; %s client; module: %s' % (res['recreate'], res['client'], timings_line(res))
            bad = [r for r in name_runs if r['wrong']]
            rows_check = benchlib.describe_rows(reference, bad[0]['wrong'] if bad else {})
            if bad:
                rows_check += ' (in %d of %d runs)' % (len(bad), len(name_runs))
        # A restore restores the last backup of its kind.
        size = runs[(BACKUP, kind)][-1]['size']
        rows.append([label, '%.1f' % med(name_runs, 'wall'), '%.2f' % (med(name_runs, 'wall') / med(clear, 'wall')),
                     '%.0f' % (med(name_runs, 'peak_module') / MIB), '%.0f' % (med(name_runs, 'peak') / MIB), '%.2f' % (size / 1e9), rows_check,
                     detail])
    lines.append(benchlib.markdown_table(
        ['procedure (`ansible -m`)', 'wall s', 'encrypted / clear', 'peak MiB PSS, module and its commands', 'peak MiB PSS, whole tree',
         'artifact GB', 'rows after restore', 'details (median run; module timings in s)'], rows))
    lines += ['', 'All runs, in order (wall s / module-side peak MiB); encrypted / clear wall within each repetition:']
    for step in (BACKUP, RESTORE):
        for kind in KINDS:
            lines.append('- %s, %s: %s' % (step, kind, '; '.join('%.1f / %.0f' % (r['wall'], r['peak_module'] / MIB) for r in runs[(step, kind)])))
        ratios = [a['wall'] / c['wall'] for a, c in zip(runs[(step, AGE)], runs[(step, CLEAR)])]
        lines.append('- %s, encrypted / clear: %s' % (step, ', '.join('%.2f' % x for x in ratios)))
    for procedure in PROCEDURES:
        lines.append('- %s, %s: peak sample of the median run (MiB PSS): %s' % (
            procedure[0], procedure[1], benchlib.describe_breakdown(benchlib.median_run(runs[procedure])['breakdown'])))
    lines += ['', benchlib.markdown_table(['target', 'measured', ''], checks(runs, reference))]
    return '\n'.join(lines)


def checks(runs, reference):
    rows = []
    for step in (BACKUP, RESTORE):
        ratio = med(runs[(step, AGE)], 'wall') / med(runs[(step, CLEAR)], 'wall')
        rows.append(['%s: wall time encrypted <= %.2fx clear' % (step, WALL_TARGET), '%.2fx' % ratio, benchlib.verdict(ratio <= WALL_TARGET)])
    for step in (BACKUP, RESTORE):
        clear, age = med(runs[(step, CLEAR)], 'peak_module') / MIB, med(runs[(step, AGE)], 'peak_module') / MIB
        limit = PEAK_FACTOR * clear + AGE_ALLOWANCE_MIB
        rows.append(['%s: memory flat, encrypted peak <= %.1fx clear peak + %d MiB (module and its commands)'
                     % (step, PEAK_FACTOR, AGE_ALLOWANCE_MIB), '%.0f MiB (clear %.0f MiB, limit %.0f MiB)' % (age, clear, limit),
                     benchlib.verdict(age <= limit)])
    restores = [r for kind in KINDS for r in runs[(RESTORE, kind)]]
    bad = sum(1 for r in restores if r['wrong'])
    rows.append(['every restore: exact row count of each of the %d tables' % len(reference),
                 '%d of %d restores exact' % (len(restores) - bad, len(restores)), benchlib.verdict(not bad)])
    return rows


def flatness_report(all_results):
    scales = sorted(all_results)
    series = [('%s, %s: peak MiB PSS, module and its commands' % procedure, dict(
        (s, med(all_results[s]['runs'][procedure], 'peak_module')) for s in scales)) for procedure in PROCEDURES]
    return '\n'.join(['### Memory from %dx to %dx (medians)' % (scales[0], scales[-1]), '', benchlib.flatness_table(series, FLAT_TARGET)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--scales', default='1', help='comma-separated dataset scales, 1 = about 1.5 GB (default: %(default)s; the 4x / 1x '
                                                      'memory check uses 1,4)')
    parser.add_argument('--repeat', type=int, default=3, help='runs of every procedure, alternating clear and encrypted first; medians '
                                                              '(default: %(default)s)')
    parser.add_argument('--workdir', default=benchlib.DEFAULT_WORKDIR, help='work directory: the identity is <workdir>/identity.txt, the '
                                                                            'backups go to <workdir>/encryption-<scale> (default: %(default)s)')
    parser.add_argument('--keep', action='store_true', help='keep the stacks (they end holding the restored rows, checked equal to the '
                                                            'seeded ones) for the next run; remove them with bash bench/run.sh clean')
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error('--repeat must be at least 1')
    missing = [tool for tool in ('age', 'age-keygen') if not shutil.which(tool)]
    if missing:
        parser.error('%s not found: install the age package (apt-get install age)' % ' and '.join(missing))
    benchlib.terminate_on_sigterm()
    os.makedirs(args.workdir, exist_ok=True)
    command = ' '.join(['bash bench/run.sh encryption'] + [shlex.quote(a) for a in sys.argv[1:]])
    print('## Encrypted backup and restore')
    all_results = {}
    identity, recipient = make_identity(args.workdir)
    try:
        for scale in benchlib.parse_scales(args.scales):
            all_results[scale] = run_scale(scale, args, identity, recipient)
            print('\n' + scale_report(scale, all_results[scale], command))
            sys.stdout.flush()
    finally:
        os.unlink(identity)
    if len(all_results) > 1:
        print('\n' + flatness_report(all_results))


if __name__ == '__main__':
    main()
