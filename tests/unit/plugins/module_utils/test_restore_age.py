# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The restore of artifacts encrypted with age: ``age -d`` before the decompressor or pg_restore, the identity preflight,
and failures (wrong identity, damaged stream). Real ``age``, ``age-keygen``, ``zstd`` and ``gzip``; stand-ins for psql
and pg_restore (the command boundary)."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _age, _manifest, _transport
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import key_fingerprint
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import commands as _commands
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import preflight as _preflight
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import run as _run
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import source as _source
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.errors import RestoreError
from ansible_collections.fleet_telemetry.dr.tests.unit.plugins.module_utils.test_restore import KEY, _photo_rows, make_dump

pytestmark = pytest.mark.skipif(not (shutil.which('age') and shutil.which('age-keygen') and shutil.which('zstd')),
                                reason='age, age-keygen and zstd are needed')

STARTED = datetime.datetime(2026, 1, 31, 2, 0, 5, tzinfo=datetime.timezone.utc)


class Identity(object):
    """An identity made by age-keygen: its text (the secret), its recipient and that recipient's fingerprint."""

    def __init__(self):
        self.text = subprocess.run(['age-keygen'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout.decode()
        self.recipient = subprocess.run(['age-keygen', '-y'], input=self.text.encode(), stdout=subprocess.PIPE,
                                        check=True).stdout.decode().strip()
        self.fingerprint = _age.recipient_fingerprint(self.recipient)
        self.secret_line = [line for line in self.text.splitlines() if line.startswith('AGE-SECRET-KEY-1')][0]


@pytest.fixture(scope='module')
def ident():
    return Identity()


@pytest.fixture(scope='module')
def other():
    return Identity()


def compress(data, compression):
    if compression == 'gzip':
        return gzip.compress(data)
    if compression == 'zstd':
        return subprocess.run(['zstd', '-q', '-c'], input=data, stdout=subprocess.PIPE, check=True).stdout
    return data


def encrypt(data, *recipients):
    argv = ['age', '-e']
    for recipient in recipients:
        argv += ['-r', recipient]
    return subprocess.run(argv, input=data, stdout=subprocess.PIPE, check=True).stdout


EXTENSIONS = {'none': '.sql', 'gzip': '.sql.gz', 'zstd': '.sql.zst'}


def write_encrypted(directory, clear, compression, ident, name=None):
    path = directory / (name or 'backup_2026-01-31_02-00-05%s.age' % EXTENSIONS[compression])
    path.write_bytes(encrypt(compress(clear, compression), ident.recipient))
    return str(path)


def flip(path, offset):
    with open(path, 'r+b') as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))


def plain_artifact(path, compression, recipients):
    manifest = {'dump_format': 'plain', 'compression': compression, 'encryption': 'age', 'recipients': list(recipients),
                'key_fingerprint': key_fingerprint(KEY), 'cipher': 'aes-256-gcm', 'row_counts': {}}
    return {'path': path, 'dump_format': 'plain', 'manifest': manifest, 'kind': 'artifact', 'encrypted': True}


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('path, archive', [
    ('/b/a.sql.age', False), ('/b/a.sql.gz.age', False), ('/b/a.sql.zst.age', False), ('/b/a.dump.age', True),
    ('/b/backup_2026-01-31_02-00-05.sql.zst.age', False), ('/b/backup_2026-01-31_02-00-05.dump.age', True),
])
def test_is_archive_path_understands_age(path, archive):
    assert _run.is_archive_path(path) is archive


@pytest.mark.parametrize('path, compression', [('/b/a.sql.age', 'none'), ('/b/a.sql.gz.age', 'gzip'), ('/b/a.sql.zst.age', 'zstd'),
                                               ('/b/a.dump.age', None), ('/b/a.sql.zst', 'zstd')])
def test_compression_from_name(path, compression):
    assert _source.compression_from_name(path) == compression


