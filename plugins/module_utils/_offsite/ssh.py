# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A backup server reached over SSH as an offsite target: ``SshTarget``. Internal to fleet_telemetry.dr: not a public API.

The stock ``ssh`` client runs as a subprocess, key-based only (``BatchMode=yes``), with host key checking always on
(``StrictHostKeyChecking=yes``): these options come first on the command line, and ssh keeps the first value of an
option, so neither ``ssh_options`` nor an ssh_config can switch them off. The server needs a POSIX sh login shell and
coreutils (cat, wc, sha256sum, ln, rm, sync, find). Every remote path is quoted with ``shlex.quote``.

An upload streams the file into ``.<name>.partial-<random>`` through ssh's stdin, hashing it while sending; the remote
side removes a temporary file shorter than announced (a cut stream), checks the sha256 and size, syncs it and publishes
it with ``ln`` (which never replaces a name), then removes the temporary name. Every failure removes it too (best effort,
and not when the connection itself failed: a leftover is a dot-file, which listings ignore).

Every wait has a limit: ssh's ``ConnectTimeout`` and ``ServerAliveInterval``, and ``SshRunner``'s idle timeout (no byte
in or out for that long kills ssh), stretched for the remote hashing of large files. This file must compile on Python 3.8.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import secrets
import selectors
import shlex
import subprocess
from contextlib import suppress

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import PARTIAL_MARKER
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import (
    OffsiteError, OffsiteExistsError, OffsiteMismatchError, OffsiteTarget)

CHUNK_SIZE = 1024 * 1024
SERVER_ALIVE_INTERVAL = 15
SERVER_ALIVE_COUNT_MAX = 4
IDLE_TIMEOUT = 120
HASH_RATE = 8 * 1024 * 1024  # bytes per second a slow server still hashes: the time limit of a remote sha256sum
STDERR_LIMIT = 64 * 1024
# Exit statuses of the remote scripts (ssh itself exits 255).
RC_NO_DIR, RC_NOT_WRITABLE, RC_EXISTS, RC_ABSENT, RC_MISMATCH, RC_TOO_BIG, RC_SHORT = 81, 82, 83, 84, 85, 86, 87
# Options set by this class: first on the command line, so they win over ssh_options and ssh_config.
FIXED_OPTIONS = ('BatchMode=yes', 'StrictHostKeyChecking=yes', 'PasswordAuthentication=no', 'KbdInteractiveAuthentication=no',
                 'RequestTTY=no', 'RemoteCommand=none', 'ClearAllForwardings=yes', 'ForwardAgent=no',
                 'PermitLocalCommand=no', 'EscapeChar=none', 'ControlPath=none', 'LogLevel=ERROR')
RESERVED_OPTIONS = frozenset(o.split('=', maxsplit=1)[0].lower() for o in FIXED_OPTIONS) | frozenset(
    ('userknownhostsfile', 'identitiesonly', 'connecttimeout', 'serveraliveinterval', 'serveralivecountmax', 'localcommand'))
_PATTERNS = (
    ('offsite_no_space', ('No space left on device', 'Disk quota exceeded')),
    ('offsite_host_key', ('REMOTE HOST IDENTIFICATION HAS CHANGED', 'Host key verification failed', 'host key is known for',
                          'you have requested strict checking')),
    ('offsite_denied', ('Permission denied (',)),
    ('offsite_unreachable', ('Connection refused', 'timed out', 'No route to host', 'Network is unreachable',
                             'Could not resolve hostname', 'not responding', 'Connection closed by', 'Connection reset',
                             'kex_exchange_identification', 'Name or service not known')),
)
_MESSAGES = {
    'offsite_unreachable': 'the SSH server of {label} cannot be reached ({detail}): check the host name, the port and that sshd '
                           'runs and accepts connections from this host',
    'offsite_host_key': 'the host key of {entry} {state} and host key checking stays on: verify the server\'s key fingerprint '
                        'out of band (on its console), then update {known} with ssh-keygen -R {quoted_entry} -f {known} and '
                        'ssh-keyscan -p {port} {host} >> {known}',
    'offsite_denied': 'the SSH server of {label} refused the key ({detail}): add this host\'s public key to the authorized_keys '
                      'of the SSH user there, or set the right user and identity_file',
    'offsite_no_space': 'the file system of {label} is full ({detail}): free space there or choose another directory; nothing '
                        'was published',
    'offsite_no_dir': 'the directory {path} does not exist on {host}: create it, owned by the SSH user, mode 0700 '
                      '(install -d -m 0700 -o {user} {quoted_path})',
}
_NOTHING_WRITTEN = frozenset(('offsite_unreachable', 'offsite_host_key', 'offsite_denied', 'offsite_exists', 'offsite_no_dir'))


