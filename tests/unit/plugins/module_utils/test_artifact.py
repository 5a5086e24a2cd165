# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _artifact as ar
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _atomic, _digest, _manifest, _verification

UTC = datetime.timezone.utc
STARTED = datetime.datetime(2026, 1, 31, 2, 0, 5, tzinfo=UTC)
PLAIN_SQL = b'--\n-- PostgreSQL database dump\n--\nCOPY public.photo (id) FROM stdin;\n1\n\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n'
TOC = """;
; Archive created at 2026-01-31 02:00:05 UTC
;     dbname: telemetry_db
;
215; 1259 16390 TABLE public photo app
3345; 0 16390 TABLE DATA public photo app
3346; 0 16400 TABLE DATA public audit_log app
3347; 0 16410 TABLE DATA reports daily totals app
3100; 2606 16500 CONSTRAINT public photo photo_pkey app
"""


def _entries(directory):
    return sorted(os.listdir(directory))


def _manifest_fields(path, **overrides):
    sha256, size = _digest.artifact_digest(path)
    fields = dict(
        collection_version='0.1.0',
        file=os.path.basename(path),
        dump_format='plain',
        compression='none',
        size=size,
        sha256=sha256,
        database='telemetry_db',
        server_version='15.18',
        pg_dump_version='15.18',
        started_at=STARTED,
        finished_at=STARTED + datetime.timedelta(seconds=25),
        row_counts={'photo': 1, 'audit_log': 0},
        transport='compose',
        host='backup-host',
        source={'compose_project': 'fleet', 'service': 'db'},
    )
    fields.update(overrides)
    return fields


def _publish(directory, content=PLAIN_SQL, started=STARTED, fmt='plain', compression='none', **overrides):
    """Write an artifact and its manifest the way the backup module does; return the artifact path."""
    name = ar.free_artifact_name(str(directory), started, fmt, compression)
    if fmt == 'directory':
        with _atomic.AtomicDirectoryArtifact(str(directory), name) as artifact:
            for rel, data in content.items():
                artifact.write_file(rel, [data])
            result = artifact.commit()
    else:
        with _atomic.AtomicArtifactWriter(str(directory), name) as writer:
            writer.write(content)
            result = writer.commit()
    fields = _manifest_fields(result['path'], dump_format=fmt, compression=compression, started_at=started,
                              finished_at=started + datetime.timedelta(seconds=3))
    fields.update(overrides)
    _manifest.write_manifest(result['path'], _manifest.build_manifest(**fields))
    return result['path']


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('started, fmt, compression, prefix, expected', [
    (STARTED, 'plain', 'none', 'backup', 'backup_2026-01-31_02-00-05.sql'),
    (STARTED, 'plain', 'gzip', 'backup', 'backup_2026-01-31_02-00-05.sql.gz'),
    (STARTED, 'plain', 'zstd', 'backup', 'backup_2026-01-31_02-00-05.sql.zst'),
    (STARTED, 'custom', 'none', 'backup', 'backup_2026-01-31_02-00-05.dump'),
    (STARTED, 'custom', 'zstd', 'backup', 'backup_2026-01-31_02-00-05.dump'),
    (STARTED, 'directory', 'gzip', 'backup', 'backup_2026-01-31_02-00-05.dir'),
    (STARTED, 'plain', 'none', 'telemetry_db', 'telemetry_db_2026-01-31_02-00-05.sql'),
    (datetime.datetime(2026, 1, 31, 2, 0, 5), 'plain', 'none', 'backup', 'backup_2026-01-31_02-00-05.sql'),
    (datetime.datetime(2026, 1, 31, 3, 0, 5, 999999, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
     'plain', 'none', 'backup', 'backup_2026-01-31_02-00-05.sql'),
    (datetime.datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), 'custom', 'gzip', 'nightly', 'nightly_2026-12-31_23-59-59.dump'),
])
def test_artifact_name(started, fmt, compression, prefix, expected):
    assert ar.artifact_name(started, fmt, compression, prefix) == expected
    parsed = ar.parse_artifact_name(expected)
    assert parsed['prefix'] == prefix
    assert parsed['dump_format'] == fmt
    assert parsed['started_at'] == STARTED.replace(year=started.year, month=started.month, day=started.day) or prefix == 'nightly'


def test_artifact_name_matches_the_runbook_date_format():
    started = datetime.datetime(2026, 1, 31, 2, 0, 5, tzinfo=UTC)
    runbook = 'backup_%s.sql' % started.strftime('%Y-%m-%d_%H-%M-%S')
    assert ar.artifact_name(started) == runbook


@pytest.mark.parametrize('taken, expected', [
    ([], 'backup_2026-01-31_02-00-05.sql'),
    (['backup_2026-01-31_02-00-05.sql'], 'backup_2026-01-31_02-00-05_2.sql'),
    (['backup_2026-01-31_02-00-05.sql.manifest.json'], 'backup_2026-01-31_02-00-05_2.sql'),
    (['backup_2026-01-31_02-00-05.sql', 'backup_2026-01-31_02-00-05_2.sql'], 'backup_2026-01-31_02-00-05_3.sql'),
    (['backup_2026-01-31_02-00-05.dump', '.backup_2026-01-31_02-00-05.sql.partial-abc'], 'backup_2026-01-31_02-00-05.sql'),
])
def test_free_artifact_name_never_takes_a_name_in_use(tmp_path, taken, expected):
    for name in taken:
        (tmp_path / name).write_bytes(b'x')
    name = ar.free_artifact_name(str(tmp_path), STARTED, 'plain', 'none')
    assert name == expected
    parsed = ar.parse_artifact_name(name)
    assert parsed['started_at'] == STARTED
    assert parsed['sequence'] == (int(name[-5]) if name.endswith(('_2.sql', '_3.sql')) else 1)


def test_two_artifacts_of_one_second_list_newest_first(tmp_path):
    first = _publish(tmp_path, started=STARTED.replace(microsecond=100000))
    second = _publish(tmp_path, started=STARTED.replace(microsecond=900000))
    assert os.path.basename(first) == 'backup_2026-01-31_02-00-05.sql'
    assert os.path.basename(second) == 'backup_2026-01-31_02-00-05_2.sql'
    assert [entry['path'] for entry in _verification.list_artifacts(str(tmp_path))] == [second, first]
    assert _verification.newest_verified(str(tmp_path))['selected']['path'] == second