def test_artifact_compression_of_an_encrypted_dump_comes_from_the_manifest_or_the_name(tmp_path, ident):
    path = write_encrypted(tmp_path, make_dump(), 'zstd', ident)
    assert _source.artifact_compression({'path': path, 'manifest': {'compression': 'zstd'}}) == 'zstd'
    # The magic bytes of an encrypted file are age's: the name says what is under it.
    assert _source.artifact_compression({'path': path, 'manifest': None, 'encrypted': True}) == 'zstd'


@pytest.mark.parametrize('compression, expected', [
    ('none', None), ('gzip', ['gzip', '-dc']), ('zstd', ['zstd', '-dcq']),
])
def test_decompress_argv_from_stdin(compression, expected):
    assert _source.decompress_argv(compression, None) == expected


# ---------------------------------------------------------------------------------------------
# Reading an encrypted plain dump: age -d | decompressor
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('compression', ['none', 'gzip', 'zstd'])
def test_scan_plain_decrypts_each_compression(tmp_path, ident, compression):
    clear = make_dump(photos=4, audit=9)
    path = write_encrypted(tmp_path, clear, compression, ident)
    result = _source.scan_plain(path, compression, 'photo', 2, full=True, chunk_size=100, identity=ident.text)
    assert result['read_to_end'] and result['complete']
    assert result['counts'] == {'audit_log': 9, 'photo': 4, 'app.Odd "Name"': 0}
    assert len(result['samples']) == 2
    assert sorted(os.listdir(str(tmp_path))) == [os.path.basename(path)]


@pytest.mark.parametrize('compression', ['none', 'zstd'])
def test_scan_plain_stops_age_and_the_decompressor_early_without_failing(tmp_path, ident, compression):
    # Several MB after the photos: age and zstd are still writing when the sample is complete.
    data = make_dump(photos=4, audit=1) + b'\n'.join(b'-- filler %d' % i for i in range(300000)) + b'\n'
    path = write_encrypted(tmp_path, data, compression, ident)
    result = _source.scan_plain(path, compression, 'photo', 2, full=False, chunk_size=4096, identity=ident.text)
    assert len(result['samples']) == 2
    assert result['read_to_end'] is False


def test_stream_source_passes_the_identity_on_a_pipe_never_in_argv(tmp_path, ident):
    path = write_encrypted(tmp_path, make_dump(), 'zstd', ident)
    with _source.StreamSource(argv=['zstd', '-dcq'], path=path, identity=ident.text) as source:
        data = source.read(1 << 20)
        age_argv = source.stages[0][0]
        rc, err = source.close(complete=False)
    assert data.startswith(b'--')
    assert age_argv[:3] == ['age', '-d', '-i'] and age_argv[3].startswith('/dev/fd/') and age_argv[4] == path
    assert ident.secret_line not in json.dumps(age_argv)
    assert rc == 0


