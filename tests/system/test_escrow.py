# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""ENCRYPTION_KEY escrow in AWS Secrets Manager and age-encrypted backups, through real ansible-playbook runs.

Secrets Manager, KMS and S3 are moto in server mode on loopback (tests/support/moto_server.py); encryption is the real
``age`` command. Every backup is proven by restoring it into the stack (or, by hand, with ``age -d | zstd -d | psql``).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess

import pytest

from conftest import COMMAND_TIMEOUT, REPO_ROOT, CmdlineScanner, ComposeStack, run, secret_forms
from test_restore import BACKUP_PLAYBOOK, PHOTO_CHECKSUM, SEED_ARGS, Production, assert_untouched, failure_message, output, reports

from ansible_collections.fleet_telemetry.dr.tests.support import moto_server as moto_support
from ansible_collections.fleet_telemetry.dr.tests.support import sshd as sshd_support

DRILL_PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'dr_drill.yml')
BUCKET = 'fleet-dr-encrypted'
KEY_SECRET = 'fleet/prod/encryption-key'
IDENTITY_SECRET = 'fleet/prod/age-identity'
ASYNC_DIR = os.path.expanduser('~/.ansible_async')


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def moto():
    server = moto_support.start_moto_server()
    server.client('s3').create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


class Identity(object):
    """An age identity made by age-keygen: its file (mode 0600), its text and its public key."""

    def __init__(self, directory, name):
        self.path = os.path.join(directory, name + '.txt')
        subprocess.run(['age-keygen', '-o', self.path], check=True, capture_output=True)
        with open(self.path) as handle:
            self.text = handle.read()
        self.secret = [line for line in self.text.splitlines() if line.startswith('AGE-SECRET-KEY-1')][0]
        self.recipient = subprocess.run(['age-keygen', '-y', self.path], check=True, capture_output=True, text=True).stdout.strip()

    @property
    def fingerprint(self):
        return 'sha256:' + hashlib.sha256(self.recipient.encode('ascii')).hexdigest()[:16]


@pytest.fixture(scope='module')
def identities(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp('age'))
    return {'ops': Identity(directory, 'ops'), 'other': Identity(directory, 'other')}


@pytest.fixture(scope='module')
def production(tmp_path_factory, request, ansible, moto):
    """A production stack whose inventory escrows the key in Secrets Manager (moto)."""
    workdir = str(tmp_path_factory.mktemp('escrowprod'))
    stack = ComposeStack(workdir, 'escrow')
    request.addfinalizer(stack.down)
    stack.up()
    stack.seed(SEED_ARGS)
    prod = Production(stack, ansible, workdir)
    prod.variables.update(
        fleet_dr_aws_region=moto_support.REGION, fleet_dr_aws_access_key=moto_support.ACCESS_KEY,
        fleet_dr_aws_secret_key=moto_support.SECRET_KEY, fleet_dr_secrets_endpoint_url=moto.url,
        fleet_dr_key_secret_id=KEY_SECRET)
    prod.write_inventory()
    return prod


def secrets(moto):
    return moto.client('secretsmanager')


def current_key(moto, secret_id=KEY_SECRET):
    return secrets(moto).get_secret_value(SecretId=secret_id)['SecretString']


def put_version(moto, value, secret_id=KEY_SECRET, stages=None):
    """A new version of the secret (AWSCURRENT unless ``stages`` says otherwise), as a rotation writes it."""
    args = {'SecretId': secret_id, 'SecretString': value}
    if stages:
        args['VersionStages'] = stages
    return secrets(moto).put_secret_value(**args)['VersionId']


def artifacts(directory):
    return sorted(name for name in os.listdir(directory) if not name.endswith('.manifest.json') and not name.startswith('.')
                  and os.path.isfile(os.path.join(directory, name)))


def manifest_of(path):
    with open(path + '.manifest.json') as handle:
        return json.load(handle)


