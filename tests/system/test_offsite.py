# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Offsite copies, retention, and restores and drills from offsite, through real ansible-playbook runs.

S3 is moto in server mode on loopback (tests/support/moto_server.py); the backup server is a real OpenSSH server on
loopback (tests/support/sshd.py). moto does not verify the checksums a client sends, so every copy is checked here by
reading its bytes back with boto3 (or over ssh) and hashing them.

The bare-metal test restores production's newest offsite backup into a second compose project that has nothing local:
an empty backup directory, the inventory, the S3 settings and the key.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import COMMAND_TIMEOUT, HOST, REPO_ROOT, CmdlineScanner, ComposeStack, mount_small_tmpfs, run
from test_restore import BACKUP_PLAYBOOK, SEED_ARGS, Production, failure_message, output, reports

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import artifact_name, format_timestamp
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._manifest import manifest_bytes
from ansible_collections.fleet_telemetry.dr.tests.support import moto_server as moto_support
from ansible_collections.fleet_telemetry.dr.tests.support import sshd as sshd_support

DRILL_PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'dr_drill.yml')
BUCKET = 'fleet-dr-offsite'
LOCKED_BUCKET = 'fleet-dr-locked'
PREFIX = 'prod/telemetry_db/'


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def moto():
    server = moto_support.start_moto_server()
    s3 = server.client('s3')
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket=LOCKED_BUCKET, ObjectLockEnabledForBucket=True)
    yield server
    server.stop()


sshd = pytest.fixture(scope='module')(sshd_support.sshd_server)


@pytest.fixture(scope='module')
def remote_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('backup-server'))
    os.chmod(path, 0o700)
    return path


def s3_target(moto, **extra):
    target = {'name': 'offsite-s3', 'kind': 's3', 'bucket': BUCKET, 'prefix': PREFIX, 'endpoint_url': moto.url,
              'part_size_mb': 5}
    target.update(extra)
    return target


def ssh_target(sshd, directory, **extra):
    target = {'name': 'backup-server', 'kind': 'ssh', 'host': sshd.host, 'path': directory}
    target.update(sshd.client_options())
    target.update(extra)
    return target


@pytest.fixture(scope='module')
def production(tmp_path_factory, request, ansible, moto, sshd, remote_dir):
    """A production stack whose inventory copies every backup to S3 and to the backup server."""
    workdir = str(tmp_path_factory.mktemp('offsiteprod'))
    stack = ComposeStack(workdir, 'offsite')
    request.addfinalizer(stack.down)
    stack.up()
    stack.seed(SEED_ARGS)
    prod = Production(stack, ansible, workdir)
    prod.variables.update(
        fleet_dr_offsite_targets=[s3_target(moto), ssh_target(sshd, remote_dir)],
        fleet_dr_aws_region=moto_support.REGION, fleet_dr_aws_access_key=moto_support.ACCESS_KEY,
        fleet_dr_aws_secret_key=moto_support.SECRET_KEY, backup_retention=True)
    prod.write_inventory()
    return prod


@pytest.fixture(scope='module')
def copied(production):
    """One backup.yml run with both targets: the local artifact it made."""
    return production.backup()


def s3_bytes(moto, key, bucket=BUCKET):
    return moto.client('s3').get_object(Bucket=bucket, Key=key)['Body'].read()


def s3_keys(moto, bucket=BUCKET, prefix=PREFIX):
    pages = moto.client('s3').get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item['Key'] for page in pages for item in page.get('Contents', []))


def sha256_of(data):
    return hashlib.sha256(data).hexdigest()


def local_manifest(path):
    with open(path + '.manifest.json') as handle:
        return json.load(handle)


def adhoc(production, module, args, env=None, check=False):
    """``ansible -m fleet_telemetry.dr.<module>`` on the host of production's inventory; ``(rc, result, output)``.

    AWS credentials travel in the environment (never in argv): moto accepts any until auth is enabled."""
    argv = [production.ansible.ansible, HOST, '-i', production.inventory, '-m', 'fleet_telemetry.dr.' + module, '-a', json.dumps(args)]
    base = dict(production.stack.env, AWS_ACCESS_KEY_ID=moto_support.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=moto_support.SECRET_KEY,
                AWS_DEFAULT_REGION=moto_support.REGION)
    base.update(env or {})
    proc = run(argv + (['--check', '--diff'] if check else []), cwd=production.workdir,
               env=production.ansible.env(base, json_output=True), timeout=COMMAND_TIMEOUT)
    doc = json.loads(proc.stdout[proc.stdout.index('{'):])
    return proc.returncode, doc['plays'][0]['tasks'][0]['hosts'][HOST], proc.stdout + proc.stderr