@pytest.mark.parametrize('damage', ['flip_payload', 'truncate', 'flip_last_byte'])
@pytest.mark.parametrize('compression', ['none', 'zstd'])
def test_a_damaged_encrypted_dump_is_decrypt_failed(tmp_path, ident, damage, compression):
    path = write_encrypted(tmp_path, make_dump(audit=20000), compression, ident)
    size = os.path.getsize(path)
    if damage == 'flip_payload':
        flip(path, size // 2)
    elif damage == 'flip_last_byte':
        flip(path, size - 1)
    else:
        with open(path, 'r+b') as handle:
            handle.truncate(size - 100)
    with pytest.raises(RestoreError) as err:
        _source.scan_plain(path, compression, full=True, identity=ident.text)
    assert err.value.code == 'decrypt_failed'
    assert 'damaged or truncated' in str(err.value)
    assert err.value.cmd[:3] == ['age', '-d', '-i']
    assert ident.secret_line not in repr(err.value.to_result())


def test_the_wrong_identity_is_wrong_identity(tmp_path, ident, other):
    path = write_encrypted(tmp_path, make_dump(), 'zstd', ident)
    with pytest.raises(RestoreError) as err:
        _source.scan_plain(path, 'zstd', full=True, identity=other.text)
    assert err.value.code == 'wrong_identity'
    assert err.value.stderr is None
    assert other.secret_line not in repr(err.value.to_result())


def test_a_missing_age_binary(tmp_path, ident):
    path = write_encrypted(tmp_path, make_dump(), 'none', ident)
    with pytest.raises(RestoreError) as err:
        _source.StreamSource(path=path, identity=ident.text, age_binary=str(tmp_path / 'no-such-age'))
    assert err.value.code == 'age_missing' and 'apt-get install age' in str(err.value)


def test_key_preflight_reads_photos_from_the_decrypted_stream(tmp_path, ident):
    path = write_encrypted(tmp_path, make_dump(photos=5), 'zstd', ident)
    result = _preflight.key_preflight(KEY, 'aes-256-gcm', artifact=plain_artifact(path, 'zstd', [ident.fingerprint]), sample=3,
                                      identity=ident.text)
    assert result['photos_checked'] == 3 and result['photos_failed'] == 0 and result['fingerprint_checked']
    assert result['photo_source'].startswith('age -d, then ')


def test_key_preflight_of_a_damaged_encrypted_dump(tmp_path, ident):
    path = write_encrypted(tmp_path, make_dump(photos=5), 'gzip', ident)
    flip(path, os.path.getsize(path) - 20)
    with pytest.raises(RestoreError) as err:
        _preflight.key_preflight(KEY, 'aes-256-gcm', artifact=plain_artifact(path, 'gzip', [ident.fingerprint]), sample=3,
                                 identity=ident.text)
    assert err.value.code == 'decrypt_failed'
    assert str(err.value).endswith('nothing was written')
    assert 'preflight' in err.value.partial


# ---------------------------------------------------------------------------------------------
# The identity preflight
# ---------------------------------------------------------------------------------------------

def _tool_ok():
    return 'v1.1.1'


def test_identity_preflight_without_identity_is_no_identity():
    with pytest.raises(RestoreError) as err:
        _preflight.identity_preflight('/b/x.sql.zst.age', {'recipients': ['sha256:' + '0' * 16]}, None, check_tool=_tool_ok)
    assert err.value.code == 'no_identity'
    assert 'is encrypted with age: give age_identity_file or age_identity_secret' in str(err.value)
    assert str(err.value).endswith('nothing was written')


def test_identity_preflight_matches_the_manifests_recipients(ident, other):
    record = _preflight.identity_preflight('/b/x.sql.zst.age', {'recipients': [other.fingerprint, ident.fingerprint]}, ident.text,
                                           check_tool=_tool_ok)
    assert record == {'method': 'age', 'recipients': [other.fingerprint, ident.fingerprint], 'identity_recipients': [ident.fingerprint],
                      'matched': [ident.fingerprint], 'recipients_checked': True}


def test_identity_preflight_with_two_identities_in_the_text(ident, other):
    record = _preflight.identity_preflight('/b/x.dump.age', {'recipients': [ident.fingerprint]}, other.text + ident.text,
                                           check_tool=_tool_ok)
    assert record['matched'] == [ident.fingerprint] and len(record['identity_recipients']) == 2


def test_identity_preflight_wrong_identity_lists_both_sets_of_fingerprints(ident, other):
    with pytest.raises(RestoreError) as err:
        _preflight.identity_preflight('/b/x.sql.zst.age', {'recipients': [ident.fingerprint]}, other.text, check_tool=_tool_ok)
    assert err.value.code == 'wrong_identity'
    assert ident.fingerprint in str(err.value) and other.fingerprint in str(err.value)
    assert err.value.mismatches[0]['expected'] == [ident.fingerprint] and err.value.mismatches[0]['actual'] == [other.fingerprint]
    assert other.secret_line not in repr(err.value.to_result())
    assert other.recipient not in str(err.value)


def test_identity_preflight_without_recipients_in_the_manifest_leaves_it_to_age(other):
    record = _preflight.identity_preflight('/b/x.sql.age', {}, other.text, check_tool=_tool_ok)
    assert record['recipients_checked'] is False and record['matched'] == []


def test_identity_preflight_bad_identity_never_echoes_it():
    text = 'AGE-SECRET-KEY-1NOTREALLYAKEY\n'
    with pytest.raises(RestoreError) as err:
        _preflight.identity_preflight('/b/x.sql.age', {}, text, check_tool=_tool_ok)
    assert err.value.code == 'bad_identity'
    assert 'NOTREALLY' not in str(err.value)


def test_identity_preflight_age_missing(ident):
    def missing():
        raise _age.AgeError('the age tool (age) is not installed or does not run: %s' % _age.INSTALL_HINT, code='age_missing')
    with pytest.raises(RestoreError) as err:
        _preflight.identity_preflight('/b/x.sql.age', {}, ident.text, check_tool=missing)
    assert err.value.code == 'age_missing'


# ---------------------------------------------------------------------------------------------
# Encrypted custom archives: age -d | pg_restore on stdin
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('transport, jobs', [('compose', 1), ('compose', 4), ('direct', 3)])
def test_archive_restore_plan_of_an_encrypted_archive_is_stdin(transport, jobs):
    plan = _commands.archive_restore_plan(transport, 'custom', True, jobs, encrypted=True)
    assert plan['source'] == 'stdin' and plan['jobs'] == 1 and plan['single_transaction']
    assert plan['args'] == ['--exit-on-error', '--no-owner', '--clean', '--if-exists', '--single-transaction']


def test_table_data_argv_on_stdin():
    direct = _transport.Connection(transport='direct', database='d')
    assert _source.table_data_argv(direct, '/b/a.dump.age', 'photo', stdin=True) == (
        ['pg_restore', '-a', '-t', 'photo', '-f', '-'], '/b/a.dump.age')


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """psql and pg_restore stand-ins: record argv and stdin; pg_restore -a prints its stdin (the "table data");
    FAKE_MIN_BYTES makes them fail on a shorter input, FAKE_FAIL_AFTER after reading that many bytes."""
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    script = ('#!/bin/sh\n'
              'echo "$@" > "$FAKE_OUT.argv"\n'
              'if [ -n "$FAKE_FAIL_AFTER" ]; then head -c "$FAKE_FAIL_AFTER" > "$FAKE_OUT"; echo "ERROR:  boom" >&2; exit 3; fi\n'
              'case " $* " in *" -a "*) cat; exit 0;; esac\n'
              'cat > "$FAKE_OUT"\n'
              'if [ -n "$FAKE_MIN_BYTES" ] && [ "$(wc -c < "$FAKE_OUT")" -lt "$FAKE_MIN_BYTES" ]; then '
              'echo "pg_restore: error: could not read from input file: end of file" >&2; exit 1; fi\n'
              'exit 0\n')
    for tool in ('psql', 'pg_restore'):
        path = bindir / tool
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv('FAKE_OUT', str(tmp_path / 'received'))
    for name in ('FAKE_FAIL_AFTER', 'FAKE_MIN_BYTES'):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _direct(fake_bin):
    return _transport.Connection(transport='direct', host='127.0.0.1', database='d', user='u', password='pw',
                                 bin_dir=str(fake_bin / 'bin'))


def _copy_block(photos=4):
    return b'COPY public.photo (id, vehicle_id, data, note) FROM stdin;\n' + b'\n'.join(_photo_rows(KEY, photos)) + b'\n\\.\n\n'


def test_scan_custom_table_reads_pg_restore_on_the_decrypted_stdin(fake_bin, ident):
    path = fake_bin / 'backup_2026-01-31_02-00-05.dump.age'
    path.write_bytes(encrypt(_copy_block(4), ident.recipient))
    result = _source.scan_custom_table(_direct(fake_bin), str(path), 'photo', 3, identity=ident.text)
    assert [s[0] for s in result['samples']] == [1, 2, 3]
    argv = (fake_bin / 'received.argv').read_text().split()
    assert argv == ['-a', '-t', 'photo', '-f', '-']


def test_restore_archive_pipes_age_into_pg_restore(fake_bin, ident):
    clear = b'PGDMP' + os.urandom(300000)
    path = fake_bin / 'backup_2026-01-31_02-00-05.dump.age'
    path.write_bytes(encrypt(clear, ident.recipient))
    plan = _commands.restore_archive(_direct(fake_bin), str(path), 'custom', True, 4, identity=ident.text)
    assert (fake_bin / 'received').read_bytes() == clear
    assert plan['source'] == 'stdin' and plan['jobs'] == 1
    assert plan['argv'][-1] == '--single-transaction' and str(path) not in plan['argv']
    assert plan['decrypt'][:3] == ['age', '-d', '-i'] and plan['decrypt'][-1] == str(path)
    assert ident.secret_line not in json.dumps(plan)


def test_restore_archive_of_a_damaged_archive_is_decrypt_failed_and_rolled_back(fake_bin, ident, monkeypatch):
    clear = b'PGDMP' + os.urandom(300000)
    path = fake_bin / 'backup_2026-01-31_02-00-05.dump.age'
    path.write_bytes(encrypt(clear, ident.recipient))
    flip(str(path), os.path.getsize(str(path)) - 10)
    monkeypatch.setenv('FAKE_MIN_BYTES', str(len(clear)))
    with pytest.raises(RestoreError) as err:
        _commands.restore_archive(_direct(fake_bin), str(path), 'custom', True, 1, identity=ident.text)
    assert err.value.code == 'decrypt_failed' and err.value.changed is False
    assert 'rolled back and nothing was committed' in str(err.value)
    # A pg_restore that would not notice the cut is reported too, as a restore that holds data.
    monkeypatch.delenv('FAKE_MIN_BYTES')
    with pytest.raises(RestoreError) as err:
        _commands.restore_archive(_direct(fake_bin), str(path), 'custom', True, 1, identity=ident.text)
    assert err.value.code == 'decrypt_failed' and err.value.changed is True


def test_restore_archive_pg_restore_failure_is_not_blamed_on_age(fake_bin, ident, monkeypatch):
    path = fake_bin / 'backup_2026-01-31_02-00-05.dump.age'
    path.write_bytes(encrypt(b'PGDMP' + os.urandom(2000000), ident.recipient))
    monkeypatch.setenv('FAKE_FAIL_AFTER', '10')
    with pytest.raises(RestoreError) as err:
        _commands.restore_archive(_direct(fake_bin), str(path), 'custom', True, 1, identity=ident.text)
    assert err.value.code == 'restore_failed' and 'boom' in str(err.value)


# ---------------------------------------------------------------------------------------------
# restore_plain of an encrypted dump
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('compression', ['none', 'gzip', 'zstd'])
def test_restore_plain_decrypts_and_commits_a_complete_dump(fake_bin, ident, compression):
    data = make_dump(photos=3, audit=4)
    path = write_encrypted(fake_bin, data, compression, ident)
    scan = _commands.restore_plain(_direct(fake_bin), path, compression, manifest_counts={'photo': 3, 'audit_log': 4}, chunk_size=64,
                                   identity=ident.text)
    assert (fake_bin / 'received').read_bytes() == b'BEGIN;\n' + data + b'COMMIT;\n'
    assert scan['complete']


@pytest.mark.parametrize('damage', ['flip', 'truncate'])
def test_restore_plain_never_commits_a_damaged_encrypted_dump(fake_bin, ident, damage):
    path = write_encrypted(fake_bin, make_dump(audit=30000), 'zstd', ident)
    size = os.path.getsize(path)
    if damage == 'flip':
        flip(path, size - 30)
    else:
        with open(path, 'r+b') as handle:
            handle.truncate(size - 30)
    with pytest.raises(RestoreError) as err:
        _commands.restore_plain(_direct(fake_bin), path, 'zstd', identity=ident.text)
    received = (fake_bin / 'received').read_bytes()
    assert received.startswith(b'BEGIN;\n') and b'COMMIT' not in received
    assert err.value.code == 'decrypt_failed' and err.value.changed is False
    assert 'nothing was committed' in str(err.value)


def test_restore_plain_with_the_wrong_identity(fake_bin, ident, other):
    path = write_encrypted(fake_bin, make_dump(), 'zstd', ident)
    with pytest.raises(RestoreError) as err:
        _commands.restore_plain(_direct(fake_bin), path, 'zstd', identity=other.text)
    assert b'COMMIT' not in (fake_bin / 'received').read_bytes()
    assert err.value.code == 'wrong_identity'


# ---------------------------------------------------------------------------------------------
# The whole run on encrypted artifacts (direct transport, stand-in client tools, no database)
# ---------------------------------------------------------------------------------------------

def publish(directory, clear, compression, ident, recipients=None, dump_format='plain'):
    """An encrypted artifact and its manifest, as pg_logical_backup writes them."""
    if dump_format == 'plain':
        name = 'backup_2026-01-31_02-00-05%s.age' % EXTENSIONS[compression]
        data = encrypt(compress(clear, compression), ident.recipient)
    else:
        name = 'backup_2026-01-31_02-00-05.dump.age'
        data = encrypt(clear, ident.recipient)
        compression = 'none'
    path = directory / name
    path.write_bytes(data)
    manifest = _manifest.build_manifest(
        collection_version='0.1.0', file=name, dump_format=dump_format, compression=compression, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), database='telemetry_db', server_version='15.18', pg_dump_version='15.18',
        started_at=STARTED, finished_at=STARTED + datetime.timedelta(seconds=2), row_counts={'photo': 3, 'audit_log': 4},
        transport='direct', key_fingerprint=key_fingerprint(KEY), cipher='aes-256-gcm', encryption='age',
        recipients=recipients if recipients is not None else [ident.fingerprint])
    _manifest.write_manifest(str(path), manifest)
    return str(path)