def backup_run(production, *extra):
    """backup.yml, whatever its outcome: ``(proc, names of the artifacts it made)``."""
    before = set(artifacts(production.backup_dir))
    proc = production.playbook(BACKUP_PLAYBOOK, *extra)
    return proc, sorted(set(artifacts(production.backup_dir)) - before)


def newest_drill_report(production):
    drills = sorted(glob.glob(os.path.join(production.backup_dir, 'drill-reports', 'drill_*.json')), key=os.path.getmtime)
    with open(drills[-1]) as handle:
        return json.load(handle)


def without_key(production, **overrides):
    """The inventory with no fleet_dr_encryption_key: the key comes from the vault only."""
    production.write_inventory(fleet_dr_encryption_key='', **overrides)


# --------------------------------------------------------------------------------------------
# Escrow: created once, proven by every backup
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def escrowed(production, moto):
    """The first backup.yml run: it creates the secret and proves it."""
    proc, made = backup_run(production)
    assert proc.returncode == 0, output(proc)[-6000:]
    return proc, made


def test_the_first_backup_creates_the_escrow_and_proves_it(production, moto, escrowed):
    proc, made = escrowed
    assert len(made) == 1
    assert current_key(moto) == production.stack.key_hex
    versions = secrets(moto).list_secret_version_ids(SecretId=KEY_SECRET)['Versions']
    assert len(versions) == 1 and versions[0]['VersionStages'] == ['AWSCURRENT']
    text = output(proc)
    assert 'created the vault secret %s' % KEY_SECRET in text, text[-4000:]


def test_a_later_backup_never_overwrites_and_proves_again(production, moto, escrowed):
    put_version(moto, json.dumps({'ENCRYPTION_KEY': production.stack.key_hex, 'OTHER': 'x'}))
    try:
        proc, made = backup_run(production)
        assert proc.returncode == 0, output(proc)[-6000:]
        assert json.loads(current_key(moto))['OTHER'] == 'x', 'the escrow step overwrote the secret'
        assert len(secrets(moto).list_secret_version_ids(SecretId=KEY_SECRET)['Versions']) == 2
    finally:
        put_version(moto, production.stack.key_hex)


def test_vault_drift_fails_the_job_but_keeps_the_dump(production, moto, escrowed):
    """The application's key was rotated and the vault not updated (here: the vault was, wrongly): the dump is taken and
    verified, the job fails with one sentence, and the vault is left as it is."""
    wrong = os.urandom(32).hex()
    put_version(moto, wrong)
    try:
        proc, made = backup_run(production)
        text = output(proc)
        assert proc.returncode != 0, text[-4000:]
        assert 'no longer holds the key that opens the photos' in text, text[-4000:]
        assert len(made) == 1 and os.path.exists(os.path.join(production.backup_dir, made[0] + '.manifest.json'))
        assert current_key(moto) == wrong
        assert wrong not in text and production.stack.key_hex not in text
    finally:
        put_version(moto, production.stack.key_hex)


@pytest.mark.parametrize('case', ['unreachable', 'malformed'])
def test_a_vault_that_cannot_prove_the_key_fails_the_job_but_keeps_the_dump(production, moto, escrowed, case):
    if case == 'unreachable':
        overrides = {'fleet_dr_secrets_endpoint_url': 'http://127.0.0.1:%d' % sshd_support.closed_port()}
        words = 'vault_unreachable'
    else:
        put_version(moto, 'this is not a key')
        overrides, words = {}, 'malformed_secret'
    production.write_inventory(**overrides)
    try:
        proc, made = backup_run(production)
        text = output(proc)
        assert proc.returncode != 0 and words in text, text[-4000:]
        assert len(made) == 1
        assert 'this is not a key' not in text
    finally:
        production.write_inventory()
        if case == 'malformed':
            put_version(moto, production.stack.key_hex)


