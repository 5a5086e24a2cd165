# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Fixtures of the system tests: real compose stacks, real ansible-playbook / ansible runs.

Every stack is a scratch copy of ``examples/telemetry_app`` with its own compose project, container
name, port, password and ENCRYPTION_KEY (all passed in the environment of the compose command, never
in a file or argv), removed with its volume by the fixture's finalizer. The collection is reached
through a temporary ``ansible_collections/fleet_telemetry/dr`` symlink to the checkout, next to the
collections bundled with the ``ansible`` package.

Run: ``python -m pytest tests/system -q`` (as root, with Docker and docker-compose or docker compose).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
APP_DIR = os.path.join(REPO_ROOT, 'examples', 'telemetry_app')
SEED = os.path.join(APP_DIR, 'seed.py')
DB_USER = 'challengeuser'
DB_NAME = 'telemetry_db'
MODULE = 'fleet_telemetry.dr.pg_logical_backup'
HOST = 'scratch'
# Extra audit_log and telemetry rows on top of the tiny preset: about 100 MB of data, a dump of a
# few seconds, long enough to overlap inserts, to be killed, to fill a small tmpfs and to be seen in ps.
BIG_SEED_ARGS = ['--size', 'tiny', '--audit-rows', '250000', '--telemetry-rows', '300000', '--random-seed', '20251125']
COMMAND_TIMEOUT = 600


def _venv_python():
    venv = os.environ.get('FLEET_DR_VENV')
    if venv and os.access(os.path.join(venv, 'bin', 'python'), os.X_OK):
        return os.path.join(venv, 'bin', 'python')
    return sys.executable


PYTHON = _venv_python()


def _collections_parent(repo_root):
    """The directory that holds ``ansible_collections/fleet_telemetry/dr`` (a temporary symlink tree for a plain checkout)."""
    parts = repo_root.split(os.sep)
    if parts[-3:] == ['ansible_collections', 'fleet_telemetry', 'dr']:
        return os.sep.join(parts[:-3]), None
    tmp = tempfile.mkdtemp(prefix='fleet_dr_system_collections_')
    namespace = os.path.join(tmp, 'ansible_collections', 'fleet_telemetry')
    os.makedirs(namespace)
    os.symlink(repo_root, os.path.join(namespace, 'dr'))
    return tmp, tmp


COLLECTIONS_PARENT, _COLLECTIONS_TMP = _collections_parent(REPO_ROOT)
if COLLECTIONS_PARENT not in sys.path:
    sys.path.insert(0, COLLECTIONS_PARENT)


def _bundled_collections_parent():
    """The site-packages directory whose ``ansible_collections`` holds the collections of the ``ansible`` package."""
    import ansible  # pylint: disable=import-outside-toplevel
    site = os.path.dirname(os.path.dirname(os.path.realpath(ansible.__file__)))
    return site if os.path.isdir(os.path.join(site, 'ansible_collections')) else None


def run(argv, **kwargs):
    """subprocess.run with text output captured and a timeout; never raises on a non-zero exit."""
    kwargs.setdefault('stdout', subprocess.PIPE)
    kwargs.setdefault('stderr', subprocess.PIPE)
    kwargs.setdefault('timeout', COMMAND_TIMEOUT)
    return subprocess.run(argv, check=False, text=True, **kwargs)


def checked(argv, what, **kwargs):
    proc = run(argv, **kwargs)
    if proc.returncode != 0:
        raise AssertionError('%s failed (rc=%s): %s\n%s' % (what, proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:]))
    return proc


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def compose_command():
    """``docker compose`` (v2) when the plugin answers, else ``docker-compose`` (v1)."""
    try:
        if run(['docker', 'compose', 'version'], timeout=60).returncode == 0:
            return ['docker', 'compose']
    except FileNotFoundError:
        pass
    return ['docker-compose']


def unique(prefix):
    return '%s%d%s' % (prefix, os.getpid(), os.urandom(3).hex())