def reseal(path):
    """Make the manifest agree with a damaged file (damage the checksum cannot see: only age can)."""
    mpath = path + '.manifest.json'
    manifest = json.loads(open(mpath).read())
    data = open(path, 'rb').read()
    manifest.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    os.remove(mpath)
    _manifest.write_manifest(path, manifest)


TARGET = {'database': 'd', 'server_version_num': 150018, 'server_version': '15.18'}


def _fail_runner(argv, **kwargs):
    raise AssertionError('no transport command expected: %r' % (argv,))


@pytest.mark.parametrize('compression', ['none', 'zstd'])
def test_preflight_only_of_an_encrypted_plain_artifact(fake_bin, ident, compression):
    path = publish(fake_bin, make_dump(photos=3, audit=4), compression, ident)
    req = _run.RestoreRequest(artifact=path, key=KEY, preflight_only=True, preflight_photos=2, identity=ident.text)
    result = _run.run_restore_verify(_direct(fake_bin), req, runner=_fail_runner)
    assert result['artifact']['encrypted'] is True and result['artifact']['ok']
    assert result['encryption']['matched'] == [ident.fingerprint]
    assert result['preflight']['photos_checked'] == 2
    assert result['compression'] == compression
    assert 'the age identity is one of its recipients' in result['msg']
    assert ident.secret_line not in json.dumps(result, default=repr)
    assert ident.secret_line not in repr(req)


