# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""SshTarget against a real OpenSSH server on loopback (tests/support/sshd.py): no Docker.

The "remote" directories are directories of this machine, so the tests look at what the server really holds with plain
``os`` calls. Run as root: ``python -m pytest -q tests/system/test_offsite_ssh.py``.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import time

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.ssh import SshTarget
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import (
    OffsiteError, OffsiteExistsError)
from ansible_collections.fleet_telemetry.dr.tests.support import sshd as sshd_support

MIB = 1024 * 1024

pytestmark = pytest.mark.skipif(sshd_support.skip_reason() is not None, reason=str(sshd_support.skip_reason()))


# ---- fixtures ---------------------------------------------------------------------------------------------------------

sshd = pytest.fixture(scope='module')(sshd_support.sshd_server)


@pytest.fixture
def remote_dir(tmp_path):
    """The target directory on the "remote" side, as the docs ask for it: mode 0700, owned by the SSH user (root)."""
    path = tmp_path / 'offsite'
    path.mkdir(mode=0o700)
    return str(path)


@pytest.fixture
def target(sshd, remote_dir):
    return SshTarget(sshd.host, remote_dir, **sshd.client_options(connect_timeout=10))


@pytest.fixture
def local_file(tmp_path):
    """A 3 MiB + 123 bytes file of random bytes: ``(path, data)``."""
    data = os.urandom(3 * MIB + 123)
    path = tmp_path / 'local.dump'
    path.write_bytes(data)
    return str(path), data


def settled_listing(directory, timeout=10):
    """Every entry of ``directory`` (dot files too) once no ``.partial-`` file is left, or after ``timeout`` seconds.

    A killed ssh leaves the remote shell running for a moment (it reads EOF, sees the stream cut short, removes its
    temporary file): the guarantee is that the temporary file goes, soon.
    """
    deadline = time.monotonic() + timeout
    while True:
        names = sorted(os.listdir(directory))
        if not any('.partial-' in name for name in names) or time.monotonic() > deadline:
            return names
        time.sleep(0.1)


