# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import collections
import hashlib
import os
import sys

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _backup, _dump, _pg, _photos, _transport
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._photo_crypto import encrypt


@pytest.mark.parametrize('stderr, code', [
    ('psql: error: connection to server at "127.0.0.1", port 5 failed: FATAL:  password authentication failed for user "u"', 'auth_failed'),
    ('pg_dump: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: FATAL:  database "x" does not exist',
     'no_database'),
    ('FATAL:  role "bob" does not exist', 'no_role'),
    ('connection to server at "127.0.0.1", port 1 failed: Connection refused', 'db_down'),
    ('Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?', 'no_docker'),
    ("docker.errors.DockerException: Error while fetching server API version: ('Connection aborted.', FileNotFoundError(2))", 'no_docker'),
    ("Couldn't connect to Docker daemon at http+docker://localhost - is it running?", 'no_docker'),
    ('Error response from daemon: Container abc is not running', 'container_down'),
    ('pg_dump: error: could not write to output file: No space left on device', 'disk_full'),
    ('something else entirely\nlast line', 'error'),
])
def test_classify_error(stderr, code):
    got, sentence = _transport.classify_error(stderr, user='u', database='x')
    assert got == code
    assert sentence


def test_classify_error_names_the_option():
    assert 'db_password' in _transport.classify_error('password authentication failed')[1]
    assert 'db_name' in _transport.classify_error('database "x" does not exist', database='x')[1]
    assert _transport.classify_error('boom\nlast line')[1] == 'last line'


def test_db_down_names_where_it_tried():
    conn = _transport.Connection(transport='direct', host='10.0.0.9', port=6543, user='u', database='d')
    error = _transport.fail_from_stderr(conn, 2, 'connection to server at "10.0.0.9", port 6543 failed: Connection refused', ['pg_dump'], 'pg_dump')
    assert error.code == 'db_down'
    assert '10.0.0.9:6543' in str(error)


def test_direct_client_argv_has_no_password():
    conn = _transport.Connection(transport='direct', host='127.0.0.1', port=5433, user='u', database='d', password='s3cret')
    argv = _transport.client_argv(conn, 'pg_dump', ['--format=plain'])
    assert argv == ['pg_dump', '-h', '127.0.0.1', '-p', '5433', '-U', 'u', '-d', 'd', '--format=plain']
    env = _transport.client_env(conn, base={'PGPASSWORD': 'stale'})
    assert env['PGPASSWORD'] == 's3cret'
    assert 's3cret' not in ' '.join(argv)


def test_compose_client_argv_passes_password_by_name():
    calls = []

    def runner(argv, **kwargs):
        calls.append((argv, kwargs))
        if argv[1:3] == ['compose', 'version']:
            return 1, '', 'unknown command'
        if argv[0] == 'docker-compose' and argv[1] == 'version':
            return 0, 'docker-compose version 1.29.2', ''
        if argv[-3:] == ['ps', '-q', 'db']:
            return 0, 'abc123\n', ''
        if argv[1] == 'inspect':
            return 0, 'true\n', ''
        if argv[:3] == ['docker', 'ps', '-q']:
            return 0, '', ''  # no container by the labels: compose ps decides
        raise AssertionError(argv)

    conn = _transport.Connection(transport='compose', project_src='/', project_name='p', user='u', database='d', password='pw')
    argv = _transport.client_argv(conn, 'psql', ['-X'], runner=runner, stdin=True)
    assert argv == ['docker', 'exec', '-i', '-e', 'PGPASSWORD', '-e', 'PGCONNECT_TIMEOUT', 'abc123', 'psql', '-U', 'u', '-d', 'd', '-X']
    assert ['docker-compose', '-p', 'p', 'ps', '-q', 'db'] in [c[0] for c in calls]


def _label_runner(answer, calls):
    def runner(argv, **kwargs):
        calls.append(argv)
        if argv[:3] == ['docker', 'ps', '-q']:
            return 0, answer, ''
        if argv[-3:] == ['ps', '-q', 'db']:
            return 0, 'from-compose\n', ''
        if argv[1] == 'inspect':
            return 0, 'true\n', ''
        return 0, 'ok', ''
    return runner