def _check_option(option):
    """Refuse an ``ssh_options`` entry that is not ``Key=Value`` or that sets an option this class sets itself."""
    match = re.match(r'^\s*([A-Za-z0-9]+)\s*(=|\s)\s*\S', option)
    if not match:
        raise OffsiteError('the ssh option %r is not of the form Key=Value: write it as ssh -o takes it' % (option,),
                           code='offsite_config')
    if match.group(1).lower() in RESERVED_OPTIONS:
        raise OffsiteError('the ssh option %s is set by the SSH target itself (host key checking stays on, keys only): '
                           'remove it from ssh_options' % match.group(1), code='offsite_config')


def ssh_argv(host, user=None, port=22, identity_file=None, known_hosts_file=None, ssh_options=(), connect_timeout=30):
    """The argv of ``ssh`` up to the remote command (append it as one more argument): a pure function."""
    for option in ssh_options:
        _check_option(option)
    argv = ['ssh']
    fixed = list(FIXED_OPTIONS) + ['ConnectTimeout=%d' % int(connect_timeout), 'ServerAliveInterval=%d' % SERVER_ALIVE_INTERVAL,
                                   'ServerAliveCountMax=%d' % SERVER_ALIVE_COUNT_MAX]
    if known_hosts_file:
        if re.search(r'\s', known_hosts_file):
            raise OffsiteError('the known_hosts file %r has white space in its path, which ssh cannot take: move it'
                               % known_hosts_file, code='offsite_config')
        fixed.append('UserKnownHostsFile=%s' % known_hosts_file.replace('%', '%%'))
    if identity_file:
        fixed.append('IdentitiesOnly=yes')
    for option in fixed + list(ssh_options):
        argv += ['-o', option]
    if identity_file:
        argv += ['-i', identity_file]
    argv += ['-p', str(int(port))]
    if user:
        argv += ['-l', user]
    return argv + ['--', host]


def classify_stderr(returncode, stderr):
    """The error code that ssh's ``stderr`` shows (``offsite_unreachable``, ``_host_key``, ``_denied``, ``_no_space``) or None.

    Only a full disk is read from a remote command's failure; the others are ssh's own (exit status 255).
    """
    for code, needles in _PATTERNS:
        if (code == 'offsite_no_space' or returncode == 255) and any(n in stderr for n in needles):
            return code
    return None


def _last_line(stderr):
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else 'no message'


class SshRunner(object):
    """Runs one ssh command: feeds its stdin from byte chunks, hands its stdout on, keeps its stderr; kills it when idle."""

    def __init__(self, idle_timeout=IDLE_TIMEOUT):
        self.idle_timeout = idle_timeout
        self.current = None  # the running Popen, for tests that kill it

    def run(self, argv, source=None, sink=None, timeout=None):
        """Run ``argv``; return ``(returncode, stdout bytes or b'' when ``sink`` takes them, stderr bytes)``.

        ``source`` is an iterable of byte chunks for stdin (None: /dev/null); ``sink(chunk)`` gets stdout in chunks of
        up to CHUNK_SIZE. ``subprocess.TimeoutExpired`` when nothing moved for ``timeout`` (default idle_timeout) seconds.
        An exception of ``source`` or ``sink`` (or KeyboardInterrupt) kills ssh and propagates.
        """
        timeout = timeout or self.idle_timeout
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if source is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.current = proc
        try:
            out, err = self._pump(proc, iter(source) if source is not None else None, sink, timeout)
            return proc.wait(timeout=timeout), out, err
        finally:
            self.current = None
            _reap(proc)

    def _pump(self, proc, chunks, sink, timeout):
        out, err, pending = bytearray(), bytearray(), b''
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            sel.register(proc.stderr, selectors.EVENT_READ)
            if chunks is not None:
                os.set_blocking(proc.stdin.fileno(), False)
                sel.register(proc.stdin, selectors.EVENT_WRITE)
            while sel.get_map():
                events = sel.select(timeout)
                if not events:
                    raise subprocess.TimeoutExpired(proc.args, timeout)
                for key, _mask in events:
                    if key.fileobj is proc.stdin:
                        pending = _feed(sel, proc.stdin, pending or next(chunks, None))
                        continue
                    data = os.read(key.fd, CHUNK_SIZE)
                    if not data:
                        sel.unregister(key.fileobj)
                    elif key.fileobj is proc.stderr:
                        err = (err + data)[-STDERR_LIMIT:]
                    else:
                        out += data
                    while sink is not None and (len(out) >= CHUNK_SIZE or (out and not data)):
                        sink(bytes(out[:CHUNK_SIZE]))
                        del out[:CHUNK_SIZE]
        return bytes(out), bytes(err)