def wait_for_partial(directory, timeout=10):
    """Whether a ``.partial-`` file shows up in ``directory`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any('.partial-' in name for name in os.listdir(directory)):
            return True
        time.sleep(0.02)
    return False


# ---- the round trip ----------------------------------------------------------------------------------------------------

def test_round_trip_of_a_file(target, remote_dir, local_file):
    path, data = local_file
    done = []
    sent = target.put_file(path, 'db-1.dump', len(data), progress=done.append)
    assert sent == hashlib.sha256(data).hexdigest()
    assert done == sorted(done) and done[-1] == len(data) and len(done) == 4  # 1 MiB chunks
    assert target.list_names() == {'db-1.dump'}
    assert target.stat('db-1.dump') == {'size': len(data), 'locked_until': None, 'legal_hold': False}
    assert target.hash_object('db-1.dump') == (sent, len(data))
    chunks = []
    target.download('db-1.dump', type('Writer', (), {'write': staticmethod(chunks.append)})())
    assert b''.join(chunks) == data
    assert max(len(chunk) for chunk in chunks) <= MIB
    assert open(os.path.join(remote_dir, 'db-1.dump'), 'rb').read() == data
    assert os.stat(os.path.join(remote_dir, 'db-1.dump')).st_mode & 0o777 == 0o600
    assert settled_listing(remote_dir) == ['db-1.dump']


def test_round_trip_of_bytes_and_the_labels(sshd, target, remote_dir):
    assert target.kind == 'ssh'
    assert target.label == 'ssh://root@127.0.0.1:%d%s/' % (sshd.port, remote_dir)
    assert target.location('x.dump') == target.label + 'x.dump'
    manifest = b'{"sha256": "abc"}\n'
    assert target.put_bytes('x.dump.manifest.json', manifest) == hashlib.sha256(manifest).hexdigest()
    assert target.get_bytes('x.dump.manifest.json', 1000) == manifest
    assert target.put_bytes('empty', b'') == hashlib.sha256(b'').hexdigest()
    assert target.stat('empty')['size'] == 0 and target.get_bytes('empty', 10) == b''
    assert target.list_names() == {'x.dump.manifest.json', 'empty'}


def test_names_and_directories_that_need_quoting(sshd, tmp_path):
    directory = tmp_path / "it's a $(dir) `here`"
    directory.mkdir(mode=0o700)
    target = SshTarget(sshd.host, str(directory), **sshd.client_options())
    name = "db 1; rm -rf x $(touch pwned) 'q' \"d\".dump"
    target.put_bytes(name, b'payload')
    assert target.list_names() == {name}
    assert target.get_bytes(name, 100) == b'payload'
    assert target.hash_object(name) == (hashlib.sha256(b'payload').hexdigest(), 7)
    target.delete(name)
    assert os.listdir(str(directory)) == []
    assert not os.path.exists('/root/pwned') and not os.path.exists('pwned')


def test_list_names_leaves_out_temporary_files_dot_files_and_directories(target, remote_dir):
    for name in ('a.dump', '.hidden', '.a.dump.partial-0123abcd'):
        with open(os.path.join(remote_dir, name), 'w') as handle:
            handle.write('x')
    os.mkdir(os.path.join(remote_dir, 'subdir'))
    with open(os.path.join(remote_dir, 'subdir', 'b.dump'), 'w') as handle:
        handle.write('x')
    assert target.list_names() == {'a.dump'}
    assert target.stat('subdir') is None


def test_missing_objects(target):
    assert target.stat('absent.dump') is None
    for call in (lambda: target.hash_object('absent.dump'), lambda: target.get_bytes('absent.dump', 10),
                 lambda: target.download('absent.dump', io.BytesIO())):
        with pytest.raises(OffsiteError) as err:
            call()
        assert err.value.code == 'offsite_missing'


def test_get_bytes_refuses_an_object_over_the_limit(target):
    target.put_bytes('big.manifest.json', b'x' * 2000)
    with pytest.raises(OffsiteError, match='more than the 1000 bytes expected') as err:
        target.get_bytes('big.manifest.json', 1000)
    assert err.value.code == 'offsite_too_large'


def test_delete(target, remote_dir):
    target.put_bytes('gone.dump', b'data')
    target.delete('gone.dump')
    assert os.listdir(remote_dir) == [] and target.stat('gone.dump') is None
    target.delete('gone.dump')  # deleting what is not there is not an error


# ---- never overwriting ------------------------------------------------------------------------------------------------

def test_put_to_an_existing_name_is_refused_and_changes_nothing(target, remote_dir, local_file):
    path, data = local_file
    existing = os.path.join(remote_dir, 'db-1.dump')
    with open(existing, 'wb') as handle:
        handle.write(b'the older backup')
    with pytest.raises(OffsiteExistsError, match='never overwritten') as err:
        target.put_file(path, 'db-1.dump', len(data))
    assert err.value.code == 'offsite_exists'
    with pytest.raises(OffsiteExistsError):
        target.put_bytes('db-1.dump', b'other')
    assert open(existing, 'rb').read() == b'the older backup'
    assert settled_listing(remote_dir) == ['db-1.dump']


def test_an_existing_symlink_or_directory_is_a_taken_name(target, remote_dir):
    os.symlink('/nonexistent', os.path.join(remote_dir, 'dangling.dump'))
    os.mkdir(os.path.join(remote_dir, 'dir.dump'))
    for name in ('dangling.dump', 'dir.dump'):
        with pytest.raises(OffsiteExistsError):
            target.put_bytes(name, b'x')
    assert settled_listing(remote_dir) == ['dangling.dump', 'dir.dump']
    assert os.listdir(os.path.join(remote_dir, 'dir.dump')) == []


def test_a_local_file_of_another_size_is_not_published(target, remote_dir, local_file):
    path, data = local_file
    with pytest.raises(OffsiteError, match='changed while it was being uploaded') as err:
        target.put_file(path, 'db-1.dump', len(data) - 1)
    assert err.value.code == 'offsite_source_changed'
    assert settled_listing(remote_dir) == []


def test_object_lock_is_refused(target, remote_dir):
    with pytest.raises(OffsiteError, match='Object Lock is an S3 feature') as err:
        target.put_bytes('x', b'x', lock=('GOVERNANCE', None))
    assert err.value.code == 'offsite_config'
    assert os.listdir(remote_dir) == []


# ---- the server side fails ----------------------------------------------------------------------------------------------

def test_missing_remote_directory(sshd, remote_dir):
    missing = os.path.join(remote_dir, 'not-there')
    target = SshTarget(sshd.host, missing, **sshd.client_options())
    for call in (target.list_names, lambda: target.put_bytes('x.dump', b'x'), lambda: target.stat('x.dump')):
        with pytest.raises(OffsiteError) as err:
            call()
        assert err.value.code == 'offsite_no_dir'
        assert missing in str(err.value) and 'mode 0700' in str(err.value) and 'owned by the SSH user' in str(err.value)
    assert not os.path.exists(missing)


def test_a_full_remote_disk(sshd, small_tmpfs, local_file):
    path, data = local_file  # 3 MiB into a 2 MiB tmpfs
    target = SshTarget(sshd.host, small_tmpfs, **sshd.client_options())
    with pytest.raises(OffsiteError, match='No space left on device') as err:
        target.put_file(path, 'db-1.dump', len(data))
    assert err.value.code == 'offsite_no_space'
    assert settled_listing(small_tmpfs) == []
    target.put_bytes('small.dump', b'fits')  # the space is back
    assert target.list_names() == {'small.dump'}


# ---- the connection fails -----------------------------------------------------------------------------------------------

def test_unreachable_host_fails_fast(sshd, remote_dir):
    target = SshTarget(sshd.host, remote_dir, **sshd.client_options(port=sshd_support.closed_port(), connect_timeout=10))
    started = time.monotonic()
    with pytest.raises(OffsiteError, match='Connection refused') as err:
        target.list_names()
    assert err.value.code == 'offsite_unreachable'
    assert time.monotonic() - started < 5


def test_a_server_that_never_answers_times_out(sshd, remote_dir):
    with socket.socket() as silent:  # accepts (the kernel's backlog) but never speaks SSH
        silent.bind(('127.0.0.1', 0))
        silent.listen(5)
        target = SshTarget(sshd.host, remote_dir, **sshd.client_options(port=silent.getsockname()[1], connect_timeout=2))
        started = time.monotonic()
        with pytest.raises(OffsiteError) as err:
            target.put_bytes('x.dump', b'x')
    assert err.value.code == 'offsite_unreachable'
    assert time.monotonic() - started < 15
    assert os.listdir(remote_dir) == []


def test_changed_host_key_is_refused_and_nothing_is_written(sshd, remote_dir, tmp_path, local_file):
    path, data = local_file
    known_hosts = sshd.write_known_hosts(str(tmp_path / 'known_hosts'), sshd.other_host_key())
    target = SshTarget(sshd.host, remote_dir, **sshd.client_options(known_hosts_file=known_hosts))
    with pytest.raises(OffsiteError) as err:
        target.put_file(path, 'db-1.dump', len(data))
    assert err.value.code == 'offsite_host_key'
    message = str(err.value)
    assert 'has changed' in message and 'host key checking stays on' in message
    assert 'ssh-keyscan -p %d 127.0.0.1' % sshd.port in message and known_hosts in message
    assert os.listdir(remote_dir) == []


def test_unknown_host_is_refused(sshd, remote_dir, tmp_path):
    known_hosts = tmp_path / 'empty_known_hosts'
    known_hosts.write_text('')
    target = SshTarget(sshd.host, remote_dir, **sshd.client_options(known_hosts_file=str(known_hosts)))
    with pytest.raises(OffsiteError) as err:
        target.put_bytes('x.dump', b'x')
    assert err.value.code == 'offsite_host_key' and 'is not in' in str(err.value)
    assert os.listdir(remote_dir) == [] and known_hosts.read_text() == ''  # nothing learnt


def test_host_key_checking_cannot_be_switched_off(sshd, remote_dir):
    with pytest.raises(OffsiteError, match='StrictHostKeyChecking'):
        SshTarget(sshd.host, remote_dir, ssh_options=['StrictHostKeyChecking=no'], **sshd.client_options())


def test_a_key_the_server_does_not_know_is_denied(sshd, remote_dir, tmp_path):
    sshd_support.keygen(str(tmp_path / 'stranger'))
    target = SshTarget(sshd.host, remote_dir, **sshd.client_options(identity_file=str(tmp_path / 'stranger')))
    with pytest.raises(OffsiteError, match=r'Permission denied \(publickey\)') as err:
        target.list_names()
    assert err.value.code == 'offsite_denied'


# ---- interrupted uploads -------------------------------------------------------------------------------------------------

class Stop(Exception):
    pass


@pytest.mark.parametrize('exception', [Stop, KeyboardInterrupt])
def test_an_upload_stopped_by_its_progress_callback_leaves_nothing(target, remote_dir, local_file, exception):
    path, data = local_file

    def progress(done):
        if done >= MIB:
            assert wait_for_partial(remote_dir)  # stopped while a temporary file is there
            raise exception()

    with pytest.raises(exception):
        target.put_file(path, 'db-1.dump', len(data), progress=progress)
    assert settled_listing(remote_dir) == []
    assert target.runner.current is None


def test_an_upload_whose_ssh_is_killed_leaves_nothing(target, remote_dir, local_file):
    path, data = local_file
    killed = []

    def progress(done):
        if not killed:
            assert wait_for_partial(remote_dir)
            killed.append(target.runner.current.pid)
            os.kill(killed[0], signal.SIGKILL)

    with pytest.raises(OffsiteError) as err:
        target.put_file(path, 'db-1.dump', len(data), progress=progress)
    assert killed and err.value.code == 'offsite_error'
    assert settled_listing(remote_dir) == []
    target.put_file(path, 'db-1.dump', len(data))  # the name is still free
    assert target.hash_object('db-1.dump') == (hashlib.sha256(data).hexdigest(), len(data))