def test_an_encrypted_artifact_without_identity_is_refused_before_anything(fake_bin, ident):
    path = publish(fake_bin, make_dump(photos=3, audit=4), 'zstd', ident)
    req = _run.RestoreRequest(artifact=path, key=KEY)
    with pytest.raises(RestoreError) as err:
        _run.run_restore_verify(_direct(fake_bin), req, runner=_fail_runner)
    assert err.value.code == 'no_identity'
    assert 'is encrypted with age: give age_identity_file or age_identity_secret' in str(err.value)
    assert not (fake_bin / 'received').exists()
    assert err.value.partial['artifact']['encrypted'] is True


def test_the_wrong_identity_is_refused_before_anything_is_written(fake_bin, ident, other):
    path = publish(fake_bin, make_dump(photos=3, audit=4), 'zstd', ident)
    req = _run.RestoreRequest(artifact=path, key=KEY, identity=other.text)
    with pytest.raises(RestoreError) as err:
        _run.run_restore_verify(_direct(fake_bin), req, runner=_fail_runner)
    assert err.value.code == 'wrong_identity'
    assert ident.fingerprint in str(err.value) and other.fingerprint in str(err.value)
    assert not (fake_bin / 'received').exists()
    assert other.secret_line not in json.dumps(err.value.to_result(), default=repr)