def test_access_denied_is_one_clear_sentence(production, tmp_path):
    """A moto server of its own with IAM auth on and a user without any Secrets Manager rights."""
    server = moto_support.start_moto_server()
    try:
        iam = server.client('iam')
        iam.create_user(UserName='nosecrets')
        key = iam.create_access_key(UserName='nosecrets')['AccessKey']
        server.enable_auth()
        production.write_inventory(fleet_dr_secrets_endpoint_url=server.url, fleet_dr_aws_access_key=key['AccessKeyId'],
                                   fleet_dr_aws_secret_key=key['SecretAccessKey'])
        proc, made = backup_run(production)
        text = output(proc)
        assert proc.returncode != 0 and 'vault_denied' in text, text[-4000:]
        assert key['SecretAccessKey'] not in text
        assert len(made) == 1
    finally:
        production.write_inventory()
        server.stop()


# --------------------------------------------------------------------------------------------
# Restores and drills with only the vault's name
# --------------------------------------------------------------------------------------------

def test_restore_with_only_the_vault_picks_the_version_of_the_backup(production, moto, escrowed):
    """The key was rotated since the backup (AWSCURRENT is another key): the restore takes AWSPREVIOUS, by fingerprint."""
    before = production.state()
    backup = os.path.join(production.backup_dir, escrowed[1][0])
    put_version(moto, os.urandom(32).hex())
    without_key(production)
    try:
        proc = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + backup)
        assert proc.returncode == 0, output(proc)[-6000:]
        assert production.state() == before
        source = reports(production)[-1]['key_source']
        assert source['vault'] == KEY_SECRET and source['stages'] == ['AWSPREVIOUS'], source
    finally:
        production.write_inventory()
        put_version(moto, production.stack.key_hex)


@pytest.mark.parametrize('case', ['no_matching_version', 'missing_secret', 'malformed'])
def test_a_vault_without_the_key_is_refused_before_down_v(production, moto, escrowed, case):
    before = production.state()
    container = production.refresh()
    if case == 'no_matching_version':
        secret_id = 'fleet/other/key'
        secrets(moto).create_secret(Name=secret_id, SecretString=os.urandom(32).hex())
        words = 'fingerprint'
    elif case == 'missing_secret':
        secret_id, words = 'fleet/no/such/secret', 'fleet/no/such/secret'
    else:
        secret_id = 'fleet/malformed/key'
        secrets(moto).create_secret(Name=secret_id, SecretString='{"ENCRYPTION_KEY": "short"}')
        words = 'ENCRYPTION_KEY'
    without_key(production, fleet_dr_key_secret_id=secret_id)
    try:
        proc = production.restore('-e', 'restore_confirm=true')
        assert proc.returncode != 0
        msg = failure_message(proc)
        assert words in msg, msg
        assert_untouched(production, before, container)
    finally:
        production.write_inventory()


def test_drill_with_only_the_vault(production, escrowed):
    without_key(production)
    try:
        proc = production.playbook(DRILL_PLAYBOOK)
        assert proc.returncode == 0, output(proc)[-6000:]
    finally:
        production.write_inventory()
    report = newest_drill_report(production)
    assert report['status'] == 'passed'
    assert report['key_source']['from'] == 'secrets_manager' and report['key_source']['vault'] == KEY_SECRET, report


# --------------------------------------------------------------------------------------------
# Encrypted backups
# --------------------------------------------------------------------------------------------

def encrypting(production, moto, identities, **overrides):
    """The inventory of an encrypting production that copies to S3."""
    variables = dict(backup_encryption='age', backup_age_recipients=[identities['ops'].recipient],
                     fleet_dr_offsite_targets=[{'name': 'offsite-s3', 'kind': 's3', 'bucket': BUCKET, 'prefix': 'enc/',
                                                'endpoint_url': moto.url, 'part_size_mb': 5}],
                     fleet_dr_age_identity_file=identities['ops'].path)
    variables.update(overrides)
    production.write_inventory(**variables)


