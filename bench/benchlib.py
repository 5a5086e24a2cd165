# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Helpers shared by the benchmarks in bench/: scratch stacks, seeding, measuring, cleanup.

A bench stack is a scratch copy of examples/telemetry_app with its own compose project
(``fdrbench<scale>``), container name, loopback port, password and ENCRYPTION_KEY. Its key and the
exact row counts taken right after seeding are kept in the work directory, so a stack kept with
``--keep`` is reused by the next run (of either benchmark) only when it still holds exactly the
seeded rows; otherwise it is recreated and seeded again.

Peak memory is the sum of PSS over the launched process tree (the host side: ansible and its
workers, docker / docker-compose clients, psql, zstd; processes inside the container are not counted).
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import CONTAINER_ADDRESS_FORMAT

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(REPO, 'examples', 'telemetry_app')
SEED = os.path.join(APP, 'seed.py')
DB_USER = 'challengeuser'
DB_NAME = 'telemetry_db'
PROJECT_PREFIX = 'fdrbench'
BASE_PORT = 55460
# 100 ms: memory of a streaming pipeline is flat, and walking /proc more often costs CPU that the
# measured procedure needs on a 2-core machine.
SAMPLE_INTERVAL = 0.1
READY_TIMEOUT = 300
MIB = 2 ** 20
# The process of an Ansible module run on the controller (AnsiballZ wrapper, which runs the module in-process).
MODULE_MARKER = 'AnsiballZ_'
MODULE_BACKUP = 'fleet_telemetry.dr.pg_logical_backup'
MODULE_RESTORE = 'fleet_telemetry.dr.pg_restore_verify'
DEFAULT_WORKDIR = '/var/tmp/fleet-dr-bench'
# Database MB per unit of scale; a smaller value (environment FLEET_DR_BENCH_MB) makes a quick smoke run of
# the bench code, with its own --workdir and scale so it never meets the stacks of a real run.
MB_PER_SCALE = int(os.environ.get('FLEET_DR_BENCH_MB', '1500'))


def log(message):
    print('[bench] %s' % message, file=sys.stderr, flush=True)


def load_line():
    """The machine's load as ``uptime`` prints it, with the UTC time."""
    uptime = subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()
    return '%s UTC: %s' % (time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime()), uptime)


def terminate_on_sigterm():
    """Turn SIGTERM into SystemExit, so ``finally`` blocks remove the stacks when the run is stopped."""
    def handler(signum, frame):  # pylint: disable=unused-argument
        raise SystemExit('stopped by signal %d' % signum)
    signal.signal(signal.SIGTERM, handler)


# ----------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------