def test_a_damaged_header_is_decrypt_failed_not_wrong_identity(fake_bin, ident):
    path = publish(fake_bin, make_dump(photos=3, audit=4), 'zstd', ident)
    data = open(path, 'rb').read()
    body = data.index(b'\n', data.index(b'-> X25519 ')) + 1
    # Another valid base64 character in the wrapped file key: age then says "no identity matched".
    data = data[:body] + (b'A' if data[body:body + 1] != b'A' else b'B') + data[body + 1:]
    open(path, 'wb').write(data)
    reseal(path)
    req = _run.RestoreRequest(artifact=path, key=KEY, identity=ident.text, preflight_only=True)
    with pytest.raises(RestoreError) as err:
        _run.run_restore_verify(_direct(fake_bin), req, runner=_fail_runner)
    assert err.value.code == 'decrypt_failed'
    assert 'the age header of the artifact is damaged' in str(err.value) and ident.fingerprint in str(err.value)
    assert str(err.value).endswith('nothing was written')


def test_a_damaged_payload_the_checksum_cannot_see_is_never_committed(fake_bin, ident, monkeypatch):
    # Incompressible filler after the photos: the damage lies beyond what the preflight reads.
    data = make_dump(photos=3, audit=4) + b'\n'.join(b'-- ' + os.urandom(32).hex().encode() for i in range(8000)) + b'\n'
    path = publish(fake_bin, data, 'zstd', ident)
    flip(path, os.path.getsize(path) - 5)
    reseal(path)
    monkeypatch.setattr(_run, '_target_facts', lambda conn: TARGET)
    monkeypatch.setattr(_run, 'pick_client', lambda conn, *a: (conn, {'used': 'host', 'reason': 'direct'}, None))
    req = _run.RestoreRequest(artifact=path, key=KEY, identity=ident.text, preflight_photos=2)
    with pytest.raises(RestoreError) as err:
        _run.run_restore_verify(_direct(fake_bin), req, runner=_fail_runner)
    assert err.value.code == 'decrypt_failed'
    received = (fake_bin / 'received').read_bytes()
    assert received.startswith(b'BEGIN;\n') and b'COMMIT' not in received
    assert err.value.changed is False


