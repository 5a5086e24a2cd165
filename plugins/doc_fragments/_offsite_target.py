# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This doc fragment is PRIVATE to fleet_telemetry.dr and may change at any time.

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  target:
    description:
      - The offsite target - an S3 bucket (or an S3-compatible store, through O(endpoint_url)) or a directory on a backup
        server reached over SSH.
      - An artifact at a target is two objects, the dump file and its manifest C(<name>.manifest.json); the manifest is
        written last, and an artifact without its manifest is not a backup.
      - For S3 the connection (region, credentials, O(endpoint_url)) is the module's AWS options, looked up as amazon.aws
        does (O(access_key), O(profile), the C(AWS_*) environment variables, an instance role).
    type: dict
    suboptions:
      name:
        description: How results and reports name the target (for example V(offsite-s3)); the roles' C(restore_source) and C(dr_drill_source) use it.
        type: str
      kind:
        description: V(s3) or V(ssh).
        type: str
        required: true
        choices: [s3, ssh]
      bucket:
        description: The S3 bucket (V(kind=s3)).
        type: str
      endpoint_url:
        description:
          - The endpoint of an S3-compatible store (MinIO, Ceph, another cloud's S3 API) for this target; it takes
            precedence over O(endpoint_url).
        type: str
      prefix:
        description: The key prefix of the artifacts in the bucket, for example V(fleet/prod/) (V(kind=s3)).
        type: str
        default: ''
      storage_class:
        description: The S3 storage class of the objects, for example V(STANDARD_IA) (V(kind=s3)); the bucket's default when unset.
        type: str
      sse:
        description: Server-side encryption, V(AES256) or V(aws:kms) (V(kind=s3)); the bucket's default when unset.
        type: str
        choices: [AES256, aws:kms]
      kms_key_id:
        description: The KMS key of V(sse=aws:kms).
        type: str
      object_lock_mode:
        description:
          - Create the objects under S3 Object Lock in this mode (the bucket must have Object Lock enabled), so that they
            cannot be deleted before O(target.object_lock_days) after the backup's snapshot time.
          - V(GOVERNANCE) can be lifted by a user with C(s3:BypassGovernanceRetention); V(COMPLIANCE) by nobody.
        type: str
        choices: [GOVERNANCE, COMPLIANCE]
      object_lock_days:
        description: Days of Object Lock retention after the backup's snapshot time (with O(target.object_lock_mode)).
        type: int
        default: 0
      object_lock_weekly_days:
        description:
          - Days of Object Lock retention, after the snapshot time, of a backup that retention keeps as the newest of its ISO
            week (M(fleet_telemetry.dr.backup_retention) extends its lock; a lock is never shortened). V(0) leaves it at
            O(target.object_lock_days).
        type: int
        default: 0
      object_lock_monthly_days:
        description: The same for a backup kept as the newest of its month.
        type: int
        default: 0
      part_size_mb:
        description: The part size of S3 multipart uploads, in MiB; memory is about this times (O(target.concurrency) + 1).
        type: int
        default: 8
      concurrency:
        description: Parts uploaded at once (V(kind=s3)).
        type: int
        default: 6
      host:
        description: The backup server (V(kind=ssh)).
        type: str
      user:
        description: The SSH user on the backup server; the SSH client's default when unset.
        type: str
      port:
        description: The SSH port.
        type: int
        default: 22
      path:
        description:
          - The directory of the artifacts on the backup server (V(kind=ssh)); it must exist and be writable by the user.
        type: str
      identity_file:
        description: The private key file of the SSH user on the host that runs the module; the SSH client's default when unset.
        type: path
      known_hosts_file:
        description:
          - The known_hosts file that holds the backup server's host key. Host key checking is always on
            (C(StrictHostKeyChecking=yes)); an unknown or changed host key fails the copy.
        type: path
      connect_timeout:
        description: Seconds to wait for the SSH connection.
        type: int
        default: 30
      retention:
        description:
          - This target's own GFS counts (C(daily), C(weekly), C(monthly)), used by M(fleet_telemetry.dr.backup_retention)
            instead of its O(fleet_telemetry.dr.backup_retention#module:daily), ... options; the other modules ignore it.
        type: dict
        suboptions:
          daily:
            description: Newest backup of each of this many most recent days that have one.
            type: int
          weekly:
            description: Newest backup of each of this many most recent ISO weeks that have one.
            type: int
          monthly:
            description: Newest backup of each of this many most recent months that have one.
            type: int
"""
