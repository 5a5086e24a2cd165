#!/usr/bin/env python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Playbook benchmark: what users run (``ansible-playbook`` of backup.yml, restore.yml, dr_drill.yml) against the runbook.

On the stack of one scale (1 = about 1.5 GB, shared with the other benchmarks, see benchlib.py) it times, end to end
and in the same run, as ``ansible-playbook -i <inventory>`` runs them with the roles' defaults:

* backup: the runbook's ``docker-compose -p <project> exec -T db pg_dump -U challengeuser telemetry_db > backup.sql``
  against ``playbooks/backup.yml`` (its artifact goes to ``<workdir>/playbooks-<scale>/backups``; retention off);
* restore: the runbook's ``down -v``, ``up -d db`` (until the server accepts connections), then
  ``cat backup.sql | docker-compose exec -T db psql -U challengeuser -d telemetry_db`` into an empty schema (``DROP
  SCHEMA public CASCADE; CREATE SCHEMA public`` first, timed, as restore_bench's runbook-empty: the example stack's init
  scripts create the tables, into which the plain dump does not load every row), against
  ``playbooks/restore.yml -e restore_confirm=true`` of the newest backup.yml artifact (the role picks it)
  - with a database to save: the stack up, holding the seeded rows, so the role takes its safety dump;
  - with no database to save: after an untimed ``down -v`` (no container, no volume: a host after the loss), so the
    safety check finds no database to dump and the role goes on without one (``restore_unreachable=continue``);
* ``playbooks/dr_drill.yml`` (the newest backup into a scratch stack beside production): its wall time and the RTO of
  its report (``<backup_dir>/drill-reports/drill_*.json``), both against the runbook's restore.

The inventory (JSON, 0600) holds the group telemetry_db with one local host (this interpreter), the stack's compose
project and the backup directory; the encryption key and the database password come from a 0600 vars file given with
``-e @file``. Every playbook runs with the callback ``ansible.posix.profile_tasks`` (when the bundled collections have
it), whose recap gives the per-task breakdown printed for the median run of each playbook. Each repetition alternates
the order: the backups swap, the restores rotate. After every restore (untimed) the exact row counts of every table
are compared with the seeded ones (after the drill: its report's status and table checks, and production's rows).