@pytest.mark.parametrize('fmt, compression, prefix', [
    ('tar', 'none', 'backup'),
    ('plain', 'lz4', 'backup'),
    ('plain', 'none', ''),
    ('plain', 'none', '.hidden'),
    ('plain', 'none', 'a/b'),
    ('plain', 'none', None),
])
def test_artifact_name_rejects(fmt, compression, prefix):
    with pytest.raises(ValueError):
        ar.artifact_name(STARTED, fmt, compression, prefix)


@pytest.mark.parametrize('name, expected', [
    ('backup_2026-01-31_02-00-05.sql', ('plain', 'none')),
    ('/b/backup_2026-01-31_02-00-05.sql.gz', ('plain', 'gzip')),
    ('backup_2026-01-31_02-00-05.sql.zst', ('plain', 'zstd')),
    ('backup_2026-01-31_02-00-05.dir/', ('directory', None)),
    ('backup_2026-01-31_02-00-05.sql.manifest.json', None),
    ('.backup_2026-01-31_02-00-05.sql.partial-abc', None),
    ('backup_2026-01-31.sql', None),
    ('backup_2026-01-31_02-00-05_2.sql', ('plain', 'none')),
    ('backup_2026-01-31_02-00-05_12.dump', ('custom', None)),
    ('backup_2026-01-31_02-00-05_1.sql', None),
    ('backup_2026-01-31_02-00-05_02.sql', None),
    ('notes.txt', None),
])
def test_parse_artifact_name(name, expected):
    parsed = ar.parse_artifact_name(name)
    assert (parsed and (parsed['dump_format'], parsed['compression'])) == expected if expected else parsed is None


@pytest.mark.parametrize('path, expected', [
    ('/b/backup_x.sql', '/b/backup_x.sql.manifest.json'),
    ('/b/backup_x.dir', '/b/backup_x.dir.manifest.json'),
    ('/b/backup_x.dir/', '/b/backup_x.dir.manifest.json'),
    ('/b/backup_x.sql.manifest.json', '/b/backup_x.sql.manifest.json'),
])
def test_manifest_path(path, expected):
    assert ar.manifest_path(path) == expected


@pytest.mark.parametrize('text, expected', [
    ('2026-01-31T02:00:05Z', STARTED),
    ('2026-01-31T02:00:05+00:00', STARTED),
    ('2026-01-31T02:00:05.25Z', STARTED.replace(microsecond=250000)),
])
def test_parse_timestamp(text, expected):
    assert ar.parse_timestamp(text) == expected


@pytest.mark.parametrize('text', ['2026-01-31T02:00:05+01:00', '2026-01-31 02:00:05', '2026-01-31T02:00:05', 20260131, None])
def test_parse_timestamp_rejects(text):
    with pytest.raises(ValueError):
        ar.parse_timestamp(text)


@pytest.mark.parametrize('transport, expected', [('compose', 'compose'), ({'transport': 'direct', 'host': 'h'}, 'direct'), (None, None)])
def test_transport_name(transport, expected):
    assert _manifest.transport_name(transport) == expected