def fake_artifact(directory, started_at, size=1024, database='telemetry_db', prefix='backup', payload=None):
    """A file artifact with a valid manifest (its bytes are not a dump: enough for copies and retention)."""
    name = artifact_name(started_at, 'plain', 'zstd', prefix)
    data = payload if payload is not None else os.urandom(size)
    path = os.path.join(directory, name)
    with open(path, 'wb') as handle:
        handle.write(data)
    manifest = {
        'format_version': 1, 'collection_version': '0.2.0', 'file': name, 'dump_format': 'plain', 'compression': 'zstd',
        'compression_level': 1, 'size': len(data), 'sha256': sha256_of(data), 'database': database, 'server_version': '15.8',
        'pg_dump_version': '15.8', 'started_at': format_timestamp(started_at),
        'finished_at': format_timestamp(started_at + datetime.timedelta(seconds=5)), 'row_counts': {'photo': 1},
        'counted_tables': ['photo'], 'transport': 'compose', 'snapshot_id': None, 'key_fingerprint': None, 'cipher': None,
        'host': None, 'source': None,
    }
    with open(path + '.manifest.json', 'wb') as handle:
        handle.write(manifest_bytes(manifest))
    return path


# --------------------------------------------------------------------------------------------
# backup.yml copies, verifies and prunes
# --------------------------------------------------------------------------------------------

def test_backup_copies_to_each_target_and_verifies_by_reading_back(production, copied, moto, remote_dir):
    manifest = local_manifest(copied)
    name = os.path.basename(copied)
    # S3: the bytes read back hash to the local manifest's checksum, and the manifest is there (the commit marker).
    assert sha256_of(s3_bytes(moto, PREFIX + name)) == manifest['sha256']
    assert json.loads(s3_bytes(moto, PREFIX + name + '.manifest.json')) == manifest
    # The backup server: the same, read from its directory.
    with open(os.path.join(remote_dir, name), 'rb') as handle:
        assert sha256_of(handle.read()) == manifest['sha256']
    assert os.path.exists(os.path.join(remote_dir, name + '.manifest.json'))
    assert not [entry for entry in os.listdir(remote_dir) if entry.startswith('.')], 'a temporary file was left on the backup server'
    # No multipart upload is left behind.
    assert not moto.client('s3').list_multipart_uploads(Bucket=BUCKET).get('Uploads')


def test_offsite_copy_is_idempotent_and_never_overwrites(production, copied, moto):
    target = s3_target(moto)
    rc, result, text = adhoc(production, 'offsite_copy', {'path': copied, 'target': target})
    assert rc == 0, text[-3000:]
    assert result['changed'] is False and result['copy']['status'] == 'present' and result['copy']['verified'] is True

    # Another object under a new backup's name: refused, the object untouched, the local backup kept.
    other = fake_artifact(os.path.dirname(copied), datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc))
    key = PREFIX + os.path.basename(other)
    moto.client('s3').put_object(Bucket=BUCKET, Key=key, Body=b'someone else wrote this')
    rc, result, text = adhoc(production, 'offsite_copy', {'path': other, 'target': target})
    assert rc != 0 and result['error_code'] == 'offsite_conflict', text[-3000:]
    assert s3_bytes(moto, key) == b'someone else wrote this'
    assert os.path.exists(other) and os.path.exists(other + '.manifest.json')
    for path in (other, other + '.manifest.json'):
        os.unlink(path)
    moto.client('s3').delete_object(Bucket=BUCKET, Key=key)


