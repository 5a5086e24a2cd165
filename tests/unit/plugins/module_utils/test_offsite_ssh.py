# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of _offsite.ssh: the ssh argv, the reading of ssh's stderr, the target's scripts through a fake runner, and
SshRunner with local commands (no ssh). The real thing runs in tests/system/test_offsite_ssh.py."""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
import time

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite import ssh
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import OffsiteError, OffsiteExistsError


def options(argv):
    """The values of the ``-o`` options of ``argv``, in order."""
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == '-o']


# ---- ssh_argv ---------------------------------------------------------------------------------------------------------

def test_argv_defaults():
    argv = ssh.ssh_argv('backup.example.com')
    assert argv[0] == 'ssh' and argv[-2:] == ['--', 'backup.example.com']
    opts = options(argv)
    for option in ('BatchMode=yes', 'StrictHostKeyChecking=yes', 'PasswordAuthentication=no', 'ConnectTimeout=30',
                   'ServerAliveInterval=15', 'ServerAliveCountMax=4', 'RequestTTY=no', 'RemoteCommand=none', 'EscapeChar=none',
                   'ControlPath=none'):
        assert option in opts
    assert argv[argv.index('-p') + 1] == '22'
    assert '-l' not in argv and '-i' not in argv
    assert not any(o.startswith(('UserKnownHostsFile', 'IdentitiesOnly')) for o in opts)


def test_argv_with_everything():
    argv = ssh.ssh_argv('10.0.0.5', user='backup', port=2222, identity_file='/etc/fleet/id_ed25519',
                        known_hosts_file='/etc/fleet/known_hosts', ssh_options=['Compression=yes', 'Ciphers aes256-gcm@openssh.com'],
                        connect_timeout=7)
    opts = options(argv)
    assert 'UserKnownHostsFile=/etc/fleet/known_hosts' in opts and 'IdentitiesOnly=yes' in opts and 'ConnectTimeout=7' in opts
    assert argv[argv.index('-i') + 1] == '/etc/fleet/id_ed25519'
    assert argv[argv.index('-p') + 1] == '2222' and argv[argv.index('-l') + 1] == 'backup'
    # ssh keeps the first value of an option: the fixed ones come before the caller's
    assert opts.index('StrictHostKeyChecking=yes') < opts.index('Compression=yes')
    assert opts.index('UserKnownHostsFile=/etc/fleet/known_hosts') < opts.index('Compression=yes')
    assert opts[-2:] == ['Compression=yes', 'Ciphers aes256-gcm@openssh.com']


@pytest.mark.parametrize('option', ['StrictHostKeyChecking=no', 'stricthostkeychecking no', 'UserKnownHostsFile=/dev/null',
                                    'BatchMode=no', 'PasswordAuthentication=yes', 'RemoteCommand=cat', 'RequestTTY=yes',
                                    'LocalCommand=touch x', 'PermitLocalCommand=yes', ' LogLevel = QUIET',
                                    'ControlPath=/tmp/%r', 'EscapeChar=~'])
def test_options_set_by_the_target_are_refused(option):
    with pytest.raises(OffsiteError, match='set by the SSH target itself') as err:
        ssh.ssh_argv('h', ssh_options=[option])
    assert err.value.code == 'offsite_config'


@pytest.mark.parametrize('option', ['', 'Compression', '-oCompression=yes', '=yes'])
def test_malformed_options_are_refused(option):
    with pytest.raises(OffsiteError, match='not of the form Key=Value'):
        ssh.ssh_argv('h', ssh_options=[option])


def test_known_hosts_path_percent_is_escaped_and_white_space_refused():
    assert 'UserKnownHostsFile=/k/100%%' in options(ssh.ssh_argv('h', known_hosts_file='/k/100%'))
    with pytest.raises(OffsiteError, match='white space'):
        ssh.ssh_argv('h', known_hosts_file='/k/my hosts')


# ---- classify_stderr --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('returncode, stderr, code', [
    (255, 'ssh: connect to host 10.1.2.3 port 22: Connection refused\r\n', 'offsite_unreachable'),
    (255, 'ssh: connect to host 10.1.2.3 port 22: Connection timed out\r\n', 'offsite_unreachable'),
    (255, 'Connection timed out during banner exchange\r\nConnection to 10.1.2.3 port 22 timed out\r\n', 'offsite_unreachable'),
    (255, 'ssh: Could not resolve hostname nope: Name or service not known\r\n', 'offsite_unreachable'),
    (255, 'ssh: connect to host 10.1.2.3 port 22: No route to host\r\n', 'offsite_unreachable'),
    (255, 'Timeout, server 10.1.2.3 not responding.\r\n', 'offsite_unreachable'),
    (255, 'kex_exchange_identification: read: Connection reset by peer\r\n', 'offsite_unreachable'),
    (255, '@@@@@@@\r\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n...\r\n'
          'Host key for [10.1.2.3]:2222 has changed and you have requested strict checking.\r\n'
          'Host key verification failed.\r\n', 'offsite_host_key'),
    (255, 'No ED25519 host key is known for [10.1.2.3]:2222 and you have requested strict checking.\r\n'
          'Host key verification failed.\r\n', 'offsite_host_key'),
    (255, 'backup@10.1.2.3: Permission denied (publickey).\r\n', 'offsite_denied'),
    (1, 'cat: write error: No space left on device\n', 'offsite_no_space'),
    (2, 'sh: 1: cannot create /srv/backup/.x.partial-1: No space left on device\n', 'offsite_no_space'),
    (1, 'cat: write error: Disk quota exceeded\n', 'offsite_no_space'),
    (1, 'sh: 1: cannot create /srv/backup/x: Permission denied\n', None),  # the remote file system, not ssh
    (1, 'Connection refused\n', None),  # said by a remote command, not by ssh
    (255, 'something else entirely\n', None),
    (0, '', None),
])
def test_classify_stderr(returncode, stderr, code):
    assert ssh.classify_stderr(returncode, stderr) == code


# ---- SshTarget through a fake runner -----------------------------------------------------------------------------------

class FakeRunner(object):
    """Records the scripts; answers each with the next ``(returncode, stdout, stderr)`` of ``answers`` (default success)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def run(self, argv, source=None, sink=None, timeout=None):
        data = b''.join(source) if source is not None else None
        self.calls.append({'argv': argv, 'script': argv[-1], 'data': data, 'timeout': timeout})
        answer = self.answers.pop(0) if self.answers else (0, b'', b'')
        if isinstance(answer, BaseException):
            raise answer  # pylint: disable=raising-bad-type
        returncode, out, err = answer
        if sink is not None:
            sink(out)
            out = b''
        return returncode, out, err