def test_format_timestamp_converts_to_utc():
    local = datetime.datetime(2026, 1, 31, 4, 0, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert ar.format_timestamp(local) == '2026-01-31T02:00:05Z'


# --------------------------------------------------------------------------------------------
# destination
# --------------------------------------------------------------------------------------------

def _dest_ok(tmp_path):
    return str(tmp_path)


def _dest_missing(tmp_path):
    return str(tmp_path / 'nope')


def _dest_file(tmp_path):
    (tmp_path / 'file').write_bytes(b'x')
    return str(tmp_path / 'file')


def _dest_dev_null(tmp_path):
    return '/dev/null'


def _dest_link_to_device(tmp_path):
    os.symlink('/dev/null', str(tmp_path / 'dev-link'))
    return str(tmp_path / 'dev-link')


def _dest_link_to_dir(tmp_path):
    (tmp_path / 'real').mkdir()
    os.symlink(str(tmp_path / 'real'), str(tmp_path / 'dir-link'))
    return str(tmp_path / 'dir-link')


def _dest_dangling_link(tmp_path):
    os.symlink(str(tmp_path / 'gone'), str(tmp_path / 'dangling'))
    return str(tmp_path / 'dangling')


def _dest_below_file(tmp_path):
    (tmp_path / 'file').write_bytes(b'x')
    return str(tmp_path / 'file' / 'sub')


def _dest_fifo(tmp_path):
    os.mkfifo(str(tmp_path / 'fifo'))
    return str(tmp_path / 'fifo')


@pytest.mark.parametrize('make, error, words', [
    (_dest_ok, None, None),
    (_dest_link_to_dir, None, None),
    (_dest_missing, _atomic.DestinationMissingError, 'does not exist: create it or choose another backup_dir'),
    (_dest_dangling_link, _atomic.DestinationMissingError, 'dangling symlink'),
    (_dest_below_file, _atomic.DestinationMissingError, 'a parent is not a directory'),
    (_dest_file, _atomic.DestinationNotDirectoryError, 'is a regular file, not a directory'),
    (_dest_dev_null, _atomic.DestinationNotDirectoryError, '/dev/null is a character device, not a directory'),
    (_dest_link_to_device, _atomic.DestinationNotDirectoryError, 'through the symlink to /dev/null) is a character device'),
    (_dest_fifo, _atomic.DestinationNotDirectoryError, 'is a named pipe'),
])
def test_check_destination(tmp_path, make, error, words):
    path = make(tmp_path)
    if error is None:
        assert _atomic.check_destination(path) == os.path.realpath(path)
        return
    with pytest.raises(error) as caught:
        _atomic.check_destination(path)
    assert words in str(caught.value)
    assert str(caught.value).startswith('backup destination %s' % path)
    assert os.path.exists('/dev/null') and not os.path.isfile('/dev/null')


@pytest.mark.skipif(os.geteuid() == 0, reason='root can write to any directory: the permission check cannot fail')
def test_check_destination_read_only_directory(tmp_path):
    target = tmp_path / 'ro'
    target.mkdir()
    target.chmod(0o500)
    try:
        with pytest.raises(_atomic.DestinationNotWritableError) as caught:
            _atomic.check_destination(str(target))
    finally:
        target.chmod(0o700)
    assert 'is not writable by uid %d: chown or choose another backup_dir' % os.geteuid() in str(caught.value)


def test_check_destination_names_the_option(tmp_path):
    with pytest.raises(_atomic.DestinationMissingError, match='choose another dest$'):
        _atomic.check_destination(str(tmp_path / 'x'), option='dest')


@pytest.mark.parametrize('make', [_dest_dev_null, _dest_link_to_device, _dest_file])
def test_writer_never_replaces_a_device_or_file(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(_atomic.DestinationNotDirectoryError):
        _atomic.AtomicArtifactWriter(path, 'backup.sql')
    assert os.path.exists('/dev/null') and not os.path.isfile('/dev/null')


# --------------------------------------------------------------------------------------------
# AtomicArtifactWriter
# --------------------------------------------------------------------------------------------

def test_writer_commit_publishes_atomically(tmp_path):
    chunks = [b'a' * 1000, bytearray(b'b' * 3000), memoryview(b'c' * 7)]
    with _atomic.AtomicArtifactWriter(str(tmp_path), 'backup.sql') as writer:
        assert os.path.basename(writer.temp_path).startswith('.backup.sql.partial-')
        assert os.stat(writer.temp_path).st_mode & 0o777 == 0o600
        assert not os.path.exists(writer.path)
        for chunk in chunks:
            writer.write(chunk)
        result = writer.commit()
    data = b''.join(bytes(chunk) for chunk in chunks)
    assert result == {'path': str(tmp_path / 'backup.sql'), 'name': 'backup.sql', 'size': len(data),
                      'sha256': hashlib.sha256(data).hexdigest()}
    assert (tmp_path / 'backup.sql').read_bytes() == data
    assert os.stat(result['path']).st_mode & 0o777 == 0o600
    assert _entries(tmp_path) == ['backup.sql']


def test_writer_mode(tmp_path):
    with _atomic.AtomicArtifactWriter(str(tmp_path), 'x.sql', mode=0o640) as writer:
        writer.write(b'x')
        result = writer.commit()
    assert os.stat(result['path']).st_mode & 0o777 == 0o640


def _leave_without_commit(writer):
    writer.write(b'data')


def _raise_inside(writer):
    writer.write(b'data')
    raise RuntimeError('pg_dump died')


def _abort_twice(writer):
    writer.write(b'data')
    writer.abort()
    writer.abort()


@pytest.mark.parametrize('body', [_leave_without_commit, _raise_inside, _abort_twice])
def test_writer_leaves_nothing_without_commit(tmp_path, body):
    with pytest.raises(RuntimeError) if body is _raise_inside else _no_error():
        with _atomic.AtomicArtifactWriter(str(tmp_path), 'backup.sql') as writer:
            body(writer)
    assert _entries(tmp_path) == []


class _no_error:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_writer_refuses_existing_final_name(tmp_path):
    (tmp_path / 'backup.sql').write_bytes(b'old')
    with pytest.raises(_atomic.ArtifactExistsError, match='already exists: artifacts are never overwritten'):
        _atomic.AtomicArtifactWriter(str(tmp_path), 'backup.sql')
    assert _entries(tmp_path) == ['backup.sql']


def test_writer_refuses_name_taken_during_write(tmp_path):
    with pytest.raises(_atomic.ArtifactExistsError):
        with _atomic.AtomicArtifactWriter(str(tmp_path), 'backup.sql') as writer:
            writer.write(b'new')
            (tmp_path / 'backup.sql').write_bytes(b'old')
            writer.commit()
    assert (tmp_path / 'backup.sql').read_bytes() == b'old'
    assert _entries(tmp_path) == ['backup.sql']


def test_rename_noreplace_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(_atomic, '_renameat2', None)
    (tmp_path / 'a').write_bytes(b'a')
    (tmp_path / 'b').write_bytes(b'b')
    with pytest.raises(_atomic.ArtifactExistsError):
        _atomic.rename_noreplace(str(tmp_path / 'a'), str(tmp_path / 'b'))
    _atomic.rename_noreplace(str(tmp_path / 'a'), str(tmp_path / 'c'))
    assert _entries(tmp_path) == ['b', 'c']


@pytest.mark.parametrize('name', ['', '.', '..', 'a/b', '.hidden'])
def test_writer_rejects_bad_names(tmp_path, name):
    with pytest.raises(ValueError):
        _atomic.AtomicArtifactWriter(str(tmp_path), name)
    assert _entries(tmp_path) == []


def test_writer_after_commit_refuses_more_writes(tmp_path):
    with _atomic.AtomicArtifactWriter(str(tmp_path), 'x.sql') as writer:
        writer.write(b'x')
        writer.commit()
        with pytest.raises(ar.ArtifactError, match='already committed'):
            writer.write(b'y')
    assert (tmp_path / 'x.sql').read_bytes() == b'x'


def test_writer_write_from_stream_and_child_process(tmp_path):
    payload = os.urandom(3 * 1024 * 1024 + 17)
    source = tmp_path / 'src.bin'
    source.write_bytes(payload)
    out = tmp_path / 'out'
    out.mkdir()
    with open(str(source), 'rb') as stream:
        with _atomic.AtomicArtifactWriter(str(out), 'a.dump', chunk_size=65536) as writer:
            assert writer.write_from(stream) == len(payload)
            assert writer.commit()['sha256'] == hashlib.sha256(payload).hexdigest()
    with _atomic.AtomicArtifactWriter(str(out), 'b.dump') as writer:
        writer.write(b'head:')
        subprocess.run(['cat', str(source)], stdout=writer.fileno(), check=True)
        assert writer.sync_from_disk() == (hashlib.sha256(b'head:' + payload).hexdigest(), len(payload) + 5)
        writer.write(b':tail')
        result = writer.commit()
    assert result['sha256'] == hashlib.sha256(b'head:' + payload + b':tail').hexdigest() == _digest.sha256_file(result['path'])
    assert result['size'] == len(payload) + 10
    assert _entries(out) == ['a.dump', 'b.dump']


class _FullDisk:
    """A file object that accepts ``room`` bytes (partially, like a real short write) and then fails with ENOSPC."""

    def __init__(self, real, room, err=errno.ENOSPC):
        self.real = real
        self.room = room
        self.err = err

    def write(self, data):
        if self.room <= 0:
            raise OSError(self.err, os.strerror(self.err))
        count = self.real.write(bytes(data[:self.room]))
        self.room -= count
        return count

    def flush(self):
        self.real.flush()

    def fileno(self):
        return self.real.fileno()

    def close(self):
        self.real.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.mark.parametrize('err', [errno.ENOSPC, errno.EDQUOT])
def test_writer_disk_full_cleans_up(tmp_path, err):
    with pytest.raises(_atomic.NoSpaceError) as caught:
        with _atomic.AtomicArtifactWriter(str(tmp_path), 'backup.sql') as writer:
            writer._fh = _FullDisk(writer._fh, 2500, err)
            for dummy in range(10):
                writer.write(b'x' * 1000)
    assert str(caught.value) == 'no space left on %s after writing 2500 bytes; free space or choose another backup_dir' % tmp_path
    assert isinstance(caught.value, ar.ArtifactError)
    assert _entries(tmp_path) == []


def test_writer_other_write_error_cleans_up(tmp_path):
    with pytest.raises(ar.ArtifactError, match='failed after 0 bytes'):
        with _atomic.AtomicArtifactWriter(str(tmp_path), 'backup.sql') as writer:
            writer._fh = _FullDisk(writer._fh, 0, errno.EIO)
            writer.write(b'x')
    assert _entries(tmp_path) == []


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mount_point = tmp_path / 'tiny'
    mount_point.mkdir()
    if os.geteuid() != 0 or not shutil.which('mount'):
        pytest.skip('mounting a tmpfs needs root and mount(8)')
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=256k,mode=0755', 'tmpfs', str(mount_point)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        pytest.skip('cannot mount a tmpfs here: %s' % proc.stdout.decode(errors='replace').strip())
    try:
        yield mount_point
    finally:
        subprocess.run(['umount', str(mount_point)], check=False)


def test_writer_real_disk_full_on_tmpfs(tiny_tmpfs):
    with pytest.raises(_atomic.NoSpaceError, match='^no space left on %s after writing [0-9]+ bytes' % tiny_tmpfs):
        with _atomic.AtomicArtifactWriter(str(tiny_tmpfs), 'backup.sql') as writer:
            for dummy in range(100):
                writer.write(b'x' * 65536)
    assert _entries(tiny_tmpfs) == []


def test_directory_artifact_real_disk_full_on_tmpfs(tiny_tmpfs):
    with pytest.raises(_atomic.NoSpaceError):
        with _atomic.AtomicDirectoryArtifact(str(tiny_tmpfs), 'backup.dir') as artifact:
            artifact.write_file('toc.dat', [b'x' * 65536] * 100)
    assert _entries(tiny_tmpfs) == []


# --------------------------------------------------------------------------------------------
# Directory artifacts
# --------------------------------------------------------------------------------------------

DIR_FILES = {'toc.dat': b'toc', '3345.dat.gz': b'photo rows', '3346.dat.gz': b'', 'sub/extra.dat': b'nested'}


def _make_tree(root, files):
    for rel, data in files.items():
        target = os.path.join(str(root), *rel.split('/'))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, 'wb') as fileobj:
            fileobj.write(data)


def test_directory_digest_algorithm(tmp_path):
    _make_tree(tmp_path, DIR_FILES)
    lines = b''.join(b'%s  %s\n' % (hashlib.sha256(DIR_FILES[rel]).hexdigest().encode(), rel.encode())
                     for rel in sorted(DIR_FILES, key=lambda r: r.encode()))
    assert _digest.directory_digest(str(tmp_path)) == (hashlib.sha256(lines).hexdigest(), sum(len(v) for v in DIR_FILES.values()))
    assert _digest.sha256_directory(str(tmp_path), chunk_size=2) == hashlib.sha256(lines).hexdigest()


@pytest.mark.skipif(not all(shutil.which(tool) for tool in ('find', 'sort', 'xargs', 'sha256sum')), reason='GNU coreutils/findutils needed')
def test_directory_digest_matches_the_documented_shell_command(tmp_path):
    _make_tree(tmp_path, DIR_FILES)
    out = subprocess.run("find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum",
                         shell=True, cwd=str(tmp_path), stdout=subprocess.PIPE, check=True).stdout
    assert out.split()[0].decode() == _digest.sha256_directory(str(tmp_path))


def _rename_a_file(root):
    os.rename(os.path.join(root, '3345.dat.gz'), os.path.join(root, '3347.dat.gz'))


def _change_a_byte(root):
    with open(os.path.join(root, 'toc.dat'), 'r+b') as fileobj:
        fileobj.write(b'T')


def _add_a_file(root):
    _make_tree(root, {'new.dat': b''})


def _remove_a_file(root):
    os.unlink(os.path.join(root, '3346.dat.gz'))


def _move_into_subdir(root):
    os.rename(os.path.join(root, 'toc.dat'), os.path.join(root, 'sub', 'toc.dat'))


def _add_empty_dir(root):
    os.mkdir(os.path.join(root, 'empty'))


@pytest.mark.parametrize('change, changes_digest', [
    (_rename_a_file, True),
    (_change_a_byte, True),
    (_add_a_file, True),
    (_remove_a_file, True),
    (_move_into_subdir, True),
    (_add_empty_dir, False),
])
def test_directory_digest_sensitivity(tmp_path, change, changes_digest):
    _make_tree(tmp_path, DIR_FILES)
    before = _digest.sha256_directory(str(tmp_path))
    assert _digest.sha256_directory(str(tmp_path)) == before
    change(str(tmp_path))
    assert (_digest.sha256_directory(str(tmp_path)) != before) is changes_digest


def test_directory_digest_is_independent_of_creation_order(tmp_path):
    first, second = tmp_path / 'a', tmp_path / 'b'
    _make_tree(first, DIR_FILES)
    _make_tree(second, dict(reversed(list(DIR_FILES.items()))))
    assert _digest.sha256_directory(str(first)) == _digest.sha256_directory(str(second))


@pytest.mark.parametrize('special', ['symlink', 'fifo'])
def test_directory_digest_refuses_special_entries(tmp_path, special):
    _make_tree(tmp_path, DIR_FILES)
    if special == 'symlink':
        os.symlink('/etc/passwd', str(tmp_path / 'link'))
    else:
        os.mkfifo(str(tmp_path / 'link'))
    with pytest.raises(ar.ArtifactError, match='contains the (symlink|special file) link'):
        _digest.sha256_directory(str(tmp_path))


def test_directory_artifact_commit(tmp_path):
    with _atomic.AtomicDirectoryArtifact(str(tmp_path), 'backup.dir') as artifact:
        assert os.listdir(artifact.temp_path) == []
        assert os.path.basename(artifact.temp_path).startswith('.backup.dir.partial-')
        for rel, data in DIR_FILES.items():
            artifact.write_file(rel, [data[:2], data[2:]])
        result = artifact.commit()
    assert _entries(tmp_path) == ['backup.dir']
    assert result['sha256'] == _digest.sha256_directory(result['path']) == artifact.sha256
    assert result['size'] == sum(len(v) for v in DIR_FILES.values()) == artifact.size
    assert (tmp_path / 'backup.dir' / 'sub' / 'extra.dat').read_bytes() == b'nested'


def test_directory_artifact_written_by_a_child_process(tmp_path):
    with _atomic.AtomicDirectoryArtifact(str(tmp_path), 'backup.dir') as artifact:
        subprocess.run(['sh', '-c', 'printf toc > toc.dat'], cwd=artifact.temp_path, check=True)
        result = artifact.commit()
    assert result['sha256'] == _digest.sha256_directory(str(tmp_path / 'backup.dir'))


@pytest.mark.parametrize('fail', ['exception', 'no_commit', 'existing', 'special_file'])
def test_directory_artifact_leaves_nothing(tmp_path, fail):
    expected = []
    if fail == 'existing':
        expected = ['backup.dir']
    with pytest.raises(Exception) if fail != 'no_commit' else _no_error():
        with _atomic.AtomicDirectoryArtifact(str(tmp_path), 'backup.dir') as artifact:
            artifact.write_file('toc.dat', [b'toc'])
            if fail == 'exception':
                raise RuntimeError('pg_dump died')
            if fail == 'existing':
                os.mkdir(str(tmp_path / 'backup.dir'))
                artifact.commit()
            if fail == 'special_file':
                os.mkfifo(os.path.join(artifact.temp_path, 'pipe'))
                artifact.commit()
    assert _entries(tmp_path) == expected
    if fail == 'existing':
        assert os.listdir(str(tmp_path / 'backup.dir')) == []


@pytest.mark.parametrize('rel', ['/abs', '../x', 'a/../b', '', 'a//b', './a'])
def test_directory_artifact_rejects_paths_outside(tmp_path, rel):
    with _atomic.AtomicDirectoryArtifact(str(tmp_path), 'backup.dir') as artifact:
        with pytest.raises(ValueError):
            artifact.write_file(rel, [b'x'])


def test_directory_artifact_disk_full_fake(tmp_path, monkeypatch):
    real_fdopen = os.fdopen

    def fdopen(fd, *args, **kwargs):
        return _FullDisk(real_fdopen(fd, *args, **kwargs), 10)

    with pytest.raises(_atomic.NoSpaceError, match='after writing 10 bytes'):
        with _atomic.AtomicDirectoryArtifact(str(tmp_path), 'backup.dir') as artifact:
            monkeypatch.setattr(_atomic.os, 'fdopen', fdopen)
            artifact.write_file('toc.dat', [b'x' * 100])
    monkeypatch.undo()
    assert _entries(tmp_path) == []


# --------------------------------------------------------------------------------------------
# hashing
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('size', [0, 1, 1024 * 1024 - 1, 1024 * 1024, 2 * 1024 * 1024 + 3])
def test_sha256_file(tmp_path, size):
    data = os.urandom(size)
    (tmp_path / 'f').write_bytes(data)
    assert _digest.sha256_file(str(tmp_path / 'f')) == hashlib.sha256(data).hexdigest()
    assert _digest.file_digest(str(tmp_path / 'f'), chunk_size=4096) == (hashlib.sha256(data).hexdigest(), size)


# --------------------------------------------------------------------------------------------
# manifests
# --------------------------------------------------------------------------------------------

def test_manifest_round_trip(tmp_path):
    (tmp_path / 'backup.sql').write_bytes(PLAIN_SQL)
    manifest = _manifest.build_manifest(**_manifest_fields(str(tmp_path / 'backup.sql'), key_fingerprint='v1:' + 'ab' * 16,
                                                           cipher='aes-256-gcm', snapshot_id='00000003-0000001B-1', compression_level=0))
    assert manifest['format_version'] == _manifest.ARTIFACT_FORMAT_VERSION == 1
    assert manifest['started_at'] == '2026-01-31T02:00:05Z'
    assert manifest['counted_tables'] == ['audit_log', 'photo']
    target = _manifest.write_manifest(str(tmp_path / 'backup.sql'), manifest)
    assert target == str(tmp_path / 'backup.sql.manifest.json')
    assert _manifest.read_manifest(str(tmp_path / 'backup.sql')) == manifest
    assert _manifest.read_manifest(target) == manifest
    assert json.loads((tmp_path / 'backup.sql.manifest.json').read_text()) == manifest
    assert (tmp_path / 'backup.sql.manifest.json').read_bytes() == _manifest.manifest_bytes(manifest)
    assert set(manifest) == set(_manifest.MANIFEST_FIELDS)
    assert _manifest.validate_manifest(manifest) == []
    assert _entries(tmp_path) == ['backup.sql', 'backup.sql.manifest.json']
    with pytest.raises(_atomic.ArtifactExistsError):
        _manifest.write_manifest(str(tmp_path / 'backup.sql'), manifest)


def test_build_manifest_optional_fields_default_to_none(tmp_path):
    (tmp_path / 'backup.sql').write_bytes(PLAIN_SQL)
    fields = _manifest_fields(str(tmp_path / 'backup.sql'))
    del fields['host'], fields['source']
    manifest = _manifest.build_manifest(**fields)
    assert all(manifest[field] is None for field in _manifest.OPTIONAL_FIELDS)


def test_build_manifest_rejects_unknown_fields(tmp_path):
    (tmp_path / 'backup.sql').write_bytes(PLAIN_SQL)
    with pytest.raises(ValueError, match='unknown manifest field.*row_count$'):
        _manifest.build_manifest(row_count={}, **_manifest_fields(str(tmp_path / 'backup.sql')))


def _valid():
    return {
        'format_version': 1, 'collection_version': '0.1.0', 'file': 'backup.sql', 'dump_format': 'plain',
        'compression': 'none', 'compression_level': None, 'size': 10, 'sha256': 'a' * 64, 'database': 'db',
        'server_version': '15.18', 'pg_dump_version': '15.18', 'started_at': '2026-01-31T02:00:05Z',
        'finished_at': '2026-01-31T02:00:30Z', 'snapshot_id': None, 'row_counts': {'photo': 3},
        'counted_tables': ['photo'], 'key_fingerprint': None, 'cipher': None, 'transport': 'direct',
        'host': 'h', 'source': {'db_host': 'db.example', 'port': 5432},
    }


@pytest.mark.parametrize('change, problem', [
    ({}, None),
    ({'extra_future_field': 1}, None),
    ({'format_version': 2}, 'format_version 2 is not supported'),
    ({'format_version': True}, 'format_version True is not supported'),
    ({'sha256': None}, 'missing field(s): sha256'),
    ({'database': None, 'size': None}, 'missing field(s): size, database'),
    ({'file': 'dir/backup.sql'}, "file must be the artifact's base name"),
    ({'dump_format': 'tar'}, "dump_format 'tar' is not one of plain, custom, directory"),
    ({'compression': 'lz4'}, "compression 'lz4' is not one of none, gzip, zstd"),
    ({'transport': 'ssh'}, "transport 'ssh' is not one of compose, direct"),
    ({'transport': {'transport': 'compose', 'project_src': '/srv/t', 'service': 'db', 'user': 'app', 'port': None}}, None),
    ({'transport': {'transport': 'direct', 'host': 'db', 'port': 5432, 'database': 'db', 'user': 'app'}}, None),
    ({'transport': {'host': 'db'}}, "transport None is not one of compose, direct"),
    ({'transport': {'transport': 'direct', 'password': 'x'}}, 'transport.password looks like a secret'),
    ({'transport': 5}, 'transport must be a name or a mapping with a transport key'),
    ({'size': -1}, 'size must be a non-negative integer'),
    ({'size': '10'}, 'size must be a non-negative integer'),
    ({'sha256': 'A' * 64}, 'sha256 must be 64 lowercase hexadecimal characters'),
    ({'started_at': '2026-01-31 02:00:05'}, "started_at '2026-01-31 02:00:05' is not an ISO 8601 UTC time stamp"),
    ({'finished_at': '2026-01-31T01:00:00Z'}, 'finished_at is before started_at'),
    ({'row_counts': {'photo': -1}}, 'row_counts of photo must be non-negative integers'),
    ({'row_counts': {'photo': 1.5}}, 'row_counts of photo must be non-negative integers'),
    ({'row_counts': []}, 'row_counts must map table names to row counts'),
    ({'counted_tables': ['photo', 'audit_log']}, 'counted_tables and the tables of row_counts differ'),
    ({'counted_tables': 'photo'}, 'counted_tables must be a list of table names'),
    ({'compression_level': 'max'}, 'compression_level must be an integer or null'),
    ({'key_fingerprint': 'deadbeef'}, 'key_fingerprint must look like v1:<hex>'),
    ({'source': {'db_password': 'x'}}, 'source.db_password looks like a secret'),
    ({'source': {'nested': {}}}, 'source.nested must be a string, number or boolean'),
    ({'source': 'db.example'}, 'source must be a mapping'),
    ({'pgpassword': 'x'}, 'field(s) pgpassword look like secrets'),
    ({'host': 5}, 'host must be a string or null'),
    ({'database': ''}, 'database must be a non-empty string'),
])
def test_validate_manifest(change, problem):
    manifest = _valid()
    manifest.update(change)
    problems = _manifest.validate_manifest(manifest)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(problem), problems


@pytest.mark.parametrize('value', [[], 'x', None, 3])
def test_validate_manifest_not_an_object(value):
    assert _manifest.validate_manifest(value) == ['the manifest is not a JSON object']


def test_build_manifest_refuses_invalid_and_write_refuses_invalid(tmp_path):
    (tmp_path / 'x.sql').write_bytes(PLAIN_SQL)
    with pytest.raises(_manifest.ManifestError) as caught:
        _manifest.build_manifest(**_manifest_fields(str(tmp_path / 'x.sql'), sha256='nope'))
    assert caught.value.problems == ['sha256 must be 64 lowercase hexadecimal characters']
    bad = _valid()
    bad['size'] = -5
    with pytest.raises(_manifest.ManifestError, match='refusing to write an invalid manifest: size'):
        _manifest.write_manifest(str(tmp_path / 'backup.sql'), bad)
    assert _entries(tmp_path) == ['x.sql']


@pytest.mark.parametrize('content, error, words', [
    (None, _manifest.ManifestMissingError, 'manifest missing: '),
    (b'{not json', _manifest.ManifestError, 'is not valid JSON'),
    (b'\xff\xfe', _manifest.ManifestError, 'is not valid JSON'),
    (b'[1, 2]', _manifest.ManifestError, 'is not a JSON object'),
])
def test_read_manifest_errors(tmp_path, content, error, words):
    if content is not None:
        (tmp_path / 'b.sql.manifest.json').write_bytes(content)
    with pytest.raises(error, match=words):
        _manifest.read_manifest(str(tmp_path / 'b.sql'))


# --------------------------------------------------------------------------------------------
# verify_artifact
# --------------------------------------------------------------------------------------------

def _toc_runner(text=TOC, rc=0, stderr=''):
    calls = []

    def run(path):
        calls.append(path)
        return rc, text, stderr
    run.calls = calls
    return run


def _flip_byte(path, offset=40):
    with open(path, 'r+b') as fileobj:
        fileobj.seek(offset)
        byte = fileobj.read(1)
        fileobj.seek(offset)
        fileobj.write(bytes([byte[0] ^ 0x01]))


def _truncate(path, keep=0.5):
    size = os.path.getsize(path)
    with open(path, 'r+b') as fileobj:
        fileobj.truncate(int(size * keep))


def test_verify_ok_plain(tmp_path):
    path = _publish(tmp_path)
    result = _verification.verify_artifact(path)
    assert result['ok'] is True, result['problems']
    assert result['kind'] == 'artifact'
    assert result['problems'] == []
    assert result['sha256'] == hashlib.sha256(PLAIN_SQL).hexdigest()
    assert result['size'] == len(PLAIN_SQL)
    assert result['manifest']['database'] == 'telemetry_db'
    assert result['toc_tables'] is None
    assert result['dump_format'] == 'plain'


def test_verify_flipped_byte(tmp_path):
    path = _publish(tmp_path)
    expected = hashlib.sha256(PLAIN_SQL).hexdigest()
    _flip_byte(path)
    result = _verification.verify_artifact(path)
    assert result['ok'] is False
    assert result['problems'] == ['sha256 mismatch: manifest says %s, file has %s' % (expected, _digest.sha256_file(path))]


def test_verify_truncated_plain_at_a_line_boundary(tmp_path):
    path = _publish(tmp_path)
    cut = PLAIN_SQL.index(b'\\.\n') + 3
    with open(path, 'r+b') as fileobj:
        fileobj.truncate(cut)
    result = _verification.verify_artifact(path)
    assert result['problems'][0] == 'size mismatch: manifest says %d bytes, file has %d' % (len(PLAIN_SQL), cut)
    assert result['problems'][1].startswith('sha256 mismatch: ')
    assert result['problems'][2].startswith('plain dump is incomplete')
    assert result['ok'] is False


def test_verify_truncated_custom_archive_with_a_lenient_toc(tmp_path):
    """pg_restore -l exits 0 on a custom archive cut in half (OFFLINE.md): the checksum must catch it."""
    path = _publish(tmp_path, content=b'PGDMP' + os.urandom(4000), fmt='custom', compression='gzip')
    _truncate(path)
    runner = _toc_runner()
    result = _verification.verify_artifact(path, toc_runner=runner)
    assert runner.calls == [path]
    assert result['toc_tables'] == ['public.audit_log', 'public.photo', 'reports.daily totals']
    assert result['ok'] is False
    assert result['problems'][0] == 'size mismatch: manifest says 4005 bytes, file has 2002'
    assert result['problems'][1].startswith('sha256 mismatch')


def test_verify_custom_ok_and_toc_missing_a_table(tmp_path):
    path = _publish(tmp_path, content=b'PGDMP' + b'\0' * 100, fmt='custom', compression='none',
                    row_counts={'photo': 1, 'public.audit_log': 2, 'vehicle': 3})
    result = _verification.verify_artifact(path, toc_runner=_toc_runner())
    assert result['problems'] == ['table of contents has no data for vehicle listed in the manifest']
    trimmed = '\n'.join(line for line in TOC.splitlines() if 'vehicle' not in line)
    assert _verification.verify_artifact(path, toc_runner=_toc_runner(trimmed))['ok'] is False
    ok = _verification.verify_artifact(path, toc_runner=_toc_runner(TOC + '3348; 0 16420 TABLE DATA public vehicle app\n'))
    assert ok['ok'] is True and ok['problems'] == []


def test_verify_toc_unreadable(tmp_path):
    path = _publish(tmp_path, content=b'garbage', fmt='custom')
    runner = _toc_runner('', 1, 'pg_restore: error: input file does not appear to be a valid archive\n')
    result = _verification.verify_artifact(path, toc_runner=runner)
    assert result['problems'] == ['table of contents unreadable: pg_restore: error: input file does not appear to be a valid archive']
    assert result['toc_tables'] is None
    assert _verification.verify_artifact(path, toc_runner=_toc_runner('', 2, ''))['problems'] == ['table of contents unreadable: pg_restore exited with 2']


def test_verify_without_toc_runner_checks_the_checksum_only(tmp_path):
    path = _publish(tmp_path, content=b'PGDMP', fmt='custom')
    assert _verification.verify_artifact(path)['ok'] is True


def test_verify_directory_artifact(tmp_path):
    path = _publish(tmp_path, content=DIR_FILES, fmt='directory', compression='gzip')
    assert path.endswith('.dir')
    runner = _toc_runner()
    result = _verification.verify_artifact(path + '/', toc_runner=runner)
    assert result['ok'] is True, result['problems']
    assert runner.calls == [path]
    os.rename(os.path.join(path, '3345.dat.gz'), os.path.join(path, '3399.dat.gz'))
    result = _verification.verify_artifact(path, toc_runner=runner)
    assert [problem.split(':')[0] for problem in result['problems']] == ['sha256 mismatch']


def test_verify_missing_manifest(tmp_path):
    (tmp_path / 'x.dump').write_bytes(b'PGDMP')
    result = _verification.verify_artifact(str(tmp_path / 'x.dump'))
    assert result['kind'] == 'unknown'
    assert result['problems'] == ['manifest missing: %s.manifest.json does not exist' % (tmp_path / 'x.dump')]
    assert result['manifest'] is None and result['sha256'] == hashlib.sha256(b'PGDMP').hexdigest()
    relaxed = _verification.verify_artifact(str(tmp_path / 'x.dump'), require_manifest=False)
    assert relaxed['ok'] is True and relaxed['problems'] == []


def test_verify_runbook_backup(tmp_path):
    path = str(tmp_path / 'backup_2026-01-31_02-00-05.sql')
    with open(path, 'wb') as fileobj:
        fileobj.write(PLAIN_SQL)
    result = _verification.verify_artifact(path)
    assert result['kind'] == 'runbook'
    assert result['manifest'] is None
    assert result['ok'] is False
    assert result['problems'] == ['no manifest: a hand-made backup; its checksum cannot be verified']
    relaxed = _verification.verify_artifact(path, require_manifest=False)
    assert relaxed['ok'] is True and relaxed['kind'] == 'runbook'
    _truncate(path, 0.6)
    truncated = _verification.verify_artifact(path, require_manifest=False)
    assert truncated['problems'] == ['plain dump is incomplete: it does not end with pg_dump\'s "PostgreSQL database dump complete" trailer']


def test_verify_trailer_followed_by_unrestrict(tmp_path):
    path = str(tmp_path / 'b.sql')
    with open(path, 'wb') as fileobj:
        fileobj.write(PLAIN_SQL + b'\\unrestrict abcdef\n\n')
    assert _verification.verify_artifact(path, require_manifest=False)['ok'] is True


def test_verify_file_missing(tmp_path):
    path = _publish(tmp_path)
    os.unlink(path)
    result = _verification.verify_artifact(path)
    assert result['problems'] == ['file missing: %s does not exist' % path]
    assert result['manifest'] is not None and result['kind'] == 'artifact'
    nothing = _verification.verify_artifact(str(tmp_path / 'nothing.sql'))
    assert nothing['problems'][0] == 'file missing: %s does not exist' % (tmp_path / 'nothing.sql')


def test_verify_invalid_manifest_and_renamed_artifact(tmp_path):
    path = _publish(tmp_path)
    renamed = str(tmp_path / 'renamed.sql')
    os.rename(path, renamed)
    os.rename(ar.manifest_path(path), ar.manifest_path(renamed))
    result = _verification.verify_artifact(renamed)
    assert result['problems'] == ['the manifest describes %s, not renamed.sql' % os.path.basename(path)]
    manifest = _manifest.read_manifest(renamed)
    manifest['format_version'] = 9
    with open(ar.manifest_path(renamed), 'w') as fileobj:
        json.dump(manifest, fileobj)
    assert _verification.verify_artifact(renamed)['problems'][0].startswith('manifest invalid: format_version 9 is not supported')
    with open(ar.manifest_path(renamed), 'w') as fileobj:
        fileobj.write('{')
    assert _verification.verify_artifact(renamed)['problems'][0].startswith('manifest unreadable: ')


def test_verify_format_disagreement(tmp_path):
    path = _publish(tmp_path, content=b'PGDMP', fmt='custom')
    manifest = _manifest.read_manifest(path)
    manifest['dump_format'] = 'directory'
    with open(ar.manifest_path(path), 'w') as fileobj:
        json.dump(manifest, fileobj)
    assert 'is not a directory' in _verification.verify_artifact(path)['problems'][0]


@pytest.mark.parametrize('text, expected', [
    (TOC, ['public.audit_log', 'public.photo', 'reports.daily totals']),
    ('', []),
    ('; 3345; 0 16390 TABLE DATA public photo app\n', []),
    ('3345; 0 16390 TABLE public photo app\n', []),
])
def test_parse_toc_tables(text, expected):
    assert _verification.parse_toc_tables(text) == expected


# --------------------------------------------------------------------------------------------
# listing and selection
# --------------------------------------------------------------------------------------------

def _later(seconds):
    return STARTED + datetime.timedelta(seconds=seconds)


def test_list_artifacts_newest_first_and_skips(tmp_path):
    first = _publish(tmp_path, started=_later(0))
    second = _publish(tmp_path, content=b'PGDMP', started=_later(60), fmt='custom')
    third = _publish(tmp_path, content=DIR_FILES, started=_later(120), fmt='directory')
    other = _publish(tmp_path, started=_later(180), database='other_db')
    (tmp_path / '.backup_2026-01-31_03-00-00.sql.partial-0a1b2c').write_bytes(b'partial')
    (tmp_path / 'backup_2026-01-31_04-00-00.sql').write_bytes(PLAIN_SQL)
    (tmp_path / 'orphan.sql.manifest.json').write_text('{}')
    (tmp_path / 'broken.sql').write_bytes(b'x')
    (tmp_path / 'broken.sql.manifest.json').write_text('{')
    listed = _verification.list_artifacts(str(tmp_path), 'telemetry_db')
    assert [entry['path'] for entry in listed] == [third, second, first]
    assert listed[0]['started_at'] == _later(120)
    assert listed[0]['manifest']['dump_format'] == 'directory'
    assert [entry['path'] for entry in _verification.list_artifacts(str(tmp_path))] == [other, third, second, first]
    assert _verification.list_artifacts(str(tmp_path), 'nobody') == []


def test_newest_verified_skips_damaged(tmp_path):
    first = _publish(tmp_path, started=_later(0))
    second = _publish(tmp_path, started=_later(60))
    third = _publish(tmp_path, started=_later(120))
    _flip_byte(third)
    _truncate(second)
    selection = _verification.newest_verified(str(tmp_path), 'telemetry_db')
    assert selection['selected']['path'] == first
    assert selection['selected']['ok'] is True
    assert [result['path'] for result in selection['rejected']] == [third, second]
    assert selection['rejected'][0]['problems'][0].startswith('sha256 mismatch')
    _flip_byte(first)
    none = _verification.newest_verified(str(tmp_path), 'telemetry_db')
    assert none['selected'] is None and len(none['rejected']) == 3
    assert _verification.newest_verified(str(tmp_path), 'other') == {'selected': None, 'rejected': []}


def test_newest_verified_uses_the_toc_runner(tmp_path):
    older = _publish(tmp_path, content=b'PGDMP1', started=_later(0), fmt='custom')
    _publish(tmp_path, content=b'PGDMP2', started=_later(60), fmt='custom', row_counts={'photo': 1, 'gone': 1})
    selection = _verification.newest_verified(str(tmp_path), 'telemetry_db', toc_runner=_toc_runner())
    assert selection['selected']['path'] == older
    assert selection['rejected'][0]['problems'] == ['table of contents has no data for gone listed in the manifest']


def test_remove_artifact(tmp_path):
    plain = _publish(tmp_path, started=_later(0))
    directory = _publish(tmp_path, content=DIR_FILES, started=_later(60), fmt='directory')
    assert _verification.remove_artifact(plain) == [plain + '.manifest.json', plain]
    assert _verification.remove_artifact(directory) == [directory + '.manifest.json', directory]
    assert _verification.remove_artifact(directory) == []
    assert _entries(tmp_path) == []


def test_manifest_as_pg_logical_backup_builds_it(tmp_path):
    """The backup module passes isoformat() stamps with microseconds and a transport mapping."""
    (tmp_path / 'backup.sql.zst').write_bytes(b'(\xb5/\xfd')
    sha256, size = _digest.artifact_digest(str(tmp_path / 'backup.sql.zst'))
    started = datetime.datetime.fromtimestamp(1769824805.123456, tz=UTC).isoformat().replace('+00:00', 'Z')
    finished = datetime.datetime.fromtimestamp(1769824830.0, tz=UTC).isoformat().replace('+00:00', 'Z')
    manifest = _manifest.build_manifest(
        collection_version='0.1.0', file='backup.sql.zst', dump_format='plain', compression='zstd', compression_level=1,
        size=size, sha256=sha256, database='telemetry_db', server_version='15.18', pg_dump_version='pg_dump (PostgreSQL) 15.18',
        started_at=started, finished_at=finished, snapshot_id='00000003-0000001B-1', row_counts={'photo': 5000, 'audit_log': 12},
        counted_tables=['photo', 'audit_log'], key_fingerprint=None, cipher=None,
        transport={'transport': 'compose', 'project_src': '/srv/telemetry', 'project_name': None, 'service': 'db',
                   'database': 'telemetry_db', 'user': 'app'})
    _manifest.write_manifest(str(tmp_path / 'backup.sql.zst') + ar.MANIFEST_SUFFIX, manifest)
    result = _verification.verify_artifact(str(tmp_path / 'backup.sql.zst'))
    assert result['ok'] is True, result['problems']
    assert _verification.list_artifacts(str(tmp_path))[0]['started_at'] == datetime.datetime.fromtimestamp(1769824805.123456, tz=UTC)


def test_hashing_and_writing_keep_memory_flat(tmp_path):
    import tracemalloc
    size = 48 * 1024 * 1024
    chunk = b'\x5a' * (256 * 1024)
    tracemalloc.start()
    try:
        with _atomic.AtomicArtifactWriter(str(tmp_path), 'big.dump') as writer:
            for dummy in range(size // len(chunk)):
                writer.write(chunk)
            writer.commit()
        assert _digest.file_digest(str(tmp_path / 'big.dump'))[1] == size
        result = _verification.verify_artifact(str(tmp_path / 'big.dump'), require_manifest=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result['size'] == size
    assert peak < 4 * 1024 * 1024, peak