def test_backup_set_stats_and_summary_say_where_each_copy_went(production, moto):
    env = dict(production.ansible.env(production.stack.env), ANSIBLE_SHOW_CUSTOM_STATS='1')
    proc = run([production.ansible.playbook, '-i', production.inventory, BACKUP_PLAYBOOK], cwd=production.workdir, env=env,
               timeout=COMMAND_TIMEOUT)
    assert proc.returncode == 0, output(proc)[-4000:]
    text = output(proc)
    summary = [line for line in text.splitlines() if '"msg": "backup of telemetry_db written to' in line]
    assert len(summary) == 1, text[-4000:]
    # One line: the backup, each copy and where it went, verified, then the local retention.
    assert summary[0].count('read back and verified') == 2 and summary[0].rstrip().endswith('"'), summary[0]
    assert 's3://%s/%s' % (BUCKET, PREFIX) in summary[0] and 'ssh://root@127.0.0.1:' in summary[0]
    assert '; retention %s: kept ' % production.backup_dir in summary[0] and not summary[0].rstrip().endswith('\\""')
    stats = text[text.index('CUSTOM STATS'):]
    assert 'fleet_dr_backup_offsite' in stats and stats.count('"verified": true') == 2, stats[:3000]


# --------------------------------------------------------------------------------------------
# Restore and drill from offsite
# --------------------------------------------------------------------------------------------

def test_restore_from_s3(production, copied, moto):
    before = production.state()
    proc = production.restore('-e', 'restore_source=offsite-s3', '-e', 'restore_confirm=true')
    assert proc.returncode == 0, output(proc)[-6000:]
    assert production.state() == before
    report = reports(production)[-1]
    assert report['status'] == 'passed'
    assert report['source']['location'].startswith('s3://%s/%s' % (BUCKET, PREFIX))
    assert report['steps'][0]['name'] == 'download from offsite' and report['steps'][0]['ok']
    staging = os.path.join(production.backup_dir, 'staging')
    assert os.listdir(staging) == [], 'the staging copy was not removed'


def test_check_mode_restore_from_s3_proves_the_offsite_copy_and_leaves_nothing(production, copied):
    before = production.state()
    container = production.stack.container
    proc = production.restore('--check', '-e', 'restore_source=offsite-s3', '-e', 'restore_confirm=true')
    assert proc.returncode == 0, output(proc)[-6000:]
    text = output(proc)
    assert 'check mode: would restore' in text and 'Key preflight' in text
    assert production.state() == before and production.refresh() == container
    assert os.listdir(os.path.join(production.backup_dir, 'staging')) == []


def newest_drill_report(production):
    drills = sorted(glob.glob(os.path.join(production.backup_dir, 'drill-reports', 'drill_*.json')), key=os.path.getmtime)
    with open(drills[-1]) as handle:
        return json.load(handle)


def test_drill_proves_the_first_target_by_default_or_the_one_named(production, copied):
    """With targets configured the drill proves the first target's copy (here S3) unless told otherwise."""
    proc = production.playbook(DRILL_PLAYBOOK)
    assert proc.returncode == 0, output(proc)[-6000:]
    report = newest_drill_report(production)
    assert report['status'] == 'passed' and report['source']['location'].startswith('s3://%s/%s' % (BUCKET, PREFIX))
    proc = production.playbook(DRILL_PLAYBOOK, '-e', 'dr_drill_source=backup-server')
    assert proc.returncode == 0, output(proc)[-6000:]
    report = newest_drill_report(production)
    assert report['status'] == 'passed' and report['source']['location'].startswith('ssh://root@127.0.0.1:')
    assert os.listdir(os.path.join(production.backup_dir, 'staging')) == []


def newest_s3_artifact(moto):
    """The newest artifact at the S3 target (retention keeps one a day: earlier backups of today are gone)."""
    return max(key[len(PREFIX):] for key in s3_keys(moto) if not key.endswith('.manifest.json'))


def test_damaged_object_in_the_bucket_is_refused_before_down_v(production, copied, moto):
    name = newest_s3_artifact(moto)
    key = PREFIX + name
    good = s3_bytes(moto, key)
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x01
    client = moto.client('s3')
    client.put_object(Bucket=BUCKET, Key=key, Body=bytes(damaged))
    try:
        before = production.state()
        container = production.stack.container
        proc = production.restore('-e', 'restore_source=offsite-s3', '-e', 'restore_artifact=' + name, '-e', 'restore_confirm=true')
        assert proc.returncode != 0
        message = failure_message(proc)
        assert 'download from offsite' in message and 'damaged' in message, message
        assert 'Nothing was changed' in message
        assert production.state() == before and production.refresh() == container
        assert not [p for p in os.listdir(os.path.join(production.backup_dir, 'staging')) if not p.startswith('.')]
    finally:
        client.put_object(Bucket=BUCKET, Key=key, Body=good)


