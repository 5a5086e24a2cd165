#!/usr/bin/python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_logical_backup
short_description: Take a verified logical backup of a PostgreSQL database in a compose stack or over libpq
version_added: 0.1.0
description:
  - Dumps one database with C(pg_dump) into an artifact in O(backup_dir) and writes a JSON manifest beside it, as the
    seed runbook's C(docker-compose exec -T db pg_dump ... > backup_<timestamp>.sql) does, but verified.
  - The rows of O(count_tables) are counted exactly in the same snapshot as the dump (C(pg_export_snapshot) handed to
    C(pg_dump --snapshot)), so a database under concurrent writes still verifies exactly after a restore.
  - The dump is streamed, never held in memory; its sha256 is computed while writing; the artifact is published
    atomically (temporary file, fsync, rename, fsync of the directory). On any failure no file is left under a final name.
  - After publishing, the artifact is read back and verified (checksum, and the table of contents for custom and
    directory archives).
  - When O(encryption_key) is given, sample photos are decrypted with it first and its fingerprint is recorded in
    the manifest, so a restore can prove it has the right key before destroying anything.
  - With O(encryption=age) the artifact is encrypted while it streams (C(pg_dump | zstd | age -e -r ...)) to the X25519
    recipients O(age_recipients); no clear copy is ever written, and the database host needs only the public keys. Decrypt
    by hand with C(age -d -i identity.txt backup_....sql.zst.age | zstd -d | psql ...), or restore with
    M(fleet_telemetry.dr.pg_restore_verify) given the identity.
  - A lock file in O(backup_dir) stops two backups of the same database from running at once.
  - While a restore of the database holds its lease C(.restore-<database>.lease.json) in O(backup_dir) (see
    M(fleet_telemetry.dr.run_lease)), the backup is refused with RV(error_code=lock_held), in check mode too, so it never
    saves a database that the restore has emptied or half-restored.
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - fleet_telemetry.dr._attributes
  - fleet_telemetry.dr._connection
  - fleet_telemetry.dr._encryption_key
attributes:
  check_mode:
    support: full
    details:
      - Connects read-only, reports the artifact path it would write and the estimated data size, writes nothing; refused like
        a real run while a restore holds its lease.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run creates a new artifact with a new timestamped name and leaves earlier ones intact.