@pytest.fixture(scope='module')
def encrypted(production, moto, identities, escrowed):
    """One backup.yml run that encrypts: the artifact's path."""
    encrypting(production, moto, identities)
    try:
        proc, made = backup_run(production)
        assert proc.returncode == 0, output(proc)[-6000:]
    finally:
        production.write_inventory()
    assert len(made) == 1, made
    return os.path.join(production.backup_dir, made[0])


def test_an_encrypted_backup_is_age_and_its_manifest_names_only_fingerprints(production, moto, identities, encrypted):
    assert encrypted.endswith('.sql.zst.age')
    with open(encrypted, 'rb') as handle:
        assert handle.read(22) == b'age-encryption.org/v1\n'
    manifest = manifest_of(encrypted)
    assert manifest['encryption'] == 'age'
    assert manifest['recipients'] == [identities['ops'].fingerprint]
    text = open(encrypted + '.manifest.json').read()
    assert identities['ops'].recipient not in text and identities['ops'].secret not in text
    # The checksum is of the encrypted bytes; the S3 copy is those same bytes.
    with open(encrypted, 'rb') as handle:
        data = handle.read()
    assert hashlib.sha256(data).hexdigest() == manifest['sha256']
    body = moto.client('s3').get_object(Bucket=BUCKET, Key='enc/' + os.path.basename(encrypted))['Body'].read()
    assert body == data
    # No clear dump was left anywhere in the backup directory, not even a temporary one.
    names = os.listdir(production.backup_dir)
    assert not [n for n in names if n.endswith(('.sql', '.sql.zst', '.sql.gz', '.dump')) and n.startswith(os.path.basename(encrypted)[:26])]


def test_an_encrypted_backup_decrypts_by_hand_with_the_age_command(production, identities, encrypted):
    """The outage path of docs/encryption.md: age -d -i identity.txt backup.sql.zst.age | zstd -d | psql."""
    stack = production.stack
    production.refresh()
    stack.psql('DROP DATABASE IF EXISTS byhand;')
    stack.psql('CREATE DATABASE byhand;')
    try:
        psql = ' '.join(stack.psql_argv('byhand') + ['-q', '-v', 'ON_ERROR_STOP=1'])
        pipeline = 'age -d -i %s %s | zstd -d | %s' % (identities['ops'].path, encrypted, psql)
        proc = subprocess.run(['bash', '-o', 'pipefail', '-c', pipeline], capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        expected = manifest_of(encrypted)['row_counts']
        assert stack.counts(sorted(expected), database='byhand') == expected
        assert stack.psql(PHOTO_CHECKSUM, database='byhand') == stack.psql(PHOTO_CHECKSUM)
    finally:
        stack.psql('DROP DATABASE IF EXISTS byhand;')


def test_an_encrypted_backup_restores_with_the_identity_file(production, moto, identities, encrypted):
    before = production.state()
    safety_dir = os.path.join(production.backup_dir, 'safety')
    earlier = set(artifacts(safety_dir)) if os.path.isdir(safety_dir) else set()
    encrypting(production, moto, identities)
    try:
        proc = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + encrypted)
        assert proc.returncode == 0, output(proc)[-6000:]
    finally:
        production.write_inventory()
    assert production.state() == before
    # The safety dump was encrypted too.
    safety = sorted(set(artifacts(safety_dir)) - earlier)
    assert len(safety) == 1 and safety[0].endswith('.sql.zst.age'), safety
    assert manifest_of(os.path.join(safety_dir, safety[0]))['recipients'] == [identities['ops'].fingerprint]