def make(runner=None, **kwargs):
    kwargs.setdefault('user', 'backup')
    return ssh.SshTarget('backup.example.com', kwargs.pop('path', '/srv/backup'), runner=runner or FakeRunner(), **kwargs)


@pytest.mark.parametrize('kwargs, label', [
    ({}, 'backup@backup.example.com:/srv/backup/'),
    ({'path': '/srv/backup/'}, 'backup@backup.example.com:/srv/backup/'),
    ({'port': 2222}, 'ssh://backup@backup.example.com:2222/srv/backup/'),
    ({'user': None}, 'backup.example.com:/srv/backup/'),
    ({'path': '/'}, 'backup@backup.example.com:/'),
])
def test_label(kwargs, label):
    target = make(**kwargs)
    assert target.kind == 'ssh' and target.label == label and target.location('a.dump') == label + 'a.dump'


def test_ipv6_label():
    assert ssh.SshTarget('fd00::5', '/b', user='u', runner=FakeRunner()).label == 'u@[fd00::5]:/b/'


@pytest.mark.parametrize('host, path', [('', '/b'), ('-oProxyCommand=x', '/b'), ('a b', '/b'), ('h', 'relative/dir'), ('h', '')])
def test_bad_host_or_path(host, path):
    with pytest.raises(OffsiteError) as err:
        ssh.SshTarget(host, path, runner=FakeRunner())
    assert err.value.code == 'offsite_config'