options:
  backup_dir:
    description:
      - Directory of the artifacts. Must exist, be a directory (not a device) and be writable.
    type: path
    required: true
  format:
    description:
      - V(plain) is SQL text that the runbook's C(cat backup.sql | psql) restores; uncompressed it has the runbook's name
        C(backup_YYYY-MM-DD_HH-MM-SS.sql).
      - V(custom) is a C(pg_dump -Fc) archive; V(directory) a C(pg_dump -Fd) archive dumped with O(jobs) workers.
        Both restore in parallel with C(pg_restore -j).
    type: str
    choices: [plain, custom, directory]
    default: plain
  compression:
    description:
      - V(zstd) compresses a plain dump with the C(zstd) command on the host while it streams.
      - V(gzip) compresses a plain dump with C(gzip), or custom and directory archives inside C(pg_dump).
      - pg_dump 15 has no zstd for custom and directory archives.
    type: str
    choices: [none, gzip, zstd]
    default: zstd
  compression_level:
    description: Compression level. Defaults to 1, the fastest, because encrypted photos do not compress anyway.
    type: int
  jobs:
    description: Parallel C(pg_dump) workers with O(format=directory).
    type: int
    default: 2
  count_tables:
    description: Tables whose exact row counts go into the manifest, to be checked after a restore.
    type: list
    elements: str
    default: [photo, audit_log]
  count_all_tables:
    description: Count every user table instead of O(count_tables).
    type: bool
    default: false
  photo_table:
    description: Table of the encrypted photos (column C(id) and C(data)), used to prove O(encryption_key).
    type: str
    default: photo
  key_check_photos:
    description: How many photos to decrypt with O(encryption_key) before recording its fingerprint.
    type: int
    default: 20
  name_prefix:
    description: Prefix of the artifact name.
    type: str
    default: backup
  check_free_space:
    description: Refuse to start when O(backup_dir) has less free space than the estimated dump size.
    type: bool
    default: true
  plan_only:
    description:
      - Only answer whether a backup can run and what it would write - the database answers, the artifact's name, the
        estimated data size, RV(free_space_problem), the temporary files of killed backups it would remove - as check mode
        does, and report no change. A read-only probe for preflights, that needs no C(check_mode).
    type: bool
    default: false
  encryption:
    description:
      - V(age) encrypts the artifact with the C(age) tool to every recipient of O(age_recipients) while it is streamed. Its
        name gets C(.age) after the usual extension (C(backup_....sql.zst.age), C(backup_....dump.age)), the checksum in the
        manifest covers the encrypted bytes, and the manifest records C(encryption) and each recipient's fingerprint.
      - The C(age) tool and the recipients are checked before anything else, in check mode too; a missing tool fails
        with RV(error_code=age_missing), a malformed recipient with RV(error_code=bad_recipient).
      - O(format=directory) cannot be encrypted. A custom archive encrypted is written through a pipe, so its table of
        contents holds no data offsets (a restore reads it in order).
    type: str
    choices: [none, age]
    default: none
  age_recipients:
    description:
      - The age X25519 public keys (C(age1...), as C(age-keygen) or C(age-keygen -y identity.txt) prints them) the artifact
        is encrypted to, with O(encryption=age). Keep the identities (C(AGE-SECRET-KEY-1...)) off the database host; list
        two recipients (for example an operator's and an offline escrow key) so that one lost identity loses no backup.
      - Recipients with O(encryption=none) are refused (RV(error_code=bad_option)) rather than silently ignored.
    type: list
    elements: str
    default: []
  dump_client:
    description:
      - Where pg_dump runs with O(transport=compose). V(auto) runs the host's pg_dump against the container's own address
        on its docker network (port 5432) when it can, because C(docker exec)'s output stream through the Docker daemon is
        slower than pg_dump itself; it needs O(db_password), a host pg_dump of the server's major version, and the host able
        to connect. Otherwise V(auto) runs pg_dump inside the container with C(docker exec), and RV(dump_client) says why.
      - V(container) always uses C(docker exec); V(host) fails, naming the reason, instead of falling back.
      - The snapshot session (counts and key check) uses the same side's psql. The snapshot, counts and key check are the
        same either way. Ignored with O(transport=direct).
    type: str
    choices: [auto, host, container]
    default: auto
requirements:
  - PostgreSQL client tools in the container (O(transport=compose)) or on the host (O(transport=direct)).
  - C(zstd) or C(gzip) on the host for compressed plain dumps.
  - C(age) on the host (Debian package C(age)) with O(encryption=age).
seealso:
  - module: fleet_telemetry.dr.pg_artifact_verify
"""

EXAMPLES = r"""
- name: Back up the compose stack's database the verified way
  fleet_telemetry.dr.pg_logical_backup:
    project_src: /srv/telemetry
    backup_dir: /var/backups/telemetry
    encryption_key: "{{ telemetry_encryption_key }}"

- name: Back up a managed PostgreSQL over TCP into a parallel directory archive
  fleet_telemetry.dr.pg_logical_backup:
    transport: direct
    db_host: db.internal
    db_port: 5432
    db_password: "{{ telemetry_db_password }}"
    backup_dir: /var/backups/telemetry
    format: directory
    compression: gzip
    jobs: 4

- name: Back up encrypted at rest to two age recipients (the identities stay off this host)
  fleet_telemetry.dr.pg_logical_backup:
    project_src: /srv/telemetry
    backup_dir: /var/backups/telemetry
    encryption: age
    age_recipients:
      - age1q9z9uv0z65699zee3dvwcd4u8t9dzqg4hqm9pweeg6df36j93p8q73nxs7
      - "{{ escrow_age_recipient }}"
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
dump_client:
  description: Where pg_dump ran, or in check mode would run, (V(host) or V(container)) and why; the snapshot session's psql
    runs there too.
  returned: success
  type: dict
  sample: {"used": "host", "reason": "the host's pg_dump reaches the container at 172.18.0.2:5432"}
path:
  description: The artifact (a file, or a directory for O(format=directory)); in check mode the one that would be written.
  returned: always
  type: str
  sample: /var/backups/telemetry/backup_2026-11-25_03-00-00.sql.zst
lock_path:
  description: The lock file the backup holds while it runs (C(<backup_dir>/.backup-<database>.lock)); the wait on a background
    backup passes it to M(fleet_telemetry.dr.job_status).
  returned: success
  type: str
  sample: /var/backups/telemetry/.backup-telemetry_db.lock
leftovers_removed:
  description:
    - The temporary C(.<artifact>.partial-*) entries that killed backups left in O(backup_dir), removed by this run under its
      lock (in check mode, those it would remove).
    - Only the collection's own temporary entries are removed, and only while no other backup into O(backup_dir) runs.
  returned: success
  type: list
  elements: str
leftovers_kept:
  description: Why temporary entries of killed backups were left for a later run (another backup into O(backup_dir) runs), or null.
  returned: success
  type: str
manifest_path:
  description: The manifest beside the artifact.
  returned: success
  type: str
format:
  description: Dump format.
  returned: always
  type: str
compression:
  description: Compression.
  returned: always
  type: str
compression_level:
  description: Compression level.
  returned: always
  type: int
size:
  description: Bytes of the artifact.
  returned: success
  type: int
sha256:
  description: sha256 of the artifact (for a directory, of its sorted listing of per-file digests).
  returned: success
  type: str
row_counts:
  description: Exact row counts taken in the dump's snapshot.
  returned: success
  type: dict
  sample: {photo: 5000, audit_log: 120000}
key_fingerprint:
  description: Fingerprint of O(encryption_key) recorded in the manifest, or null.
  returned: success
  type: str
key_check:
  description: How many photos were decrypted to prove the key.
  returned: when O(encryption_key) is given
  type: dict
server_version:
  description: PostgreSQL server version.
  returned: success
  type: str
pg_dump_version:
  description: Version of the pg_dump that made the dump.
  returned: success
  type: str
timings:
  description: Seconds spent counting, checking the key, dumping, verifying, and in total.
  returned: success
  type: dict
stream:
  description: Bytes streamed and seconds of the dump pipeline.
  returned: success
  type: dict
verified:
  description: Whether the read-back verification passed (always true on success).
  returned: success
  type: bool
encryption:
  description:
    - How the artifact is encrypted at rest, in check mode how it would be - C(method) (V(none) or V(age)) and C(recipients),
      the fingerprint (C(sha256:) and 16 hex digits of sha256 of the C(age1...) text) of each recipient, as in the manifest.
  returned: success
  type: dict
  sample: {"method": "age", "recipients": ["sha256:3f9a0c1d2b4e5f60"]}
connection:
  description: Where the database was reached (no secrets).
  returned: always
  type: dict
would_write:
  description: The artifact path that would be written.
  returned: check mode
  type: str
estimated_data_size:
  description: Bytes of table data, the basis of the free space check.
  returned: check mode
  type: int
free_space_problem:
  description: Why the run would be refused for lack of space, or null.
  returned: check mode with O(check_free_space)
  type: str
error_code:
  description: Stable code of the failure (for example V(auth_failed), V(no_database), V(disk_full), V(lock_held),
    V(age_missing), V(bad_recipient)).
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._backup import ENCRYPTIONS, BackupRequest, run_backup
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._params import (
    CONNECTION_REQUIRED_IF,
    connection_argument_spec,
    connection_from_params,
    encryption_key_argument_spec,
    key_from_params,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._results import fail_with, keep_result_as_built, timed
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import CLIENT_CHOICES


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(encryption_key_argument_spec())
    argument_spec.update(
        backup_dir=dict(type='path', required=True),
        format=dict(type='str', choices=['plain', 'custom', 'directory'], default='plain'),
        compression=dict(type='str', choices=['none', 'gzip', 'zstd'], default='zstd'),
        compression_level=dict(type='int'),
        jobs=dict(type='int', default=2),
        count_tables=dict(type='list', elements='str', default=['photo', 'audit_log']),
        count_all_tables=dict(type='bool', default=False),
        photo_table=dict(type='str', default='photo'),
        key_check_photos=dict(type='int', default=20, no_log=False),
        name_prefix=dict(type='str', default='backup'),
        check_free_space=dict(type='bool', default=True),
        plan_only=dict(type='bool', default=False),
        dump_client=dict(type='str', choices=list(CLIENT_CHOICES), default='auto'),
        encryption=dict(type='str', choices=list(ENCRYPTIONS), default='none'),
        age_recipients=dict(type='list', elements='str', default=[]),
    )
    module = AnsibleModule(argument_spec=argument_spec, required_if=CONNECTION_REQUIRED_IF, supports_check_mode=True)
    keep_result_as_built(module)
    timed(module)
    params = module.params
    try:
        key = key_from_params(params)
        request = BackupRequest(
            backup_dir=params['backup_dir'], dump_format=params['format'], compression=params['compression'],
            compression_level=params['compression_level'], jobs=params['jobs'], count_tables=params['count_tables'],
            count_all_tables=params['count_all_tables'], key=key, cipher=params['cipher'],
            key_check_photos=params['key_check_photos'], photo_table=params['photo_table'], prefix=params['name_prefix'],
            check_free_space=params['check_free_space'], dump_client=params['dump_client'],
            encryption=params['encryption'], recipients=params['age_recipients'])
        result = run_backup(connection_from_params(params), request, check_mode=module.check_mode or params['plan_only'])
        if params['plan_only']:
            result['changed'] = False
    except FleetDrError as exc:
        fail_with(module, exc)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
