# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Artifacts encrypted at rest with age: names, manifests, verification without the identity, listings."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _age, _atomic, _digest, _leftovers, _manifest, _retention, _verification
from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _artifact as ar
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import artifact_names

UTC = datetime.timezone.utc
STARTED = datetime.datetime(2026, 1, 31, 2, 0, 5, tzinfo=UTC)
PLAIN_SQL = (b'--\n-- PostgreSQL database dump\n--\nCOPY public.photo (id) FROM stdin;\n1\n\\.\n\n'
             b'--\n-- PostgreSQL database dump complete\n--\n\n')

needs_age = pytest.mark.skipif(shutil.which('age') is None or shutil.which('age-keygen') is None or shutil.which('zstd') is None,
                               reason='the age CLI (apt-get install age) and zstd are needed')


def keygen():
    text = subprocess.run(['age-keygen'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True).stdout.decode()
    return text, [line.split(': ')[1] for line in text.splitlines() if line.startswith('# public key: ')][0]


def age_encrypt(data, recipients):
    return subprocess.run(_age.encrypt_argv(recipients), input=data, stdout=subprocess.PIPE, check=True).stdout


FP = 'sha256:0123456789abcdef'


def _fields(path, **overrides):
    sha256, size = _digest.artifact_digest(path)
    fields = dict(
        collection_version='0.1.0', file=os.path.basename(path), dump_format='plain', compression='zstd', size=size,
        sha256=sha256, database='telemetry_db', server_version='15.18', pg_dump_version='15.18', started_at=STARTED,
        finished_at=STARTED + datetime.timedelta(seconds=3), row_counts={'photo': 1}, transport='compose',
        encryption='age', recipients=[FP])
    fields.update(overrides)
    return fields


def _publish(directory, content, started=STARTED, fmt='plain', compression='zstd', encrypted=True, **overrides):
    name = ar.free_artifact_name(str(directory), started, fmt, compression, encrypted=encrypted)
    with _atomic.AtomicArtifactWriter(str(directory), name) as writer:
        writer.write(content)
        result = writer.commit()
    if not encrypted:
        overrides.setdefault('encryption', None)
        overrides.setdefault('recipients', None)
    fields = _fields(result['path'], dump_format=fmt, compression=compression, started_at=started,
                     finished_at=started + datetime.timedelta(seconds=3), **overrides)
    _manifest.write_manifest(result['path'], _manifest.build_manifest(**fields))
    return result['path']


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('fmt, compression, expected', [
    ('plain', 'none', 'backup_2026-01-31_02-00-05.sql.age'),
    ('plain', 'gzip', 'backup_2026-01-31_02-00-05.sql.gz.age'),
    ('plain', 'zstd', 'backup_2026-01-31_02-00-05.sql.zst.age'),
    ('custom', 'gzip', 'backup_2026-01-31_02-00-05.dump.age'),
])
def test_encrypted_names(fmt, compression, expected):
    assert ar.artifact_name(STARTED, fmt, compression, encrypted=True) == expected
    assert ar.artifact_extension(fmt, compression, encrypted=True) == expected[len('backup_2026-01-31_02-00-05'):]
    parsed = ar.parse_artifact_name(expected)
    assert (parsed['dump_format'], parsed['encrypted'], parsed['started_at'], parsed['sequence']) == (fmt, True, STARTED, 1)
    assert parsed['compression'] == (compression if fmt == 'plain' else None)
    plain = ar.parse_artifact_name(expected[:-len('.age')])
    assert plain['encrypted'] is False and plain['dump_format'] == fmt


def test_a_directory_archive_has_no_encrypted_name():
    with pytest.raises(ValueError) as info:
        ar.artifact_name(STARTED, 'directory', 'gzip', encrypted=True)
    assert 'format plain or custom' in str(info.value)
    assert ar.parse_artifact_name('backup_2026-01-31_02-00-05.dir.age') is None


@pytest.mark.parametrize('name', [
    'backup_2026-01-31_02-00-05.age', 'backup_2026-01-31_02-00-05.sql.age.age', 'backup_2026-01-31_02-00-05.sql.age.manifest.json',
    'backup_2026-01-31_02-00-05.sql.zst.age.partial-x', 'backup_2026-01-31_02-00-05.age.sql',
])
def test_names_that_are_not_encrypted_artifacts(name):
    assert ar.parse_artifact_name(name) is None


def test_free_encrypted_name_skips_taken_names(tmp_path):
    (tmp_path / 'backup_2026-01-31_02-00-05.sql.zst.age').write_bytes(b'x')
    (tmp_path / 'backup_2026-01-31_02-00-05_2.sql.zst.age.manifest.json').write_bytes(b'x')
    name = ar.free_artifact_name(str(tmp_path), STARTED, 'plain', 'zstd', encrypted=True)
    assert name == 'backup_2026-01-31_02-00-05_3.sql.zst.age'
    assert ar.parse_artifact_name(name)['sequence'] == 3
    # The clear name of the same second is another name.
    assert ar.free_artifact_name(str(tmp_path), STARTED, 'plain', 'zstd') == 'backup_2026-01-31_02-00-05.sql.zst'


def test_leftovers_retention_and_offsite_listings_know_encrypted_names(tmp_path):
    partial = '.backup_2026-01-31_02-00-05.sql.zst.age.partial-abc123'
    manifest_partial = '.backup_2026-01-31_02-00-05.sql.zst.age.manifest.json.partial-abc123'
    for name in (partial, manifest_partial, '.notes.partial-x'):
        (tmp_path / name).write_bytes(b'x')
    assert _leftovers.partial_entries(str(tmp_path)) == sorted([partial, manifest_partial])
    assert _retention._sequence('backup_2026-01-31_02-00-05_4.dump.age') == 4
    listing = ['backup_2026-01-31_02-00-05.sql.zst.age', 'backup_2026-01-31_02-00-05.sql.zst.age.manifest.json',
               'backup_2026-01-30_02-00-05.dump.age']
    assert artifact_names(listing) == ['backup_2026-01-31_02-00-05.sql.zst.age']


# --------------------------------------------------------------------------------------------
# manifest
# --------------------------------------------------------------------------------------------

def _valid_manifest(**overrides):
    fields = dict(
        collection_version='0.1.0', file='backup_2026-01-31_02-00-05.sql.zst.age', dump_format='plain', compression='zstd',
        size=10, sha256='0' * 64, database='telemetry_db', server_version='15.18', pg_dump_version='15.18',
        started_at=STARTED, finished_at=STARTED, row_counts={'photo': 1}, transport='direct', encryption='age',
        recipients=[FP, 'sha256:fedcba9876543210'])
    fields.update(overrides)
    return fields


def test_manifest_with_encryption():
    manifest = _manifest.build_manifest(**_valid_manifest())
    assert manifest['encryption'] == 'age' and manifest['recipients'] == [FP, 'sha256:fedcba9876543210']
    plain = _manifest.build_manifest(**_valid_manifest(file='backup_2026-01-31_02-00-05.sql.zst', encryption=None, recipients=None))
    assert plain['encryption'] is None and plain['recipients'] is None


def test_manifest_recipients_are_fingerprints_of_real_recipients():
    dummy, recipient = keygen() if shutil.which('age-keygen') else (None, 'age1q9z9uv0z65699zee3dvwcd4u8t9dzqg4hqm9pweeg6df36j93p8q73nxs7')
    manifest = _manifest.build_manifest(**_valid_manifest(recipients=[_age.recipient_fingerprint(recipient)]))
    assert recipient not in repr(manifest)


@pytest.mark.parametrize('overrides, problem', [
    (dict(encryption=None), 'recipients are listed but encryption is not set'),
    (dict(encryption=None, recipients=None), 'ends in .age but encryption is not set'),
    (dict(encryption='gpg'), "encryption 'gpg' is not one of age"),
    (dict(recipients=[]), 'recipients must list the fingerprint'),
    (dict(recipients=None), 'recipients must list the fingerprint'),
    (dict(recipients=['age1q9z9uv0z65699zee3dvwcd4u8t9dzqg4hqm9pweeg6df36j93p8q73nxs7']), 'recipients must list the fingerprint'),
    (dict(recipients='sha256:0123456789abcdef'), 'recipients must list the fingerprint'),
    (dict(file='backup_2026-01-31_02-00-05.sql.zst'), 'must be named *.age'),
    (dict(dump_format='directory', file='backup_2026-01-31_02-00-05.dir.age'), 'directory archive cannot be encrypted'),
])
def test_manifest_encryption_problems(overrides, problem):
    fields = _valid_manifest(**overrides)
    fields['format_version'] = 1
    fields['started_at'] = fields['finished_at'] = '2026-01-31T02:00:05Z'
    fields['counted_tables'] = ['photo']
    problems = _manifest.validate_manifest(fields)
    assert any(problem in p for p in problems), problems


# --------------------------------------------------------------------------------------------
# verification without the identity
# --------------------------------------------------------------------------------------------

def _zstd(data):
    return subprocess.run(['zstd', '-q', '-c'], input=data, stdout=subprocess.PIPE, check=True).stdout


def _no_toc(path):
    raise AssertionError('the table of contents of an encrypted artifact is not read')


@needs_age
def test_encrypted_artifact_verifies_and_decrypts_by_hand(tmp_path):
    identity, recipient = keygen()
    path = _publish(tmp_path, age_encrypt(_zstd(PLAIN_SQL), [recipient]), recipients=[_age.recipient_fingerprint(recipient)])
    assert path.endswith('.sql.zst.age')
    result = _verification.verify_artifact(path, toc_runner=_no_toc)
    assert result['ok'] and result['encrypted'] is True and result['kind'] == 'artifact', result['problems']
    assert result['toc_tables'] is None
    # What a person does: age -d -i identity.txt backup.sql.zst.age | zstd -d
    (tmp_path / 'identity.txt').write_text(identity)
    out = subprocess.run('age -d -i %s %s | zstd -d' % (tmp_path / 'identity.txt', path), shell=True,
                         stdout=subprocess.PIPE, check=True)
    assert out.stdout == PLAIN_SQL


@needs_age
def test_encrypted_custom_archive_skips_the_toc(tmp_path):
    dummy, recipient = keygen()
    path = _publish(tmp_path, age_encrypt(b'PGDMP' + os.urandom(5000), [recipient]), fmt='custom', compression='none')
    assert path.endswith('.dump.age')
    result = _verification.verify_artifact(path, toc_runner=_no_toc)
    assert result['ok'] and result['encrypted'] and result['dump_format'] == 'custom', result['problems']


@needs_age
@pytest.mark.parametrize('damage, problem', [
    ('flip', 'sha256 mismatch'),
    ('truncate', 'size mismatch'),
])
def test_damaged_encrypted_artifact_fails_the_checksum(tmp_path, damage, problem):
    dummy, recipient = keygen()
    path = _publish(tmp_path, age_encrypt(os.urandom(20000), [recipient]))
    with open(path, 'r+b') as handle:
        if damage == 'flip':
            handle.seek(10000)
            byte = handle.read(1)
            handle.seek(10000)
            handle.write(bytes([byte[0] ^ 1]))
        else:
            handle.truncate(15000)
    result = _verification.verify_artifact(path, toc_runner=_no_toc)
    assert not result['ok'] and result['encrypted'] and problem in result['problems'][0]


def test_a_manifest_that_says_age_over_a_clear_file_is_refused(tmp_path):
    path = _publish(tmp_path, _zstd(PLAIN_SQL) if shutil.which('zstd') else PLAIN_SQL)
    result = _verification.verify_artifact(path, toc_runner=_no_toc)
    assert not result['ok'] and result['encrypted']
    assert result['problems'] == ['not a valid age file: the file does not start with the age v1 header (age-encryption.org/v1)']


@needs_age
def test_a_cut_header_with_a_matching_manifest_is_refused(tmp_path):
    dummy, recipient = keygen()
    blob = age_encrypt(b'x' * 100, [recipient])
    path = _publish(tmp_path, blob[:blob.index(b'\n---') + 5])
    result = _verification.verify_artifact(path)
    assert not result['ok'] and 'not a valid age file' in result['problems'][0]


@needs_age
def test_an_encrypted_file_without_manifest(tmp_path):
    dummy, recipient = keygen()
    path = str(tmp_path / 'handmade.sql.age')
    with open(path, 'wb') as handle:
        handle.write(age_encrypt(PLAIN_SQL, [recipient]))
    result = _verification.verify_artifact(path, require_manifest=False)
    assert result['ok'] and result['encrypted'] and result['kind'] == 'unknown'
    named = tmp_path / 'backup_2026-01-31_02-00-05.sql.age'
    named.write_bytes(b'not age at all, but named so')
    result = _verification.verify_artifact(str(named), require_manifest=False)
    assert result['encrypted'] and 'not a valid age file' in result['problems'][0]


def test_clear_artifacts_report_encrypted_false(tmp_path):
    path = _publish(tmp_path, PLAIN_SQL, compression='none', encrypted=False)
    result = _verification.verify_artifact(path)
    assert result['ok'] and result['encrypted'] is False
    missing = _verification.verify_artifact(str(tmp_path / 'gone.sql'), require_manifest=False)
    assert missing['encrypted'] is False


@needs_age
def test_listing_and_newest_verified_mix_clear_and_encrypted(tmp_path):
    dummy, recipient = keygen()
    older = _publish(tmp_path, PLAIN_SQL, compression='none', encrypted=False)
    newer = _publish(tmp_path, age_encrypt(PLAIN_SQL, [recipient]), started=STARTED + datetime.timedelta(hours=1), compression='none')
    listed = _verification.list_artifacts(str(tmp_path))
    assert [entry['path'] for entry in listed] == [newer, older]
    selection = _verification.newest_verified(str(tmp_path), toc_runner=_no_toc)
    assert selection['selected']['path'] == newer and selection['selected']['encrypted']
    with open(newer, 'ab') as handle:
        handle.write(b'x')
    selection = _verification.newest_verified(str(tmp_path), toc_runner=_no_toc)
    assert selection['selected']['path'] == older and selection['rejected'][0]['path'] == newer