def test_a_named_project_finds_its_container_by_labels_without_compose():
    calls = []
    conn = _transport.Connection(transport='compose', project_src='/', project_name='fdrbench1', compose_command='docker-compose')
    assert _transport.resolve_container(conn, runner=_label_runner('c0ffee\n', calls)) == 'c0ffee'
    assert calls == [['docker', 'ps', '-q', '--filter', 'label=com.docker.compose.project=fdrbench1', '--filter',
                      'label=com.docker.compose.service=db', '--filter', 'label=com.docker.compose.oneoff=False', '--filter',
                      'status=running']]


@pytest.mark.parametrize('name, answer, labels_asked', [
    (None, 'c0ffee\n', False),           # the name is compose's to derive (directory, .env, name: in the file)
    ('MyApp', 'c0ffee\n', False),        # compose would normalise it: its labels say myapp
    ('app', '', True),                   # nothing running by the labels: compose ps names the cause
    ('app', 'c0ffee\nbeef\n', True),     # two containers (scaled): compose ps picks
])
def test_otherwise_compose_ps_finds_it(name, answer, labels_asked):
    calls = []
    conn = _transport.Connection(transport='compose', project_src='/', project_name=name, compose_command='docker-compose')
    assert _transport.resolve_container(conn, runner=_label_runner(answer, calls)) == 'from-compose'
    assert any(c[:3] == ['docker', 'ps', '-q'] for c in calls) is labels_asked


def test_a_missing_project_directory_is_named_before_any_label_lookup(tmp_path):
    calls = []
    conn = _transport.Connection(transport='compose', project_src=str(tmp_path / 'gone'), project_name='app')
    with pytest.raises(_transport.TransportError) as err:
        _transport.resolve_container(conn, runner=_label_runner('c0ffee\n', calls))
    assert err.value.code == 'no_project' and calls == []


def test_compose_service_without_container():
    def runner(argv, **kwargs):
        return (0, '', '') if argv[-3:] == ['ps', '-q', 'db'] else (0, 'ok', '')

    conn = _transport.Connection(transport='compose', project_src='/', compose_command='docker-compose')
    with pytest.raises(_transport.TransportError) as err:
        _transport.resolve_container(conn, runner=runner)
    assert err.value.code == 'container_down'
    assert 'up -d db' in str(err.value)


@pytest.mark.parametrize('fmt, comp, ok', [
    ('plain', 'zstd', True), ('plain', 'gzip', True), ('plain', 'none', True), ('custom', 'gzip', True),
    ('custom', 'zstd', False), ('directory', 'zstd', False), ('directory', 'none', True), ('tar', 'none', False),
])
def test_validate_format(fmt, comp, ok):
    assert (_dump.validate_format(fmt, comp) is None) == ok


@pytest.mark.parametrize('fmt, comp, level, expected', [
    ('plain', 'zstd', 1, ['--format=plain', '--clean', '--if-exists', '--snapshot=S']),
    ('custom', 'gzip', 1, ['--format=custom', '--compress=1', '--snapshot=S']),
    ('custom', 'none', 0, ['--format=custom', '--compress=0', '--snapshot=S']),
    ('directory', 'gzip', 3, ['--format=directory', '--compress=3', '--jobs=2', '--snapshot=S']),
])
def test_pg_dump_args(fmt, comp, level, expected):
    assert _dump.pg_dump_args(fmt, comp, level, snapshot='S', jobs=2) == expected


@pytest.mark.parametrize('fmt, comp, expected', [
    ('plain', 'none', None), ('custom', 'gzip', None),
    ('plain', 'gzip', ['gzip', '-c', '-n', '-1']), ('plain', 'zstd', ['zstd', '-q', '-c', '-1', '-T0']),
])
def test_compressor_argv(fmt, comp, expected):
    assert _dump.compressor_argv(fmt, comp) == expected


class _Sink(object):
    def __init__(self):
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.digest.update(data)
        self.size += len(data)