def test_artifact_without_manifest_is_not_a_backup(production, copied, moto, tmp_path):
    """An object that looks newer but has no manifest (an interrupted copy) is ignored by "newest"."""
    key = PREFIX + 'backup_2099-01-01_00-00-00.sql.zst'
    moto.client('s3').put_object(Bucket=BUCKET, Key=key, Body=b'not a backup without its manifest')
    try:
        args = {'target': s3_target(moto), 'staging_dir': str(tmp_path), 'database': 'telemetry_db'}
        rc, result, text = adhoc(production, 'offsite_fetch', args, check=True)
        assert rc == 0, text[-3000:]
        assert result['name'] != 'backup_2099-01-01_00-00-00.sql.zst' and result['name'].startswith('backup_')
    finally:
        moto.client('s3').delete_object(Bucket=BUCKET, Key=key)


def test_full_staging_disk_fails_before_down_v(production, copied, tmp_path):
    staging = str(tmp_path / 'staging')
    mount_small_tmpfs(staging)
    try:
        before = production.state()
        container = production.stack.container
        proc = production.restore('-e', 'restore_source=offsite-s3', '-e', 'restore_confirm=true', '-e', 'restore_staging_dir=' + staging)
        assert proc.returncode != 0
        message = failure_message(proc)
        assert 'download from offsite' in message and 'free' in message, message
        assert production.state() == before and production.refresh() == container
        assert os.listdir(staging) == []
    finally:
        subprocess.run(['umount', staging], check=False)


# --------------------------------------------------------------------------------------------
# Bad targets: a clear error, the local backup kept, the play failing
# --------------------------------------------------------------------------------------------

def backup_with_target(production, target):
    """backup.yml with ``target`` as the only offsite target; ``(proc, the newest local artifact)``."""
    before = set(os.listdir(production.backup_dir))
    proc = production.playbook(BACKUP_PLAYBOOK, '-e', json.dumps({'fleet_dr_offsite_targets': [target]}))
    made = sorted(set(os.listdir(production.backup_dir)) - before)
    return proc, [name for name in made if not name.endswith('.manifest.json')]


@pytest.mark.parametrize('case', ['missing_bucket', 'unreachable_s3', 'ssh_unreachable', 'ssh_host_key_changed'])
def test_a_bad_target_fails_the_play_and_keeps_the_local_backup(production, moto, sshd, remote_dir, case):
    if case == 'missing_bucket':
        target, code, words = s3_target(moto, bucket='no-such-bucket-here'), 'offsite_no_bucket', 'does not exist'
    elif case == 'unreachable_s3':
        target, code, words = s3_target(moto, endpoint_url='http://127.0.0.1:%d' % sshd_support.closed_port()), 'offsite_unreachable', ''
    elif case == 'ssh_unreachable':
        target, code, words = ssh_target(sshd, remote_dir, port=sshd_support.closed_port()), 'offsite_unreachable', ''
    else:
        known_hosts = os.path.join(production.workdir, 'changed_known_hosts')
        sshd.write_known_hosts(known_hosts, sshd.other_host_key())
        target, code, words = ssh_target(sshd, remote_dir, known_hosts_file=known_hosts), 'offsite_host_key', 'host key'
    proc, made = backup_with_target(production, target)
    text = output(proc)
    assert proc.returncode != 0, text[-3000:]
    assert code in text and words in text, text[-4000:]
    # The local backup of this run was made, verified, and kept.
    assert len(made) == 1, made
    assert os.path.exists(os.path.join(production.backup_dir, made[0] + '.manifest.json'))


def test_a_full_backup_server_disk_fails_and_leaves_nothing(production, sshd, tmp_path):
    remote = str(tmp_path / 'full')
    mount_small_tmpfs(remote)
    # Leave 64 KiB free: less than any backup of production.
    free = os.statvfs(remote).f_bavail * os.statvfs(remote).f_frsize
    with open(os.path.join(remote, '.filler'), 'wb') as handle:
        handle.write(b'\0' * (free - 65536))
    try:
        proc, made = backup_with_target(production, ssh_target(sshd, remote))
        assert proc.returncode != 0 and 'offsite_no_space' in output(proc), output(proc)[-4000:]
        assert len(made) == 1
        assert os.listdir(remote) == ['.filler']
    finally:
        subprocess.run(['umount', remote], check=False)