def _pss(pid):
    """Proportional set size of a process in bytes: shared pages are split between their users, so the
    forked Ansible worker that shares most of its memory with its parent is not counted twice."""
    try:
        with open('/proc/%d/smaps_rollup' % pid) as handle:
            for line in handle:
                if line.startswith('Pss:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children():
    """``{parent pid: [child pids]}`` of every process on the host."""
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as handle:
                fields = handle.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def tree_pss(root_pid):
    """PSS (bytes) of ``root_pid`` and each of its descendants: ``[(pid, parent pid, pss), ...]``, parents first."""
    children = _children()
    found, queue = [], [(root_pid, None)]
    while queue:
        pid, parent = queue.pop(0)
        found.append((pid, parent, _pss(pid)))
        queue.extend((child, pid) for child in children.get(pid, []))
    return found


def _process_name(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            argv = handle.read().split(b'\0')
    except OSError:
        return '?'
    words = [os.path.basename(a.decode('utf-8', 'replace')) for a in argv[:3] if a]
    return ' '.join(words)[:60] or '?'


def subtree_total(found, names, marker):
    """PSS sum of the first process whose name contains ``marker`` and its descendants (0 when there is none)."""
    inside = set()
    total = 0
    for pid, parent, pss in found:
        if parent in inside or (not inside and marker in names.get(pid, '')):
            inside.add(pid)
            total += pss
    return total


def host_module_peak(marker=MODULE_MARKER):
    """PSS (bytes) of the largest Ansible module on the host: the subtree of each process whose name contains ``marker``
    (the module and the commands it runs), wherever its parent is - an async job's module is detached from
    ansible-playbook's tree. Returns ``(bytes, name)`` of the largest, ``(0, None)`` when no module runs."""
    children = _children()
    best = (0, None)
    inside = set()
    for pid in sorted(p for kids in children.values() for p in kids):
        if pid in inside:
            continue
        name = _process_name(pid)
        if marker not in name:
            continue
        subtree, queue = [], [pid]
        while queue:
            current = queue.pop(0)
            subtree.append(current)
            queue.extend(children.get(current, []))
        inside.update(subtree)
        total = sum(_pss(p) for p in subtree)
        if total > best[0]:
            best = (total, name)
    return best


class CommandFailed(Exception):
    pass


def measure(argv, env=None, cwd=None, check=True, interval=SAMPLE_INTERVAL, subtree=MODULE_MARKER, modules_anywhere=False):
    """Run a command; return ``{'wall', 'peak', 'peak_subtree', 'breakdown', 'stdout', 'stderr', 'rc'}``.

    ``peak`` is the largest sum of PSS (bytes) over the command's process tree seen in a sample, and
    ``breakdown`` that sample's processes, ``[(name, bytes), ...]``, largest first. ``peak_subtree`` is the
    largest sum over the subtree of the process whose command line contains ``subtree`` (by default the
    Ansible module's process, so: the module and the commands it runs, without ansible's own processes).
    With ``modules_anywhere`` it is instead the largest module subtree anywhere on the host (``host_module_peak``:
    a playbook's async jobs run outside its process tree), and ``peak_module`` names that module.
    """
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    peak = {'total': 0, 'breakdown': [], 'subtree': 0, 'module': None}
    done = threading.Event()

    def sample():
        while not done.is_set():
            found = tree_pss(proc.pid)
            # Read every sample: a process seen between fork and exec still carries its parent's command line.
            names = dict((pid, _process_name(pid)) for pid, dummy, dummy2 in found)
            total = sum(pss for dummy, dummy2, pss in found)
            if total > peak['total']:
                peak['total'] = total
                peak['breakdown'] = sorted(((names[pid], pss) for pid, dummy, pss in found), key=lambda p: -p[1])
            if modules_anywhere:
                size, module = host_module_peak()
                if size > peak['subtree']:
                    peak['subtree'], peak['module'] = size, module
            elif subtree:
                peak['subtree'] = max(peak['subtree'], subtree_total(found, names, subtree))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        done.set()
        sampler.join()
    wall = time.monotonic() - start
    out.seek(0)
    err.seek(0)
    stdout = out.read().decode('utf-8', 'replace')
    stderr = err.read().decode('utf-8', 'replace')
    out.close()
    err.close()
    if check and rc != 0:
        raise CommandFailed('command failed (rc=%s): %s\n%s\n%s' % (rc, ' '.join(argv)[:300], stdout[-2000:], stderr[-2000:]))
    return {'wall': wall, 'peak': peak['total'], 'peak_subtree': peak['subtree'], 'peak_module': peak['module'],
            'breakdown': peak['breakdown'], 'stdout': stdout, 'stderr': stderr, 'rc': rc}


def describe_breakdown(breakdown, limit=8):
    return ', '.join('%s %.0f' % (name, pss / MIB) for name, pss in breakdown[:limit] if pss >= MIB)


def size_of(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, dummy, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def sync():
    subprocess.run(['sync'], check=True)


# ----------------------------------------------------------------------------------------------
# Stacks
# ----------------------------------------------------------------------------------------------

class Stack(object):
    """A scratch compose project of examples/telemetry_app for one dataset scale."""

    def __init__(self, scale, workdir):
        self.scale = scale
        self.workdir = workdir
        self.project = '%s%d' % (PROJECT_PREFIX, scale)
        self.container = '%s_db' % self.project
        self.port = BASE_PORT + scale
        self.key = self._read_or_create(os.path.join(workdir, 'key-%d' % scale), lambda: os.urandom(32).hex())
        password = self._read_or_create(os.path.join(workdir, 'password-%d' % scale), lambda: 'bench-%s' % os.urandom(8).hex())
        self.password = password
        self.env = dict(os.environ, POSTGRES_PASSWORD=password, DB_PORT=str(self.port), DB_CONTAINER_NAME=self.container,
                        ENCRYPTION_KEY=self.key)
        self.seeded_file = os.path.join(workdir, 'seeded-%s.json' % self.project)

    def address(self):
        """The db container's IPv4 address on its compose network (what dump_client=auto connects the host's pg_dump to)."""
        out = subprocess.run(['docker', 'inspect', '-f', CONTAINER_ADDRESS_FORMAT, self.container], capture_output=True, text=True,
                             check=True).stdout
        return out.split()[0]

    @staticmethod
    def _read_or_create(path, make):
        if os.path.exists(path):
            with open(path) as handle:
                return handle.read().strip()
        value = make()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as handle:
            handle.write(value)
        return value

    def compose_argv(self, *args):
        return ['docker-compose', '-p', self.project] + list(args)

    def compose(self, *args, **kwargs):
        subprocess.run(self.compose_argv(*args), cwd=APP, env=self.env, check=kwargs.get('check', True),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def psql(self, sql):
        return subprocess.run(['docker', 'exec', self.container, 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-U', DB_USER,
                               '-d', DB_NAME, '-c', sql], capture_output=True, text=True, check=True).stdout.strip()

    def ready(self):
        """True when the real server accepts TCP connections to the database (the init server listens on the socket only)."""
        return subprocess.run(['docker', 'exec', self.container, 'pg_isready', '-q', '-h', '127.0.0.1', '-U', DB_USER, '-d', DB_NAME],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode == 0

    def wait_ready(self, timeout=READY_TIMEOUT, poll=0.25):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            time.sleep(poll)
        raise CommandFailed('database of %s not ready after %d s' % (self.project, timeout))

    def up(self):
        self.compose('up', '-d', 'db')
        self.wait_ready()

    def down(self):
        """Remove the project's containers, network and volume (also when they are half created)."""
        self.compose('down', '-v', '--remove-orphans', check=False)

    def recreate(self):
        """The runbook's first restore steps, from which every measured restore starts: ``down -v``, ``up -d db``, wait
        until the server accepts connections. Returns ``(seconds, [peak PSS of each compose run])``."""
        started = time.monotonic()
        peaks = [measure(self.compose_argv(*args), env=self.env, cwd=APP)['peak'] for args in (('down', '-v'), ('up', '-d', 'db'))]
        self.wait_ready()
        return time.monotonic() - started, peaks

    def warm_up(self):
        """An untimed dump to /dev/null, so that every measured backup finds the same warm cache."""
        subprocess.run(['sh', '-c', 'docker exec %s pg_dump -U %s %s > /dev/null' % (self.container, DB_USER, DB_NAME)], check=True)

    def counts(self):
        """Exact row counts of every user table."""
        tables = self.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").split()
        if not tables:
            return {}
        query = ' UNION ALL '.join("SELECT '%s', count(*) FROM public.%s" % (t, t) for t in tables)
        return dict((name, int(n)) for name, n in (line.split('|') for line in self.psql(query).splitlines()))

    def count_differences(self, reference):
        """``{table: (rows now, rows in reference)}`` of every table of ``reference`` whose exact count differs now."""
        counts = self.counts()
        return dict((t, (counts.get(t), n)) for t, n in reference.items() if counts.get(t) != n)

    def seeded_counts(self):
        if os.path.exists(self.seeded_file):
            with open(self.seeded_file) as handle:
                return json.load(handle)
        return None

    def ensure_seeded(self):
        """Bring the stack up; seed it at its scale unless it still holds exactly the rows of an earlier seeding."""
        self.up()
        expected = self.seeded_counts()
        if expected and self.counts() == expected:
            log('reusing the seeded stack %s (%s)' % (self.project, ', '.join('%s=%d' % kv for kv in sorted(expected.items()))))
            return expected
        if self.counts().get('photo'):
            log('stack %s does not hold the recorded seeded rows: recreating it' % self.project)
            self.down()
            self.up()
        log('seeding %s at scale %sx (about %d MB), this takes a while...' % (self.project, self.scale, MB_PER_SCALE * self.scale))
        started = time.monotonic()
        psql = 'docker exec -i %s psql -X -v ON_ERROR_STOP=1 -q -U %s -d %s' % (shlex.quote(self.container), DB_USER, DB_NAME)
        subprocess.run([sys.executable, SEED, '--size', 'bench', '--target-mb', str(int(MB_PER_SCALE * self.scale)), '--psql', psql],
                       env=self.env, check=True, stdout=subprocess.DEVNULL)
        # Not parallel: the container's 64 MB /dev/shm is too small for a parallel VACUUM of the big tables.
        self.psql('VACUUM (ANALYZE, PARALLEL 0)')
        expected = self.counts()
        with open(self.seeded_file, 'w') as handle:
            json.dump(expected, handle)
        log('seeded %s in %.0f s: %s' % (self.project, time.monotonic() - started, self.psql(
            'SELECT pg_size_pretty(pg_database_size(current_database()))')))
        return expected

    def database_size(self):
        return int(self.psql('SELECT pg_database_size(current_database())'))

    def vars_file(self, workdir, name, extra=None):
        """A secret vars file (see secret_vars_file) with the stack's key and password, for module_args, and ``extra``."""
        values = {'bench_encryption_key': self.key, 'bench_db_password': self.password}
        values.update(extra or {})
        return secret_vars_file(workdir, name, values)

    def module_args(self, args):
        """A collection module's arguments for this stack: its compose project, ``encryption_key`` and ``db_password`` (from
        vars_file, as the roles give fleet_dr_encryption_key and fleet_dr_db_password, so that dump_client and
        restore_client ``auto`` can use the host's tools), then ``args``."""
        return 'project_src=%s project_name=%s encryption_key={{ bench_encryption_key }} db_password={{ bench_db_password }} %s' % (
            APP, self.project, args)


def all_bench_projects():
    """Compose projects of bench stacks that exist now (containers or volumes)."""
    names = subprocess.run(['docker', 'ps', '-a', '--format', '{{.Label "com.docker.compose.project"}}'], capture_output=True,
                           text=True, check=False).stdout.split()
    names += [v.rsplit('_db_data', 1)[0] for v in subprocess.run(['docker', 'volume', 'ls', '-q'], capture_output=True, text=True,
                                                                 check=False).stdout.split() if v.endswith('_db_data')]
    return sorted(set(n for n in names if n.startswith(PROJECT_PREFIX) and n[len(PROJECT_PREFIX):].isdigit()))


# ----------------------------------------------------------------------------------------------
# Ansible
# ----------------------------------------------------------------------------------------------

def secret_vars_file(workdir, name, values):
    """A 0600 vars file for ``-e @file``: secrets reach the module through a template, never through argv."""
    path = os.path.join(workdir, '%s.json' % name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as handle:
        json.dump(values, handle)
    return path


def ansible_module_argv(module, args, vars_file):
    """``ansible localhost -o -m <module> -a <args>`` on this interpreter; ``args`` may template the vars file's names."""
    return ['ansible', 'localhost', '-o', '-m', module, '-a', args, '-e', '@%s' % vars_file,
            '-e', 'ansible_python_interpreter=%s' % sys.executable]


def module_result(stdout):
    """The result dict of a one-line (``-o``) ad-hoc run."""
    return json.loads(stdout.split('=>', 1)[1])


class StackWork(object):
    """A benchmark's work on one stack: the directory ``<workdir>/<name>-<scale>`` (its artifacts) and a secret vars file
    (Stack.vars_file, with ``extra_vars``) for the collection's modules; close() removes both."""

    def __init__(self, stack, workdir, name, extra_vars=None):
        self.stack = stack
        self.out = os.path.join(workdir, '%s-%d' % (name, stack.scale))
        self.vars_file = stack.vars_file(workdir, '%s-vars-%d' % (name, stack.scale), extra_vars)

    def close(self):
        shutil.rmtree(self.out, ignore_errors=True)
        if os.path.exists(self.vars_file):
            os.unlink(self.vars_file)

    def finish(self, keep, complete):
        """close(), and remove the stack unless it is to be kept and ``complete``: a kept stack must end holding the seeded
        rows, or the next run would measure other data."""
        self.close()
        if not keep or not complete:
            self.stack.down()

    def ansible(self, module, args):
        """Measure ``ansible -m <module>`` on the stack: Stack.module_args, then ``args`` (which may template the vars file's names)."""
        return measure(ansible_module_argv(module, self.stack.module_args(args), self.vars_file), env=self.stack.env)


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------

def markdown_table(header, rows):
    lines = ['| %s |' % ' | '.join(header), '|%s' % ''.join('---|' for dummy in header)]
    lines += ['| %s |' % ' | '.join(str(c).replace('|', '\\|') for c in row) for row in rows]
    return '\n'.join(lines)


def verdict(ok):
    return 'met' if ok else 'MISSED'


def median_run(runs):
    """The run with the median wall time (of an odd count; the lower middle of an even one)."""
    ordered = sorted(runs, key=lambda r: r['wall'])
    return ordered[(len(ordered) - 1) // 2]


def describe_rows(reference, wrong):
    """The row check of a restore, ``wrong`` as Stack.count_differences returns it."""
    if not wrong:
        return 'all %d tables exact' % len(reference)
    return 'WRONG: ' + ', '.join('%s %s/%d' % (t, got, want) for t, (got, want) in sorted(wrong.items()))


def flatness_table(series, target):
    """Markdown table of peak memory across scales: ``series`` is ``[(label, {scale: peak bytes}), ...]``; a row is flat
    when the peak at the largest scale is at most ``target`` times the one at the smallest."""
    rows, scales = [], []
    for label, peaks in series:
        scales = sorted(peaks)
        mib = [peaks[s] / MIB for s in scales]
        ratio = mib[-1] / mib[0]
        rows.append([label, ', '.join('%.0f at %dx' % (p, s) for p, s in zip(mib, scales)), '%.2f' % ratio, verdict(ratio <= target)])
    return markdown_table(['measure', 'peaks', '%dx / %dx (flat: <= %.1f)' % (scales[-1], scales[0], target), ''], rows)


def clean(workdir, scales=None):
    """Remove the bench stacks (containers, network, volume) of ``scales`` (default: all) and their files, or the work directory."""
    for project in all_bench_projects():
        scale = int(project[len(PROJECT_PREFIX):])
        if scales is None or scale in scales:
            log('removing %s' % project)
            Stack(scale, workdir).down()
    if scales is None:
        subprocess.run(['rm', '-rf', '--', workdir], check=True)
        return
    for scale in scales:
        for name in ('key-%d' % scale, 'password-%d' % scale, 'seeded-%s%d.json' % (PROJECT_PREFIX, scale)):
            if os.path.exists(os.path.join(workdir, name)):
                os.unlink(os.path.join(workdir, name))


def main(argv):
    import argparse  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(description='Seed or remove the bench stacks.')
    parser.add_argument('command', choices=['seed', 'clean'])
    parser.add_argument('--scales', help='comma-separated scales (seed: default 1; clean: default every bench stack and the work directory)')
    parser.add_argument('--workdir', default=DEFAULT_WORKDIR, help='work directory (default: %(default)s)')
    args = parser.parse_args(argv)
    if args.command == 'clean':
        clean(args.workdir, parse_scales(args.scales) if args.scales else None)
        return
    os.makedirs(args.workdir, exist_ok=True)
    for scale in parse_scales(args.scales or '1'):
        Stack(scale, args.workdir).ensure_seeded()


def parse_run_args(parser, workdir_help, repeat_default=3):
    """Parse the arguments of a benchmark that measures on kept stacks, adding its common options: ``--repeat`` (runs of
    every procedure, medians), ``--workdir`` (``workdir_help`` says what goes there) and ``--keep``."""
    parser.add_argument('--repeat', type=int, default=repeat_default, help='runs of every procedure, the order alternating; medians '
                                                                           '(default: %(default)s)')
    parser.add_argument('--workdir', default=DEFAULT_WORKDIR, help='work directory: %s (default: %%(default)s)' % workdir_help)
    parser.add_argument('--keep', action='store_true', help='keep the stack (it ends holding the restored rows, checked equal to the '
                                                            'seeded ones) for the next run; remove it with bash bench/run.sh clean')
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error('--repeat must be at least 1')
    return args


def parse_scales(text):
    return [int(s) for s in text.split(',') if s.strip()]


if __name__ == '__main__':
    main(sys.argv[1:])