@pytest.mark.parametrize('name', ['', '.hidden', '..', 'a/b', 'a\nb', 'a\0b'])
def test_bad_names_run_nothing(name):
    runner = FakeRunner()
    with pytest.raises(OffsiteError, match='not an object name'):
        make(runner).stat(name)
    assert runner.calls == []


def test_paths_are_quoted():
    runner = FakeRunner((0, b'5\n', b''))
    target = make(runner, path="/srv/it's $(here)")
    assert target.stat("a b'c") == {'size': 5, 'locked_until': None, 'legal_hold': False}
    script = runner.calls[0]['script']
    assert "d=%s" % shlex.quote("/srv/it's $(here)") in script
    assert "f=%s" % shlex.quote("/srv/it's $(here)/a b'c") in script
    assert script.startswith('LC_ALL=C; export LC_ALL; umask 077;')


def test_lock_is_refused_before_anything_runs():
    runner = FakeRunner()
    with pytest.raises(OffsiteError, match='^Object Lock is an S3 feature'):
        make(runner).put_bytes('a.manifest.json', b'{}', lock=('COMPLIANCE', None))
    assert runner.calls == []


def test_put_bytes_streams_then_publishes():
    runner = FakeRunner()
    data = b'{"x": 1}'
    assert make(runner).put_bytes('a.manifest.json', data) == hashlib.sha256(data).hexdigest()
    upload, publish = runner.calls
    assert upload['data'] == data and 'cat > "$t"' in upload['script'] and '-eq %d' % len(data) in upload['script']
    assert hashlib.sha256(data).hexdigest() in publish['script'] and 'ln "$t" "$f"' in publish['script']
    tmp = shlex.split(upload['script'].split('; t=')[1].split(';')[0])[0]
    assert tmp.startswith('/srv/backup/.a.manifest.json.partial-')


def test_put_to_a_taken_name_cleans_nothing_up():
    runner = FakeRunner((ssh.RC_EXISTS, b'', b''))
    with pytest.raises(OffsiteExistsError):
        make(runner).put_bytes('a.dump', b'x')
    assert len(runner.calls) == 1


@pytest.mark.parametrize('answer, code', [
    ((1, b'', b'cat: write error: No space left on device\n'), 'offsite_no_space'),
    ((-9, b'', b''), 'offsite_error'),
])
def test_a_failed_upload_removes_the_temporary_file(answer, code):
    runner = FakeRunner(answer)
    with pytest.raises(OffsiteError) as err:
        make(runner).put_bytes('a.dump', b'x')
    assert err.value.code == code
    cleanup = runner.calls[-1]['script']
    assert len(runner.calls) == 2 and cleanup.startswith('rm -f /srv/backup/.a.dump.partial-')


def test_a_mismatch_at_the_server_is_not_published():
    runner = FakeRunner((0, b'', b''), (ssh.RC_MISMATCH, b'0000 1\n', b''))
    with pytest.raises(OffsiteError, match='not the .* sent, so it was not published') as err:
        make(runner).put_bytes('a.dump', b'x')
    assert err.value.code == 'offsite_mismatch' and runner.calls[-1]['script'].startswith('rm -f ')


@pytest.mark.parametrize('answer, code, words', [
    ((255, b'', b'ssh: connect to host backup.example.com port 22: Connection refused\r\n'), 'offsite_unreachable',
     'Connection refused'),
    ((255, b'', b'Host key verification failed.\r\n'), 'offsite_host_key', 'ssh-keyscan -p 22 backup.example.com >> /k'),
    ((255, b'', b'backup@backup.example.com: Permission denied (publickey).\r\n'), 'offsite_denied', 'authorized_keys'),
    ((ssh.RC_NO_DIR, b'', b''), 'offsite_no_dir', 'create it, owned by the SSH user, mode 0700'),
    ((ssh.RC_NOT_WRITABLE, b'', b''), 'offsite_denied', 'cannot write'),
    (subprocess.TimeoutExpired(['ssh'], 150), 'offsite_unreachable', 'did not answer for 150 seconds'),
])
def test_errors_of_a_put_name_cause_and_fix(answer, code, words):
    runner = FakeRunner(answer)
    with pytest.raises(OffsiteError) as err:
        make(runner, known_hosts_file='/k').put_bytes('a.dump', b'x')
    assert err.value.code == code and words in str(err.value)
    assert len(runner.calls) == 1  # the connection failed or nothing was written: no cleanup to try


