#!/usr/bin/python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_artifact_verify
short_description: Verify a PostgreSQL backup artifact against its manifest without changing anything
version_added: 0.1.0
description:
  - Recomputes the sha256 and size of a backup artifact written by M(fleet_telemetry.dr.pg_logical_backup) (a dump
    file, or a C(pg_dump -Fd) directory) and compares them with the JSON manifest beside it.
  - For custom and directory archives, reads the table of contents with C(pg_restore --list) and checks that every
    table counted in the manifest has a C(TABLE DATA) entry. C(pg_restore --list) succeeds on a truncated archive, so
    the checksum remains the real check.
  - For an uncompressed plain dump, checks that it ends with pg_dump's C(PostgreSQL database dump complete) trailer,
    which is the only completeness check a hand-made runbook backup (no manifest) allows.
  - An artifact encrypted with age (C(.age), written with O(fleet_telemetry.dr.pg_logical_backup#module:encryption=age))
    is verified without its identity, which this host need not hold - its checksum and size against the manifest, and its
    age header; its table of contents and trailer are behind the encryption and are not read (RV(encrypted)).
  - With O(backup_dir) instead of O(path), picks the newest artifact whose checksum verifies, skipping damaged
    newer ones and reporting them in RV(rejected).
  - A damaged artifact fails the task with one sentence naming the first problem, unless O(fail_on_problems=false).
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - fleet_telemetry.dr._attributes
attributes:
  check_mode:
    support: full
    details:
      - This module never modifies anything; check mode runs the same verification.
  diff_mode:
    support: none
    details:
      - This module does not modify state.
  idempotent:
    support: full
    details:
      - This module does not modify state; RV(changed) is always V(false).
  platform:
    platforms: posix
options:
  path:
    description:
      - Path of the artifact to verify (the dump file or the directory, not the manifest).
      - The manifest is expected at this path followed by C(.manifest.json).
      - Mutually exclusive with O(backup_dir); one of the two is required.
    type: path
  backup_dir:
    description:
      - Directory of artifacts in which to choose one according to O(select).
      - Only artifacts with a valid manifest are candidates; temporary C(.*.partial-*) entries are ignored.
    type: path
  database:
    description:
      - With O(backup_dir), only consider artifacts whose manifest names this database.
      - When not set, artifacts of every database are candidates.
    type: str
  select:
    description:
      - How to choose an artifact in O(backup_dir).
      - V(newest) verifies candidates from the newest C(started_at) down and picks the first one that verifies.
    type: str
    choices: [newest]
    default: newest
  pg_restore_path:
    description:
      - The C(pg_restore) program used to read the table of contents of custom and directory archives.
      - A bare name is searched on E(PATH); a path containing C(/) is used as given.
      - Use the same or a newer major version than the C(pg_dump) that wrote the archive.
    type: str
    default: pg_restore
  read_toc:
    description:
      - Read the table of contents of custom and directory archives with O(pg_restore_path).
      - Set to V(false) on hosts without PostgreSQL client tools (for example when the backups of a compose stack are
        kept on the Docker host); the checksum is then the only check, which is still the one that catches damage.
    type: bool
    default: true
  require_manifest:
    description:
      - When V(true), an artifact without a manifest is a problem. A hand-made backup from the runbook (plain C(.sql),
        no manifest) is reported with RV(kind=runbook) either way.
      - When V(false), a file without a manifest is verified as far as possible (readable, plain dump trailer, table of
        contents) and RV(ok) can be V(true).
    type: bool
    default: true
  fail_on_problems:
    description:
      - Fail the task when the artifact does not verify, or when O(backup_dir) holds no artifact that verifies.
      - When V(false), the task succeeds and reports RV(ok) and RV(problems), so a playbook can decide.
    type: bool
    default: true
requirements:
  - C(pg_restore) (PostgreSQL client tools) when O(read_toc=true) and the artifact is a custom or directory archive.
notes:
  - Reading a multi-gigabyte artifact takes a while (the checksum reads every byte once); memory use stays flat.
seealso:
  - module: fleet_telemetry.dr.pg_logical_backup
"""

EXAMPLES = r"""
- name: Verify one artifact
  fleet_telemetry.dr.pg_artifact_verify:
    path: /var/backups/telemetry/backup_2026-01-31_02-00-05.sql.zst

- name: Pick the newest backup of telemetry_db whose checksum verifies
  fleet_telemetry.dr.pg_artifact_verify:
    backup_dir: /var/backups/telemetry
    database: telemetry_db
    select: newest
  register: newest

- name: Show which artifact a restore would use
  ansible.builtin.debug:
    msg: "{{ newest.path }} ({{ newest.size | human_readable }}, sha256 {{ newest.sha256 }})"

- name: Check a hand-made runbook backup, which has no manifest, without failing
  fleet_telemetry.dr.pg_artifact_verify:
    path: /root/backup_2026-01-30_23-00-00.sql
    require_manifest: false
    fail_on_problems: false
  register: runbook

- name: Check a custom archive on a host without pg_restore (checksum only)
  fleet_telemetry.dr.pg_artifact_verify:
    path: /var/backups/telemetry/backup_2026-01-31_02-00-05.dump
    read_toc: false
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
  description: Always V(false); nothing is modified.
  returned: always
  type: bool
  sample: false
path:
  description:
    - The artifact verified. With O(backup_dir), the one selected, or V(null) when none verifies.
  returned: always
  type: str
  sample: /var/backups/telemetry/backup_2026-01-31_02-00-05.sql.zst
manifest_path:
  description: Where the manifest of RV(path) is expected.
  returned: when an artifact was verified
  type: str
  sample: /var/backups/telemetry/backup_2026-01-31_02-00-05.sql.zst.manifest.json
ok:
  description: Whether the artifact verifies (no problems).
  returned: always
  type: bool
  sample: true
kind:
  description:
    - V(artifact) when a manifest was found, V(runbook) for a plain C(.sql) file without a manifest (a hand-made
      backup that restore may accept), V(unknown) otherwise.
  returned: when an artifact was verified
  type: str
  sample: artifact
problems:
  description: What is wrong, one sentence each, the most telling first. Empty when RV(ok).
  returned: always
  type: list
  elements: str
  sample:
    - "size mismatch: manifest says 1540000000 bytes, file has 770000000"
    - "sha256 mismatch: manifest says 3f1c..., file has 9ab0..."
sha256:
  description:
    - The sha256 computed now (hex). For a directory artifact, the combined digest over its sorted files.
    - V(null) when the artifact is missing or unreadable.
  returned: when an artifact was verified
  type: str
  sample: 3f1c9e0b2d7c4a0e8b6f5a4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3b2a190
size:
  description: The size computed now in bytes (the sum of the files for a directory artifact).
  returned: when an artifact was verified
  type: int
  sample: 740123456
dump_format:
  description: V(plain), V(custom) or V(directory), from the manifest or else from the name.
  returned: when an artifact was verified
  type: str
  sample: custom
manifest:
  description: The manifest as read (it never contains secrets), or V(null) when there is none.
  returned: when an artifact was verified
  type: dict
  sample:
    format_version: 1
    file: backup_2026-01-31_02-00-05.dump
    dump_format: custom
    compression: none
    size: 740123456
    database: telemetry_db
    row_counts:
      photo: 5000
      audit_log: 120344
toc_tables:
  description:
    - The C(schema.table) names with a C(TABLE DATA) entry in the archive's table of contents.
    - V(null) for plain dumps, with O(read_toc=false), or when the table of contents could not be read.
  returned: when an artifact was verified
  type: list
  elements: str
  sample: [public.audit_log, public.photo]
encrypted:
  description:
    - Whether the artifact is encrypted with age (its manifest says C(encryption=age); without a manifest, its C(.age) name
      or its first bytes). Its table of contents is then not read (RV(toc_tables) is V(null)).
  returned: when an artifact was verified
  type: bool
  sample: false
rejected:
  description: With O(backup_dir), the newer artifacts that were skipped because they do not verify.
  returned: when O(backup_dir) is used
  type: list
  elements: dict
  contains:
    path:
      description: The skipped artifact.
      type: str
    problems:
      description: Why it was skipped.
      type: list
      elements: str
  sample:
    - path: /var/backups/telemetry/backup_2026-02-01_02-00-05.dump
      problems: ["sha256 mismatch: manifest says 3f1c..., file has 9ab0..."]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _verification
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._results import keep_result_as_built, timed

_RESULT_KEYS = ('path', 'manifest_path', 'ok', 'kind', 'problems', 'sha256', 'size', 'dump_format', 'manifest', 'toc_tables',
                'encrypted')


def _find_pg_restore(module, name):
    if '/' in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return module.get_bin_path(name)


def _toc_runner(module, name):
    """``pg_restore --list <path>`` through ``module.run_command``; a missing program becomes a readable problem."""
    binary = _find_pg_restore(module, name)

    def run(path):
        if binary is None:
            return 127, '', '%s was not found; install the PostgreSQL client tools, set pg_restore_path or set read_toc=false' % name
        return module.run_command([binary, '--list', path], environ_update={'LC_ALL': 'C', 'LANG': 'C'})
    return run


def _public(result):
    return dict((key, result.get(key)) for key in _RESULT_KEYS)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path'),
            backup_dir=dict(type='path'),
            database=dict(type='str'),
            select=dict(type='str', choices=['newest'], default='newest'),
            pg_restore_path=dict(type='str', default='pg_restore'),
            read_toc=dict(type='bool', default=True),
            require_manifest=dict(type='bool', default=True),
            fail_on_problems=dict(type='bool', default=True),
        ),
        mutually_exclusive=[('path', 'backup_dir')],
        required_one_of=[('path', 'backup_dir')],
        required_by={'database': 'backup_dir'},
        supports_check_mode=True,
    )
    keep_result_as_built(module)
    timed(module)
    params = module.params
    toc_runner = _toc_runner(module, params['pg_restore_path']) if params['read_toc'] else None

    if params['path'] is not None:
        result = _public(_verification.verify_artifact(params['path'], toc_runner=toc_runner, require_manifest=params['require_manifest']))
        if result['problems'] and params['fail_on_problems']:
            module.fail_json(msg='artifact %s does not verify: %s' % (result['path'], result['problems'][0]), changed=False, **result)
        module.exit_json(changed=False, **result)

    backup_dir = params['backup_dir']
    if not os.path.isdir(backup_dir):
        module.fail_json(msg='backup_dir %s is not a directory: point it at the directory of the artifacts' % backup_dir, changed=False)
    try:
        selection = _verification.newest_verified(backup_dir, params['database'], toc_runner=toc_runner)
    except OSError as exc:
        module.fail_json(msg='cannot list %s: %s' % (backup_dir, exc.strerror or exc), changed=False)
    rejected = [{'path': item['path'], 'problems': item['problems']} for item in selection['rejected']]
    if selection['selected'] is not None:
        module.exit_json(changed=False, rejected=rejected, **_public(selection['selected']))

    what = 'of database %s ' % params['database'] if params['database'] else ''
    if rejected:
        msg = 'no artifact %sin %s verifies: the newest, %s, has %s' % (what, backup_dir, rejected[0]['path'], rejected[0]['problems'][0])
    else:
        msg = 'no artifact %sin %s has a valid manifest: take a backup first' % (what, backup_dir)
    if params['fail_on_problems']:
        module.fail_json(msg=msg, changed=False, path=None, ok=False, problems=[msg], rejected=rejected)
    module.exit_json(changed=False, path=None, ok=False, problems=[msg], rejected=rejected)


if __name__ == '__main__':
    main()
