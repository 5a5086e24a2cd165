#!/usr/bin/python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: offsite_copy
short_description: Copy a verified backup to S3 or to a backup server over SSH, verify it there, manifest last
version_added: 0.1.0
description:
  - Copies the artifact at O(path) and its manifest to O(target), so that the backup survives the loss of the host.
  - The local bytes are hashed while they are sent and must match the manifest's checksum; a local artifact damaged since
    its backup is not copied.
  - B(S3) - a multipart upload with a SHA-256 checksum on every part, completed with the C(If-None-Match) header set to C(*) so that it
    never overwrites; any failure aborts the upload, so an interrupted copy leaves no visible object (see the bucket lifecycle
    rule in the offsite guide for what a killed process leaves).
  - B(Backup server) - the bytes are streamed over C(ssh) into a temporary name, hashed there with C(sha256sum), and published
    with a hard link that refuses an existing name. Host key checking stays on.
  - The object is then read back and hashed (S3) or hashed where it lies (SSH); only when it matches is the manifest
    written, last, as the commit marker.
  - Idempotent - an artifact already at the target with the same checksum is not copied again; a different object under the
    same name is refused (RV(error_code=offsite_conflict)), never overwritten. A copy stopped before its manifest is
    completed by the next run.
  - Directory-format artifacts cannot be copied (one file per artifact); back up with V(plain) or V(custom).
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - fleet_telemetry.dr._attributes
  - fleet_telemetry.dr._offsite_target
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    details:
      - Reads the local manifest and what the target holds (listing, manifests, for a half-done copy a read-back hash) and
        says whether it would copy; writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  target:
    required: true
  path:
    description: The local artifact file; its manifest C(<path>.manifest.json) must be beside it.
    type: path
    required: true
notes:
  - boto3 is needed only for an S3 target; a backup server needs the C(ssh) client on the host that runs the module.
"""

EXAMPLES = r"""
- name: Copy the backup just taken to S3
  fleet_telemetry.dr.offsite_copy:
    path: "{{ fleet_dr_last_backup.path }}"
    region: eu-west-1
    target:
      name: offsite-s3
      kind: s3
      bucket: fleet-backups
      prefix: prod/telemetry_db/
      storage_class: STANDARD_IA
      sse: aws:kms
      kms_key_id: alias/fleet-backups

- name: Copy it to the backup server too
  fleet_telemetry.dr.offsite_copy:
    path: "{{ fleet_dr_last_backup.path }}"
    target:
      name: backup-server
      kind: ssh
      host: backup.example.com
      user: fleetbackup
      path: /srv/backups/telemetry
      identity_file: /root/.ssh/fleet_backup_ed25519
      known_hosts_file: /etc/fleet-telemetry-dr/known_hosts
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
copy:
  description:
    - Where the copy went and what it is - C(target) (the target's label, such as C(s3://bucket/prefix/)), C(target_name)
      (O(target.name), else the label), C(kind), C(name) (the artifact's), C(location), C(size), C(sha256), C(status)
      (V(copied), V(manifest_added), V(present), or in check mode V(would_copy), V(would_add_manifest)), C(copied),
      C(verified), C(locked_until), C(upload_seconds), C(verify_seconds).
  returned: success
  type: dict
msg:
  description: One sentence - where the backup went and that it verified, or why not.
  returned: always
  type: str
error_code:
  description:
    - V(offsite_conflict) (another object under the name), V(offsite_mismatch) (what was read back differs),
      V(offsite_no_bucket), V(offsite_denied), V(offsite_credentials), V(offsite_unreachable), V(offsite_host_key),
      V(offsite_no_space), V(offsite_no_dir), V(offsite_directory), V(offsite_bad_manifest), or V(offsite_error).
  returned: failure
  type: str
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.copy import copy_artifact
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.params import make_target, target_argument_spec, target_name
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._results import fail_with, keep_result_as_built, timed


def copy_message(copy):
    """The sentence of a copy's record."""
    if copy['status'] == 'present':
        return '%s is already at %s, verified (nothing copied)' % (copy['name'], copy['location'])
    if copy['status'].startswith('would_'):
        return 'check mode: would copy %s to %s' % (copy['name'], copy['location'])
    return 'copied %s to %s (%d bytes), read back and verified (sha256 %s)' % (copy['name'], copy['location'], copy['size'], copy['sha256'])


def main():
    spec = dict(path=dict(type='path', required=True))
    spec.update(target_argument_spec())
    module = AnsibleAWSModule(argument_spec=spec, supports_check_mode=True, check_boto3=False)
    keep_result_as_built(module)
    timed(module)
    options = module.params['target']
    try:
        target = make_target(module, options)
        copy = copy_artifact(target, module.params['path'], lock_mode=options['object_lock_mode'],
                             lock_days=options['object_lock_days'], check_mode=module.check_mode)
    except FleetDrError as exc:
        fail_with(module, exc, target=target_name(options))
    copy['target_name'] = target_name(options)
    module.exit_json(changed=copy['copied'] or copy['status'].startswith('would_'), copy=copy, msg=copy_message(copy))


if __name__ == '__main__':
    main()