def test_a_missing_ssh_client():
    with pytest.raises(OffsiteError, match='apt-get install openssh-client'):
        make(FakeRunner(FileNotFoundError(2, 'No such file'))).list_names()


def test_host_key_message_names_the_bracketed_entry_of_another_port():
    runner = FakeRunner((255, b'', b'WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!\r\nHost key verification failed.\r\n'))
    with pytest.raises(OffsiteError) as err:
        make(runner, port=2222).list_names()
    assert "the host key of [backup.example.com]:2222 has changed and host key checking stays on" in str(err.value)
    assert "ssh-keygen -R '[backup.example.com]:2222' -f ~/.ssh/known_hosts" in str(err.value)


def test_reading():
    runner = FakeRunner((0, b'./a.dump\0./a.dump.manifest.json\0./caf\xc3\xa9\0', b''), (ssh.RC_ABSENT, b'', b''),
                        (0, b'12\n', b''), (0, b'ab' * 32 + b' 12\n', b''), (0, b'0123456789ab', b''))
    target = make(runner)
    assert target.list_names() == {'a.dump', 'a.dump.manifest.json', 'caf\xe9'}
    assert target.stat('nope') is None
    assert target.hash_object('a.dump') == ('ab' * 32, 12)
    written = []
    target.download('a.dump', type('W', (), {'write': staticmethod(written.append)})())
    assert written == [b'0123456789ab']


def test_hash_timeout_grows_with_the_size():
    target = make()
    assert target._hash_timeout(50 << 30) - target._hash_timeout(0) == (50 << 30) // ssh.HASH_RATE


def test_missing_object_and_size_limit():
    runner = FakeRunner((ssh.RC_ABSENT, b'', b''), (ssh.RC_TOO_BIG, b'', b''), (0, b'x' * 11, b''))
    target = make(runner)
    with pytest.raises(OffsiteError, match='is not at') as err:
        target.get_bytes('a.manifest.json', 10)
    assert err.value.code == 'offsite_missing'
    for dummy in range(2):
        with pytest.raises(OffsiteError, match='more than the 10 bytes expected') as err:
            target.get_bytes('a.manifest.json', 10)
        assert err.value.code == 'offsite_too_large'


# ---- SshRunner with local commands ---------------------------------------------------------------------------------------

def test_runner_streams_both_ways_in_chunks():
    data = bytes(range(256)) * (5 * 4096 + 3)  # ~5 MiB
    chunks = []
    runner = ssh.SshRunner()
    returncode, out, err = runner.run(['cat'], source=(data[i:i + 100000] for i in range(0, len(data), 100000)),
                                      sink=chunks.append, timeout=30)
    assert (returncode, out, err) == (0, b'', b'')
    assert b''.join(chunks) == data and max(map(len, chunks)) <= ssh.CHUNK_SIZE and len(chunks) >= 5
    assert runner.current is None


def test_runner_collects_stdout_and_stderr():
    script = 'import sys; sys.stdout.write("out"); sys.stderr.write("err"); sys.exit(3)'
    assert ssh.SshRunner().run([sys.executable, '-c', script], timeout=30) == (3, b'out', b'err')


def test_runner_idle_timeout_kills_the_command():
    runner = ssh.SshRunner()
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        runner.run(['sleep', '30'], timeout=0.5)
    assert time.monotonic() - started < 5


def test_runner_survives_a_command_that_stops_reading():
    returncode, _out, _err = ssh.SshRunner().run(['head', '-c', '10'], source=iter([b'x' * ssh.CHUNK_SIZE] * 50), timeout=30)
    assert returncode == 0


def test_runner_kills_the_command_when_the_source_fails():
    procs = []

    class Boom(Exception):
        pass

    def source():
        yield b'x' * 1000
        procs.append(runner.current)
        raise Boom()

    runner = ssh.SshRunner()
    with pytest.raises(Boom):
        runner.run(['sleep', '30'], source=source(), timeout=30)
    assert procs[0].returncode is not None and runner.current is None