def _feed(sel, stdin, chunk):
    """Write what the pipe takes of ``chunk``; close stdin at the end of the data or when ssh is gone. The rest is returned."""
    if chunk is None:
        sel.unregister(stdin)
        stdin.close()
        return b''
    try:
        return memoryview(chunk)[os.write(stdin.fileno(), chunk):]
    except BlockingIOError:
        return chunk
    except BrokenPipeError:
        sel.unregister(stdin)
        return b''


def _reap(proc):
    """Kill ``proc`` if it still runs and wait for it (a bounded wait), then close its pipes."""
    if proc.poll() is None:
        proc.kill()
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    for stream in filter(None, (proc.stdin, proc.stdout, proc.stderr)):
        with suppress(OSError):
            stream.close()


class SshTarget(OffsiteTarget):
    """A directory on a backup server reached with the stock ssh client (see the module docstring)."""

    kind = 'ssh'

    def __init__(self, host, path, user=None, port=22, identity_file=None, known_hosts_file=None, ssh_options=(),
                 connect_timeout=30, runner=None):
        if not host or host.startswith('-') or re.search(r'\s', host):
            raise OffsiteError('the SSH host %r is not a host name: set the host of the target' % (host,), code='offsite_config')
        if not path or not path.startswith('/'):
            raise OffsiteError('the remote directory %r is not an absolute path: set the path of the target to /...' % (path,),
                               code='offsite_config')
        self.host, self.user, self.port = host, user, int(port)
        self.path = posixpath.normpath(path) if path != '/' else '/'
        self.known_hosts_file, self.connect_timeout = known_hosts_file, int(connect_timeout)
        self.argv = ssh_argv(host, user, port, identity_file, known_hosts_file, tuple(ssh_options), connect_timeout)
        self.runner = runner or SshRunner()
        where = '[%s]' % host if ':' in host else host
        who = '%s@%s' % (user, where) if user else where
        directory = self.path.rstrip('/') + '/'
        self.label = '%s:%s' % (who, directory) if self.port == 22 else 'ssh://%s:%d%s' % (who, self.port, directory)

    def location(self, name):
        return self.label + name

    def _file(self, name):
        if not name or '/' in name or name.startswith('.') or '\0' in name or '\n' in name:
            raise OffsiteError('%r is not an object name: names are base names that do not start with a dot' % (name,),
                               code='offsite_config')
        return posixpath.join(self.path, name)

    def _script(self, body, name=None, **paths):
        """A remote sh script: C locale, private umask, ``$d`` the directory (exit RC_NO_DIR without it), ``$f`` and more."""
        head = ['LC_ALL=C; export LC_ALL; umask 077', 'd=%s' % shlex.quote(self.path)]
        if name is not None:
            paths['f'] = self._file(name)
        head += ['%s=%s' % (var, shlex.quote(value)) for var, value in sorted(paths.items())]
        return '; '.join(head + ['[ -d "$d" ] || exit %d' % RC_NO_DIR, body])

    def _run(self, script, source=None, sink=None, timeout=None):
        """Run ``script`` on the server; raise ssh's own failures (and a full disk); return ``(returncode, stdout, stderr)``."""
        timeout = timeout or self.connect_timeout + IDLE_TIMEOUT
        try:
            returncode, out, err = self.runner.run(self.argv + [script], source=source, sink=sink, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise OffsiteError('the SSH server of %s did not answer for %d seconds: check that the host is up and reachable '
                               'on port %d, then run again' % (self.label, timeout, self.port), code='offsite_unreachable') from None
        except FileNotFoundError:
            raise OffsiteError('the ssh client is not installed on this host: install it (apt-get install openssh-client)') from None
        err = err.decode('utf-8', 'replace')
        code = classify_stderr(returncode, err)
        if code:
            raise OffsiteError(self._message(code, err), code=code)
        if returncode == RC_NO_DIR:
            raise OffsiteError(self._message('offsite_no_dir', err), code='offsite_no_dir')
        return returncode, out, err

    def _message(self, code, err):
        """The sentence of an error of ``code`` (``_PATTERNS``, or ``offsite_no_dir``), ``err`` being ssh's stderr."""
        known = self.known_hosts_file or '~/.ssh/known_hosts'
        entry = self.host if self.port == 22 else '[%s]:%d' % (self.host, self.port)
        return _MESSAGES[code].format(
            label=self.label, detail=_last_line(err), known=known, entry=entry, quoted_entry=shlex.quote(entry),
            state='has changed' if 'CHANGED' in err else 'is not in %s' % known, port=self.port, host=self.host,
            path=self.path, quoted_path=shlex.quote(self.path), user=self.user or '<ssh user>')

    def _fail(self, returncode, err, name, doing):
        """The error of a remote script that exited ``returncode`` while ``doing`` (a verb) the object ``name``."""
        if returncode == RC_NOT_WRITABLE:
            return OffsiteError('the SSH user cannot write to %s: make the directory owned by the SSH user, mode 0700'
                                % self.label, code='offsite_denied')
        if returncode == RC_ABSENT:
            return OffsiteError('%s is not at %s: copy it there first, or choose an object the target holds' % (name, self.label),
                                code='offsite_missing')
        return OffsiteError('%s %s at %s failed (exit status %s: %s): check the SSH server and the directory there'
                            % (doing, name, self.label, returncode, _last_line(err)))

    def _call(self, body, name, doing, allowed=(), **kwargs):
        """Run ``body`` about the object ``name``; return ``(returncode, stdout)``, raising unless it exits 0 or ``allowed``."""
        returncode, out, err = self._run(self._script(body, name), **kwargs)
        if returncode != 0 and returncode not in allowed:
            raise self._fail(returncode, err, name or self.path, doing)
        return returncode, out

    def list_names(self):
        out = self._call('cd "$d" && find . ! -name . -prune -type f ! -name ".*" -exec printf "%s\\0" {} +', None, 'listing')[1]
        return set(item[2:].decode('utf-8', 'surrogateescape') for item in out.split(b'\0') if item.startswith(b'./'))

    def stat(self, name):
        returncode, out = self._call('[ -f "$f" ] || exit %d; wc -c < "$f"' % RC_ABSENT, name, 'reading the size of', (RC_ABSENT,))
        return None if returncode else {'size': int(out.split()[0]), 'locked_until': None, 'legal_hold': False}

    def get_bytes(self, name, limit):
        body = ('[ -f "$f" ] || exit %d; s=$(wc -c < "$f") || exit 1; [ $s -le %d ] || exit %d; exec cat "$f"'
                % (RC_ABSENT, int(limit), RC_TOO_BIG))
        returncode, out = self._call(body, name, 'reading', (RC_TOO_BIG,))
        if returncode or len(out) > limit:
            raise OffsiteError('%s is more than the %d bytes expected: it is not what this collection wrote; move it away'
                               % (self.location(name), limit), code='offsite_too_large')
        return out

    def hash_object(self, name):
        found = self.stat(name)
        if found is None:
            raise self._fail(RC_ABSENT, '', name, 'hashing')
        body = '[ -f "$f" ] || exit %d; h=$(sha256sum < "$f") || exit 1; s=$(wc -c < "$f") || exit 1; echo "${h%%%% *} $s"'
        digest, size = self._call(body % RC_ABSENT, name, 'hashing', timeout=self._hash_timeout(found['size']))[1].split()
        return digest.decode('ascii'), int(size)

    def download(self, name, writer):
        self._call('[ -f "$f" ] || exit %d; exec cat "$f"' % RC_ABSENT, name, 'downloading', sink=writer.write)

    def delete(self, name):
        self._call('rm -f "$f"', name, 'deleting')

    def _hash_timeout(self, size):
        """The time limit of a remote sha256sum of ``size`` bytes: the usual one plus a second per HASH_RATE bytes."""
        return self.connect_timeout + IDLE_TIMEOUT + size // HASH_RATE

    def put_file(self, path, name, size, progress=None, lock=None):
        self._no_lock(lock)
        with open(path, 'rb') as fileobj:
            return self._put(name, iter(lambda: fileobj.read(CHUNK_SIZE), b''), size, progress, path)

    def put_bytes(self, name, data, lock=None):
        self._no_lock(lock)
        return self._put(name, [bytes(data)] if data else [], len(data), None, name)

    def _no_lock(self, lock):
        if lock is not None:
            raise OffsiteError('Object Lock is an S3 feature and %s is an SSH target: unset object_lock_mode for it, or copy '
                               'to an S3 bucket with Object Lock' % self.label, code='offsite_config')

    def _put(self, name, chunks, size, progress, source_name):
        """Upload ``chunks`` (``size`` bytes in all) under ``name`` through a temporary name; return their sha256 hex."""
        tmp = posixpath.join(self.path, '.%s%s%s' % (name, PARTIAL_MARKER, secrets.token_hex(8)))
        sent = _Counted(chunks, progress)
        try:
            self._upload(name, tmp, sent, size, source_name)
            self._publish(name, tmp, sent.digest.hexdigest(), size)
        except BaseException as exc:  # KeyboardInterrupt too
            if getattr(exc, 'code', None) not in _NOTHING_WRITTEN:  # the connection failed, or the scripts cleaned up
                self._remove_quietly(tmp)
            raise
        return sent.digest.hexdigest()

    def _upload(self, name, tmp, sent, size, source_name):
        body = ('[ -w "$d" ] || exit %d; { [ -e "$f" ] || [ -L "$f" ]; } && exit %d; set -C; '
                'cat > "$t" || { rm -f "$t"; exit 1; }; s=$(wc -c < "$t"); [ $s -eq %d ] || { rm -f "$t"; exit %d; }'
                % (RC_NOT_WRITABLE, RC_EXISTS, int(size), RC_SHORT))
        returncode, _out, err = self._run(self._script(body, name, t=tmp), source=sent)
        if returncode == RC_EXISTS:
            raise self._exists(name)
        if sent.done and sent.size != size:
            raise OffsiteError('%s changed while it was being uploaded (%d bytes expected, %d read): nothing was published; '
                               'run again' % (source_name, size, sent.size), code='offsite_source_changed')
        if returncode != 0:
            raise self._fail(returncode, err, name, 'uploading')

    def _publish(self, name, tmp, digest, size):
        body = ('h=$(sha256sum < "$t") || exit 1; s=$(wc -c < "$t") || exit 1; echo "${h%%%% *} $s"; '
                '[ "${h%%%% *}" = %s ] && [ $s -eq %d ] || exit %d; sync "$t" 2>/dev/null; '
                '{ [ -e "$f" ] || [ -L "$f" ]; } && { rm -f "$t"; exit %d; }; '  # ln would link into a directory
                'ln "$t" "$f" || { rm -f "$t"; [ -e "$f" ] && exit %d; exit 1; }; rm -f "$t"; sync "$d" 2>/dev/null; exit 0'
                % (digest, int(size), RC_MISMATCH, RC_EXISTS, RC_EXISTS))
        returncode, out, err = self._run(self._script(body, name, t=tmp), timeout=self._hash_timeout(size))
        if returncode == RC_EXISTS:
            raise self._exists(name)
        if returncode == RC_MISMATCH:
            raise OffsiteMismatchError('%s arrived at %s as %s (sha256, size): not the %s (%d bytes) sent, so it was not '
                                       'published; copy it again' % (name, self.label, out.decode('ascii', 'replace').strip(),
                                                                     digest, size))
        if returncode != 0:
            raise self._fail(returncode, err, name, 'publishing')

    def _exists(self, name):
        return OffsiteExistsError('%s already exists at %s: objects are never overwritten; move it away there or choose '
                                  'another name' % (name, self.label))

    def _remove_quietly(self, tmp):
        """Remove the temporary file ``tmp`` (best effort: a failure leaves a dot-file that every listing ignores)."""
        try:
            self.runner.run(self.argv + ['rm -f %s' % shlex.quote(tmp)], timeout=self.connect_timeout + 30)
        except Exception:  # pylint: disable=broad-except
            pass


class _Counted(object):
    """The byte chunks of an upload, hashed and counted as ssh takes them; ``progress(bytes_done)`` after each one."""

    def __init__(self, chunks, progress):
        self.chunks, self.progress = chunks, progress
        self.digest, self.size, self.done = hashlib.sha256(), 0, False

    def __iter__(self):
        for chunk in self.chunks:
            self.digest.update(chunk)
            yield chunk
            self.size += len(chunk)
            if self.progress is not None:
                self.progress(self.size)
        self.done = True
