# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Backups that must fail: killed dump, full disk, held lock, wrong settings. None may leave anything behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest


DB_NAME = 'telemetry_db'


def backup_entries(directory):
    """Names in a backup directory, without the lock files that BackupLock keeps by design."""
    return sorted(name for name in os.listdir(directory) if not (name.startswith('.') and name.endswith('.lock')))


def failed(rc, result):
    assert rc != 0 and result.get('failed'), 'the backup should have failed: %s' % json.dumps(result, indent=1)[-4000:]
    return result


def test_killed_dump_leaves_nothing(killed_backup):
    """pg_dump killed inside the container while bytes stream: the run fails, no artifact, manifest or partial file stays."""
    run = killed_backup
    assert run.notes['killed'], 'the dump ended before it could be killed (rc=%s): %s' % (run.rc, run.result.get('msg'))
    assert run.notes['streamed'] > 0
    failed(run.rc, run.result)
    assert 'pg_dump' in run.result['msg'], run.result['msg']
    assert backup_entries(run.backup_dir) == [], 'left behind: %s' % backup_entries(run.backup_dir)


def test_killed_dump_has_error_code_dump_failed(killed_backup):
    failed(killed_backup.rc, killed_backup.result)
    assert killed_backup.result.get('error_code') == 'dump_failed', killed_backup.result.get('error_code')
    assert 'killed' in killed_backup.result['msg'], killed_backup.result['msg']


def test_disk_full_leaves_nothing(disk_full_backup):
    """A 2 MiB tmpfs fills up during the dump (free space check off): the run fails naming the lack of space; nothing stays."""
    run = disk_full_backup
    failed(run.rc, run.result)
    assert run.result.get('error_code') == 'disk_full' or 'no space' in run.result['msg'].lower(), run.result
    assert backup_entries(run.backup_dir) == [], 'left behind: %s' % backup_entries(run.backup_dir)


def test_disk_full_during_the_dump_has_error_code_disk_full(disk_full_backup):
    failed(disk_full_backup.rc, disk_full_backup.result)
    assert disk_full_backup.result.get('error_code') == 'disk_full', disk_full_backup.result.get('error_code')


def test_free_space_check_refuses_up_front(stack, ansible, small_tmpfs, compose_backup_args):
    """With check_free_space the same tmpfs is refused before the dump, naming its free space."""
    rc, result, dummy = ansible.module(compose_backup_args(stack, small_tmpfs, check_free_space=True), env=stack.env)
    failed(rc, result)
    assert result['error_code'] == 'disk_full', result
    assert small_tmpfs in result['msg'] and 'MiB free' in result['msg'], result['msg']
    assert 'stream' not in result and 'sha256' not in result
    assert backup_entries(small_tmpfs) == [], 'left behind: %s' % backup_entries(small_tmpfs)


def test_second_backup_while_the_lock_is_held(stack, ansible, backup_dir, compose_backup_args):
    """While this test process holds the collection's BackupLock, a backup fails with lock_held naming our pid."""
    # Importable through the ansible_collections tree that conftest puts on sys.path.
    from ansible_collections.fleet_telemetry.dr.plugins.module_utils._lock import BackupLock  # pylint: disable=import-outside-toplevel

    with BackupLock(backup_dir, 'backup-%s' % DB_NAME, purpose='system test holding the lock'):
        rc, result, dummy = ansible.module(compose_backup_args(stack, backup_dir), env=stack.env)
    failed(rc, result)
    assert result['error_code'] == 'lock_held', result
    assert 'pid %d' % os.getpid() in result['msg'], result['msg']
    assert backup_entries(backup_dir) == []


def test_wrong_password_is_auth_failed(stack, ansible, backup_dir):
    """transport=direct to the published port with a wrong password: auth_failed, and the wrong password is not echoed."""
    wrong = 'wrong-' + os.urandom(8).hex()
    args = {'transport': 'direct', 'db_host': '127.0.0.1', 'db_port': stack.port, 'db_password': wrong, 'backup_dir': backup_dir}
    rc, result, output = ansible.module(args)
    failed(rc, result)
    assert result['error_code'] == 'auth_failed', result
    assert 'password' in result['msg'], result['msg']
    assert wrong not in output
    assert backup_entries(backup_dir) == []