class CuttableProxy(object):
    """A TCP proxy on loopback in front of moto that can go down (every connection cut, new ones refused) and come back."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.port = moto_support.free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        self._sockets = []
        self._lock = threading.Lock()
        self._listener = None
        self.up()

    def up(self):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(('127.0.0.1', self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                client, dummy = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(('127.0.0.1', self.upstream_port))
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def down(self):
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass


def test_s3_down_in_the_middle_of_a_multipart_upload(production, moto, tmp_path):
    """S3 goes away after the first parts: the copy fails, nothing is visible; once it is back the rerun completes and
    no incomplete upload is left."""
    artifact = fake_artifact(str(tmp_path), datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc), size=60 << 20)
    key = 'cut/' + os.path.basename(artifact)
    proxy = CuttableProxy(moto.port)
    target = s3_target(moto, prefix='cut/', endpoint_url=proxy.url, concurrency=1)
    client = moto.client('s3')
    argv = [production.ansible.ansible, HOST, '-i', production.inventory, '-m', 'fleet_telemetry.dr.offsite_copy',
            '-a', json.dumps({'path': artifact, 'target': target})]
    env = production.ansible.env(dict(os.environ, AWS_ACCESS_KEY_ID=moto_support.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=moto_support.SECRET_KEY,
                                      AWS_DEFAULT_REGION=moto_support.REGION), json_output=True)
    proc = subprocess.Popen(argv, cwd=production.workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:
        uploads = [u for u in client.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get('Uploads', []) if u['Key'] == key]
        if uploads and client.list_parts(Bucket=BUCKET, Key=key, UploadId=uploads[0]['UploadId']).get('Parts'):
            break
        assert proc.poll() is None and time.monotonic() < deadline, 'the upload never started: %s' % (proc.communicate()[0][-3000:],)
        time.sleep(0.05)
    proxy.down()
    out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
    result = json.loads(out[out.index('{'):])['plays'][0]['tasks'][0]['hosts'][HOST]
    assert proc.returncode != 0 and result['error_code'] == 'offsite_unreachable', out[-3000:]
    assert 'cut/' + os.path.basename(artifact) not in s3_keys(moto, prefix='cut/')
    assert s3_keys(moto, prefix='cut/') == []
    proxy.up()
    rc, result, text = adhoc(production, 'offsite_copy', {'path': artifact, 'target': target})
    assert rc == 0 and result['copy']['status'] == 'copied', text[-3000:]
    assert sha256_of(s3_bytes(moto, key)) == local_manifest(artifact)['sha256']
    assert not client.list_multipart_uploads(Bucket=BUCKET, Prefix='cut/').get('Uploads')
    proxy.down()


def test_wrong_credentials_and_access_denied(production, moto, tmp_path):
    """A moto server of its own with IAM auth on: an unknown key, then a known key without s3 rights."""
    server = moto_support.start_moto_server()
    try:
        server.client('s3').create_bucket(Bucket=BUCKET)
        iam = server.client('iam')
        iam.create_user(UserName='nos3')
        key = iam.create_access_key(UserName='nos3')['AccessKey']
        server.enable_auth()
        artifact = fake_artifact(str(tmp_path), datetime.datetime(2026, 2, 3, 4, 5, 6, tzinfo=datetime.timezone.utc))
        target = s3_target(server)
        rc, result, text = adhoc(production, 'offsite_copy', {'path': artifact, 'target': target})
        assert rc != 0 and result['error_code'] == 'offsite_credentials', text[-3000:]
        rc, result, text = adhoc(production, 'offsite_copy', {'path': artifact, 'target': target},
                                 env={'AWS_ACCESS_KEY_ID': key['AccessKeyId'], 'AWS_SECRET_ACCESS_KEY': key['SecretAccessKey']})
        assert rc != 0 and result['error_code'] == 'offsite_denied', text[-3000:]
        assert key['SecretAccessKey'] not in text and moto_support.SECRET_KEY not in text
        assert os.path.exists(artifact)
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# Retention
# --------------------------------------------------------------------------------------------

def dated_history(directory, days, start=datetime.datetime(2026, 10, 1, 2, 0, 0, tzinfo=datetime.timezone.utc)):
    """One fake backup a day for ``days`` days from ``start``; their names, oldest first."""
    return [os.path.basename(fake_artifact(directory, start + datetime.timedelta(days=day))) for day in range(days)]


def test_retention_keeps_gfs_locally_and_at_the_target(production, moto, tmp_path):
    local = str(tmp_path / 'history')
    os.makedirs(local)
    names = dated_history(local, 40)
    target = s3_target(moto, prefix='retention/')
    for name in names:
        rc, result, text = adhoc(production, 'offsite_copy', {'path': os.path.join(local, name), 'target': target})
        assert rc == 0, text[-3000:]
    # Check mode lists every deletion with its reason, as a diff, and deletes nothing.
    rc, result, text = adhoc(production, 'backup_retention', {'backup_dir': local}, check=True)
    assert rc == 0, text[-3000:]
    would = sorted(entry['name'] for entry in result['delete'])
    assert result['diff']['before'].count('delete:') == len(would) > 0
    assert all(entry['reason'] for entry in result['delete'])
    assert len(os.listdir(local)) == 80
    # The real run: 7 daily (the last 7 days) and 4 weekly keepers; the newest is kept.
    rc, result, text = adhoc(production, 'backup_retention', {'backup_dir': local, 'protect': names[-1]})
    assert rc == 0, text[-3000:]
    kept = sorted(entry['name'] for entry in result['keep'])
    assert sorted(entry['name'] for entry in result['delete']) == would
    assert set(names[-7:]) <= set(kept) and len(kept) <= 11
    assert sorted(n for n in os.listdir(local) if not n.endswith('.manifest.json')) == kept
    # The same policy at the target, through the target's own retention counts.
    rc, result, text = adhoc(production, 'backup_retention', {'target': dict(target, retention={'daily': 3, 'weekly': 0}),
                                                              'protect': names[-1]})
    assert rc == 0, text[-3000:]
    remaining = s3_keys(moto, prefix='retention/')
    assert remaining == sorted('retention/' + n + suffix for n in names[-3:] for suffix in ('', '.manifest.json'))


def test_retention_never_deletes_when_this_runs_backup_is_not_verified_nor_the_only_backup(production, tmp_path):
    local = str(tmp_path / 'one')
    os.makedirs(local)
    only = dated_history(local, 1)
    rc, result, text = adhoc(production, 'backup_retention', {'backup_dir': local, 'daily': 0, 'weekly': 0})
    assert rc == 0 and [entry['name'] for entry in result['keep']] == only and result['delete'] == [], text[-3000:]
    names = dated_history(local, 10, start=datetime.datetime(2026, 11, 1, 2, 0, 0, tzinfo=datetime.timezone.utc))
    rc, result, text = adhoc(production, 'backup_retention', {'backup_dir': local, 'daily': 1, 'weekly': 0,
                                                              'protect': 'backup_2026-12-31_00-00-00.sql.zst'})
    assert rc != 0 and result['error_code'] == 'retention_skipped', text[-3000:]
    assert len(os.listdir(local)) == 2 * (len(names) + 1)


def test_a_failed_backup_prunes_nothing(production, copied):
    """backup.yml whose backup fails (a database that does not exist) never reaches retention: every local backup stays."""
    before = sorted(os.listdir(production.backup_dir))
    assert [name for name in before if name.endswith('.manifest.json')], before
    proc = production.playbook(BACKUP_PLAYBOOK, '-e', 'fleet_dr_db_name=no_such_database')
    assert proc.returncode != 0 and 'no_such_database' in output(proc), output(proc)[-3000:]
    assert 'Retention - prune' not in output(proc)
    assert sorted(os.listdir(production.backup_dir)) == before


def test_object_lock_is_reported_never_fought(production, moto, tmp_path):
    local = str(tmp_path / 'locked')
    os.makedirs(local)
    names = dated_history(local, 3, start=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(days=3))
    target = s3_target(moto, bucket=LOCKED_BUCKET, prefix='locked/', object_lock_mode='GOVERNANCE', object_lock_days=30)
    for name in names:
        rc, result, text = adhoc(production, 'offsite_copy', {'path': os.path.join(local, name), 'target': target})
        assert rc == 0 and result['copy']['locked_until'], text[-3000:]
    head = moto.client('s3').head_object(Bucket=LOCKED_BUCKET, Key='locked/' + names[0])
    assert head['ObjectLockMode'] == 'GOVERNANCE'
    rc, result, text = adhoc(production, 'backup_retention', {'target': target, 'daily': 1, 'weekly': 0})
    assert rc == 0, text[-3000:]
    assert sorted(entry['name'] for entry in result['locked']) == sorted(names[:2]) and result['delete'] == []
    assert len(s3_keys(moto, bucket=LOCKED_BUCKET, prefix='locked/')) == 6
    # A weekly keeper gets the longer lock of its class, on the artifact and its manifest.
    weekly = dict(target, object_lock_weekly_days=60)
    rc, result, text = adhoc(production, 'backup_retention', {'target': weekly, 'daily': 0, 'weekly': 1})
    assert rc == 0 and [entry['name'] for entry in result['lock_extended']] == [names[-1]], text[-3000:]
    started = datetime.datetime.strptime(names[-1][len('backup_'):-len('.sql.zst')], '%Y-%m-%d_%H-%M-%S')
    until = started.replace(tzinfo=datetime.timezone.utc) + datetime.timedelta(days=60)
    for key in ('locked/' + names[-1], 'locked/' + names[-1] + '.manifest.json'):
        assert moto.client('s3').head_object(Bucket=LOCKED_BUCKET, Key=key)['ObjectLockRetainUntilDate'] == until
    rc, result, text = adhoc(production, 'backup_retention', {'target': weekly, 'daily': 0, 'weekly': 1})
    assert rc == 0 and result['lock_extended'] == [] and result['changed'] is False, text[-3000:]


# --------------------------------------------------------------------------------------------
# The host is gone: bare-metal recovery from S3
# --------------------------------------------------------------------------------------------

def test_bare_metal_recovery_from_s3(production, copied, moto, ansible, tmp_path_factory, request):
    """A new compose project with an empty backup directory, given only the inventory, the S3 settings and the key,
    restores production's newest offsite backup and verifies it."""
    expected = production.state()
    workdir = str(tmp_path_factory.mktemp('baremetal'))
    stack = ComposeStack(workdir, 'baremetal')
    request.addfinalizer(stack.down)
    stack.up()
    stack.key, stack.key_hex = production.stack.key, production.stack.key_hex
    fresh = Production(stack, ansible, workdir)
    assert os.listdir(fresh.backup_dir) == []
    fresh.variables.update(fleet_dr_offsite_targets=[s3_target(moto)], fleet_dr_aws_region=moto_support.REGION,
                           fleet_dr_aws_access_key=moto_support.ACCESS_KEY, fleet_dr_aws_secret_key=moto_support.SECRET_KEY)
    fresh.write_inventory()
    proc = fresh.restore('-e', 'restore_source=offsite-s3', '-e', 'restore_confirm=true')
    assert proc.returncode == 0, output(proc)[-6000:]
    assert fresh.state() == expected
    report = reports(fresh)[-1]
    assert report['status'] == 'passed' and report['source']['location'].startswith('s3://')


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------

def test_aws_secrets_never_appear_at_vvvv(production, moto, tmp_path):
    secret, token = 'offsite-secret-' + os.urandom(12).hex(), 'offsite-token-' + os.urandom(12).hex()
    vars_file = str(tmp_path / 'aws.json')
    with open(os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), 'w') as handle:
        json.dump({'fleet_dr_aws_secret_key': secret, 'fleet_dr_aws_session_token': token}, handle)
    needles = [secret, token]
    with CmdlineScanner(needles, ['AnsiballZ_offsite_copy']) as scanner:
        proc = production.playbook(BACKUP_PLAYBOOK, '-vvvv', '-e', '@' + vars_file)
    assert proc.returncode == 0, output(proc)[-4000:]
    text = output(proc)
    assert secret not in text and token not in text
    assert scanner.leaks == [] and scanner.scans > 0
    for path in glob.glob(os.path.join(production.backup_dir, '**', '*.json'), recursive=True):
        with open(path) as handle:
            content = handle.read()
        assert secret not in content and token not in content, path