def test_stream_pipeline_streams_and_checks_every_process():
    sink = _Sink()
    producer = [sys.executable, '-c', 'import sys; [sys.stdout.buffer.write(b"x" * 65536) for _ in range(64)]']
    stats = _dump.stream_pipeline(producer, None, sink, chunk_size=4096)
    assert stats['bytes'] == sink.size == 64 * 65536
    assert sink.digest.hexdigest() == hashlib.sha256(b'x' * 64 * 65536).hexdigest()


def test_stream_pipeline_fails_when_producer_fails_even_if_compressor_succeeds():
    failing = [sys.executable, '-c', 'import sys; sys.stdout.write("partial"); sys.stderr.write("pg_dump: error: boom"); sys.exit(1)']
    with pytest.raises(_transport.TransportError) as err:
        _dump.stream_pipeline(failing, None, _Sink(), compressor=['gzip', '-c'])
    assert err.value.code == 'dump_failed'
    assert 'boom' in err.value.stderr


def test_stream_pipeline_sink_error_stops_processes():
    class Full(object):
        def write(self, data):
            raise OSError(28, 'No space left on device')

    endless = [sys.executable, '-c', 'import sys\nwhile True: sys.stdout.buffer.write(b"y" * 65536)']
    with pytest.raises(OSError):
        _dump.stream_pipeline(endless, None, Full())


@pytest.mark.parametrize('name, quoted', [('photo', '"photo"'), ('audit.log', '"audit"."log"'), ('we"ird', '"we""ird"')])
def test_quote_ident(name, quoted):
    assert _pg.quote_ident(name) == quoted


def test_count_query_and_parse():
    sql = _pg.count_query(['photo', 'audit_log'])
    assert sql == ("SELECT 'photo', count(*) FROM ONLY \"photo\" UNION ALL SELECT 'audit_log', count(*) FROM ONLY \"audit_log\"")
    assert _pg.parse_counts([['photo', '3'], ['audit_log', '10']]) == {'photo': 3, 'audit_log': 10}
    with pytest.raises(_transport.TransportError):
        _pg.quote_ident('a.b.c')


def test_photo_batch_query_keyset():
    sql = _photos.photo_batch_query('photo', 'id', 'data', 41, 100, extra_columns=('external_image_id',), sample_every=5)
    assert sql == ('SELECT "id", encode("data", \'hex\'), "external_image_id" FROM "photo" WHERE "id" > 41 AND "id" % 5 = 0 '
                   'ORDER BY "id" LIMIT 100')


class _FakeSession(object):
    def __init__(self, rows):
        self.rows = rows
        self.queries = []

    def query(self, sql):
        self.queries.append(sql)
        after = int(sql.split('> ', 1)[1].split(' ', 1)[0])
        limit = int(sql.rsplit('LIMIT ', 1)[1])
        return [r for r in self.rows if int(r[0]) > after][:limit]


PNG = b'\x89PNG\r\n\x1a\n' + b'\0' * 32
KEY = bytes(range(32))


def test_iter_and_check_photos_reports_wrong_key_and_corruption():
    good = encrypt(KEY, PNG)
    bad = bytearray(encrypt(KEY, PNG))
    bad[20] ^= 1
    rows = [[str(i), (good if i != 3 else bytes(bad)).hex()] for i in range(1, 8)]
    session = _FakeSession(rows)
    result = _photos.check_photos(_photos.iter_photos(session, batch=3), KEY, 'aes-256-gcm')
    assert (result['checked'], result['failed']) == (7, 1)
    assert result['failures'][0]['id'] == 3
    assert len(session.queries) == 3
    assert '1 of 7' in _photos.key_verdict(result, 'aes-256-gcm')
    wrong = _photos.check_photos(_photos.iter_photos(_FakeSession(rows), limit=4), bytes(32), 'aes-256-gcm')
    assert wrong['checked'] == 4 and wrong['failed'] == 4
    assert 'none of the 4 photos' in _photos.key_verdict(wrong, 'aes-256-gcm')


def test_free_space_problem():
    usage = collections.namedtuple('usage', 'total used free')
    assert _backup.free_space_problem('/b', 100 << 20, 'none', disk_usage=lambda p: usage(0, 0, 200 << 20)) is None
    problem = _backup.free_space_problem('/b', 100 << 20, 'none', disk_usage=lambda p: usage(0, 0, 50 << 20))
    assert '/b has 50 MiB free' in problem and 'check_free_space=false' in problem


