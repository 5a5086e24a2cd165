# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""How the collection reaches PostgreSQL. Internal to fleet_telemetry.dr; not a public API.

Two transports build the argv of the PostgreSQL client tools (``pg_dump``, ``psql``, ``pg_restore``):

* ``compose``: the tools inside the running container of a compose service. The container is found
  with ``<compose> ps -q <service>`` (``docker compose`` v2 or ``docker-compose`` v1, detected) and
  reached with ``docker exec -i``, which streams binary data unchanged (``exec`` without ``-T`` /
  ``-i`` corrupts it) and passes ``PGPASSWORD`` by name, so the secret never sits in argv.
* ``direct``: the host's client tools over TCP or a Unix socket (libpq), e.g. a managed server.

``pick_client`` turns a compose connection into a direct one to the container's own address when the host's
tools can use it (a password given, the server's major version): the backup's and the restore's streams then
skip ``docker exec``, whose stream through the Docker daemon is slower than the tools themselves.

Commands are argument lists, never shell strings. The password travels in the environment only.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError

TRANSPORTS = ('compose', 'direct')


class TransportError(FleetDrError):
    """A command or connection failed: one sentence naming the cause and the fix, with the command's rc, stderr and argv."""

    def __init__(self, msg, code='error', rc=None, stderr=None, cmd=None, **extra):
        super(TransportError, self).__init__(msg, code=code, **extra)
        self.rc = rc
        self.stderr = stderr
        self.cmd = cmd

    def to_result(self):
        result = super(TransportError, self).to_result()
        if self.rc is not None:
            result['rc'] = self.rc
        if self.stderr:
            result['stderr'] = self.stderr
        if self.cmd:
            result['cmd'] = self.cmd
        return result


# Patterns of libpq, pg_dump and docker messages, in the order they are tried. Each maps to a code
# and a sentence that names the setting to change.
_ERROR_PATTERNS = (
    (r'password authentication failed', 'auth_failed',
     'PostgreSQL rejected the password for user {user}: check the password option (db_password)'),
    (r'no password supplied|fe_sendauth', 'auth_failed',
     'PostgreSQL asks for a password for user {user} and none was given: set the password option (db_password)'),
    (r'role "[^"]*" does not exist', 'no_role',
     'user {user} does not exist on the server: check the user option (db_user)'),
    (r'database "[^"]*" does not exist', 'no_database',
     'database {database} does not exist on the server: check the database option (db_name)'),
    (r'No space left on device', 'disk_full',
     'no space left on the device while writing: free space or choose another destination'),
    (r'Cannot connect to the Docker daemon|Couldn.t connect to Docker daemon|Error while fetching server API version|'
     r'docker\.sock.*(connect|permission denied)', 'no_docker',
     'the Docker daemon does not answer: start dockerd (or the docker service) and check access to /var/run/docker.sock'),
    (r'No such container|is not running|container .* is restarting', 'container_down',
     'the database container is not running: start it (docker compose up -d {service}, or docker-compose up -d {service})'),
    (r'could not connect to server|connection to server .* failed|Connection refused|the database system is (starting up|shutting down)|'
     r'server closed the connection unexpectedly',
     'db_down', 'PostgreSQL at {where} is not reachable or not ready: check that the database is up and the host/port options'),
    (r'server version mismatch|aborting because of server version mismatch', 'version_mismatch',
     'the pg_dump client is older than the server: use the compose transport or install a matching postgresql-client'),
)


def classify_error(stderr, user=None, database=None, service=None, where=None):
    """Return ``(code, sentence)`` for a client tool's stderr, or ``('error', <last line>)``."""
    text = stderr or ''
    for pattern, code, sentence in _ERROR_PATTERNS:
        if re.search(pattern, text):
            return code, sentence.format(user=user or '(default)', database=database or '(default)', service=service or 'db',
                                         where=where or 'the given address')
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return 'error', lines[-1] if lines else 'the command failed without a message'


class Connection(object):
    """Where the database is and how to reach it. Plain data; ``password`` is a secret."""

    def __init__(self, transport='compose', database=None, user=None, password=None,
                 project_src=None, project_name=None, service='db', compose_command=None,
                 host=None, port=None, docker_cli='docker', bin_dir=None, connect_timeout=10):
        if transport not in TRANSPORTS:
            raise TransportError('transport must be one of %s, not %s' % (', '.join(TRANSPORTS), transport), code='bad_option')
        self.transport = transport
        self.database = database
        self.user = user
        self.password = password
        self.project_src = project_src
        self.project_name = project_name
        self.service = service
        self.compose_command = compose_command
        self.host = host
        self.port = port
        self.docker_cli = docker_cli
        self.bin_dir = bin_dir
        self.connect_timeout = connect_timeout
        self.container = None

    def where(self):
        """Where the server is, in words: ``host:port`` (direct) or the compose service."""
        if self.transport == 'compose':
            return 'service %s of the compose project in %s' % (self.service, self.project_src)
        return '%s:%s' % (self.host or 'the local socket', self.port or 5432)

    def describe(self):
        """A secret-free description for results and manifests."""
        if self.transport == 'compose':
            return {'transport': 'compose', 'project_src': self.project_src, 'project_name': self.project_name,
                    'service': self.service, 'database': self.database, 'user': self.user}
        return {'transport': 'direct', 'host': self.host, 'port': self.port, 'database': self.database, 'user': self.user}


def run(argv, env=None, cwd=None, stdin_data=None, timeout=None):
    """Run a command to completion; return ``(rc, stdout, stderr)`` as text. Missing binaries raise TransportError."""
    try:
        proc = subprocess.run(argv, input=stdin_data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, cwd=cwd, timeout=timeout, check=False)
    except FileNotFoundError:
        raise TransportError('%s is not installed or not on PATH' % argv[0], code='missing_binary', cmd=argv)
    except subprocess.TimeoutExpired:
        raise TransportError('%s did not finish within %s s' % (' '.join(argv[:3]), timeout), code='timeout', cmd=argv)
    return proc.returncode, proc.stdout.decode('utf-8', 'replace'), proc.stderr.decode('utf-8', 'replace')


# Where a program is on PATH (unit tests replace it: whether docker-compose is installed is the host's business).
find_program = shutil.which


def detect_compose(runner=run, docker_cli='docker'):
    """Return the compose base command: ``[docker, compose]`` (v2) when the plugin answers, else ``[docker-compose]`` (v1).

    v1 is found on PATH, not run: ``docker-compose version`` costs a quarter of a second of Python start-up in every
    module that reaches the database through compose, and a broken v1 fails its first real command with its own stderr.
    """
    try:
        rc, dummy, dummy2 = runner([docker_cli, 'compose', 'version'])
        if rc == 0:
            return [docker_cli, 'compose']
    except TransportError:
        pass
    if find_program('docker-compose'):
        return ['docker-compose']
    raise TransportError('neither "docker compose" (v2) nor "docker-compose" (v1) works on this host: install one of them',
                         code='no_compose')


def compose_base(conn, runner=run):
    """The compose command with the project options, to run with ``cwd=conn.project_src``."""
    if conn.compose_command:
        base = conn.compose_command.split() if isinstance(conn.compose_command, str) else list(conn.compose_command)
    else:
        base = detect_compose(runner, conn.docker_cli)
    if conn.project_name:
        base = base + ['-p', conn.project_name]
    return base


def require_project_dir(conn):
    """Refuse (``no_project``) a compose connection whose project directory does not exist."""
    if not conn.project_src or not os.path.isdir(conn.project_src):
        raise TransportError('compose project directory %s does not exist: set project_src to the directory that holds '
                             'docker-compose.yml' % conn.project_src, code='no_project')


def compose_run(conn, args, runner=run, timeout=None):
    """Run ``<compose> <args>`` in the project directory; return ``(rc, stdout, stderr)``."""
    require_project_dir(conn)
    return runner(compose_base(conn, runner) + list(args), cwd=conn.project_src, timeout=timeout)


# A project name as compose writes it into its labels (both v1 and v2 normalise other names).
_LABEL_PROJECT_RE = re.compile(r'^[a-z0-9][a-z0-9_-]*$')


def labelled_container(conn, runner=run):
    """The one running container of the service, found by the labels compose puts on it, or None.

    Only with an explicit ``project_name`` that compose would keep as it is: ``docker ps`` then answers at once,
    where ``compose ps`` starts compose (a Python program under v1: about a second and 45 MiB, bench/RESULTS.md).
    None (two containers, none running, another name) leaves it to ``compose ps``, whose errors name the cause.
    """
    if not conn.project_name or not _LABEL_PROJECT_RE.match(conn.project_name):
        return None
    rc, out, dummy = runner([conn.docker_cli, 'ps', '-q', '--filter', 'label=com.docker.compose.project=%s' % conn.project_name,
                             '--filter', 'label=com.docker.compose.service=%s' % conn.service,
                             '--filter', 'label=com.docker.compose.oneoff=False', '--filter', 'status=running'], timeout=60)
    ids = out.split() if rc == 0 else []
    return ids[0] if len(ids) == 1 else None


def resolve_container(conn, runner=run):
    """Find the running container of ``conn.service``; cache and return its id."""
    if conn.container:
        return conn.container
    require_project_dir(conn)
    found = labelled_container(conn, runner)
    if found:
        conn.container = found
        return found
    rc, out, err = compose_run(conn, ['ps', '-q', conn.service], runner=runner, timeout=60)
    if rc != 0:
        code, sentence = classify_error(err, service=conn.service)
        if code == 'error':
            sentence = 'compose could not list the services of the project in %s: %s' % (conn.project_src, sentence)
        raise TransportError(sentence, code=code if code != 'error' else 'no_project', rc=rc, stderr=err)
    ids = [line.strip() for line in out.splitlines() if line.strip()]
    if not ids:
        raise TransportError('service %s of the compose project in %s has no container: start it with "docker compose up -d %s" '
                             '(or docker-compose)' % (conn.service, conn.project_src, conn.service), code='container_down')
    rc, out, err = runner([conn.docker_cli, 'inspect', '-f', '{{.State.Running}}', ids[0]], timeout=60)
    if rc != 0 or out.strip() != 'true':
        raise TransportError('the container of service %s is not running: start it with "docker compose up -d %s" (or docker-compose)'
                             % (conn.service, conn.service), code='container_down', rc=rc, stderr=err)
    conn.container = ids[0]
    return conn.container


# docker inspect's format for a container's addresses on its networks (also used by the tests and the benchmarks).
CONTAINER_ADDRESS_FORMAT = '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}'
CLIENT_CHOICES = ('auto', 'host', 'container')


def container_ipv4(conn, runner=run):
    """The first IPv4 address of the compose service's container on a docker network, or None."""
    rc, out, dummy = runner([conn.docker_cli, 'inspect', '-f', CONTAINER_ADDRESS_FORMAT, resolve_container(conn, runner)], timeout=60)
    addresses = [a for a in out.split() if a and ':' not in a] if rc == 0 else []
    return addresses[0] if addresses else None


def tool_version(conn, tool, runner=run):
    """What ``<tool> --version`` prints where ``conn`` runs it (in the container, or on the host)."""
    if conn.transport == 'compose':
        argv = [conn.docker_cli, 'exec', resolve_container(conn, runner), tool, '--version']
    else:
        argv = [os.path.join(conn.bin_dir, tool) if conn.bin_dir else tool, '--version']
    rc, out, err = runner(argv, timeout=60)
    if rc != 0:
        raise fail_from_stderr(conn, rc, err, argv, '%s --version' % tool)
    return out.strip()


def version_major(version_line):
    """15 of "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"."""
    for word in version_line.split():
        head = word.split('.')[0]
        if head.isdigit():
            return int(head)
    return None


def host_client_problem(conn, tools, runner=run):
    """Why the host's client ``tools`` cannot reach the compose service's database over the container's own address.

    Returns ``(problem, direct_connection, versions)``; when ``problem`` is None, ``direct_connection`` is the
    container's first IPv4 address, port 5432, with the same user, database and password, and ``versions`` maps each
    tool to its ``--version`` line. It needs a password (from the host the server sees a TCP client, not its local
    socket), host tools of the server's major version (a newer pg_dump writes settings an older server refuses, an
    older one cannot read a newer server), and an answer to psql, which every session of the collection uses.
    """
    if not conn.password:
        return 'no password is given (db_password), and the host connects over TCP', None, {}
    address = container_ipv4(conn, runner)
    if not address:
        return 'the container has no IPv4 address on a docker network', None, {}
    direct = Connection(transport='direct', database=conn.database, user=conn.user, password=conn.password,
                        host=address, port=5432, bin_dir=conn.bin_dir, connect_timeout=min(conn.connect_timeout or 5, 5))
    versions = {}
    for tool in tools:
        try:
            versions[tool] = tool_version(direct, tool, runner)
        except TransportError as exc:
            return 'no usable %s on the host (%s)' % (tool, exc), None, {}
    try:
        rc, out, err = runner(client_argv(direct, 'psql', ['-X', '-q', '-A', '-t', '-c', "SELECT current_setting('server_version_num')"]),
                              env=client_env(direct), timeout=30)
    except TransportError as exc:
        return 'no usable psql on the host (%s)' % exc, None, {}
    if rc != 0 or not out.strip().isdigit():
        last = ((err or out).strip().splitlines() or ['no answer'])[-1]
        return 'the host cannot connect to %s:5432 (%s)' % (address, last), None, {}
    server_major = int(out.strip()) // 10000
    for tool, version in sorted(versions.items()):
        if version_major(version) != server_major:
            return 'the host\'s %s is not of the server\'s major version %d' % (version, server_major), None, {}
    return None, direct, versions


def pick_client(conn, choice, option, tools, runner=run):
    """Where the client ``tools`` run: ``(connection, {'used', 'reason'}, host_versions)``.

    A compose service's database is reached by the host's tools over the container's own address when they can
    (``auto``, ``host``): the bytes then take the kernel's network path, not ``docker exec``'s stream through the
    Docker daemon, which is slower than pg_dump or psql themselves (bench/RESULTS.md). ``container`` always uses
    ``docker exec``; ``auto`` falls back to it, naming why; ``host`` fails instead. ``option`` names the setting
    in messages; ``host_versions`` is empty unless the host's tools are used.
    """
    if conn.transport != 'compose':
        return conn, {'used': 'host', 'reason': 'direct transport'}, {}
    if choice == 'container':
        return conn, {'used': 'container', 'reason': '%s=container' % option}, {}
    problem, direct, versions = host_client_problem(conn, tools, runner)
    if problem is None:
        return direct, {'used': 'host', 'reason': "the host's %s reaches the container at %s:5432" % ('/'.join(tools), direct.host)}, versions
    if choice == 'host':
        raise TransportError('%s=host, but %s: fix that, or set %s=auto or container' % (option, problem, option), code='bad_option')
    return conn, {'used': 'container', 'reason': problem}, {}


PIPE_SIZE = 1024 * 1024
# Linux's fcntl code (fcntl.F_SETPIPE_SZ from Python 3.10).
_F_SETPIPE_SZ = getattr(fcntl, 'F_SETPIPE_SZ', 1031)


def widen_pipe(fileobj, size=PIPE_SIZE):
    """Ask for a pipe buffer of ``size`` bytes (Linux; at most /proc/sys/fs/pipe-max-size, 1 MiB by default).

    A dump or restore stream moves 1 MiB chunks through this process: with the default 64 KiB pipe each chunk costs
    16 wake-ups on both sides, which made the pass-through 2.6 times slower (bench/RESULTS.md). Where
    the size cannot be set the pipe works as before.
    """
    try:
        fcntl.fcntl(fileobj.fileno(), _F_SETPIPE_SZ, size)
    except (OSError, ValueError, AttributeError):
        pass
    return fileobj


def client_env(conn, base=None):
    """The environment for a client tool: the caller's plus PGPASSWORD / PGCONNECT_TIMEOUT when set."""
    env = dict(os.environ if base is None else base)
    env.pop('PGPASSWORD', None)
    if conn.password:
        env['PGPASSWORD'] = conn.password
    if conn.connect_timeout:
        env['PGCONNECT_TIMEOUT'] = str(conn.connect_timeout)
    return env


def client_argv(conn, tool, args, runner=run, database=None, stdin=False):
    """The argv that runs PostgreSQL client ``tool`` with ``args`` against ``conn`` (no secret in it)."""
    dbname = database if database is not None else conn.database
    conn_args = []
    if conn.user:
        conn_args += ['-U', conn.user]
    if dbname:
        conn_args += ['-d', dbname]
    if conn.transport == 'compose':
        container = resolve_container(conn, runner)
        argv = [conn.docker_cli, 'exec']
        if stdin:
            argv.append('-i')
        if conn.password:
            argv += ['-e', 'PGPASSWORD']
        if conn.connect_timeout:
            argv += ['-e', 'PGCONNECT_TIMEOUT']
        return argv + [container, tool] + conn_args + list(args)
    binary = os.path.join(conn.bin_dir, tool) if conn.bin_dir else tool
    host_args = []
    if conn.host:
        host_args += ['-h', conn.host]
    if conn.port:
        host_args += ['-p', str(conn.port)]
    return [binary] + host_args + conn_args + list(args)


def fail_from_stderr(conn, rc, stderr, argv, what):
    """Build the TransportError for a failed client command."""
    code, sentence = classify_error(stderr, conn.user, conn.database, conn.service, where=conn.where())
    if code == 'error':
        sentence = '%s failed (rc=%s): %s' % (what, rc, sentence)
    return TransportError(sentence, code=code, rc=rc, stderr=(stderr or '').strip()[-4000:], cmd=argv)