class ComposeStack(object):
    """A scratch copy of examples/telemetry_app with its own project, container, port and secrets."""

    def __init__(self, base_dir, label):
        self.project = unique('fdrsys%s' % label)
        self.container_name = self.project + '_db'
        self.port = free_port()
        self.password = 'pw-' + os.urandom(18).hex()
        self.key = os.urandom(32)
        self.key_hex = self.key.hex()
        self.directory = os.path.join(base_dir, 'telemetry_app')
        os.makedirs(self.directory)
        shutil.copy2(os.path.join(APP_DIR, 'docker-compose.yml'), self.directory)
        shutil.copytree(os.path.join(APP_DIR, 'schema'), os.path.join(self.directory, 'schema'))
        self.compose_cmd = compose_command()
        self.container = None

    @property
    def env(self):
        """The environment of every compose command of this stack (its secrets travel here only)."""
        env = dict(os.environ)
        for name in ('PGPASSWORD', 'ENCRYPTION_KEY'):
            env.pop(name, None)
        env.update(POSTGRES_PASSWORD=self.password, DB_PORT=str(self.port), DB_CONTAINER_NAME=self.container_name,
                   COMPOSE_PROJECT_NAME=self.project)
        return env

    def compose(self, *args, **kwargs):
        return run(self.compose_cmd + ['-p', self.project] + list(args), cwd=self.directory, env=self.env, **kwargs)

    def up(self):
        for attempt in range(3):
            proc = self.compose('up', '-d', 'db')
            if proc.returncode == 0:
                break
            if attempt == 2 or not any(text in proc.stderr for text in ('port is already allocated', 'address already in use')):
                raise AssertionError('compose up of %s failed: %s' % (self.project, proc.stderr[-4000:]))
            # Someone took the free port in the meantime: take another one.
            self.down()
            self.port = free_port()
        self.container = self.compose('ps', '-q', 'db').stdout.strip()
        assert self.container, 'compose ps -q db gave no container for %s' % self.project
        self.wait_healthy()

    def wait_healthy(self, timeout=180):
        """Wait for the healthcheck and for the published port.

        The compose healthcheck (pg_isready on the Unix socket) already passes while the entrypoint's
        temporary init server runs, before telemetry_db exists; only the final server listens on TCP.
        """
        deadline = time.monotonic() + timeout
        status = 'unknown'
        while time.monotonic() < deadline:
            status = run(['docker', 'inspect', '-f', '{{.State.Health.Status}}', self.container], timeout=60).stdout.strip()
            if status == 'healthy':
                ready = run(['pg_isready', '-q', '-h', '127.0.0.1', '-p', str(self.port), '-U', DB_USER, '-d', DB_NAME], timeout=60)
                if ready.returncode == 0 and run(self.psql_argv() + ['-c', 'SELECT 1'], timeout=60).returncode == 0:
                    return
            time.sleep(0.5)
        raise AssertionError('container %s did not become healthy (last status %s): %s'
                             % (self.container_name, status, run(['docker', 'logs', '--tail', '30', self.container]).stderr))

    def down(self):
        self.compose('down', '-v', '--remove-orphans', '--timeout', '5')
        self.container = None

    def recreate(self):
        """The runbook's ``down -v`` then ``up -d db``: a fresh, empty database with only the schema."""
        self.down()
        self.up()

    def psql_argv(self, database=DB_NAME):
        return ['docker', 'exec', '-i', self.container, 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-q', '-U', DB_USER, '-d', database]

    def psql(self, sql, database=DB_NAME):
        """Run SQL in the container (local socket, no password); return the unaligned, tuples-only output."""
        proc = checked(self.psql_argv(database) + ['-A', '-t', '-F', '|'], 'psql', input=sql)
        return proc.stdout.strip()

    def counts(self, tables, database=DB_NAME):
        sql = ' UNION ALL '.join("SELECT '%s', count(*) FROM %s" % (table, table) for table in tables)
        rows = [line.split('|') for line in self.psql(sql + ';', database).splitlines() if line]
        return dict((name, int(count)) for name, count in rows)

    def user_tables(self, database=DB_NAME):
        return self.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1;", database).split()

    def seed(self, args):
        env = self.env
        env['ENCRYPTION_KEY'] = self.key_hex
        psql = ' '.join(self.psql_argv())
        checked([PYTHON, SEED] + list(args) + ['--psql', psql], 'seed.py', env=env)

    def processes(self):
        """``(host pid, command line)`` of every process of the container (from ``docker top``)."""
        proc = checked(['docker', 'top', self.container, '-eo', 'pid,args'], 'docker top')
        found = []
        for line in proc.stdout.splitlines()[1:]:
            pid, dummy, args = line.strip().partition(' ')
            if pid.isdigit():
                found.append((int(pid), args.strip()))
        return found

    def kill_processes(self, program):
        """SIGKILL the processes of the container whose command is ``program``, and the host's that connect to the
        container's address (the backup's host pg_dump, dump_client=auto); return their pids."""
        # Importable once this file has put the collection's tree on sys.path (above).
        from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import CONTAINER_ADDRESS_FORMAT  # pylint: disable=import-outside-toplevel
        address = run(['docker', 'inspect', '-f', CONTAINER_ADDRESS_FORMAT, self.container], timeout=60).stdout.split()
        killed = sigkill([pid for pid, dummy, argv in processes()
                          if os.path.basename(argv[0]) == program and address and address[0] in argv])
        return killed + sigkill([pid for pid, args in self.processes()
                                 if args.split(' ')[0] in (program, '/usr/bin/' + program, '/usr/lib/postgresql/15/bin/' + program)])


def _stack(tmp_path_factory, request, label, seed_args):
    stack = ComposeStack(str(tmp_path_factory.mktemp(label)), label)
    request.addfinalizer(stack.down)
    stack.up()
    stack.seed(seed_args)
    return stack


@pytest.fixture(scope='session')
def stack(tmp_path_factory, request):
    """The shared scratch stack: tiny preset plus enough audit and telemetry rows for a dump of a few seconds."""
    return _stack(tmp_path_factory, request, 'main', BIG_SEED_ARGS)


@pytest.fixture
def small_stack(tmp_path_factory, request):
    """A stack of its own, seeded with the tiny preset, for a test that destroys its database."""
    return _stack(tmp_path_factory, request, 'runbook', ['--size', 'tiny'])


class AnsibleRunner(object):
    """Runs ``ansible`` and ``ansible-playbook`` from the venv against the scratch host, as subprocesses."""

    def __init__(self, workdir):
        self.workdir = workdir
        paths = [COLLECTIONS_PARENT]
        bundled = _bundled_collections_parent()
        if bundled:
            paths.append(bundled)
        self.collections_path = os.pathsep.join(paths)
        self.inventory = os.path.join(workdir, 'inventory.yml')
        with open(self.inventory, 'w') as inventory:
            json.dump({'all': {'hosts': {HOST: {'ansible_connection': 'local', 'ansible_python_interpreter': PYTHON}},
                               'children': {'telemetry_db': {'hosts': {HOST: {}}}}}}, inventory)
        bindir = os.path.dirname(PYTHON)
        self.ansible = os.path.join(bindir, 'ansible') if os.path.exists(os.path.join(bindir, 'ansible')) else 'ansible'
        self.playbook = os.path.join(bindir, 'ansible-playbook') if os.path.exists(os.path.join(bindir, 'ansible-playbook')) else 'ansible-playbook'

    def env(self, base=None, json_output=False):
        env = dict(os.environ if base is None else base)
        env.update(ANSIBLE_COLLECTIONS_PATH=self.collections_path, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
                   ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_RETRY_FILES_ENABLED='False', ANSIBLE_DEPRECATION_WARNINGS='False')
        env.pop('ANSIBLE_CONFIG', None)
        if json_output:
            env.update(ANSIBLE_STDOUT_CALLBACK='json', ANSIBLE_LOAD_CALLBACK_PLUGINS='1')
        return env

    def module_argv(self, args, check=False):
        argv = [self.ansible, HOST, '-i', self.inventory, '-m', MODULE, '-a', json.dumps(args)]
        return argv + (['--check'] if check else [])

    def start_module(self, args, env=None, check=False):
        """Start ``ansible -m pg_logical_backup`` in the background (own process group); finish with ``module_result``."""
        return subprocess.Popen(self.module_argv(args, check), cwd=self.workdir, env=self.env(env, json_output=True),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    @staticmethod
    def module_result(proc, timeout=COMMAND_TIMEOUT):
        """Wait for a started run; return ``(rc, the module's result dict, stdout + stderr)``."""
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, parse_host_result(out, err), out + err

    def module(self, args, env=None, check=False):
        """Run the module once, ad hoc; return ``(rc, result dict, stdout + stderr)``."""
        return self.module_result(self.start_module(args, env, check))

    def run_playbook(self, playbook, extra_args=(), env=None, json_output=False):
        argv = [self.playbook, '-i', self.inventory, playbook] + list(extra_args)
        return run(argv, cwd=self.workdir, env=self.env(env, json_output=json_output))


def parse_host_result(stdout, stderr=''):
    """The result of the single task of an ad hoc run, from the json callback's output."""
    try:
        doc = json.loads(stdout[stdout.index('{'):])
    except ValueError:
        raise AssertionError('no JSON in the output of ansible:\n%s\n%s' % (stdout[-3000:], stderr[-3000:])) from None
    return doc['plays'][0]['tasks'][0]['hosts'][HOST]


@pytest.fixture(scope='session')
def ansible(tmp_path_factory):
    return AnsibleRunner(str(tmp_path_factory.mktemp('ansible')))


@pytest.fixture
def backup_dir(tmp_path):
    """An empty backup directory; removed afterwards (dumps of the shared stack are about 100 MB)."""
    path = tmp_path / 'backups'
    path.mkdir(mode=0o700)
    yield str(path)
    shutil.rmtree(str(path), ignore_errors=True)


def compose_args(stack, backup_dir, **extra):
    """Module arguments of a backup of ``stack`` over the compose transport."""
    args = {'transport': 'compose', 'project_src': stack.directory, 'project_name': stack.project, 'backup_dir': backup_dir}
    args.update(extra)
    return args


@pytest.fixture
def compose_backup_args():
    return compose_args


def mount_small_tmpfs(mountpoint):
    """Mount a 2 MiB tmpfs on ``mountpoint`` (skip the test when this machine cannot); return the unmount function."""
    os.makedirs(mountpoint)
    proc = run(['mount', '-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', mountpoint], timeout=60)
    if proc.returncode != 0:
        pytest.skip('cannot mount a tmpfs here (%s): the disk-full case needs one' % (proc.stderr.strip() or proc.returncode))
    return lambda: run(['umount', mountpoint], timeout=60)


@pytest.fixture
def small_tmpfs(tmp_path, request):
    """A 2 MiB tmpfs, unmounted by the finalizer."""
    mountpoint = str(tmp_path / 'tmpfs')
    request.addfinalizer(mount_small_tmpfs(mountpoint))
    return mountpoint


class Outcome(object):
    """What a finished backup run left: rc, result, output, the backup directory and notes of the scenario."""

    def __init__(self, rc, result, output, backup_dir, **notes):
        self.rc = rc
        self.result = result
        self.output = output
        self.backup_dir = backup_dir
        self.notes = notes


def _partial_size(directory):
    """Bytes in the temporary ``.<name>.partial-*`` file of a running backup, or None when there is none."""
    for name in os.listdir(directory):
        if '.partial-' in name:
            try:
                return os.stat(os.path.join(directory, name)).st_size
            except FileNotFoundError:
                return None
    return None


@pytest.fixture(scope='module')
def killed_backup(stack, ansible, tmp_path_factory, request):
    """A backup whose pg_dump is SIGKILLed inside the container once bytes reach the temporary file."""
    backup_dir = str(tmp_path_factory.mktemp('killed'))
    request.addfinalizer(lambda: shutil.rmtree(backup_dir, ignore_errors=True))
    proc = ansible.start_module(compose_args(stack, backup_dir), env=stack.env)
    killed, streamed = [], None
    deadline = time.monotonic() + 300
    try:
        while not killed and time.monotonic() < deadline and proc.poll() is None:
            streamed = _partial_size(backup_dir)
            if streamed:
                killed = stack.kill_processes('pg_dump')
            else:
                time.sleep(0.01)
    finally:
        rc, result, output = ansible.module_result(proc)
    return Outcome(rc, result, output, backup_dir, killed=killed, streamed=streamed)


@pytest.fixture(scope='module')
def disk_full_backup(stack, ansible, tmp_path_factory, request):
    """A backup into a 2 MiB tmpfs with the free space check off: the file system fills up during the dump."""
    backup_dir = str(tmp_path_factory.mktemp('diskfull') / 'tmpfs')
    request.addfinalizer(mount_small_tmpfs(backup_dir))
    rc, result, output = ansible.module(compose_args(stack, backup_dir, check_free_space=False), env=stack.env)
    return Outcome(rc, result, output, backup_dir)


class AuditInserter(object):
    """Inserts audit_log rows continuously through ``docker exec psql`` from a background thread."""

    ACTOR = 'system-test-inserter'

    def __init__(self, stack):
        self.stack = stack
        self.inserted = 0
        self.error = None
        self._stop = threading.Event()
        self._proc = subprocess.Popen(stack.psql_argv(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        statement = ("INSERT INTO audit_log (at, actor, action, detail) VALUES "
                     "(clock_timestamp(), '%s', 'test.concurrent', '{\"n\": %%d}');\n" % self.ACTOR)
        try:
            while not self._stop.is_set():
                self._proc.stdin.write((statement % self.inserted).encode('ascii'))
                self._proc.stdin.flush()
                self.inserted += 1
                if self.inserted % 50 == 0:
                    time.sleep(0.005)
        except (BrokenPipeError, OSError) as exc:
            self.error = exc

    def __enter__(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=60)
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        rc = self._proc.wait(timeout=120)
        err = self._proc.stderr.read().decode('utf-8', 'replace')
        self._proc.stderr.close()
        if rc != 0 or self.error:
            raise AssertionError('the inserter failed (rc=%s, %s): %s' % (rc, self.error, err[-2000:]))

    def __exit__(self, *exc):
        if not self._stop.is_set():
            self.stop()


@pytest.fixture
def audit_inserter():
    return AuditInserter


def secret_forms(password, key):
    """The password, and the key in every spelling it could leak in: raw hex (both cases), base64 and base64url."""
    forms = {password, key.hex(), key.hex().upper()}
    for encoded in (base64.b64encode(key), base64.urlsafe_b64encode(key)):
        text = encoded.decode('ascii')
        forms.update((text, text.rstrip('=')))
    return sorted(forms)


class CmdlineScanner(object):
    """Reads /proc/*/cmdline of every process, again and again, from a background thread.

    ``leaks`` collects the command lines that contain one of ``needles``; ``seen`` the command lines
    that contain every word of ``watch`` (proof that the scan overlapped the process of interest).
    With ``files_dir``, every file in that directory is read on each scan too: ``files_seen`` holds
    their names, ``file_leaks`` the names of those that contained a needle (async job files exist
    only while the job runs, so they must be read then).
    """

    def __init__(self, needles, watch, files_dir=None):
        self.needles = [needle.encode('utf-8') for needle in needles]
        self.watch = [word.encode('utf-8') for word in watch]
        self.files_dir = files_dir
        self.leaks = []
        self.seen = []
        self.files_seen = set()
        self.file_leaks = set()
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _scan_once(self):
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open('/proc/%s/cmdline' % entry, 'rb') as fileobj:
                    cmdline = fileobj.read()
            except OSError:
                continue
            if any(needle in cmdline for needle in self.needles):
                self.leaks.append(cmdline.replace(b'\0', b' ').decode('utf-8', 'replace'))
            if all(word in cmdline for word in self.watch):
                self.seen.append(cmdline.replace(b'\0', b' ').decode('utf-8', 'replace'))
        if self.files_dir and os.path.isdir(self.files_dir):
            self._scan_files()
        self.scans += 1

    def _scan_files(self):
        for name in os.listdir(self.files_dir):
            try:
                with open(os.path.join(self.files_dir, name), 'rb') as fileobj:
                    content = fileobj.read()
            except OSError:
                continue
            self.files_seen.add(name)
            if any(needle in content for needle in self.needles):
                self.file_leaks.add(name)

    def _loop(self):
        while not self._stop.is_set():
            self._scan_once()
            time.sleep(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=60)


ASYNC_DIR = os.path.expanduser('~/.ansible_async')


@pytest.fixture(scope='module')
def verbose_secret_run(stack, ansible, tmp_path_factory, request):
    """``ansible-playbook -vvvv playbooks/backup.yml`` over the direct transport with db_password and encryption_key
    from a vars file, while every process's argv is scanned for the secrets."""
    workdir = tmp_path_factory.mktemp('secrets')
    backup_dir = str(workdir / 'backups')
    request.addfinalizer(lambda: shutil.rmtree(backup_dir, ignore_errors=True))
    vars_file = str(workdir / 'secret-vars.yml')
    with open(os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), 'w') as fileobj:
        json.dump({'fleet_dr_transport': 'direct', 'fleet_dr_db_host': '127.0.0.1', 'fleet_dr_db_port': stack.port,
                   'fleet_dr_db_password': stack.password, 'fleet_dr_encryption_key': stack.key_hex,
                   'fleet_dr_backup_dir': backup_dir, 'backup_poll_interval': 1}, fileobj)
    forms = secret_forms(stack.password, stack.key)
    started = time.time()
    # The environment of the run carries no secret: they come from the vars file only.
    with CmdlineScanner(forms, ['pg_dump', '--snapshot', str(stack.port)], files_dir=ASYNC_DIR) as scanner:
        proc = ansible.run_playbook(os.path.join(REPO_ROOT, 'playbooks', 'backup.yml'), ['-vvvv', '-e', '@' + vars_file])
    os.unlink(vars_file)
    output = proc.stdout + proc.stderr
    jobs = sorted(set(re.findall(r'"ansible_job_id": "([^"]+)"', output)))
    async_files = []
    if os.path.isdir(ASYNC_DIR):
        for name in os.listdir(ASYNC_DIR):
            path = os.path.join(ASYNC_DIR, name)
            if name in jobs or (os.path.isfile(path) and os.stat(path).st_mtime >= started - 1):
                async_files.append(path)
    return Outcome(proc.returncode, None, output, backup_dir, forms=forms, scanner=scanner, jobs=jobs, async_files=sorted(async_files))


def processes():
    """``(pid, ppid, argv)`` of every process on the host."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as fileobj:
                argv = [arg.decode('utf-8', 'replace') for arg in fileobj.read().split(b'\0') if arg]
            with open('/proc/%s/stat' % entry) as fileobj:
                ppid = int(fileobj.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if argv:
            found.append((int(entry), ppid, argv))
    return found


def job_processes(script='AnsiballZ_pg_logical_backup.py'):
    """The async job running the module ``script``: ``{'wrapper': [...], 'module': [...], 'zstd': [...]}`` (pids)."""
    table = processes()
    wrappers = [pid for pid, dummy, argv in table
                if any(arg.endswith('async_wrapper.py') for arg in argv) and any(arg.endswith(script) for arg in argv)]
    modules = [pid for pid, ppid, argv in table
               if len(argv) >= 2 and argv[1].endswith(script) and ppid in wrappers]
    zstd = [pid for pid, ppid, argv in table if os.path.basename(argv[0]) == 'zstd' and ppid in modules]
    return {'wrapper': wrappers, 'module': modules, 'zstd': zstd}


def sigkill(pids):
    killed = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


def pytest_unconfigure(config):  # pylint: disable=unused-argument
    if _COLLECTIONS_TMP:
        shutil.rmtree(_COLLECTIONS_TMP, ignore_errors=True)