It prints Markdown: the medians, the ratios to the runbook's, the backup sizes, the peak memory of the largest
module of each playbook (its process and the commands it runs, sampled every 0.5 s anywhere on the host, since the
async jobs leave ansible-playbook's tree), the targets of issue #14 with met / MISSED, the top tasks of each
playbook, the load average and the command. Progress goes to stderr. Run it with
``bash bench/run.sh playbooks [--repeat 3] [--keep]``.
"""

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import statistics
import sys
import time

import benchlib
from benchlib import measure

PLAYBOOKS = os.path.join(benchlib.REPO, 'playbooks')
PROFILE_CALLBACK = 'ansible.posix.profile_tasks'
# Memory: every half second, the largest module subtree on the host (benchlib.host_module_peak: the async jobs run
# outside ansible-playbook's tree); a slower interval than the module benchmarks' keeps the sampler off the 2 cores.
INTERVAL = 0.5
MEMORY_LIMIT_MIB = 100
TOP_TASKS = 8

RUNBOOK_BACKUP = 'runbook-backup'
BACKUP = 'backup.yml'
RUNBOOK_RESTORE = 'runbook-restore'
RESTORE_SAFETY = 'restore.yml'
RESTORE_EMPTY = 'restore.yml-nodb'
DRILL = 'dr_drill.yml'
BACKUPS = (RUNBOOK_BACKUP, BACKUP)
RESTORES = (RUNBOOK_RESTORE, RESTORE_SAFETY, RESTORE_EMPTY, DRILL)
LABELS = {
    RUNBOOK_BACKUP: 'runbook backup: `docker-compose exec -T db pg_dump > backup.sql`',
    BACKUP: '`backup.yml` (defaults)',
    RUNBOOK_RESTORE: 'runbook restore: `down -v`, `up -d db`, wait, `cat backup.sql | psql` (empty schema)',
    RESTORE_SAFETY: '`restore.yml -e restore_confirm=true`, database to save (safety dump)',
    RESTORE_EMPTY: '`restore.yml -e restore_confirm=true`, no database to save (after `down -v`)',
    DRILL: '`dr_drill.yml` (playbook wall)',
}
# (label, procedure, value key, baseline procedure, size?, limit)
TARGETS = (
    ('`backup.yml` wall <= 0.8x the runbook backup', BACKUP, 'wall', RUNBOOK_BACKUP, 0.8),
    ('`backup.yml` artifact <= 0.45x the runbook `backup.sql`', BACKUP, 'size', RUNBOOK_BACKUP, 0.45),
    ('`restore.yml` with safety dump and full verification <= 1.3x the runbook restore', RESTORE_SAFETY, 'wall', RUNBOOK_RESTORE, 1.3),
    ('`restore.yml` with no database to save <= 1.0x the runbook restore', RESTORE_EMPTY, 'wall', RUNBOOK_RESTORE, 1.0),
    ('`dr_drill.yml` RTO (its report\'s rto_seconds) <= 1.0x the runbook restore', DRILL, 'rto', RUNBOOK_RESTORE, 1.0),
    ('`dr_drill.yml` playbook wall <= 1.0x the runbook restore', DRILL, 'wall', RUNBOOK_RESTORE, 1.0),
)


def profile_callback_available():
    """True when ansible.posix (with profile_tasks) is on the collection path ansible-playbook uses."""
    for root in os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep):
        if root and os.path.exists(os.path.join(root, 'ansible_collections', 'ansible', 'posix', 'plugins', 'callback', 'profile_tasks.py')):
            return True
    return False


def parse_profile(stdout):
    """The ``TASKS RECAP`` of profile_tasks: ``[(task name, seconds), ...]`` as it prints them (longest first)."""
    tasks, inside = [], False
    for line in stdout.splitlines():
        if line.startswith('TASKS RECAP'):
            inside = True
            continue
        if not inside or line.startswith('=') or not line.strip():
            continue
        match = re.search(r'\s(\d+\.\d+)s$', line)
        if match:
            tasks.append((line[:match.start()].rstrip().rstrip('-').rstrip(), float(match.group(1))))
    return tasks


def newest(pattern):
    found = glob.glob(pattern)
    return max(found, key=os.path.getmtime) if found else None


class Bench(benchlib.StackWork):
    def __init__(self, stack, workdir, profile):
        # The roles' secrets, in StackWork's 0600 vars file (given with -e @file).
        super(Bench, self).__init__(stack, workdir, 'playbooks', {'fleet_dr_encryption_key': stack.key, 'fleet_dr_db_password': stack.password})
        shutil.rmtree(self.out, ignore_errors=True)
        self.backup_dir = os.path.join(self.out, 'backups')
        self.runbook_dir = os.path.join(self.out, 'runbook')
        os.makedirs(self.backup_dir, mode=0o700)
        os.makedirs(self.runbook_dir)
        self.runbook_sql = os.path.join(self.runbook_dir, 'backup.sql')
        self.inventory = os.path.join(self.out, 'inventory.json')
        variables = {
            'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable,
            'fleet_dr_project_src': benchlib.APP, 'fleet_dr_project_name': stack.project, 'fleet_dr_backup_dir': self.backup_dir,
            # The bench keeps every backup it takes (the restores pick the newest); the roles' defaults otherwise.
            'backup_retention': False,
        }
        fd = os.open(self.inventory, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as handle:
            json.dump({'all': {'children': {'telemetry_db': {'hosts': {'fdrbench': {}}, 'vars': variables}}}}, handle)
        # What a user's shell gives compose (the stack's password, port and container name), without the application's key:
        # the playbooks get the key from the vars file.
        self.env = dict(stack.env, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', ANSIBLE_RETRY_FILES_ENABLED='False',
                        ANSIBLE_DEPRECATION_WARNINGS='False')
        self.env.pop('ENCRYPTION_KEY', None)
        self.env.pop('ANSIBLE_CONFIG', None)
        if profile:
            self.env.update(ANSIBLE_CALLBACKS_ENABLED=PROFILE_CALLBACK, PROFILE_TASKS_TASK_OUTPUT_LIMIT='all',
                            PROFILE_TASKS_SUMMARY_ONLY='true')

    def playbook(self, name, *extra):
        """Time ``ansible-playbook -i <inventory> playbooks/<name> -e @<vars file> <extra>``."""
        argv = ['ansible-playbook', '-i', self.inventory, os.path.join(PLAYBOOKS, name), '-e', '@%s' % self.vars_file] + list(extra)
        run = measure(argv, env=self.env, cwd=self.out, interval=INTERVAL, modules_anywhere=True)
        return {'wall': run['wall'], 'tasks': parse_profile(run['stdout']), 'peak': run['peak_subtree'], 'peak_module': run['peak_module']}

    def compose_sh(self, command):
        return measure(['sh', '-c', command], env=self.stack.env, cwd=benchlib.APP, interval=INTERVAL, subtree=None)

    # Backups ------------------------------------------------------------------------------------

    def runbook_backup(self):
        benchlib.sync()
        run = self.compose_sh('docker-compose -p %s exec -T db pg_dump -U challengeuser telemetry_db > %s' % (
            self.stack.project, shlex.quote(self.runbook_sql)))
        return {'wall': run['wall'], 'size': benchlib.size_of(self.runbook_sql)}

    def backup_playbook(self):
        benchlib.sync()
        before = set(os.listdir(self.backup_dir))
        result = self.playbook(BACKUP)
        made = [n for n in set(os.listdir(self.backup_dir)) - before
                if not (n.startswith('.') or n.endswith('.manifest.json') or os.path.isdir(os.path.join(self.backup_dir, n)))]
        if len(made) != 1:
            raise benchlib.CommandFailed('backup.yml made %r in %s, not one artifact' % (sorted(made), self.backup_dir))
        result.update(size=benchlib.size_of(os.path.join(self.backup_dir, made[0])), artifact=made[0])
        return result

    # Restores -----------------------------------------------------------------------------------

    def runbook_restore(self):
        stack = self.stack
        started = time.monotonic()
        stack.recreate()
        psql = 'docker-compose -p %s exec -T db psql -U challengeuser -d telemetry_db' % stack.project
        self.compose_sh('%s -q -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"' % psql)
        run = self.compose_sh('cat %s | %s' % (shlex.quote(self.runbook_sql), psql))
        return {'wall': time.monotonic() - started, 'psql_errors': run['stderr'].count('ERROR:')}

    def restore_playbook(self, save):
        """restore.yml of the newest backup.yml artifact; with ``save`` false the stack is removed (untimed) first."""
        if not save:
            self.stack.down()
        result = self.playbook('restore.yml', '-e', 'restore_confirm=true')
        report = self.report('reports', 'restore_*.json')
        result['rto'] = report.get('rto_seconds')
        safety = report.get('safety_dump') or {}
        result['safety_dump'] = bool(safety.get('path'))
        if result['safety_dump'] != save:
            raise benchlib.CommandFailed('restore.yml %s a safety dump, expected %s (report: %r)' % (
                'took' if result['safety_dump'] else 'took no', 'one' if save else 'none', safety))
        # Untimed: the safety dumps would fill the disk and are no candidates of the next restore anyway.
        shutil.rmtree(os.path.join(self.backup_dir, 'safety'), ignore_errors=True)
        return result

    def drill(self):
        result = self.playbook(DRILL)
        report = self.report('drill-reports', 'drill_*.json')
        result['rto'] = report.get('rto_seconds')
        bad = [t.get('table') for t in report.get('tables', []) if not t.get('ok')]
        result['drill_check'] = report.get('status') == 'passed' and not bad and result['rto'] is not None
        if not result['drill_check']:
            raise benchlib.CommandFailed('dr_drill.yml: report status %r, tables not ok %r' % (report.get('status'), bad))
        return result

    def report(self, subdir, pattern):
        """The newest report ``<backup_dir>/<subdir>/<pattern>`` (the roles' default report directories)."""
        path = newest(os.path.join(self.backup_dir, subdir, pattern))
        if not path:
            raise benchlib.CommandFailed('no report %s in %s/%s' % (pattern, self.backup_dir, subdir))
        with open(path) as handle:
            return json.load(handle)

    def restore(self, name, reference):
        benchlib.log('restore: %s' % name)
        if name == RUNBOOK_RESTORE:
            result = self.runbook_restore()
        elif name == DRILL:
            result = self.drill()
        else:
            result = self.restore_playbook(name == RESTORE_SAFETY)
        result['wrong'] = self.stack.count_differences(reference)
        return result


def run(args, profile):
    stack = benchlib.Stack(args.scale, args.workdir)
    bench = Bench(stack, args.workdir, profile)
    runs = dict((name, []) for name in BACKUPS + RESTORES)
    complete = False
    try:
        reference = stack.ensure_seeded()
        db_size = stack.database_size()
        benchlib.log('warm-up dump (untimed)')
        stack.warm_up()
        loads = [benchlib.load_line()]
        for rep in range(args.repeat):
            for name in BACKUPS if rep % 2 == 0 else tuple(reversed(BACKUPS)):
                benchlib.log('run %d/%d: %s' % (rep + 1, args.repeat, name))
                runs[name].append(bench.runbook_backup() if name == RUNBOOK_BACKUP else bench.backup_playbook())
            if stack.counts() != reference:
                raise benchlib.CommandFailed('the source database changed while the backups were taken')
            shift = rep % len(RESTORES)
            for name in RESTORES[shift:] + RESTORES[:shift]:
                runs[name].append(bench.restore(name, reference))
        loads.append(benchlib.load_line())
        complete = not stack.count_differences(reference)
    finally:
        bench.finish(args.keep, complete)
    return {'runs': runs, 'loads': loads, 'db_size': db_size, 'reference': reference, 'scale': args.scale}


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------

def med(runs, key):
    return statistics.median(r[key] for r in runs)


def memory(runs):
    """The largest module's peak of a playbook over all its runs, and which module it was ('' for the runbook's)."""
    if 'peak' not in runs[0]:
        return ''
    top = max(runs, key=lambda r: r['peak'])
    return '%.0f (%s)' % (top['peak'] / benchlib.MIB, module_name(top['peak_module']))


def module_name(process):
    """``pg_restore_verify`` of ``python3 AnsiballZ_pg_restore_verify.py`` (or of the ``sh -c`` that runs it)."""
    match = re.search(r'AnsiballZ_(\w+)\.py', process or '')
    return match.group(1) if match else (process or '-')


def detail(name, runs, reference):
    res = benchlib.median_run(runs)
    parts = []
    if 'artifact' in res:
        parts.append(res['artifact'])
    if res.get('rto') is not None:
        parts.append('report RTO %.1f s' % res['rto'])
    if res.get('psql_errors'):
        parts.append('%d psql ERRORs' % res['psql_errors'])
    if name in RESTORES:
        bad = [r for r in runs if r['wrong']]
        parts.append(benchlib.describe_rows(reference, bad[0]['wrong'] if bad else {}) + (
            ' (in %d of %d runs)' % (len(bad), len(runs)) if bad else ''))
    return '; '.join(parts)


def report(measured, command, profile):
    runs, reference = measured['runs'], measured['reference']
    repeats = len(runs[BACKUP])
    lines = ['## Playbooks end to end against the runbook, %dx (database %.2f GB), medians of %d runs' % (
        measured['scale'], measured['db_size'] / 1e9, repeats), '', 'Command: `%s`' % command, '', 'Load: %s' % ' / '.join(measured['loads']), '']
    rows = []
    for name in BACKUPS + RESTORES:
        base = RUNBOOK_BACKUP if name in BACKUPS else RUNBOOK_RESTORE
        wall = med(runs[name], 'wall')
        size = '%.2f' % (med(runs[name], 'size') / 1e9) if name in BACKUPS else ''
        rows.append([LABELS[name], '%.1f' % wall, '%.2f' % (wall / med(runs[base], 'wall')), size, memory(runs[name]),
                     detail(name, runs[name], reference)])
    rows.append(['`dr_drill.yml` RTO (report)', '%.1f' % med(runs[DRILL], 'rto'), '%.2f' % (med(runs[DRILL], 'rto') / med(runs[RUNBOOK_RESTORE], 'wall')),
                 '', '', 'rto_seconds of its report'])
    lines.append(benchlib.markdown_table(['procedure', 'median wall s', 'ratio to the runbook\'s', 'size GB',
                                          'largest module, peak MiB (all runs)', 'details (median run)'], rows))
    lines += ['', 'All runs, in order (wall s): ' + '; '.join(
        '%s %s' % (name, ' '.join('%.1f' % r['wall'] for r in runs[name])) for name in BACKUPS + RESTORES)]
    targets = []
    for label, name, key, base, limit in TARGETS:
        base_key = 'wall' if key == 'rto' else key
        ratio = med(runs[name], key) / med(runs[base], base_key)
        targets.append([label, '%.2fx' % ratio, benchlib.verdict(ratio <= limit)])
    peak = max((r for name in (BACKUP, RESTORE_SAFETY, RESTORE_EMPTY, DRILL) for r in runs[name]), key=lambda r: r['peak'])
    targets.append(['module-side peak memory <= %d MiB (the largest module of any playbook run, with the commands it runs)'
                    % MEMORY_LIMIT_MIB, '%.0f MiB (%s)' % (peak['peak'] / benchlib.MIB, module_name(peak['peak_module'])),
                    benchlib.verdict(peak['peak'] <= MEMORY_LIMIT_MIB * benchlib.MIB)])
    restores = [r for name in RESTORES for r in runs[name]]
    bad = sum(1 for r in restores if r['wrong'])
    targets.append(['every restore: exact row count of each of the %d tables' % len(reference),
                    '%d of %d exact' % (len(restores) - bad, len(restores)), benchlib.verdict(not bad)])
    lines += ['', '### Targets (issue #14)', '', benchlib.markdown_table(['target', 'measured', ''], targets)]
    lines += ['', '### Where the playbooks\' time goes (profile_tasks, median run, top %d tasks)' % TOP_TASKS]
    if not profile:
        lines += ['', '%s is not on the collection path: no per-task breakdown.' % PROFILE_CALLBACK]
    for name in (BACKUP, RESTORE_SAFETY, RESTORE_EMPTY, DRILL):
        res = benchlib.median_run(runs[name])
        tasks = res['tasks']
        if not tasks:
            continue
        shown = tasks[:TOP_TASKS]
        rest = tasks[TOP_TASKS:]
        lines += ['', '%s, %.1f s (tasks %.1f s, ansible start-up and the rest %.1f s):' % (
            LABELS[name], res['wall'], sum(s for dummy, s in tasks), res['wall'] - sum(s for dummy, s in tasks))]
        lines += ['- %.1f s %s' % (seconds, task) for task, seconds in shown]
        if rest:
            lines.append('- %.1f s in the %d other tasks (%.1f s at the most)' % (sum(s for dummy, s in rest), len(rest), rest[0][1]))
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--scale', type=int, default=1, help='dataset scale, 1 = about 1.5 GB (default: %(default)s)')
    args = benchlib.parse_run_args(parser, 'backups, inventory and runbook dump go to <workdir>/playbooks-<scale>')
    benchlib.terminate_on_sigterm()
    os.makedirs(args.workdir, exist_ok=True)
    profile = profile_callback_available()
    if not profile:
        benchlib.log('%s not found on ANSIBLE_COLLECTIONS_PATH: no per-task breakdown' % PROFILE_CALLBACK)
    command = ' '.join(['bash bench/run.sh playbooks'] + [shlex.quote(a) for a in sys.argv[1:]])
    print(report(run(args, profile), command, profile))


if __name__ == '__main__':
    main()