def test_drill_from_s3_with_the_key_and_the_identity_from_the_vault(production, moto, identities, encrypted):
    """Only the vault's names: no key variable, no identity file; the newest S3 copy is the encrypted backup."""
    secrets(moto).create_secret(Name=IDENTITY_SECRET, SecretString=identities['ops'].text)
    encrypting(production, moto, identities, fleet_dr_encryption_key='', fleet_dr_age_identity_file='',
               fleet_dr_age_identity_secret_id=IDENTITY_SECRET)
    try:
        proc = production.playbook(DRILL_PLAYBOOK)
        assert proc.returncode == 0, output(proc)[-6000:]
    finally:
        production.write_inventory()
    report = newest_drill_report(production)
    assert report['status'] == 'passed' and report['source']['location'].startswith('s3://%s/enc/' % BUCKET), report
    assert report['artifact']['path'].endswith(os.path.basename(encrypted)), report['artifact']
    assert report['identity_source']['vault'] == IDENTITY_SECRET
    assert report['identity_source']['recipients'] == [identities['ops'].fingerprint]
    assert report['key_source']['vault'] == KEY_SECRET


def test_an_encrypted_custom_archive_round_trips(production, moto, identities, escrowed):
    """pg_dump -Fc | age: pg_restore reads age's output on stdin (no clear archive on disk at either end)."""
    encrypting(production, moto, identities, backup_format='custom', backup_compression='none', fleet_dr_offsite_targets=[])
    try:
        proc, made = backup_run(production)
        assert proc.returncode == 0, output(proc)[-6000:]
        assert len(made) == 1 and made[0].endswith('.dump.age'), made
        before = production.state()
        proc = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + os.path.join(production.backup_dir, made[0]))
        assert proc.returncode == 0, output(proc)[-6000:]
    finally:
        production.write_inventory()
    assert production.state() == before
    assert reports(production)[-1]['identity_source']['recipients'] == [identities['ops'].fingerprint]


@pytest.mark.parametrize('case', ['no_identity', 'wrong_identity'])
def test_an_encrypted_backup_without_its_identity_is_refused_before_down_v(production, moto, identities, encrypted, case):
    before = production.state()
    container = production.refresh()
    identity = '' if case == 'no_identity' else identities['other'].path
    encrypting(production, moto, identities, fleet_dr_age_identity_file=identity)
    try:
        proc = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + encrypted)
        assert proc.returncode != 0
        msg = failure_message(proc)
        assert ('age_identity' in msg) if case == 'no_identity' else (identities['ops'].fingerprint in msg), msg
        assert identities['other'].secret not in output(proc)
        assert_untouched(production, before, container)
    finally:
        production.write_inventory()


