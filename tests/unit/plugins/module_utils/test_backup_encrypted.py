# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The backup encrypted at rest: the filter chain of the dump stream (pipefail) and run_backup with encryption=age.

pg_dump and the snapshot session are stand-ins (a Python process that prints a plain dump); zstd and age are real.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _age, _atomic, _backup, _dump, _transport

needs_tools = pytest.mark.skipif(not all(shutil.which(tool) for tool in ('age', 'age-keygen', 'zstd', 'gzip')),
                                 reason='age (apt-get install age), zstd and gzip are needed')

DUMP = (b'--\n-- PostgreSQL database dump\n--\n\nCOPY public.photo (id, data) FROM stdin;\n'
        + b''.join(b'%d\t\\\\x%s\n' % (i, os.urandom(64).hex().encode()) for i in range(2000))
        + b'\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n')


@pytest.fixture(scope='module')
def dump_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('dump') / 'dump.sql'
    path.write_bytes(DUMP)
    return str(path)


def _printer(path, limit=None):
    """A pg_dump stand-in: prints the dump (its first ``limit`` bytes)."""
    return 'import sys; sys.stdout.buffer.write(open(%r, "rb").read()[:%r])' % (path, limit)


def keygen():
    text = subprocess.run(['age-keygen'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True).stdout.decode()
    return text, [line.split(': ')[1] for line in text.splitlines() if line.startswith('# public key: ')][0]


def decrypt(path, identity, then=None):
    """age -d -i /dev/fd/N path [| then]: what a restore (or a person) does."""
    with _age.IdentityPipe(identity) as pipe:
        age = subprocess.Popen(_age.decrypt_argv(pipe.argv_path, path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               pass_fds=(pipe.fd,))
    if then:
        out = subprocess.run(then, stdin=age.stdout, stdout=subprocess.PIPE, check=True).stdout
        age.stdout.close()
    else:
        out = age.stdout.read()
    err = age.stderr.read().decode()
    assert age.wait() == 0, err
    return out


class _Sink(object):
    def __init__(self):
        self.chunks = []

    def write(self, data):
        self.chunks.append(bytes(data))

    def data(self):
        return b''.join(self.chunks)


def _py(code):
    return [sys.executable, '-c', code]


# --------------------------------------------------------------------------------------------
# the filter chain
# --------------------------------------------------------------------------------------------

@needs_tools
def test_chain_compresses_then_encrypts(dump_file):
    identity, recipient = keygen()
    sink = _Sink()
    producer = _py(_printer(dump_file))
    stats = _dump.stream_pipeline(producer, None, sink, compressor=['zstd', '-q', '-c', '-1'],
                                  filters=[_age.encrypt_argv([recipient])], chunk_size=4096)
    data = sink.data()
    assert stats['bytes'] == len(data) and data.startswith(_age.HEADER) and DUMP[:30] not in data
    with _age.IdentityPipe(identity) as pipe:
        proc = subprocess.run(_age.decrypt_argv(pipe.argv_path), input=data, stdout=subprocess.PIPE, pass_fds=(pipe.fd,), check=True)
    assert subprocess.run(['zstd', '-d', '-c'], input=proc.stdout, stdout=subprocess.PIPE, check=True).stdout == DUMP


def test_old_signature_still_works():
    sink = _Sink()
    stats = _dump.stream_pipeline(_py('import sys; sys.stdout.buffer.write(b"abc" * 1000)'), None, sink, ['gzip', '-c', '-n'])
    assert stats['bytes'] == len(sink.data())
    assert subprocess.run(['gzip', '-dc'], input=sink.data(), stdout=subprocess.PIPE, check=True).stdout == b'abc' * 1000


@needs_tools
def test_a_failing_producer_fails_the_chain_although_age_succeeds():
    dummy, recipient = keygen()
    failing = _py('import sys; sys.stdout.write("partial"); sys.stdout.flush(); sys.stderr.write("pg_dump: error: boom"); sys.exit(1)')
    with pytest.raises(_transport.TransportError) as info:
        _dump.stream_pipeline(failing, None, _Sink(), compressor=['gzip', '-c'], filters=[_age.encrypt_argv([recipient])])
    assert info.value.code == 'dump_failed' and 'boom' in info.value.stderr and info.value.process == 0


@pytest.mark.parametrize('position', ['middle', 'last'])
def test_a_failing_filter_is_named_not_the_producer_it_broke(position):
    """The filter dies early: the producer (and a compressor before it) die of the broken pipe; the filter is the cause."""
    endless = _py('import sys\nwhile True: sys.stdout.buffer.write(b"y" * 65536)')
    dying = ['sh', '-c', 'head -c 10 >/dev/null; echo "age: error: malformed recipient" >&2; exit 1']
    chain = dict(compressor=['gzip', '-c'], filters=[dying]) if position == 'last' else dict(filters=[dying, ['cat']])
    with pytest.raises(_transport.TransportError) as info:
        _dump.stream_pipeline(endless, None, _Sink(), **chain)
    assert info.value.code == 'dump_failed'
    assert str(info.value) == 'sh exited with rc=1' and 'malformed recipient' in info.value.stderr
    assert info.value.process == (2 if position == 'last' else 1)


def test_filters_do_not_get_the_producer_environment():
    sink = _Sink()
    env = dict(os.environ, PGPASSWORD='s3cret-pw')
    producer = _py('import os, sys; sys.stdout.write(os.environ.get("PGPASSWORD", "-") + "\\n")')
    show = _py('import os, sys; sys.stdout.write(sys.stdin.read() + os.environ.get("PGPASSWORD", "-"))')
    _dump.stream_pipeline(producer, env, sink, filters=[show])
    assert sink.data() == b's3cret-pw\n-'


def test_a_missing_filter_binary():
    with pytest.raises(_transport.TransportError) as info:
        _dump.stream_pipeline(_py('print(1)'), None, _Sink(), filters=[['/nonexistent/age', '-e']])
    assert info.value.code == 'missing_binary' and '/nonexistent/age' in str(info.value)


def test_dump_failure_names_a_failed_filter():
    exc = _transport.TransportError('age exited with rc=1', code='dump_failed', rc=1, stderr='age: error: boom\n')
    exc.process = 2
    failure = _backup.dump_failure(_transport.Connection('direct', database='d'), exc, ['pg_dump'])
    assert failure.code == 'dump_failed' and str(failure) == 'age exited with rc=1; nothing was published: age: error: boom'


# --------------------------------------------------------------------------------------------
# the encryption plan
# --------------------------------------------------------------------------------------------

RECIPIENT = 'age1q9z9uv0z65699zee3dvwcd4u8t9dzqg4hqm9pweeg6df36j93p8q73nxs7'


def _ok_runner(argv, **kwargs):
    assert argv == ['age', '--version']
    return 0, 'v1.1.1\n', ''


def _missing_runner(argv, **kwargs):
    raise _transport.TransportError('age is not installed or not on PATH', code='missing_binary')


def test_plan_none():
    plan = _backup.encryption_plan(_backup.BackupRequest('/b'), _missing_runner)
    assert plan == {'method': 'none', 'recipients': [], 'argv': None}
    assert _backup.public_encryption(plan) == {'method': 'none', 'recipients': []}


def test_plan_age():
    plan = _backup.encryption_plan(_backup.BackupRequest('/b', encryption='age', recipients=[' %s ' % RECIPIENT]), _ok_runner)
    assert plan['argv'] == ['age', '-e', '-r', RECIPIENT]
    assert _backup.public_encryption(plan) == {'method': 'age', 'recipients': [_age.recipient_fingerprint(RECIPIENT)]}


@pytest.mark.parametrize('kwargs, runner, code, words', [
    (dict(encryption='age', recipients=[RECIPIENT]), _missing_runner, 'age_missing', 'apt-get install age'),
    (dict(encryption='age', recipients=[]), _ok_runner, 'bad_recipient', 'age_recipients'),
    (dict(encryption='age', recipients=['age1nope']), _ok_runner, 'bad_recipient', "'age1nope'"),
    (dict(encryption='age', recipients=[RECIPIENT], dump_format='directory', compression='gzip'), _ok_runner, 'bad_option',
     'use format=custom'),
    (dict(encryption='none', recipients=[RECIPIENT]), _ok_runner, 'bad_option', 'set encryption=age'),
    (dict(encryption='gpg'), _ok_runner, 'bad_option', 'encryption must be one of none, age'),
])
def test_plan_refusals(kwargs, runner, code, words):
    with pytest.raises(Exception) as info:
        _backup.encryption_plan(_backup.BackupRequest('/b', **kwargs), runner)
    assert info.value.code == code and words in str(info.value), str(info.value)


# --------------------------------------------------------------------------------------------
# run_backup with stand-ins for PostgreSQL
# --------------------------------------------------------------------------------------------

class _Session(object):
    opened = 0

    def __init__(self, conn, *args, **kwargs):
        type(self).opened += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def begin(self):
        return '00000003-0000001B-1'

    def user_tables(self):
        return ['audit_log', 'photo']

    def counts(self, tables):
        return dict((t, 2000 if t == 'photo' else 0) for t in tables)

    def finish(self):
        pass


@pytest.fixture
def fake_pg(monkeypatch, dump_file):
    """pg_dump prints DUMP (or fails when told); argv records what ran with --file (never with encryption)."""
    state = {'dump_code': _printer(dump_file), 'argv': [], 'to_file': [], 'dump_file': dump_file}
    _Session.opened = 0
    monkeypatch.setattr(_backup, 'SnapshotSession', _Session)
    monkeypatch.setattr(_backup, 'server_facts', lambda session: {
        'server_version': '15.18', 'server_version_num': 150018, 'database': 'telemetry_db', 'data_size': 1 << 20})
    monkeypatch.setattr(_backup, 'tool_version', lambda conn, tool, runner=None: 'pg_dump (PostgreSQL) 15.18')

    def client_argv(conn, tool, args, **kwargs):
        state['argv'].append(list(args))
        return _py(state['dump_code'])
    monkeypatch.setattr(_backup, 'client_argv', client_argv)

    def to_file(conn, args, target):
        state['to_file'].append(target)
        raise AssertionError('pg_dump --file would write a clear archive')
    monkeypatch.setattr(_backup, '_dump_to_file', to_file)
    return state


def _direct():
    return _transport.Connection('direct', database='telemetry_db', user='u', password='s3cret-pw', host='db.example', port=5432)


def _request(tmp_path, recipients, **kwargs):
    kwargs.setdefault('compression', 'zstd')
    return _backup.BackupRequest(str(tmp_path), encryption='age', recipients=recipients, **kwargs)


@needs_tools
@pytest.mark.parametrize('fmt, compression, then, suffix', [
    ('plain', 'zstd', ['zstd', '-d', '-c'], '.sql.zst.age'),
    ('plain', 'gzip', ['gzip', '-d', '-c'], '.sql.gz.age'),
    ('plain', 'none', None, '.sql.age'),
    ('custom', 'none', None, '.dump.age'),
])
def test_encrypted_backup_round_trip(tmp_path, fake_pg, fmt, compression, then, suffix):
    identity, recipient = keygen()
    second_identity, second = keygen()
    chunks = []
    original_write = _atomic.AtomicArtifactWriter.write

    def spying_write(self, data):
        chunks.append(bytes(data))
        return original_write(self, data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_atomic.AtomicArtifactWriter, 'write', spying_write)
        result = _backup.run_backup(_direct(), _request(tmp_path, [recipient, second], dump_format=fmt, compression=compression))
    path = result['path']
    assert path.endswith(suffix) and result['verified']
    # Only age's output was ever written: the first chunk is its header, no chunk holds the clear dump.
    assert chunks[0].startswith(_age.HEADER) and not any(b'PostgreSQL database dump' in c for c in chunks)
    fingerprints = [_age.recipient_fingerprint(recipient), _age.recipient_fingerprint(second)]
    assert result['encryption'] == {'method': 'age', 'recipients': fingerprints}
    assert 'encrypted with age for 2 recipient(s)' in result['msg']
    with open(path + '.manifest.json') as handle:
        manifest = json.load(handle)
    assert manifest['encryption'] == 'age' and manifest['recipients'] == fingerprints
    assert recipient not in json.dumps(manifest) and 'AGE-SECRET-KEY' not in json.dumps(manifest)
    with open(path, 'rb') as handle:
        data = handle.read()
    assert manifest['sha256'] == result['sha256'] == hashlib.sha256(data).hexdigest() and manifest['size'] == len(data)
    assert sorted(os.listdir(str(tmp_path))) == sorted([os.path.basename(path), os.path.basename(path) + '.manifest.json',
                                                        '.backup-telemetry_db.lock'])
    for key in (identity, second_identity):
        assert decrypt(path, key, then) == DUMP
    assert fake_pg['to_file'] == []
    assert not any('--file' in args for args in fake_pg['argv'])


@needs_tools
def test_clear_backup_still_writes_clear_and_says_so(tmp_path, fake_pg):
    result = _backup.run_backup(_direct(), _backup.BackupRequest(str(tmp_path), compression='zstd'))
    assert result['path'].endswith('.sql.zst') and result['encryption'] == {'method': 'none', 'recipients': []}
    with open(result['path'] + '.manifest.json') as handle:
        manifest = json.load(handle)
    assert manifest['encryption'] is None and manifest['recipients'] is None


@pytest.mark.parametrize('check_mode', [False, True], ids=['run', 'check-mode'])
def test_age_missing_fails_before_the_lock_and_the_dump(tmp_path, fake_pg, check_mode):
    with pytest.raises(_age.AgeError) as info:
        _backup.run_backup(_direct(), _request(tmp_path, [RECIPIENT]), check_mode=check_mode, runner=_missing_runner)
    assert info.value.code == 'age_missing' and 'apt-get install age' in str(info.value)
    assert os.listdir(str(tmp_path)) == [] and _Session.opened == 0 and fake_pg['argv'] == []


@pytest.mark.parametrize('check_mode', [False, True], ids=['run', 'check-mode'])
def test_bad_recipient_fails_before_anything(tmp_path, fake_pg, check_mode):
    with pytest.raises(_age.AgeError) as info:
        _backup.run_backup(_direct(), _request(tmp_path, [RECIPIENT[:-1] + 'x']), check_mode=check_mode, runner=_ok_runner)
    assert info.value.code == 'bad_recipient'
    assert os.listdir(str(tmp_path)) == [] and _Session.opened == 0


def test_directory_format_with_age_is_refused_before_anything(tmp_path, fake_pg):
    with pytest.raises(_transport.TransportError) as info:
        _backup.run_backup(_direct(), _request(tmp_path, [RECIPIENT], dump_format='directory', compression='gzip'), runner=_ok_runner)
    assert info.value.code == 'bad_option' and os.listdir(str(tmp_path)) == [] and _Session.opened == 0


@needs_tools
def test_check_mode_reports_the_encrypted_name(tmp_path, fake_pg):
    dummy, recipient = keygen()
    result = _backup.run_backup(_direct(), _request(tmp_path, [recipient]), check_mode=True)
    assert result['would_write'].endswith('.sql.zst.age')
    assert result['encryption'] == {'method': 'age', 'recipients': [_age.recipient_fingerprint(recipient)]}
    assert os.listdir(str(tmp_path)) == []


@needs_tools
def test_a_failing_pg_dump_publishes_nothing_although_age_succeeded(tmp_path, fake_pg):
    dummy, recipient = keygen()
    fake_pg['dump_code'] = (_printer(fake_pg['dump_file'], 5000) + '; sys.stdout.flush(); '
                            'sys.stderr.write("pg_dump: error: query failed: server closed the connection"); sys.exit(1)')
    with pytest.raises(_transport.TransportError) as info:
        _backup.run_backup(_direct(), _request(tmp_path, [recipient]))
    assert info.value.code == 'dump_failed' and 'server closed the connection' in str(info.value)
    assert [name for name in os.listdir(str(tmp_path)) if not name.endswith('.lock')] == []


@needs_tools
def test_a_failing_age_publishes_nothing_and_is_named(tmp_path, fake_pg, monkeypatch):
    dummy, recipient = keygen()
    monkeypatch.setattr(_age, 'encrypt_argv', lambda recipients, binary='age': [
        'sh', '-c', 'head -c 100 >/dev/null; echo "age: error: write failed" >&2; exit 1'])
    with pytest.raises(_transport.TransportError) as info:
        _backup.run_backup(_direct(), _request(tmp_path, [recipient]))
    assert info.value.code == 'dump_failed' and 'write failed' in str(info.value) and 'pg_dump' not in str(info.value)
    assert [name for name in os.listdir(str(tmp_path)) if not name.endswith('.lock')] == []
