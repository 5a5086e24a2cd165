# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real OpenSSH server on loopback for tests: ``SshServer`` (a context manager) and ``sshd_server`` (a fixture body).

``SshServer`` runs ``/usr/sbin/sshd -D -e -f <config>`` as root on 127.0.0.1, on a free port, in a temporary directory
that holds everything: a fresh ed25519 host key, a fresh ed25519 client key (``identity_file``) that is the only entry
of ``AuthorizedKeysFile``, and a ``known_hosts_file`` for the client with ``[127.0.0.1]:<port> <host key>``. Keys only
(``PasswordAuthentication no``, no PAM), the client logs in as ``user`` (root, whose login shell runs the commands).
The server's log (``-e``) goes to ``log_path``. Leaving the context kills sshd and removes the directory.

It needs root, ``/usr/sbin/sshd`` (Debian: openssh-server) and ``ssh``/``ssh-keygen`` (openssh-client); ``skip_reason()``
says what is missing, for ``pytest.skip``. Use from a test file (the way tests/system loads tests/support modules)::

    sshd_support = _load('fleet_dr_sshd', os.path.join(REPO_ROOT, 'tests', 'support', 'sshd.py'))
    sshd = pytest.fixture(scope='module')(sshd_support.sshd_server)

    def test_x(sshd):
        target = SshTarget(sshd.host, '/some/dir', **sshd.client_options())
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

SSHD = '/usr/sbin/sshd'
START_TIMEOUT = 15


def skip_reason():
    """Why a real sshd cannot run here (a sentence), or None when it can."""
    if os.geteuid() != 0:
        return 'the sshd tests run as root'
    if not os.access(SSHD, os.X_OK):
        return '%s is missing: apt-get install openssh-server' % SSHD
    for tool in ('ssh', 'ssh-keygen'):
        if shutil.which(tool) is None:
            return '%s is missing: apt-get install openssh-client' % tool
    return None


def free_port():
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def closed_port():
    """A TCP port of 127.0.0.1 that refuses connections (nothing listens; the kernel answers with a reset)."""
    return free_port()


def keygen(path, comment='fleet-dr-test'):
    """Make a new ed25519 key pair at ``path`` and ``path``.pub (no passphrase); return the public key line."""
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path],
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    with open(path + '.pub') as handle:
        return handle.read().strip()


def known_hosts_line(host, port, public_key_line):
    """The known_hosts entry of ``host``:``port`` for the public key line ``<type> <base64> [comment]``."""
    key_type, key_data = public_key_line.split()[:2]
    entry = host if port == 22 else '[%s]:%d' % (host, port)
    return '%s %s %s\n' % (entry, key_type, key_data)


def _config(workdir, port):
    return '\n'.join([
        'Port %d' % port,
        'ListenAddress 127.0.0.1',
        'HostKey %s' % os.path.join(workdir, 'host_key'),
        'PidFile %s' % os.path.join(workdir, 'sshd.pid'),
        'AuthorizedKeysFile %s' % os.path.join(workdir, 'authorized_keys'),
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PermitRootLogin prohibit-password',
        'UsePAM no',
        'StrictModes no',  # the keys live below /tmp, which is world-writable
        'PrintMotd no',
        'AcceptEnv LANG LC_*',
        'MaxStartups 100',
        'MaxSessions 100',
        'LogLevel VERBOSE',
        '',
    ])


class SshServer(object):
    """A running sshd on 127.0.0.1 with its own keys; see the module docstring."""

    host = '127.0.0.1'
    user = 'root'

    def __init__(self):
        self.workdir = None
        self.port = None
        self.process = None
        self.host_public_key = None
        self.identity_file = None
        self.known_hosts_file = None
        self.log_path = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def start(self):
        """Make the keys and the config, start sshd and wait until it accepts connections."""
        reason = skip_reason()
        if reason:
            raise RuntimeError(reason)
        os.makedirs('/run/sshd', mode=0o755, exist_ok=True)  # privilege separation directory
        self.workdir = tempfile.mkdtemp(prefix='fleet_dr_sshd_')
        try:
            self.host_public_key = keygen(os.path.join(self.workdir, 'host_key'), 'fleet-dr-test-host')
            self.identity_file = os.path.join(self.workdir, 'client_key')
            with open(os.path.join(self.workdir, 'authorized_keys'), 'w') as handle:
                handle.write(keygen(self.identity_file, 'fleet-dr-test-client') + '\n')
            self._start_sshd()
        except BaseException:
            self.stop()
            raise

    def _start_sshd(self):
        for _attempt in range(5):  # the free port may be taken between the probe and sshd's bind
            self.port = free_port()
            config = os.path.join(self.workdir, 'sshd_config')
            with open(config, 'w') as handle:
                handle.write(_config(self.workdir, self.port))
            self.log_path = os.path.join(self.workdir, 'sshd.log')
            with open(self.log_path, 'ab') as log:
                self.process = subprocess.Popen([SSHD, '-D', '-e', '-f', config], stdin=subprocess.DEVNULL,
                                                stdout=log, stderr=log, start_new_session=True)
            if self._wait_ready():
                self.known_hosts_file = os.path.join(self.workdir, 'known_hosts')
                self.write_known_hosts(self.known_hosts_file)
                return
            self._kill()
        raise RuntimeError('sshd did not start; its log: %s' % self.log())

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    sock.settimeout(2)
                    if sock.recv(4).startswith(b'SSH-'):
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def write_known_hosts(self, path, public_key_line=None):
        """Write a known_hosts file at ``path`` for this server: its own host key, or ``public_key_line`` (another)."""
        with open(path, 'w') as handle:
            handle.write(known_hosts_line(self.host, self.port, public_key_line or self.host_public_key))
        return path

    def other_host_key(self):
        """The public key line of a new host key that is not this server's (for a 'changed host key' known_hosts)."""
        path = os.path.join(self.workdir, 'other_host_key_%s' % os.urandom(4).hex())
        return keygen(path, 'fleet-dr-test-other-host')

    def client_options(self, **overrides):
        """The keyword arguments of an SshTarget (or an ssh command) that reach this server: user, port and the files."""
        options = dict(user=self.user, port=self.port, identity_file=self.identity_file,
                       known_hosts_file=self.known_hosts_file)
        options.update(overrides)
        return options

    def ssh_argv(self, *command):
        """A plain ssh command line to this server (for checks done by tests)."""
        return ['ssh', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', 'UserKnownHostsFile=%s' % self.known_hosts_file,
                '-o', 'IdentitiesOnly=yes', '-i', self.identity_file, '-p', str(self.port), '-l', self.user, self.host] + list(command)

    def log(self):
        """What sshd wrote so far."""
        try:
            with open(self.log_path, errors='replace') as handle:
                return handle.read()
        except (OSError, TypeError):
            return ''

    def _kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.process = None

    def stop(self):
        """Kill the listening sshd (a session still open ends with its client) and remove the temporary directory."""
        self._kill()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def sshd_server():
    """The body of a pytest fixture: ``pytest.fixture(scope=...)(sshd_server)`` yields a running ``SshServer``."""
    with SshServer() as server:
        yield server