@pytest.mark.parametrize('damage', ['truncated', 'flipped', 'flipped_resigned'])
def test_a_damaged_encrypted_backup_is_refused_before_down_v(production, moto, identities, encrypted, damage, tmp_path):
    """Truncated or a flipped byte: the checksum refuses it; with the manifest's checksum made to match (a backup damaged
    before it was hashed), age's own authentication does, in the preflight's full read."""
    before = production.state()
    container = production.refresh()
    damaged = os.path.join(str(tmp_path), os.path.basename(encrypted))
    with open(encrypted, 'rb') as handle:
        data = bytearray(handle.read())
    if damage == 'truncated':
        data = data[:len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x01
    with open(damaged, 'wb') as handle:
        handle.write(data)
    manifest = manifest_of(encrypted)
    if damage == 'flipped_resigned':
        manifest['sha256'] = hashlib.sha256(bytes(data)).hexdigest()
    with open(damaged + '.manifest.json', 'w') as handle:
        json.dump(manifest, handle)
    encrypting(production, moto, identities)
    try:
        proc = production.restore('-e', 'restore_confirm=true', '-e', 'restore_artifact=' + damaged)
        assert proc.returncode != 0
        msg = failure_message(proc)
        if damage == 'flipped_resigned':
            assert 'damaged or truncated' in msg or 'decrypt_failed' in msg, msg
        else:
            assert 'sha256' in msg or 'size mismatch' in msg, msg
        assert_untouched(production, before, container)
    finally:
        production.write_inventory()


def test_a_bad_recipient_fails_before_dumping(production, moto, identities, escrowed):
    encrypting(production, moto, identities, backup_age_recipients=['age1notarecipient'])
    try:
        before = sorted(os.listdir(production.backup_dir))
        proc, made = backup_run(production)
        text = output(proc)
        assert proc.returncode != 0 and 'bad_recipient' in text and 'age1notarecipient' in text, text[-4000:]
        assert sorted(os.listdir(production.backup_dir)) == before
    finally:
        production.write_inventory()


def test_encryption_without_the_age_command_fails_before_dumping(production, moto, identities, escrowed, tmp_path):
    """A PATH with every command of /usr/bin but age: the backup stops before pg_dump, and writes nothing, clear or not."""
    bin_dir = str(tmp_path / 'bin')
    os.makedirs(bin_dir)
    for name in os.listdir('/usr/bin'):
        if name not in ('age', 'age-keygen'):
            os.symlink(os.path.join('/usr/bin', name), os.path.join(bin_dir, name))
    encrypting(production, moto, identities)
    try:
        before = sorted(os.listdir(production.backup_dir))
        env = production.ansible.env(dict(production.stack.env, PATH='%s:/usr/sbin:/sbin' % bin_dir))
        proc = run([production.ansible.playbook, '-i', production.inventory, BACKUP_PLAYBOOK], cwd=production.workdir, env=env,
                   timeout=COMMAND_TIMEOUT)
        text = output(proc)
        assert proc.returncode != 0 and 'age_missing' in text, text[-4000:]
        assert sorted(os.listdir(production.backup_dir)) == before
    finally:
        production.write_inventory()


# --------------------------------------------------------------------------------------------
# No secret anywhere
# --------------------------------------------------------------------------------------------

def test_no_secret_in_vvvv_argv_reports_or_job_files(production, moto, identities, encrypted):
    """backup.yml (escrow, encryption, S3) and restore.yml (key and identity from the vault) at -vvvv: neither the key, nor
    the identity, nor the AWS secret key appears in their output, any process's argv, the async job files, the manifests or
    the reports."""
    secrets(moto).put_secret_value(SecretId=IDENTITY_SECRET, SecretString=identities['ops'].text) if _exists(moto, IDENTITY_SECRET) \
        else secrets(moto).create_secret(Name=IDENTITY_SECRET, SecretString=identities['ops'].text)
    forms = secret_forms(moto_support.SECRET_KEY, production.stack.key) + [identities['ops'].secret, identities['ops'].secret.lower()]
    texts = []
    # Proof that the scan overlapped the work: the restore's module, which runs age -d (on this tiny dataset age itself
    # lives a few milliseconds, too short to be seen reliably).
    with CmdlineScanner(forms, ['pg_restore_verify'], files_dir=ASYNC_DIR) as scanner:
        encrypting(production, moto, identities)
        try:
            proc = production.playbook(BACKUP_PLAYBOOK, '-vvvv')
            assert proc.returncode == 0, output(proc)[-6000:]
            texts.append(output(proc))
            encrypting(production, moto, identities, fleet_dr_encryption_key='', fleet_dr_age_identity_file='',
                       fleet_dr_age_identity_secret_id=IDENTITY_SECRET)
            proc = production.restore('-vvvv', '-e', 'restore_confirm=true')
            assert proc.returncode == 0, output(proc)[-6000:]
            texts.append(output(proc))
        finally:
            production.write_inventory()
    assert scanner.seen, 'the scan never saw the restore module running'
    assert scanner.leaks == [] and sorted(scanner.file_leaks) == []
    for path in glob.glob(os.path.join(production.backup_dir, '**', '*.json'), recursive=True):
        with open(path) as handle:
            texts.append(handle.read())
    for text in texts:
        assert [form for form in forms if form in text] == []


def _exists(moto, secret_id):
    try:
        secrets(moto).describe_secret(SecretId=secret_id)
        return True
    except Exception:  # pylint: disable=broad-except
        return False
