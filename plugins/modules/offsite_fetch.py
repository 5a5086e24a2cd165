#!/usr/bin/python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: offsite_fetch
short_description: Download the newest complete, verified backup from S3 or a backup server into a staging directory
version_added: 0.1.0
description:
  - Lists the complete artifacts at O(target) (an artifact and its valid manifest; an artifact without its manifest is not
    a backup and is ignored), newest first by the manifest's snapshot time, and downloads the newest one of O(database)
    (or the one named O(name)) into O(staging_dir).
  - The SHA-256 is computed while the bytes are written; a copy that does not match its manifest is removed, reported in
    RV(rejected), and the next newest is tried. The download is published under its name, with its manifest beside it, only
    once it verified, so the restore reads it as it reads a local backup.
  - The free space of O(staging_dir) is checked against the artifact's size first; a disk that fills while downloading
    fails with RV(error_code=no_space) and leaves no partial file.
  - Remove the staging copy after the restore (the restore and drill roles do).
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
      - Lists the target and reads the manifests, returns the artifact it would download, and downloads nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run downloads; a copy already in O(staging_dir) under the artifact's name is refused.
options:
  target:
    required: true
  staging_dir:
    description: The directory to download into (it must exist, and be a directory the user owns).
    type: path
    required: true
  database:
    description: Only backups of this database (the manifest's C(database)).
    type: str
  name:
    description: The artifact to download (its file name at the target) instead of the newest.
    type: str
notes:
  - boto3 is needed only for an S3 target; a backup server needs the C(ssh) client on the host that runs the module.
"""

EXAMPLES = r"""
- name: Bring the newest backup back from S3
  fleet_telemetry.dr.offsite_fetch:
    staging_dir: /var/backups/fleet-telemetry/staging
    database: telemetry_db
    target:
      kind: s3
      bucket: fleet-backups
      prefix: prod/telemetry_db/
  register: fetched
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
path:
  description: The verified copy in O(staging_dir) (its manifest is beside it); null in check mode.
  returned: success
  type: str
name:
  description: The artifact's name.
  returned: success
  type: str
location:
  description: Where it was at the target.
  returned: success
  type: str
target:
  description: The target's label (C(s3://bucket/prefix/), C(user@host:/dir/)).
  returned: always
  type: str
size:
  description: Its size in bytes.
  returned: success
  type: int
sha256:
  description: Its SHA-256, checked while downloading.
  returned: success
  type: str
snapshot_at:
  description: The backup's snapshot time (the manifest's C(started_at)).
  returned: success
  type: str
rejected:
  description: Newer copies that did not verify, each with C(name) and C(msg).
  returned: always
  type: list
  elements: dict
msg:
  description: One sentence.
  returned: always
  type: str
error_code:
  description: V(offsite_none) (no complete backup at the target), V(offsite_staging_taken), V(no_space), or the target's codes.
  returned: failure
  type: str
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.fetch import fetch_newest
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.params import make_target, target_argument_spec
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.target import OffsiteError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._results import fail_with, keep_result_as_built, timed


def nothing_found(target, database, name, found):
    """The error when no complete backup verified at the target."""
    what = name or ('a backup of %s' % database if database else 'a backup')
    if found['candidates'] and found['rejected']:
        return OffsiteError('%s holds no copy of %s that verifies: %s' % (target.label, what, found['rejected'][0]['msg']),
                            code='offsite_mismatch')
    return OffsiteError('%s holds no complete copy of %s (an artifact and its manifest): check the target\'s bucket and prefix '
                        'or directory, and that the backups copy there' % (target.label, what), code='offsite_none')


def main():
    spec = dict(staging_dir=dict(type='path', required=True), database=dict(type='str'), name=dict(type='str'))
    spec.update(target_argument_spec())
    module = AnsibleAWSModule(argument_spec=spec, supports_check_mode=True, check_boto3=False)
    keep_result_as_built(module)
    timed(module)
    params = module.params
    label = None
    try:
        target = make_target(module, params['target'])
        label = target.label
        found = fetch_newest(target, params['staging_dir'], database=params['database'], name=params['name'],
                             check_mode=module.check_mode)
        if found['name'] is None:
            raise nothing_found(target, params['database'], params['name'], found)
    except FleetDrError as exc:
        fail_with(module, exc, target=label)
    manifest = found['manifest']
    verb = 'would download' if module.check_mode else 'downloaded'
    module.exit_json(
        changed=not module.check_mode, path=found['path'], name=found['name'], location=target.location(found['name']),
        target=label, size=manifest['size'], sha256=manifest['sha256'], snapshot_at=manifest['started_at'],
        rejected=found['rejected'],
        msg='%s %s (snapshot %s) from %s%s' % (verb, found['name'], manifest['started_at'], label,
                                               ', verified' if found['path'] else ''))


if __name__ == '__main__':
    main()