@pytest.mark.parametrize('check_mode', [False, True], ids=['run', 'check-mode'])
def test_backup_is_refused_while_a_restore_holds_its_lease(tmp_path, check_mode):
    """Refused before it connects (the connection below has nothing but a database name)."""
    from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _lock
    directory = str(tmp_path)
    _lock.acquire_lease(directory, 'restore-telemetry_db', 'restore-run', 3600, 'restore of telemetry_db')
    conn = collections.namedtuple('Conn', 'database')('telemetry_db')
    with pytest.raises(_lock.LockHeldError) as info:
        _backup.run_backup(conn, _backup.BackupRequest(directory), check_mode=check_mode)
    assert 'a backup of telemetry_db is refused while a restore of it runs' in str(info.value)
    assert sorted(os.listdir(directory)) == ['.restore-telemetry_db.lease.json', '.restore-telemetry_db.lock']


# ---------------------------------------------------------------------------------------------
# Where pg_dump runs with the compose transport
# ---------------------------------------------------------------------------------------------

class _HostRunner(object):
    """docker inspect (the container's addresses), the host tools' --version and the psql probe."""

    def __init__(self, addresses='172.18.0.2 ', version='(PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)', probe=(0, '150018\n', ''),
                 missing=()):
        self.addresses = addresses
        self.version = version
        self.probe = probe
        self.missing = missing
        self.calls = []

    def __call__(self, argv, env=None, cwd=None, timeout=None, stdin_data=None):
        self.calls.append((list(argv), env))
        if argv[0] in self.missing:
            raise _transport.TransportError('%s is not installed or not on PATH' % argv[0], code='missing_binary')
        if argv[:2] == ['docker', 'inspect']:
            return 0, self.addresses, ''
        if argv[-1] == '--version':
            return (0, '%s %s\n' % (argv[0], self.version), '') if self.version else (127, '', '%s: not found' % argv[0])
        if argv[0] == 'psql':
            return self.probe
        raise AssertionError(argv)


def _compose_conn(password='s3cret-pw'):
    conn = _transport.Connection('compose', database='telemetry_db', user='challengeuser', password=password,
                                 project_src='/srv/app')
    conn.container = 'cid'
    return conn


def test_auto_uses_the_host_client_over_the_container_address():
    runner = _HostRunner()
    conn, choice, versions = _transport.pick_client(_compose_conn(), 'auto', 'dump_client', ('pg_dump',), runner)
    assert conn.transport == 'direct' and (conn.host, conn.port, conn.user, conn.database) == ('172.18.0.2', 5432, 'challengeuser', 'telemetry_db')
    assert choice == {'used': 'host', 'reason': "the host's pg_dump reaches the container at 172.18.0.2:5432"}
    assert versions == {'pg_dump': 'pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)'}
    probe, env = runner.calls[-1]
    assert probe[:5] == ['psql', '-h', '172.18.0.2', '-p', '5432'] and 's3cret-pw' not in ' '.join(probe)
    assert env['PGPASSWORD'] == 's3cret-pw'


@pytest.mark.parametrize('password, runner, reason', [
    (None, _HostRunner(), 'no password is given'),
    ('pw', _HostRunner(addresses=' '), 'no IPv4 address'),
    ('pw', _HostRunner(version=None), 'no usable pg_dump on the host'),
    ('pw', _HostRunner(missing=('pg_dump',)), 'no usable pg_dump on the host (pg_dump is not installed'),
    ('pw', _HostRunner(missing=('psql',)), 'no usable psql on the host (psql is not installed'),
    ('pw', _HostRunner(version='(PostgreSQL) 16.4'), 'not of the server\'s major version 15'),
    ('pw', _HostRunner(version='(PostgreSQL) 14.9'), 'not of the server\'s major version 15'),
    ('pw', _HostRunner(probe=(0, '160004\n', '')), 'not of the server\'s major version 16'),
    ('pw', _HostRunner(probe=(2, '', 'psql: error: connection to server at "172.18.0.2", port 5432 failed: timeout expired')),
     'the host cannot connect to 172.18.0.2:5432 (psql: error: connection to server'),
])
def test_auto_falls_back_to_docker_exec_and_says_why(password, runner, reason):
    original = _compose_conn(password)
    conn, choice, versions = _transport.pick_client(original, 'auto', 'dump_client', ('pg_dump',), runner)
    assert conn is original and choice['used'] == 'container' and reason in choice['reason'] and versions == {}, choice
    with pytest.raises(_transport.TransportError) as info:
        _transport.pick_client(original, 'host', 'dump_client', ('pg_dump',), runner)
    assert info.value.code == 'bad_option' and reason in str(info.value) and 'dump_client=auto or container' in str(info.value)