def test_missing_database_is_no_database(stack, ansible, backup_dir, compose_backup_args):
    rc, result, dummy = ansible.module(compose_backup_args(stack, backup_dir, db_name='no_such_db'), env=stack.env)
    failed(rc, result)
    assert result['error_code'] == 'no_database', result
    assert 'no_such_db' in result['msg'] and 'does not exist' in result['msg'], result['msg']
    assert backup_entries(backup_dir) == []


def test_missing_project_directory(stack, ansible, backup_dir, compose_backup_args, tmp_path):
    missing = str(tmp_path / 'no-such-project')
    rc, result, dummy = ansible.module(compose_backup_args(stack, backup_dir, project_src=missing), env=stack.env)
    failed(rc, result)
    assert result['error_code'] == 'no_project', result
    assert missing in result['msg'] and 'does not exist' in result['msg'], result['msg']


def test_project_without_a_container(stack, ansible, backup_dir, compose_backup_args):
    """A compose project whose db service has no container (never started, or down)."""
    rc, result, dummy = ansible.module(compose_backup_args(stack, backup_dir, project_name='fdrsysnothing%s' % os.urandom(3).hex()),
                                       env=stack.env)
    failed(rc, result)
    assert result['error_code'] == 'container_down', result
    assert 'no container' in result['msg'] and 'up -d db' in result['msg'], result['msg']


def test_unknown_service(stack, ansible, backup_dir, compose_backup_args):
    rc, result, dummy = ansible.module(compose_backup_args(stack, backup_dir, service='nosuchservice'), env=stack.env)
    failed(rc, result)
    assert 'nosuchservice' in result['msg'], result['msg']


def test_stopped_container(stack, ansible, backup_dir, compose_backup_args):
    """The db container exists but is stopped (docker-compose stop): container_down, telling how to start it."""
    stop = subprocess.run(['docker', 'stop', '-t', '10', stack.container], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, timeout=120)
    assert stop.returncode == 0, stop.stderr
    try:
        rc, result, dummy = ansible.module(compose_backup_args(stack, backup_dir), env=stack.env)
    finally:
        start = subprocess.run(['docker', 'start', stack.container], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, timeout=120)
        assert start.returncode == 0, start.stderr
        stack.wait_healthy()
    failed(rc, result)
    assert result['error_code'] == 'container_down', result
    assert 'not running' in result['msg'] and 'up -d db' in result['msg'], result['msg']
    assert backup_entries(backup_dir) == []


def test_no_docker_daemon_is_no_docker(stack, ansible, backup_dir, compose_backup_args):
    """The compose transport with no Docker daemon behind DOCKER_HOST: no_docker, saying how to start one."""
    env = dict(stack.env, DOCKER_HOST='unix:///nonexistent/fdr-docker.sock')
    rc, result, dummy = ansible.module(compose_backup_args(stack, backup_dir), env=env)
    failed(rc, result)
    assert result['error_code'] == 'no_docker', result
    assert 'docker' in result['msg'].lower(), result['msg']
    assert backup_entries(backup_dir) == []


def test_nothing_listening_is_db_down(stack, ansible, backup_dir):
    """transport=direct to a loopback port nobody listens on: db_down, naming where it tried."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    args = {'transport': 'direct', 'db_host': '127.0.0.1', 'db_port': port, 'db_password': stack.password, 'backup_dir': backup_dir}
    rc, result, output = ansible.module(args)
    failed(rc, result)
    assert result['error_code'] == 'db_down', result
    assert str(port) in result['msg'], result['msg']
    assert stack.password not in output
    assert backup_entries(backup_dir) == []


def test_read_only_destination_is_refused(stack, ansible, compose_backup_args, tmp_path, request):
    """A backup directory on a read-only file system (root's permission bits cannot help): refused before the dump."""
    mountpoint = str(tmp_path / 'ro')
    os.makedirs(mountpoint)
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m,ro', 'tmpfs', mountpoint], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        pytest.skip('cannot mount a read-only tmpfs here: %s' % proc.stderr.strip())
    request.addfinalizer(lambda: subprocess.run(['umount', mountpoint], check=False, timeout=60))
    rc, result, dummy = ansible.module(compose_backup_args(stack, mountpoint), env=stack.env)
    failed(rc, result)
    assert 'not writable' in result['msg'] and mountpoint in result['msg'], result['msg']
    assert 'stream' not in result and 'sha256' not in result
    assert os.listdir(mountpoint) == []