def test_check_mode_plan_of_an_encrypted_custom_archive(fake_bin, ident, monkeypatch):
    path = publish(fake_bin, _copy_block(3), None, ident, dump_format='custom')
    monkeypatch.setattr(_run, '_target_facts', lambda conn: TARGET)
    monkeypatch.setattr(_run, 'pick_client', lambda conn, *a: (conn, {'used': 'host', 'reason': 'direct'}, None))
    req = _run.RestoreRequest(artifact=path, key=KEY, identity=ident.text, preflight_photos=2, jobs=4)
    result = _run.run_restore_verify(_direct(fake_bin), req, check_mode=True, runner=_fail_runner)
    assert result['changed'] is True and 'decrypted by age' in result['msg']
    plan = result['restore']
    assert plan['source'] == 'stdin' and plan['jobs'] == 1 and plan['single_transaction']
    assert plan['decrypt'] == ['age', '-d', '-i', '/dev/fd/<identity pipe>', path]
    assert result['preflight']['photos_checked'] == 2
    assert result['artifact']['toc_tables'] is None
    assert not (fake_bin / 'received').exists()


def test_masked_forms_cover_every_spelling_of_the_key_and_the_identity_lines():
    import base64

    from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.secrets import masked_forms
    key = bytes(range(32))
    identity = '# created: 2026-12-07\n# public key: age1xyz\nAGE-SECRET-KEY-1ABCDEF\n'
    forms = masked_forms(key, identity)
    assert {key.hex(), key.hex().upper(), base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode()} <= forms
    assert {'AGE-SECRET-KEY-1ABCDEF', 'age-secret-key-1abcdef'} <= forms
    assert not [form for form in forms if 'public key' in form]
    assert masked_forms() == set()
