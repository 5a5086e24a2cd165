# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A moto server (``python -m moto.server``) on loopback for tests: S3, KMS, Secrets Manager ... over the wire.

AWS is not reachable from the test machines. moto in server mode answers the real AWS protocols on
``http://127.0.0.1:<port>``, so boto3 (and the modules, through ``endpoint_url``) talk to it as to AWS.

Use it as a context manager::

    with moto_server() as server:
        s3 = server.client('s3')

or from a pytest fixture::

    @pytest.fixture(scope='module')
    def moto():
        server = start_moto_server()
        yield server
        server.stop()

Import it as ``ansible_collections.fleet_telemetry.dr.tests.support.moto_server`` (once the collection is
on ``sys.path``, as tests/system/conftest.py and tests/unit/conftest.py arrange) or load the file by path
with ``importlib.util.spec_from_file_location``; it imports only the standard library (boto3 lazily).

Facts of moto 5.2 in server mode that tests rely on:
- Credentials are not checked by default. ``server.enable_auth()`` (POST ``/moto-api/reset-auth``) turns
  IAM authentication on for the whole server: from then on only access keys created through moto's IAM
  are accepted (``InvalidAccessKeyId``, ``SignatureDoesNotMatch``) and their policies apply
  (``AccessDenied``). ``server.disable_auth()`` turns it off again. It is global to the server process:
  give such tests a server of their own.
- ``server.reset()`` (POST ``/moto-api/reset``) forgets every bucket, key and user.
- The server keeps everything in memory and runs one thread per request.

Each server writes its log (one line per request) to a temporary file, removed by ``stop()``; ``log_tail()``
returns its end for an error message.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HOST = '127.0.0.1'
REGION = 'us-east-1'
ACCESS_KEY = 'FLEETDRMOTOACCESSKEY'  # made up: moto accepts any key until enable_auth()
SECRET_KEY = 'fleetdr-moto-secret-not-a-real-one'
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port():
    """A TCP port on loopback that nothing listens on (at the time of the call)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def venv_python():
    """The Python of ``$FLEET_DR_VENV`` when set (as tests/system/conftest.py does), else this interpreter."""
    venv = os.environ.get('FLEET_DR_VENV')
    if venv and os.access(os.path.join(venv, 'bin', 'python'), os.X_OK):
        return os.path.join(venv, 'bin', 'python')
    return sys.executable


class MotoServer(object):
    """One ``moto.server`` process on ``127.0.0.1:<port>``; ``url`` is its endpoint_url."""

    def __init__(self, port=None, python=None, env=None):
        self.port = port or free_port()
        self.python = python or venv_python()
        self.extra_env = dict(env or {})
        self.url = 'http://%s:%d' % (HOST, self.port)
        self.process = None
        self._log = None

    def start(self, timeout=START_TIMEOUT):
        """Start the server and wait until it answers HTTP; raise RuntimeError with its log when it does not."""
        if self.process is not None:
            raise RuntimeError('moto server already started on %s' % self.url)
        env = dict(os.environ)
        env.update(self.extra_env)
        env.setdefault('AWS_DEFAULT_REGION', REGION)
        fd, self._log = tempfile.mkstemp(prefix='fleet_dr_moto_', suffix='.log')
        with os.fdopen(fd, 'wb') as log:
            self.process = subprocess.Popen(
                [self.python, '-m', 'moto.server', '-H', HOST, '-p', str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError('moto server on %s did not start: %s' % (self.url, tail))
            time.sleep(0.1)
        return self

    def answers(self):
        """True when something answers HTTP on the port (any status)."""
        try:
            with urllib.request.urlopen(self.url + '/moto-api/', timeout=2) as response:
                response.read()
            return True
        except urllib.error.HTTPError:
            return True
        except (OSError, ValueError):
            return False

    def stop(self):
        """Stop the server (SIGTERM, then SIGKILL) and remove its log; safe to call twice."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        if self._log:
            with contextlib.suppress(OSError):
                os.unlink(self._log)
            self._log = None

    def kill(self):
        """Kill the server at once (SIGKILL), as a crash or a network cut would look to a client."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)

    def log_tail(self, size=4000):
        """The end of the server's log, for error messages."""
        if not self._log:
            return ''
        try:
            with open(self._log, 'rb') as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - size))
                return log.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def _post(self, path, data=b''):
        # Not a form: werkzeug would consume a form body and moto would see no data.
        request = urllib.request.Request(self.url + path, data=data, method='POST',
                                         headers={'Content-Type': 'application/octet-stream'})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def reset(self):
        """Forget every resource of every service (buckets, keys, IAM users ...)."""
        self._post('/moto-api/reset')

    def enable_auth(self, after=0):
        """Check credentials and IAM policies on every request after the next ``after`` ones."""
        self._post('/moto-api/reset-auth', str(after).encode('ascii'))

    def disable_auth(self):
        """Accept any credentials again (moto's default)."""
        self._post('/moto-api/reset-auth', b'inf')

    def client(self, service, access_key=ACCESS_KEY, secret_key=SECRET_KEY, **config):
        """A boto3 client of ``service`` against this server (path-style S3 addressing); ``config`` goes to botocore's Config."""
        import boto3  # pylint: disable=import-outside-toplevel
        from botocore.config import Config  # pylint: disable=import-outside-toplevel
        if service == 's3':
            config.setdefault('s3', {'addressing_style': 'path'})
        return boto3.session.Session().client(
            service, region_name=REGION, endpoint_url=self.url, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, config=Config(**config))

    def __enter__(self):
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()


def start_moto_server(port=None, python=None, env=None, timeout=START_TIMEOUT):
    """Start a moto server and return it (a ``MotoServer``); the caller calls ``stop()``, e.g. in a fixture's teardown."""
    return MotoServer(port=port, python=python, env=env).start(timeout)


@contextlib.contextmanager
def moto_server(port=None, python=None, env=None, timeout=START_TIMEOUT):
    """A started moto server for the ``with`` block, stopped after it."""
    server = start_moto_server(port=port, python=python, env=env, timeout=timeout)
    try:
        yield server
    finally:
        server.stop()


if __name__ == '__main__':
    with moto_server() as running:
        sys.stdout.write('moto server on %s (Ctrl-C stops it)\n' % running.url)
        sys.stdout.flush()
        try:
            while running.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
