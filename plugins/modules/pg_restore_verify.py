#!/usr/bin/python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_restore_verify
short_description: Restore a PostgreSQL backup artifact after proving it and the key, then verify the database
version_added: 0.1.0
description:
  - Restores an artifact of M(fleet_telemetry.dr.pg_logical_backup), or a plain C(.sql) made by hand with the seed
    runbook's C(pg_dump) command (no manifest), into the database O(db_name), over the compose or the direct transport.
  - "Nothing is written before these read-only checks pass: the artifact's checksum and manifest (as
    M(fleet_telemetry.dr.pg_artifact_verify) checks them); the key preflight, in which the fingerprint of O(encryption_key)
    must equal the manifest's and photos read from the artifact itself must decrypt with it (this also covers runbook
    backups, which have no manifest); and the target database must exist."
  - A plain dump is decompressed by C(zstd -dc) or C(gzip -dc) and streamed into C(psql -X -v ON_ERROR_STOP=1) inside one
    transaction. C(COMMIT) is sent only after the whole stream was seen to be complete (pg_dump's trailer, every C(COPY)
    block terminated, C(COPY) row counts equal to the manifest's). Otherwise the transaction is rolled back and nothing is
    committed, where C(psql --single-transaction) would commit a dump cut at a line boundary.
  - Custom and directory archives are restored with C(pg_restore --exit-on-error --no-owner), with O(jobs) parallel jobs
    where the format allows (see O(jobs)).
  - Then verifies exact row counts (the manifest's, and for plain dumps every table's C(COPY) count), that every photo in
    O(photo_table) decrypts with O(encryption_key) (AES-GCM's tag makes this an integrity check), and runs C(ANALYZE).
  - O(verify_only=true) checks an existing database against a manifest, or against an artifact's manifest (the counts of a
    runbook dump are read from its own data), without restoring.
  - O(preflight_only=true) runs only the artifact checks and the key preflight, for a restore procedure that must know the
    backup and the key are good before it destroys anything.
  - The key is O(encryption_key), or the version of the AWS Secrets Manager secret O(encryption_key_secret) whose fingerprint
    is the manifest's C(key_fingerprint) (C(AWSCURRENT) without one); one of them is required. RV(key_source) says which.
  - "An artifact encrypted with age (its name ends in C(.age): C(.sql.zst.age), C(.sql.gz.age), C(.sql.age), C(.dump.age)) is
    read through C(age -d -i /dev/fd/N) into the decompressor or into C(pg_restore) on standard input: two processes joined
    by a pipe, no clear file on disk. The identity (O(age_identity_file), or O(age_identity_secret)) reaches C(age) through an
    anonymous pipe, never argv or a file. Before anything is written, an identity must be given (RV(error_code=no_identity))
    and one of its public keys must be among the manifest's C(recipients) (RV(error_code=wrong_identity), naming both sets
    of fingerprints); a damaged encrypted stream fails with RV(error_code=decrypt_failed) and nothing is committed."
  - A failure is one sentence in RV(msg), a stable RV(error_code), and the structured RV(mismatches).
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - fleet_telemetry.dr._attributes
  - fleet_telemetry.dr._connection
  - fleet_telemetry.dr._encryption_key
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    details:
      - Runs every read-only check (artifact, key preflight, target database) and reports what would be restored and how,
        with the expected row counts; writes nothing.
      - With O(verify_only=true) or O(preflight_only=true), check mode runs the same read-only checks as a normal run
        (without C(ANALYZE), which O(verify_only) never runs).
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run without O(verify_only) or O(preflight_only) restores again and reports RV(changed=true).
options:
  artifact:
    description:
      - The artifact to restore (a dump file, or the C(.dir) directory of a directory archive), with its manifest beside it
        (the artifact's path followed by C(.manifest.json)).
      - A plain C(.sql) without a manifest is taken as a runbook backup (RV(kind=runbook)); its expected row counts are read
        from its own C(COPY) data. Any other file without a manifest is refused.
      - One of O(artifact) and O(manifest) is required.
    type: path
  manifest:
    description:
      - With O(verify_only=true), the manifest (C(.manifest.json)) whose row counts and key fingerprint the database is checked
        against, when the artifact itself is not at hand.
    type: path
  verify_only:
    description:
      - Do not restore; verify the database O(db_name) as it is against the manifest (or the runbook dump's counts), decrypt
        its photos, and report. RV(changed) is V(false).
    type: bool
    default: false
  preflight_only:
    description:
      - Do only the read-only checks of O(artifact) and the key preflight, and report. No database connection is needed for
        plain dumps; custom and directory archives need the client tools of the transport.
      - RV(changed) is V(false).
    type: bool
    default: false
  clean:
    description:
      - Drop the objects of the backup in the target database before recreating them. A fresh stack's init scripts create
        the (empty) tables first, so a restore into it needs this.
      - For custom and directory archives this is C(pg_restore --clean --if-exists).
      - Plain dumps of this collection carry C(DROP ... IF EXISTS) statements themselves (C(pg_dump --clean --if-exists)),
        which run whatever this option says.
      - A plain dump without C(DROP) statements, such as the runbook's, cannot drop what it would create, so with
        V(true) the C(public) schema is dropped (C(CASCADE)) and recreated first, in the same transaction as the restore;
        everything in the C(public) schema of the target database is then replaced by the dump's content.
    type: bool
    default: true
  jobs:
    description:
      - Parallel C(pg_restore) jobs for custom and directory archives. With more than one job the restore is not one
        transaction (a failure can leave a partial restore behind, which the next run with O(clean=true) replaces).
      - With one job, C(pg_restore --single-transaction) is used.
      - Over the compose transport a custom archive can be read by the container's C(pg_restore) from standard input, which
        cannot seek and so allows no C(-j); with O(jobs=1) that is how it is restored. With more jobs it is copied into a
        temporary directory in the container first (C(docker cp)), as a directory archive always is; the copy is removed
        afterwards and needs as much free space in the container as the artifact's size.
      - Plain dumps are always restored by one C(psql) in one transaction.
    type: int
    default: 2
  photo_table:
    description:
      - Table of the encrypted photos, with columns C(id) and C(data) (C(bytea)), as C(table) or C(schema.table).
    type: str
    default: photo
  photo_sample:
    description:
      - How many photos of the restored (or verified) database to decrypt, spread over the table. V(0) means every photo.
    type: int
    default: 0
  preflight_scan:
    description:
      - With O(preflight_only=true), read a plain dump to its end and refuse it (RV(error_code=dump_incomplete)) when it is
        not complete or its C(COPY) row counts differ from the manifest's, so that a restore procedure learns it before
        anything destructive. A runbook dump is always read to the end in the preflight.
      - Custom and directory archives are counted only when restored.
    type: bool
    default: false
  preflight_photos:
    description:
      - How many photos to read from the artifact and decrypt in the key preflight, before anything is written.
      - V(0) skips this part of the preflight (the manifest's fingerprint is still checked). Use it only for a backup of a
        database without photos, which otherwise fails with RV(error_code=no_photos).
    type: int
    default: 20
  analyze:
    description: Run C(ANALYZE) on the database after a restore, so the planner has statistics at once.
    type: bool
    default: true
  encryption_key_secret:
    description:
      - The AWS Secrets Manager secret (name or ARN) that holds E(ENCRYPTION_KEY), used when O(encryption_key) is not given
        (O(encryption_key) wins when both are).
      - The version whose key fingerprint equals the manifest's C(key_fingerprint) is used, so a backup taken before a key
        rotation gets its own key; C(AWSCURRENT) when the manifest records no fingerprint (or there is no manifest).
      - The secret holds the key in hexadecimal or base64, or a JSON object whose field O(encryption_key_secret_field) holds it.
      - The AWS connection is the module's AWS options (O(region), O(profile), O(endpoint_url), ...); the client is made only
        when a secret option is used.
    type: str
  encryption_key_secret_field:
    description:
      - The JSON field of O(encryption_key_secret) that holds the key, when the secret is a JSON object (C(ENCRYPTION_KEY) by
        default).
    type: str
  age_identity_file:
    description:
      - A file on the host that runs the module holding the age identity (C(AGE-SECRET-KEY-1...), as C(age-keygen) writes it)
        that decrypts an encrypted artifact. Keep it readable by its owner only; a warning says when other users can read it.
      - Used only when the artifact is encrypted. It wins over O(age_identity_secret) when both are given.
    type: path
  age_identity_secret:
    description:
      - The AWS Secrets Manager secret (name or ARN) that holds the age identity, when O(age_identity_file) is not given.
      - The version whose public key is one of the manifest's C(recipients) is used. Read only when the artifact is encrypted.
    type: str
  age_identity_secret_field:
    description:
      - The JSON field of O(age_identity_secret) that holds the identity, when the secret is a JSON object.
    type: str
  restore_client:
    description:
      - Where psql and pg_restore run against the target with O(transport=compose). V(auto) runs the
        host's client tools against the container's own address on its docker network (port 5432) when it can, because
        C(docker exec)'s stream through the Docker daemon is slower than psql itself; it needs O(db_password), host tools
        of the server's major version (C(psql) for a plain dump, C(pg_restore) for an archive), and the host able to
        connect. A custom archive is then restored by the host's pg_restore from the file itself, with O(jobs), instead
        of being copied into the container first, and the preflight reads the archive's table of contents and photos from the
        file itself (also with O(preflight_only)). Otherwise V(auto) uses C(docker exec), and RV(restore_client) says why.
      - V(container) always uses C(docker exec); V(host) fails, naming the reason, instead of falling back.
      - The restore and the verification are the same either way. Ignored with O(transport=direct).
    type: str
    choices: [auto, host, container]
    default: auto
requirements:
  - PostgreSQL client tools (C(psql), C(pg_restore)) in the container (O(transport=compose)) or on the host (O(transport=direct)).
    With O(preflight_only) over the compose transport and the service's container down, a custom or directory archive is
    read in a throw-away container of the service's image (C(docker run --rm -i --network none)).
  - C(zstd) or C(gzip) on the host for compressed plain dumps.
  - The C(age) tool on the host for encrypted artifacts (C(apt-get install age)), and the Python library C(cryptography) to
    read the identity's public keys.
  - boto3 only when O(encryption_key_secret) or O(age_identity_secret) is used.
notes:
  - The target database must exist. In a fresh compose stack it does (E(POSTGRES_DB)); elsewhere create it first, for example
    with C(createdb).
  - Plain dumps restore with the ownership recorded in them, so the restoring O(db_user) must be able to assume it (the same
    user as at backup time, or a superuser). Custom and directory archives are restored with C(--no-owner).
  - The photos read in the preflight are the first ones of the table in the dump; the whole artifact is read only when
    expected counts must come from a runbook dump in check mode, with O(verify_only) or with O(preflight_only).
  - An encrypted custom archive is restored by one C(pg_restore) reading standard input (no O(jobs), one transaction), as
    it cannot seek; over the compose transport that is the container's C(pg_restore) (C(docker exec -i)), or the host's
    with O(restore_client). Its table of contents is not read in the artifact check (the host holds no identity by design);
    its photos are read in the key preflight through C(age -d).
seealso:
  - module: fleet_telemetry.dr.pg_logical_backup
  - module: fleet_telemetry.dr.pg_artifact_verify
"""

EXAMPLES = r"""
- name: Prove the newest backup and the key before anything destructive
  fleet_telemetry.dr.pg_restore_verify:
    artifact: /var/backups/telemetry/backup_2026-01-31_02-00-05.sql.zst
    encryption_key: "{{ telemetry_encryption_key }}"
    preflight_only: true
    project_src: /srv/telemetry

- name: Restore it into the recreated stack and verify every row count and photo
  fleet_telemetry.dr.pg_restore_verify:
    artifact: /var/backups/telemetry/backup_2026-01-31_02-00-05.sql.zst
    encryption_key: "{{ telemetry_encryption_key }}"
    project_src: /srv/telemetry
  register: restored

- name: Restore a hand-made runbook backup (no manifest) into a scratch database
  fleet_telemetry.dr.pg_restore_verify:
    artifact: /root/backup_2026-01-30_23-00-00.sql
    encryption_key: "{{ telemetry_encryption_key }}"
    project_src: /srv/telemetry
    db_name: telemetry_scratch

- name: Restore a custom archive into a managed server with four jobs
  fleet_telemetry.dr.pg_restore_verify:
    artifact: /var/backups/telemetry/backup_2026-01-31_02-00-05.dump
    encryption_key: "{{ telemetry_encryption_key }}"
    transport: direct
    db_host: db.internal
    db_password: "{{ telemetry_db_password }}"
    jobs: 4

- name: Restore an encrypted backup with the key and the identity from AWS Secrets Manager
  fleet_telemetry.dr.pg_restore_verify:
    artifact: /var/backups/telemetry/backup_2026-01-31_02-00-05.sql.zst.age
    encryption_key_secret: prod/telemetry/encryption-key
    age_identity_secret: prod/telemetry/backup-age-identity
    region: eu-west-1
    project_src: /srv/telemetry

- name: Preflight an encrypted backup with an identity file on the host
  fleet_telemetry.dr.pg_restore_verify:
    artifact: /var/backups/telemetry/backup_2026-01-31_02-00-05.dump.age
    encryption_key: "{{ telemetry_encryption_key }}"
    age_identity_file: /root/.config/fleet-dr/backup-identity.txt
    preflight_only: true
    project_src: /srv/telemetry

- name: Check the live database against last night's manifest, decrypting 500 photos
  fleet_telemetry.dr.pg_restore_verify:
    manifest: /var/backups/telemetry/backup_2026-01-31_02-00-05.dump.manifest.json
    verify_only: true
    photo_sample: 500
    encryption_key: "{{ telemetry_encryption_key }}"
    project_src: /srv/telemetry
"""

RETURN = r"""
started_at:
  description: When the module started on the host (ISO 8601 UTC, the host's clock), for the step records of a run.
  returned: always
  type: str
  sample: "2026-12-06T03:00:00.123456Z"
finished_at:
  description: When the module ended, success or failure (ISO 8601 UTC, the host's clock).
  returned: always
  type: str
  sample: "2026-12-06T03:00:19.654321Z"
changed:
  description: V(true) when the database was restored (in check mode, when it would be).
  returned: always
  type: bool
mode:
  description: V(restore), V(verify_only) or V(preflight_only).
  returned: always
  type: str
  sample: restore
msg:
  description: One sentence about the outcome; on failure, what went wrong and the setting to change.
  returned: always
  type: str
  sample: "restored and verified telemetry_db: audit_log=300, photo=24, vehicle=3; 24 photo(s) decrypt; in 3.2 s"
error_code:
  description:
    - Stable code of the failure, for example V(artifact_invalid), V(manifest_invalid), V(wrong_key), V(wrong_cipher),
      V(no_photos), V(photo_corrupt), V(dump_incomplete), V(restore_failed), V(verify_failed), V(no_database), V(auth_failed).
    - For encrypted artifacts V(no_identity), V(bad_identity), V(wrong_identity), V(decrypt_failed), V(age_missing); for the
      vault V(vault_unreachable), V(vault_denied), V(no_secret), V(malformed_secret), V(no_matching_version).
  returned: failure
  type: str
  sample: wrong_key
mismatches:
  description: What did not match, one dict each, with at least C(kind) (V(row_count), V(photo), V(key_fingerprint), V(cipher),
    V(truncated), V(artifact), V(manifest), V(photo_table)) and C(msg); row counts carry C(table), C(expected), C(actual) and
    C(where) (V(dump) or V(database)), photos C(id) and C(reason).
  returned: always
  type: list
  elements: dict
  sample:
    - {kind: row_count, table: photo, expected: 5000, actual: 4990, where: database, msg: "photo has 4990 rows, 5000 expected"}
target:
  description: Where the database was reached (no secrets).
  returned: always
  type: dict
artifact:
  description: The artifact verification (path, manifest_path, kind, ok, problems, sha256, size, dump_format, toc_tables,
    encrypted).
  returned: when O(artifact) is given
  type: dict
kind:
  description: V(artifact) (with a manifest), V(runbook) (a plain C(.sql) without one) or V(manifest) (O(manifest) given).
  returned: after the artifact check
  type: str
  sample: artifact
dump_format:
  description: V(plain), V(custom) or V(directory).
  returned: when O(artifact) is given
  type: str
compression:
  description: Compression of a plain dump (V(none), V(gzip), V(zstd)).
  returned: for plain dumps
  type: str
manifest_path:
  description: The manifest used, or V(null) for a runbook dump.
  returned: after the artifact check
  type: str
manifest:
  description: The manifest's main fields (file, database, dump_format, compression, started_at, finished_at, row_counts,
    key_fingerprint, cipher, encryption, recipients).
  returned: when there is a manifest
  type: dict
preflight:
  description:
    - The key preflight. C(fingerprint) is the fingerprint of O(encryption_key) (it cannot reveal the key);
      C(fingerprint_checked) and C(cipher_checked) say whether the manifest recorded them; C(photos_checked),
      C(photos_failed) and C(failures) are about the photos read from the artifact (C(photo_source)).
    - For plain dumps C(dump) holds what the scan of the dump saw (C(COPY) counts when it was read to the end).
  returned: after the artifact check
  type: dict
expected_counts:
  description: The row counts a restore must produce.
  returned: check mode, and with O(preflight_only) for a runbook dump
  type: dict
  sample: {photo: 24, audit_log: 300}
restore:
  description:
    - How the artifact is (or would be) restored. C(method) (V(psql) or V(pg_restore)), C(argv) (no secrets in it),
      C(single_transaction), C(jobs), C(schema_reset) (the public schema was dropped and recreated first) and, for
      pg_restore, C(source) (V(stdin), V(copy) into the container, or V(path)).
    - For an encrypted artifact C(decrypt), the argv of C(age -d) (the identity is the pipe C(/dev/fd/N)).
  returned: when restoring, and in check mode
  type: dict
dump:
  description: What the restore stream of a plain dump held (C(counts) per table, C(trailer), C(complete), C(bytes)).
  returned: after restoring a plain dump
  type: dict
tables:
  description: Per table, C(expected) and C(actual) row counts, C(ok), and C(source) of the expected count (V(manifest) or V(dump)).
  returned: after verification
  type: list
  elements: dict
  sample:
    - {table: photo, expected: 24, actual: 24, ok: true, source: manifest}
photos:
  description: Photos of the database decrypted (C(checked)), those that did not (C(failed)), the first failures (C(failures),
    with C(id), C(reason), C(msg)), the table's row count (C(total)) and the sample size (C(sample), V(all) by default).
  returned: after verification
  type: dict
  sample: {checked: 24, failed: 0, failures: [], total: 24, sample: all}
analyzed:
  description: Whether C(ANALYZE) ran.
  returned: after verification
  type: bool
encryption:
  description:
    - For an encrypted artifact - C(method) (V(age)), C(recipients) (the manifest's recipient fingerprints),
      C(identity_recipients) (the fingerprints of the identity's public keys), C(matched), C(recipients_checked) (whether the
      manifest listed recipients). Fingerprints are C(sha256:) and 16 hex digits of the public key, never the identity.
  returned: when the artifact is encrypted
  type: dict
  sample: {method: age, recipients: ["sha256:3f1c0a9e5b7d2e41"], identity_recipients: ["sha256:3f1c0a9e5b7d2e41"],
           matched: ["sha256:3f1c0a9e5b7d2e41"], recipients_checked: true}
key_source:
  description:
    - Where the key came from - C(from) (V(option) or V(secrets_manager)) and its C(fingerprint); from the vault also
      C(secret_id), C(version_id), C(stages) and C(tried) (the fingerprints of the versions tried). Never the key.
  returned: when the key was resolved
  type: dict
  sample: {from: secrets_manager, secret_id: prod/telemetry/encryption-key, version_id: 5f1e..., stages: [AWSCURRENT],
           fingerprint: "v1:9a0c..."}
identity_source:
  description:
    - Where the age identity came from - C(from) (V(file) with C(path), or V(secrets_manager) with C(secret_id),
      C(version_id), C(stages)) and C(recipients), the fingerprints of its public keys. Never the identity.
  returned: when the artifact is encrypted and an identity was given
  type: dict
restore_client:
  description: Where psql and pg_restore ran against the target (V(host) or V(container)) and why.
  returned: after the preflight, unless O(preflight_only); before it for a custom or directory archive whose container runs
  type: dict
  sample: {"used": "host", "reason": "the host's psql reaches the container at 172.18.0.2:5432"}
server_version:
  description: Version of the target server.
  returned: after the target check
  type: str
timings:
  description: Seconds of the phases, C(preflight_seconds), C(target_check_seconds), C(restore_seconds), C(verify_seconds)
    (with C(count_seconds), C(photo_seconds), C(analyze_seconds)) and C(total_seconds).
  returned: always
  type: dict
  sample: {preflight_seconds: 0.8, restore_seconds: 41.2, verify_seconds: 6.3, total_seconds: 48.5}
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.client import secretsmanager_client
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._params import (
    CONNECTION_REQUIRED_IF,
    connection_argument_spec,
    connection_from_params,
    encryption_key_argument_spec,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import secrets as _secrets
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore.run import RestoreRequest, run_restore_verify
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._results import fail_with, timed
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import CLIENT_CHOICES


def argument_spec():
    spec = connection_argument_spec()
    spec.update(encryption_key_argument_spec())
    spec.update(
        artifact=dict(type='path'),
        manifest=dict(type='path'),
        verify_only=dict(type='bool', default=False),
        preflight_only=dict(type='bool', default=False),
        clean=dict(type='bool', default=True),
        jobs=dict(type='int', default=2),
        photo_table=dict(type='str', default='photo'),
        photo_sample=dict(type='int', default=0),
        preflight_photos=dict(type='int', default=20),
        preflight_scan=dict(type='bool', default=False),
        analyze=dict(type='bool', default=True),
        restore_client=dict(type='str', choices=list(CLIENT_CHOICES), default='auto'),
        # Secret ids and JSON field names, not secrets.
        encryption_key_secret=dict(type='str', no_log=False),
        encryption_key_secret_field=dict(type='str', no_log=False),
        age_identity_file=dict(type='path'),
        age_identity_secret=dict(type='str', no_log=False),
        age_identity_secret_field=dict(type='str', no_log=False),
    )
    return spec


def option_problem(params):
    """One sentence when the options do not fit together, else None."""
    if not params['encryption_key'] and not params['encryption_key_secret']:
        return ('encryption_key is required: give the ENCRYPTION_KEY the photos were encrypted with, or encryption_key_secret '
                '(the AWS Secrets Manager secret that holds it)')
    if params['manifest'] and not params['verify_only']:
        return 'manifest is only used with verify_only=true: give artifact to restore or to preflight'
    for name in ('jobs', 'photo_sample', 'preflight_photos'):
        if params[name] < (1 if name == 'jobs' else 0):
            return '%s must be at least %d' % (name, 1 if name == 'jobs' else 0)
    return None


def main():
    module = AnsibleAWSModule(
        argument_spec=argument_spec(),
        required_if=CONNECTION_REQUIRED_IF,
        required_one_of=[('artifact', 'manifest')],
        mutually_exclusive=[('artifact', 'manifest'), ('verify_only', 'preflight_only')],
        supports_check_mode=True,
        check_boto3=False,
    )
    timed(module)
    params = module.params
    sources = {}
    try:
        problem = option_problem(params)
        if problem:
            raise FleetDrError(problem, code='bad_option')
        client = _secrets.lazy_client(lambda: secretsmanager_client(module))
        manifest = _secrets.manifest_for(params['artifact'], params['manifest'])
        key, sources['key_source'] = _secrets.resolve_key(params, client, manifest)
        identity, sources['identity_source'], warnings = _secrets.resolve_identity(
            params, client, manifest, needed=_secrets.encrypted(params['artifact'], manifest))
        module.no_log_values.update(_secrets.masked_forms(key, identity))
        for warning in warnings:
            module.warn(warning)
        request = RestoreRequest(
            artifact=params['artifact'], manifest=params['manifest'], key=key, cipher=params['cipher'],
            verify_only=params['verify_only'], preflight_only=params['preflight_only'], clean=params['clean'], jobs=params['jobs'],
            photo_table=params['photo_table'], photo_sample=params['photo_sample'], preflight_photos=params['preflight_photos'],
            analyze=params['analyze'], preflight_scan=params['preflight_scan'], restore_client=params['restore_client'],
            identity=identity)
        result = run_restore_verify(connection_from_params(params), request, check_mode=module.check_mode)
    except FleetDrError as exc:
        fail_with(module, exc, **dict((k, v) for k, v in sources.items() if v is not None))
    result.update((k, v) for k, v in sources.items() if v is not None)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
