# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of _offsite.copy (copy_artifact and its helpers) and _offsite.fetch (complete_artifacts, space_problem,
download_artifact, fetch_newest) over an in-memory OffsiteTarget, with real local artifacts and manifests in tmp_path.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
import os

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import artifact_name
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._atomic import DestinationMissingError, NoSpaceError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._manifest import (
    ManifestError,
    ManifestMissingError,
    build_manifest,
    manifest_bytes,
    read_manifest,
    write_manifest,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite import fetch
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.copy import (
    copy_artifact,
    local_artifact,
    lock_for,
    remote_manifest,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.fetch import (
    complete_artifacts,
    download_artifact,
    fetch_newest,
    space_problem,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import (
    OffsiteConflictError,
    OffsiteError,
    OffsiteExistsError,
    OffsiteLockedError,
    OffsiteMismatchError,
    OffsiteTarget,
    manifest_name,
)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
MIB = 1 << 20
DB = 'telemetry_db'


def T(stamp):
    """'2026-11-21 02:00' (or with seconds) -> aware UTC datetime."""
    fmt = '%Y-%m-%d %H:%M:%S' if stamp.count(':') == 2 else '%Y-%m-%d %H:%M'
    return datetime.datetime.strptime(stamp, fmt).replace(tzinfo=UTC)


def N(stamp, seq=1, prefix='backup'):
    """The artifact name of a plain backup started at ``stamp``; ``seq`` > 1 gives the ``_2``, ``_3``... names."""
    name = artifact_name(T(stamp), prefix=prefix)
    if seq > 1:
        name = '%s_%d.sql' % (name[:-len('.sql')], seq)
    return name


def sha(data):
    return hashlib.sha256(data).hexdigest()


def dump_bytes(tag='a'):
    """Bytes of a small dump, longer than a few chunks of MemoryTarget."""
    return ('-- PostgreSQL database dump %s\n' % tag).encode('ascii') + b'INSERT INTO photo VALUES (1);\n' * 5


def make_manifest(name, data, stamp='2026-11-21 02:00', **overrides):
    fields = dict(file=name, dump_format='plain', compression='none', size=len(data), sha256=sha(data), database=DB,
                  server_version='15.18', pg_dump_version='15.18', collection_version='0.1.0', started_at=T(stamp),
                  finished_at=T(stamp) + datetime.timedelta(seconds=30), row_counts={'photo': 5}, transport='compose')
    fields.update(overrides)
    return build_manifest(**fields)


def local_backup(directory, stamp='2026-11-21 02:00', data=None, seq=1, **overrides):
    """A real artifact in ``directory`` with its manifest (build_manifest + write_manifest); returns (path, manifest)."""
    data = dump_bytes(stamp) if data is None else data
    name = N(stamp, seq)
    path = os.path.join(str(directory), name)
    with open(path, 'wb') as handle:
        handle.write(data)
    manifest = make_manifest(name, data, stamp, **overrides)
    write_manifest(path, manifest)
    return path, manifest


def read(path):
    with open(path, 'rb') as handle:
        return handle.read()


class MemoryTarget(OffsiteTarget):
    """A complete in-memory OffsiteTarget.

    Knobs: ``corrupt_on_store`` (names whose stored bytes differ from what was sent), ``object_lock`` (False: a lock
    is refused), ``legal_holds``, ``fail_download_after`` (bytes written before a download breaks), ``chunk``.
    Logs: ``calls`` (every mutating call, in order), ``writes`` (names stored, in order), ``put_locks`` (the ``lock``
    argument per name), ``downloads``, ``deleted``, ``progress``.
    """

    kind = 'memory'
    label = 'mem://bucket/fleet/'

    def __init__(self, chunk=16, object_lock=True, now=NOW):
        self.objects = {}
        self.retain_until = {}
        self.legal_holds = set()
        self.corrupt_on_store = set()
        self.fail_download_after = None
        self.object_lock = object_lock
        self.chunk = chunk
        self.now = now
        self.calls = []
        self.writes = []
        self.put_locks = {}
        self.downloads = []
        self.deleted = []
        self.progress = []

    def location(self, name):
        return self.label + name

    def list_names(self):
        return set(self.objects)

    def stat(self, name):
        if name not in self.objects:
            return None
        return {'size': len(self.objects[name]), 'locked_until': self.retain_until.get(name),
                'legal_hold': name in self.legal_holds}

    def get_bytes(self, name, limit):
        if name not in self.objects:
            raise OffsiteError('%s does not exist' % self.location(name), code='offsite_missing')
        data = self.objects[name]
        if len(data) > limit:
            raise OffsiteError('%s is %d bytes, more than the %d expected: it is not what this collection wrote'
                               % (self.location(name), len(data), limit), code='offsite_too_large')
        return data

    def _store(self, name, data, lock):
        assert '/' not in name
        if name in self.objects:
            raise OffsiteExistsError('%s already exists: it is never overwritten' % self.location(name))
        if lock is not None:
            if not self.object_lock:
                raise OffsiteError('%s has no Object Lock: set no lock mode' % self.label, code='offsite_no_lock')
            mode, until = lock
            assert mode in ('GOVERNANCE', 'COMPLIANCE') and until.tzinfo is not None
            self.retain_until[name] = until
        if name in self.corrupt_on_store:
            data = bytes([data[0] ^ 0xff]) + data[1:]
        self.objects[name] = bytes(data)
        self.writes.append(name)
        self.put_locks[name] = lock

    def put_file(self, path, name, size, progress=None, lock=None):
        self.calls.append(('put_file', name))
        if name in self.objects:
            raise OffsiteExistsError('%s already exists: it is never overwritten' % self.location(name))
        digest, parts, done = hashlib.sha256(), [], 0
        with open(path, 'rb') as handle:
            while True:
                chunk = handle.read(self.chunk)
                if not chunk:
                    break
                digest.update(chunk)
                parts.append(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done)
        self._store(name, b''.join(parts), lock)
        return digest.hexdigest()

    def put_bytes(self, name, data, lock=None):
        self.calls.append(('put_bytes', name))
        self._store(name, data, lock)

    def hash_object(self, name):
        self.calls.append(('hash_object', name))
        if name not in self.objects:
            raise OffsiteError('%s does not exist' % self.location(name), code='offsite_missing')
        data = self.objects[name]
        return sha(data), len(data)

    def download(self, name, writer):
        self.calls.append(('download', name))
        self.downloads.append(name)
        if name not in self.objects:
            raise OffsiteError('%s does not exist' % self.location(name), code='offsite_missing')
        data = self.objects[name]
        for offset in range(0, len(data), self.chunk):
            if self.fail_download_after is not None and offset >= self.fail_download_after:
                raise OffsiteError('downloading %s failed after %d bytes: connection reset' % (self.location(name), offset))
            writer.write(data[offset:offset + self.chunk])

    def delete(self, name):
        self.calls.append(('delete', name))
        until = self.retain_until.get(name)
        if name in self.legal_holds or (until is not None and until > self.now):
            raise OffsiteLockedError('%s is under Object Lock: it cannot be deleted' % self.location(name))
        self.objects.pop(name, None)
        self.deleted.append(name)

    # helpers of the tests (not part of the interface)

    def mutations(self):
        return [call for call in self.calls if call[0] in ('put_file', 'put_bytes', 'delete')]

    def add(self, name, data, manifest=None, manifest_data=None):
        """Put an artifact (and its manifest, as a dict or raw bytes) at the target without logging a write."""
        self.objects[name] = data
        if manifest is not None:
            self.objects[manifest_name(name)] = manifest_bytes(manifest)
        if manifest_data is not None:
            self.objects[manifest_name(name)] = manifest_data
        return name

    def add_backup(self, stamp, seq=1, data=None, **overrides):
        data = dump_bytes('%s/%d' % (stamp, seq)) if data is None else data
        name = N(stamp, seq)
        return self.add(name, data, make_manifest(name, data, stamp, **overrides))


def fake_clock(*values):
    ticks = iter(values)
    return lambda: next(ticks)


def staging(tmp_path):
    path = tmp_path / 'staging'
    path.mkdir()
    return str(path)


# --------------------------------------------------------------------------------------------
# copy: local_artifact, lock_for, remote_manifest
# --------------------------------------------------------------------------------------------

def test_local_artifact_returns_name_manifest_and_the_manifest_file_bytes(tmp_path):
    path, manifest = local_backup(tmp_path)
    name, found, data = local_artifact(path)
    assert name == os.path.basename(path)
    assert found == manifest
    assert data == read(path + '.manifest.json') == manifest_bytes(manifest)


def test_local_artifact_refuses_a_directory_artifact(tmp_path):
    directory = tmp_path / 'backup_2026-11-21_02-00-00.dir'
    directory.mkdir()
    (directory / 'toc.dat').write_bytes(b'toc')
    for path in (str(directory), str(directory) + '/'):
        with pytest.raises(OffsiteError) as caught:
            local_artifact(path)
        assert caught.value.code == 'offsite_directory'
        assert 'directory-format' in str(caught.value)


def test_local_artifact_refuses_what_is_not_a_file(tmp_path):
    with pytest.raises(OffsiteError) as caught:
        local_artifact(str(tmp_path / 'backup_2026-11-21_02-00-00.sql'))
    assert caught.value.code == 'offsite_no_artifact'


def test_lock_for():
    manifest = {'started_at': '2026-11-21T02:00:05Z'}
    assert lock_for(manifest, 'COMPLIANCE', 30) == ('COMPLIANCE', T('2026-12-21 02:00:05'))
    assert lock_for({'started_at': '2026-11-21T02:00:05.250Z'}, 'GOVERNANCE', 1)[1] == \
        T('2026-11-22 02:00:05').replace(microsecond=250000)
    assert lock_for(manifest, None, 30) is None
    assert lock_for(manifest, 'GOVERNANCE', 0) is None


def test_remote_manifest():
    target = MemoryTarget()
    data = dump_bytes()
    name = N('2026-11-21 02:00')
    manifest = make_manifest(name, data)
    assert remote_manifest(target, name) is None
    target.add(name, data, manifest)
    assert remote_manifest(target, name) == manifest
    target.objects[manifest_name(name)] = b'{"file": '
    assert remote_manifest(target, name) == {}
    target.objects[manifest_name(name)] = b'\xff\xfe not utf-8'
    assert remote_manifest(target, name) == {}
    target.objects[manifest_name(name)] = b'["a", "list"]'
    assert remote_manifest(target, name) == {}


# --------------------------------------------------------------------------------------------
# copy_artifact
# --------------------------------------------------------------------------------------------

def test_copy_fresh_uploads_reads_back_and_writes_the_manifest_last(tmp_path):
    path, manifest = local_backup(tmp_path)
    name = os.path.basename(path)
    target = MemoryTarget()
    progress = []

    record = copy_artifact(target, path, progress=progress.append, clock=fake_clock(10.0, 12.5, 12.5, 13.25))

    assert record == {'target': target.label, 'kind': 'memory', 'location': target.label + name, 'name': name,
                      'size': manifest['size'], 'sha256': manifest['sha256'], 'status': 'copied', 'copied': True,
                      'verified': True, 'locked_until': None, 'upload_seconds': 2.5, 'verify_seconds': 0.75}
    # upload, read back, then the manifest: the commit marker comes last
    assert target.calls == [('put_file', name), ('hash_object', name), ('put_bytes', manifest_name(name))]
    assert target.writes == [name, manifest_name(name)]
    assert target.objects[name] == read(path)
    assert target.objects[manifest_name(name)] == read(path + '.manifest.json')
    assert target.put_locks == {name: None, manifest_name(name): None}
    assert progress and progress[-1] == manifest['size']


def test_copy_rerun_is_present_and_writes_nothing(tmp_path):
    path, dummy = local_backup(tmp_path)
    target = MemoryTarget()
    copy_artifact(target, path)
    before = dict(target.objects)
    target.calls = []

    record = copy_artifact(target, path)

    assert record['status'] == 'present'
    assert record['copied'] is False and record['verified'] is True
    assert target.mutations() == []
    assert target.objects == before


def test_copy_present_in_check_mode_is_present(tmp_path):
    path, dummy = local_backup(tmp_path)
    target = MemoryTarget()
    copy_artifact(target, path)
    target.calls = []
    assert copy_artifact(target, path, check_mode=True)['status'] == 'present'
    assert target.mutations() == []


@pytest.mark.parametrize('case', ['other_sha', 'other_size', 'not_json', 'not_an_object', 'artifact_missing',
                                  'artifact_other_size'])
def test_copy_refuses_a_different_manifest_at_the_target(tmp_path, case):
    path, manifest = local_backup(tmp_path)
    name = os.path.basename(path)
    data = read(path)
    target = MemoryTarget()
    if case == 'other_sha':
        target.add(name, data, dict(manifest, sha256='ab' * 32))
    elif case == 'other_size':
        target.add(name, data, dict(manifest, size=manifest['size'] + 1))
    elif case == 'not_json':
        target.add(name, data, manifest_data=b'{"file": ')
    elif case == 'not_an_object':
        target.add(name, data, manifest_data=b'[]')
    elif case == 'artifact_missing':
        target.objects[manifest_name(name)] = manifest_bytes(manifest)
    else:
        target.add(name, data + b'-- more\n', manifest)
    before = dict(target.objects)

    with pytest.raises(OffsiteConflictError) as caught:
        copy_artifact(target, path)

    assert caught.value.code == 'offsite_conflict'
    assert name in str(caught.value) and target.label in str(caught.value)
    assert target.mutations() == []
    assert target.objects == before


@pytest.mark.parametrize('other', [b'X' * 185, b'-- another dump\n'], ids=['same_size', 'other_size'])
def test_copy_refuses_an_object_of_the_name_with_other_bytes_and_no_manifest(tmp_path, other):
    path, manifest = local_backup(tmp_path, data=b'Y' * 185)
    name = os.path.basename(path)
    target = MemoryTarget()
    target.add(name, other)

    with pytest.raises(OffsiteConflictError):
        copy_artifact(target, path)
    with pytest.raises(OffsiteConflictError):
        copy_artifact(target, path, check_mode=True)

    assert target.mutations() == []
    assert target.objects == {name: other}


def test_copy_adds_the_missing_manifest_of_the_same_bytes(tmp_path):
    path, manifest = local_backup(tmp_path)
    name = os.path.basename(path)
    target = MemoryTarget()
    target.add(name, read(path))

    record = copy_artifact(target, path)

    assert record['status'] == 'manifest_added'
    assert record['copied'] is True and record['verified'] is True
    assert target.mutations() == [('put_bytes', manifest_name(name))]
    assert target.writes == [manifest_name(name)]
    assert target.objects[manifest_name(name)] == read(path + '.manifest.json')


def test_copy_check_mode_writes_nothing(tmp_path):
    path, dummy = local_backup(tmp_path)
    name = os.path.basename(path)
    target = MemoryTarget()

    record = copy_artifact(target, path, check_mode=True)
    assert record['status'] == 'would_copy'
    assert record['copied'] is False and record['verified'] is False
    assert target.objects == {} and target.mutations() == []

    target.add(name, read(path))
    record = copy_artifact(target, path, check_mode=True)
    assert record['status'] == 'would_add_manifest'
    assert target.objects == {name: read(path)} and target.mutations() == []


def test_copy_refuses_a_local_artifact_changed_since_its_manifest_and_discards_the_upload(tmp_path):
    path, manifest = local_backup(tmp_path)
    name = os.path.basename(path)
    altered = bytearray(read(path))
    altered[3] ^= 0x20
    with open(path, 'wb') as handle:
        handle.write(bytes(altered))
    target = MemoryTarget()

    with pytest.raises(OffsiteMismatchError) as caught:
        copy_artifact(target, path)

    assert caught.value.code == 'offsite_mismatch'
    assert sha(bytes(altered)) in str(caught.value) and manifest['sha256'] in str(caught.value)
    assert target.mutations() == [('put_file', name), ('delete', name)]
    assert target.deleted == [name]
    assert target.objects == {}


def test_copy_local_mismatch_under_a_lock_still_reports_the_mismatch(tmp_path):
    path, dummy = local_backup(tmp_path)
    name = os.path.basename(path)
    with open(path, 'ab') as handle:
        handle.write(b'-- appended later\n')
    target = MemoryTarget()

    with pytest.raises(OffsiteMismatchError):
        copy_artifact(target, path, lock_mode='COMPLIANCE', lock_days=30)

    # the delete was refused by Object Lock and swallowed: the mismatch is what is reported, no manifest written
    assert target.mutations() == [('put_file', name), ('delete', name)]
    assert set(target.objects) == {name}


def test_copy_refuses_a_target_that_stores_other_bytes(tmp_path):
    path, manifest = local_backup(tmp_path)
    name = os.path.basename(path)
    target = MemoryTarget()
    target.corrupt_on_store.add(name)

    with pytest.raises(OffsiteMismatchError) as caught:
        copy_artifact(target, path)

    assert 'no manifest was written' in str(caught.value)
    assert manifest['sha256'] in str(caught.value)
    assert manifest_name(name) not in target.objects
    assert ('put_bytes', manifest_name(name)) not in target.calls
    assert target.calls[:2] == [('put_file', name), ('hash_object', name)]


def test_copy_again_after_a_failed_read_back_succeeds(tmp_path):
    path, dummy = local_backup(tmp_path)
    name = os.path.basename(path)
    target = MemoryTarget()
    target.corrupt_on_store.add(name)
    with pytest.raises(OffsiteMismatchError):
        copy_artifact(target, path)
    target.corrupt_on_store.clear()

    record = copy_artifact(target, path)

    assert record['status'] == 'copied'
    assert target.objects[name] == read(path)


def test_copy_refuses_a_manifest_that_describes_another_file(tmp_path):
    path, dummy = local_backup(tmp_path)
    renamed = os.path.join(str(tmp_path), N('2026-11-22 02:00'))
    os.rename(path, renamed)
    os.rename(path + '.manifest.json', renamed + '.manifest.json')
    target = MemoryTarget()

    with pytest.raises(OffsiteError) as caught:
        copy_artifact(target, renamed)

    assert caught.value.code == 'offsite_bad_manifest'
    assert target.objects == {}


def test_copy_with_object_lock_locks_both_objects(tmp_path):
    path, manifest = local_backup(tmp_path, stamp='2026-11-21 02:00')
    name = os.path.basename(path)
    target = MemoryTarget()

    record = copy_artifact(target, path, lock_mode='GOVERNANCE', lock_days=30)

    expected = ('GOVERNANCE', T('2026-11-21 02:00') + datetime.timedelta(days=30))
    assert target.put_locks == {name: expected, manifest_name(name): expected}
    assert record['locked_until'] == '2026-12-21T02:00:00Z'
    assert target.stat(name)['locked_until'] == expected[1]


def test_copy_manifest_added_carries_the_lock(tmp_path):
    path, dummy = local_backup(tmp_path)
    name = os.path.basename(path)
    target = MemoryTarget()
    target.add(name, read(path))

    record = copy_artifact(target, path, lock_mode='COMPLIANCE', lock_days=7)

    assert record['status'] == 'manifest_added'
    assert target.put_locks == {manifest_name(name): ('COMPLIANCE', T('2026-11-28 02:00'))}
    assert record['locked_until'] == '2026-11-28T02:00:00Z'


def test_copy_check_mode_reports_the_lock_without_writing(tmp_path):
    path, dummy = local_backup(tmp_path)
    target = MemoryTarget()
    record = copy_artifact(target, path, lock_mode='GOVERNANCE', lock_days=1, check_mode=True)
    assert record['status'] == 'would_copy' and record['locked_until'] == '2026-11-22T02:00:00Z'
    assert target.mutations() == []


def test_copy_lock_on_a_target_without_object_lock_fails_before_writing(tmp_path):
    path, dummy = local_backup(tmp_path)
    target = MemoryTarget(object_lock=False)
    with pytest.raises(OffsiteError) as caught:
        copy_artifact(target, path, lock_mode='GOVERNANCE', lock_days=1)
    assert caught.value.code == 'offsite_no_lock'
    assert target.objects == {}


def test_copy_refuses_a_directory_artifact(tmp_path):
    directory = tmp_path / 'backup_2026-11-21_02-00-00.dir'
    directory.mkdir()
    target = MemoryTarget()
    with pytest.raises(OffsiteError) as caught:
        copy_artifact(target, str(directory))
    assert caught.value.code == 'offsite_directory'
    assert target.calls == []


def test_copy_refuses_an_artifact_without_manifest(tmp_path):
    path = tmp_path / N('2026-11-21 02:00')
    path.write_bytes(dump_bytes())
    target = MemoryTarget()
    with pytest.raises(ManifestMissingError) as caught:
        copy_artifact(target, str(path))
    assert isinstance(caught.value, FleetDrError)
    assert 'manifest missing' in str(caught.value)
    assert target.calls == []


def test_copy_refuses_an_invalid_manifest(tmp_path):
    path, manifest = local_backup(tmp_path)
    os.unlink(path + '.manifest.json')
    broken = dict(manifest)
    del broken['sha256']
    with open(path + '.manifest.json', 'w') as handle:
        json.dump(broken, handle)
    target = MemoryTarget()
    with pytest.raises(OffsiteError) as caught:
        copy_artifact(target, path)
    assert caught.value.code == 'offsite_bad_manifest'
    assert 'missing field(s): sha256' in str(caught.value)
    assert target.calls == []


def test_copy_refuses_a_manifest_that_is_not_json(tmp_path):
    path, dummy = local_backup(tmp_path)
    os.unlink(path + '.manifest.json')
    with open(path + '.manifest.json', 'wb') as handle:
        handle.write(b'{"file": ')
    target = MemoryTarget()
    with pytest.raises(ManifestError) as caught:
        copy_artifact(target, path)
    assert 'not valid JSON' in str(caught.value)
    assert target.calls == []


def test_copy_then_fetch_round_trip(tmp_path):
    backups = tmp_path / 'backups'
    backups.mkdir()
    path, manifest = local_backup(backups)
    target = MemoryTarget()
    copy_artifact(target, path)

    found = fetch_newest(target, staging(tmp_path))

    assert found['name'] == os.path.basename(path)
    assert read(found['path']) == read(path)
    assert read(found['path'] + '.manifest.json') == read(path + '.manifest.json')


# --------------------------------------------------------------------------------------------
# complete_artifacts
# --------------------------------------------------------------------------------------------

def test_complete_artifacts_keeps_only_complete_valid_manifests_of_the_database():
    target = MemoryTarget()
    good = target.add_backup('2026-11-21 02:00')
    older = target.add_backup('2026-11-20 02:00')
    target.add(N('2026-11-22 02:00'), dump_bytes('no manifest'))
    target.objects[manifest_name(N('2026-11-23 02:00'))] = b'{}'
    broken = target.add(N('2026-11-19 02:00'), dump_bytes(), manifest_data=b'{"file": ')
    undecodable = target.add(N('2026-11-18 02:00'), dump_bytes(), manifest_data=b'\xff\xfe\x00')
    invalid = target.add(N('2026-11-17 02:00'), dump_bytes(), manifest_data=b'{"file": "backup_2026-11-17_02-00-00.sql"}')
    listed = target.add(N('2026-11-16 02:00'), dump_bytes(), manifest_data=b'[1, 2]')
    renamed_data = dump_bytes('renamed')
    renamed = target.add(N('2026-11-24 02:00'), renamed_data,
                         make_manifest(N('2026-11-15 02:00'), renamed_data, '2026-11-24 02:00'))
    other = target.add_backup('2026-11-25 02:00', database='other_db')
    target.objects['README'] = b'not a backup'

    entries = complete_artifacts(target, DB)

    assert [entry['name'] for entry in entries] == [good, older]
    assert entries[0] == {'name': good, 'manifest': json.loads(target.objects[manifest_name(good)].decode('utf-8')),
                          'started_at': T('2026-11-21 02:00'), 'sequence': 1}
    for skipped in (broken, undecodable, invalid, listed, renamed):
        assert skipped not in [entry['name'] for entry in complete_artifacts(target)]
    assert [entry['name'] for entry in complete_artifacts(target)] == [other, good, older]
    assert [entry['name'] for entry in complete_artifacts(target, 'other_db')] == [other]
    assert complete_artifacts(target, 'nobody_db') == []


def test_complete_artifacts_leaves_out_a_manifest_that_does_not_read():
    target = MemoryTarget()
    good = target.add_backup('2026-11-21 02:00')
    target.add('junk.sql', b'x', manifest_data=b' ' * (16 * MIB + 1))

    assert [entry['name'] for entry in complete_artifacts(target)] == [good]


def test_complete_artifacts_newest_first_with_sequence_names_in_one_second():
    target = MemoryTarget()
    second = '2026-11-21 02:00:00'
    names = {}
    for seq in (1, 2, 3, 9, 10):
        names[seq] = target.add_backup(second, seq=seq)
    earlier = target.add_backup('2026-11-21 01:59:59')
    later = target.add_backup('2026-11-21 02:00:01')

    order = [entry['name'] for entry in complete_artifacts(target)]

    assert order == [later, names[10], names[9], names[3], names[2], names[1], earlier]
    assert [entry['sequence'] for entry in complete_artifacts(target)] == [1, 10, 9, 3, 2, 1, 1]


def test_complete_artifacts_orders_by_the_manifest_time_not_the_name():
    target = MemoryTarget()
    # the name says 01:00 but the manifest started later (fractions of a second included)
    late = target.add(N('2026-11-21 01:00'), dump_bytes('late'),
                      dict(make_manifest(N('2026-11-21 01:00'), dump_bytes('late')), started_at='2026-11-21T03:00:00.500Z',
                           finished_at='2026-11-21T03:00:01Z'))
    early = target.add_backup('2026-11-21 03:00')
    assert [entry['name'] for entry in complete_artifacts(target)] == [late, early]


# --------------------------------------------------------------------------------------------
# space_problem
# --------------------------------------------------------------------------------------------

Usage = collections.namedtuple('Usage', 'total used free')


def test_space_problem_with_a_fake_disk_usage():
    seen = []

    def disk_usage(free):
        def usage(path):
            seen.append(path)
            return Usage(total=1 << 40, used=0, free=free)
        return usage

    size = 100 * MIB
    assert space_problem('/staging', size, disk_usage=disk_usage(size + 64 * MIB)) is None
    assert space_problem('/staging', size, disk_usage=disk_usage(10 << 30)) is None
    problem = space_problem('/staging', size, disk_usage=disk_usage(size + 64 * MIB - 1))
    assert problem == ('the staging directory /staging has 163 MiB free, and the backup needs 164 MiB: free space there '
                       'or set another staging directory')
    assert 'has 0 MiB free' in space_problem('/staging', 0, disk_usage=disk_usage(0))
    assert seen == ['/staging'] * 4


def test_space_problem_uses_the_real_disk_by_default(tmp_path):
    assert 'MiB free' in space_problem(str(tmp_path), 1 << 62)


# --------------------------------------------------------------------------------------------
# download_artifact
# --------------------------------------------------------------------------------------------

def entry_of(target, name):
    return [entry for entry in complete_artifacts(target) if entry['name'] == name][0]


def test_download_artifact_publishes_the_artifact_with_its_manifest(tmp_path):
    target = MemoryTarget(chunk=7)
    name = target.add_backup('2026-11-21 02:00')
    where = staging(tmp_path)

    path = download_artifact(target, entry_of(target, name), where)

    assert path == os.path.join(where, name)
    assert read(path) == target.objects[name]
    assert read(path + '.manifest.json') == target.objects[manifest_name(name)]
    assert sorted(os.listdir(where)) == [name, manifest_name(name)]


def test_download_artifact_refuses_an_existing_file_in_staging(tmp_path):
    target = MemoryTarget()
    name = target.add_backup('2026-11-21 02:00')
    where = staging(tmp_path)
    with open(os.path.join(where, name), 'wb') as handle:
        handle.write(b'from an earlier run')

    with pytest.raises(OffsiteError) as caught:
        download_artifact(target, entry_of(target, name), where)

    assert caught.value.code == 'offsite_staging_taken'
    assert target.downloads == []
    assert read(os.path.join(where, name)) == b'from an earlier run'
    assert os.listdir(where) == [name]


def test_download_artifact_refuses_a_dangling_symlink_in_staging(tmp_path):
    target = MemoryTarget()
    name = target.add_backup('2026-11-21 02:00')
    where = staging(tmp_path)
    os.symlink(str(tmp_path / 'nowhere'), os.path.join(where, name))
    with pytest.raises(OffsiteError) as caught:
        download_artifact(target, entry_of(target, name), where)
    assert caught.value.code == 'offsite_staging_taken'
    assert not (tmp_path / 'nowhere').exists()


def test_download_artifact_refuses_a_leftover_manifest_in_staging(tmp_path):
    target = MemoryTarget()
    name = target.add_backup('2026-11-21 02:00')
    where = staging(tmp_path)
    with open(os.path.join(where, manifest_name(name)), 'wb') as handle:
        handle.write(b'{}')

    with pytest.raises(OffsiteError) as caught:
        download_artifact(target, entry_of(target, name), where)

    assert caught.value.code == 'offsite_staging_taken'
    assert os.listdir(where) == [manifest_name(name)]


def test_download_artifact_failing_midway_leaves_nothing(tmp_path):
    target = MemoryTarget(chunk=8)
    name = target.add_backup('2026-11-21 02:00')
    target.fail_download_after = 40
    where = staging(tmp_path)

    with pytest.raises(OffsiteError) as caught:
        download_artifact(target, entry_of(target, name), where)

    assert 'connection reset' in str(caught.value)
    assert os.listdir(where) == []


def test_download_artifact_of_damaged_bytes_is_a_mismatch_and_leaves_nothing(tmp_path):
    target = MemoryTarget()
    name = target.add_backup('2026-11-21 02:00')
    entry = entry_of(target, name)
    target.objects[name] = target.objects[name][:-1] + b'!'
    where = staging(tmp_path)

    with pytest.raises(OffsiteError) as caught:
        download_artifact(target, entry, where)

    assert caught.value.code == 'offsite_mismatch'
    assert sha(target.objects[name]) in str(caught.value) and entry['manifest']['sha256'] in str(caught.value)
    assert os.listdir(where) == []


def test_download_artifact_without_space_downloads_nothing(tmp_path, monkeypatch):
    target = MemoryTarget()
    name = target.add_backup('2026-11-21 02:00')
    real = fetch.space_problem
    monkeypatch.setattr(fetch, 'space_problem',
                        lambda where, size: real(where, size, disk_usage=lambda dummy: Usage(1 << 30, 0, 10 * MIB)))
    where = staging(tmp_path)

    with pytest.raises(NoSpaceError) as caught:
        download_artifact(target, entry_of(target, name), where)

    assert caught.value.code == 'disk_full'
    assert 'has 10 MiB free' in str(caught.value)
    assert target.downloads == [] and os.listdir(where) == []


# --------------------------------------------------------------------------------------------
# fetch_newest
# --------------------------------------------------------------------------------------------

def three_backups():
    target = MemoryTarget(chunk=5)
    names = [target.add_backup(stamp) for stamp in ('2026-11-21 02:00', '2026-11-20 02:00', '2026-11-19 02:00')]
    return target, names


def no_dot_files(where):
    return [entry for entry in os.listdir(where) if entry.startswith('.')] == []


def test_fetch_newest_downloads_and_publishes_the_newest(tmp_path):
    target, names = three_backups()
    where = staging(tmp_path)

    found = fetch_newest(target, where)

    newest = names[0]
    manifest = json.loads(target.objects[manifest_name(newest)].decode('utf-8'))
    assert found == {'path': os.path.join(where, newest), 'name': newest, 'manifest': manifest, 'rejected': [],
                     'candidates': 3}
    assert target.downloads == [newest]
    assert read(found['path']) == target.objects[newest]
    assert read_manifest(found['path']) == manifest
    assert read(found['path'] + '.manifest.json') == manifest_bytes(manifest)
    assert sorted(os.listdir(where)) == [newest, manifest_name(newest)]


def test_fetch_newest_rejects_a_damaged_newest_and_takes_the_next(tmp_path):
    target, names = three_backups()
    damaged = bytearray(target.objects[names[0]])
    damaged[10] ^= 0x01
    target.objects[names[0]] = bytes(damaged)
    where = staging(tmp_path)

    found = fetch_newest(target, where)

    assert found['name'] == names[1] and found['path'] == os.path.join(where, names[1])
    assert target.downloads == [names[0], names[1]]
    assert [item['name'] for item in found['rejected']] == [names[0]]
    assert 'damaged' in found['rejected'][0]['msg'] and sha(bytes(damaged)) in found['rejected'][0]['msg']
    assert read(found['path']) == target.objects[names[1]]
    assert sorted(os.listdir(where)) == [names[1], manifest_name(names[1])]
    assert no_dot_files(where)


def test_fetch_newest_with_every_copy_damaged_returns_no_name(tmp_path):
    target, names = three_backups()
    for name in names:
        target.objects[name] = target.objects[name] + b'-- tail\n'
    where = staging(tmp_path)

    found = fetch_newest(target, where)

    assert found['name'] is None and found['path'] is None and found['manifest'] is None
    assert [item['name'] for item in found['rejected']] == names
    assert found['candidates'] == 3
    assert os.listdir(where) == []


def test_fetch_newest_by_name_takes_only_that_one(tmp_path):
    target, names = three_backups()
    where = staging(tmp_path)

    found = fetch_newest(target, where, name=names[2])

    assert found['name'] == names[2] and found['candidates'] == 1
    assert target.downloads == [names[2]]
    assert sorted(os.listdir(where)) == [names[2], manifest_name(names[2])]


def test_fetch_newest_by_name_does_not_fall_back_to_another(tmp_path):
    target, names = three_backups()
    target.objects[names[1]] = target.objects[names[1]][::-1]
    where = staging(tmp_path)

    found = fetch_newest(target, where, name=names[1])

    assert found['name'] is None and [item['name'] for item in found['rejected']] == [names[1]]
    assert target.downloads == [names[1]]
    assert os.listdir(where) == []
    missing = fetch_newest(target, where, name=N('2030-01-01 00:00'))
    assert missing['name'] is None and missing['candidates'] == 0 and missing['rejected'] == []


def test_fetch_newest_filters_by_database(tmp_path):
    target, names = three_backups()
    other = target.add_backup('2026-11-22 02:00', database='other_db')
    assert fetch_newest(target, staging(tmp_path), database=DB)['name'] == names[0]
    assert fetch_newest(target, str(tmp_path), database='other_db', check_mode=True)['name'] == other


def test_fetch_newest_check_mode_downloads_nothing(tmp_path):
    target, names = three_backups()
    where = staging(tmp_path)

    found = fetch_newest(target, where, check_mode=True)

    assert found['name'] == names[0] and found['path'] is None
    assert found['manifest'] == json.loads(target.objects[manifest_name(names[0])].decode('utf-8'))
    assert found['candidates'] == 3 and found['rejected'] == []
    assert target.downloads == [] and os.listdir(where) == []


def test_fetch_newest_with_nothing_complete(tmp_path):
    target = MemoryTarget()
    target.add(N('2026-11-21 02:00'), dump_bytes('no manifest'))
    where = staging(tmp_path)

    found = fetch_newest(target, where)

    assert found == {'path': None, 'name': None, 'manifest': None, 'rejected': [], 'candidates': 0}
    assert target.downloads == [] and os.listdir(where) == []
    assert fetch_newest(MemoryTarget(), where, check_mode=True)['name'] is None


def test_fetch_newest_failing_download_is_raised_and_leaves_nothing(tmp_path):
    target, names = three_backups()
    target.fail_download_after = 20
    where = staging(tmp_path)

    with pytest.raises(OffsiteError) as caught:
        fetch_newest(target, where)

    assert caught.value.code == 'offsite_error'
    assert target.downloads == [names[0]]
    assert os.listdir(where) == []


def test_fetch_newest_refuses_a_taken_staging_name(tmp_path):
    target, names = three_backups()
    where = staging(tmp_path)
    with open(os.path.join(where, names[0]), 'wb') as handle:
        handle.write(b'old')
    with pytest.raises(OffsiteError) as caught:
        fetch_newest(target, where)
    assert caught.value.code == 'offsite_staging_taken'
    assert target.downloads == []


def test_fetch_newest_needs_an_existing_staging_dir(tmp_path):
    target, dummy = three_backups()
    with pytest.raises(DestinationMissingError) as caught:
        fetch_newest(target, str(tmp_path / 'missing'))
    assert 'staging_dir' in str(caught.value)
    assert target.downloads == []


def test_download_artifact_uses_a_verified_copy_an_earlier_run_kept(tmp_path):
    """A restore that failed keeps its staging copy; the rerun uses it instead of refusing or downloading again."""
    target = MemoryTarget()
    name = target.add_backup('2026-11-21 02:00')
    where = staging(tmp_path)
    first = download_artifact(target, entry_of(target, name), where)
    downloads = list(target.downloads)
    again = download_artifact(target, entry_of(target, name), where)
    assert again == first and target.downloads == downloads
    assert sorted(os.listdir(where)) == [name, manifest_name(name)]