def test_the_restore_checks_its_own_tool_and_names_its_own_option():
    runner = _HostRunner(version=None)
    conn, choice, dummy = _transport.pick_client(_compose_conn(), 'auto', 'restore_client', ('pg_restore',), runner)
    assert choice['used'] == 'container' and 'no usable pg_restore on the host' in choice['reason']
    with pytest.raises(_transport.TransportError) as info:
        _transport.pick_client(_compose_conn(), 'host', 'restore_client', ('pg_restore',), runner)
    assert 'restore_client=host' in str(info.value) and 'restore_client=auto or container' in str(info.value)


def test_container_and_direct_need_no_probe():
    runner = _HostRunner()
    conn, choice, dummy = _transport.pick_client(_compose_conn(), 'container', 'dump_client', ('pg_dump',), runner)
    assert conn.transport == 'compose' and choice == {'used': 'container', 'reason': 'dump_client=container'} and runner.calls == []
    direct = _transport.Connection('direct', database='telemetry_db', host='db.example', port=5432)
    assert _transport.pick_client(direct, 'auto', 'dump_client', ('pg_dump',), runner) == (
        direct, {'used': 'host', 'reason': 'direct transport'}, {})


def test_widen_pipe_sets_the_buffer_of_a_pipe_and_leaves_a_file_alone(tmp_path):
    import fcntl  # pylint: disable=import-outside-toplevel
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, 'rb') as reader, os.fdopen(write_fd, 'wb') as writer:
        assert _transport.widen_pipe(writer) is writer
        assert fcntl.fcntl(writer.fileno(), getattr(fcntl, 'F_GETPIPE_SZ', 1032)) == _transport.PIPE_SIZE
        writer.write(b'x' * 200000)  # more than a default 64 KiB pipe holds, without a reader
        writer.flush()
        assert len(reader.read(200000)) == 200000
    with open(str(tmp_path / 'f'), 'wb') as regular:
        assert _transport.widen_pipe(regular) is regular


def test_a_host_pg_dump_writes_its_archive_itself(monkeypatch, tmp_path):
    """A custom archive (or a directory) dumped on the host is written by pg_dump --file, so it can seek (the table of
    contents then holds each table's data offset); its password stays in the environment."""
    seen = []

    def fake_run(argv, env=None, **kwargs):
        seen.append((argv, env))
        return 0, '', ''
    monkeypatch.setattr(_backup, 'run', fake_run)
    direct = _transport.Connection('direct', database='telemetry_db', user='u', password='s3cret-pw', host='172.18.0.2', port=5432)
    target = str(tmp_path / 'backup.dump.tmp')
    assert _backup._dump_to_file(direct, ['--format=custom', '--compress=0'], target) == {}
    argv, env = seen[0]
    assert argv[0] == 'pg_dump' and argv[-2:] == ['--file', target] and '--format=custom' in argv
    assert 's3cret-pw' not in ' '.join(argv) and env['PGPASSWORD'] == 's3cret-pw'


def test_a_failing_host_pg_dump_names_the_cause(monkeypatch, tmp_path):
    monkeypatch.setattr(_backup, 'run', lambda argv, env=None, **kwargs: (
        1, '', 'pg_dump: error: could not write to output file: No space left on device'))
    direct = _transport.Connection('direct', database='telemetry_db', user='u', password='pw', host='172.18.0.2', port=5432)
    with pytest.raises(_transport.TransportError) as info:
        _backup._dump_to_file(direct, ['--format=custom'], str(tmp_path / 'x'))
    assert info.value.code == 'disk_full'
