#!/usr/bin/python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dr_report
short_description: Write the report of a restore or a DR drill as JSON, Markdown and JUnit XML, with a history and its trend
version_added: 0.1.0
description:
  - Writes the report O(data) of a restore or a DR drill to O(report_dir) as C(<name>.json), C(<name>.md) and C(<name>.xml)
    (JUnit XML, one C(testcase) per step of O(data) C(steps), a C(failure) element for each step that is not ok), each written
    atomically (temporary file, fsync, rename) with mode 0600.
  - With O(history), appends the report's summary row (date, status, RTO, RPO, artifact, size, sha256, row counts, photos) to
    a JSON-lines file, atomically and under a lock, and returns the trend over the last O(trend_size) rows, which the
    Markdown report shows as a table plus sparklines of RTO and size.
  - A row of the same O(name) already in the history is replaced, not added twice; files that already hold exactly the
    report are not rewritten, so a second run with the same arguments changes nothing.
  - Writes only what O(data) holds. Keys that look like secrets (C(password), C(secret), C(token), C(encryption_key)...)
    are refused with RV(error_code=secret_in_data).
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - fleet_telemetry.dr._attributes
attributes:
  check_mode:
    support: full
    details:
      - Renders the report and reads the history, reports RV(changed) and the trend as they would be, and writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - The same O(name) and O(data) give the same files and the same history row; RV(changed) is then V(false).
  platform:
    platforms: posix
options:
  report_dir:
    description:
      - Directory of the report files. Created with mode 0700 (and its parents) when missing.
    type: path
    required: true
  name:
    description:
      - Base name of the report files, for example C(drill_2026-12-01_18-30-00); the files are C(<report_dir>/<name>.json),
        C(.md) and C(.xml).
      - Also the key of the report's row in O(history).
      - A plain file name without C(/) and without a leading dot.
    type: str
    required: true
  kind:
    description:
      - What the report is about; sets the title and the wording.
    type: str
    choices: [restore, drill]
    default: drill
  data:
    description:
      - The report content. Only C(status) (V(passed) or V(failed)) is required; every other key is optional.
      - "Keys used: C(status), C(failed_step), C(msg) (one sentence), C(started_at) and C(finished_at) (ISO 8601 UTC),
        C(rto_seconds), C(rpo_seconds), C(artifact) (C(path), C(size), C(sha256), C(dump_format), C(started_at)),
        C(database), C(target) (for example C(project_name), C(port)), C(tables) (a list of C(table), C(expected), C(actual),
        C(ok), as M(fleet_telemetry.dr.pg_restore_verify) returns them), C(photos) (C(checked), C(failed), C(total)),
        C(steps) (a list of C(name), C(ok), C(seconds), C(msg)), and for restores C(safety_dump) (C(path), C(sha256)) and
        C(recovery) (how to get back)."
      - The JSON report holds all of O(data), including keys not listed here.
    type: dict
    required: true
  formats:
    description:
      - Which files to write.
    type: list
    elements: str
    choices: [json, markdown, junit]
    default: [json, markdown, junit]
  history:
    description:
      - JSON-lines file of the summary rows of earlier reports. Created (with its directory, mode 0700) when missing.
      - When not set, no history is kept and RV(trend) is empty.
    type: path
  trend_size:
    description:
      - How many of the newest history rows (this report's included) RV(trend) and the Markdown report show.
    type: int
    default: 10
notes:
  - A history is rewritten whole on each update (it holds one short line per report); lines that are not JSON objects are
    dropped then and counted in RV(history_skipped_lines).
seealso:
  - module: fleet_telemetry.dr.pg_restore_verify
"""

EXAMPLES = r"""
- name: Write the drill report and append it to the drill history
  fleet_telemetry.dr.dr_report:
    report_dir: /var/backups/fleet-telemetry/reports
    name: drill_2026-12-01_18-30-00
    kind: drill
    history: /var/backups/fleet-telemetry/reports/drill_history.jsonl
    data:
      status: passed
      msg: restored and verified telemetry_db in a scratch stack
      started_at: "2026-12-01T18:30:00Z"
      finished_at: "2026-12-01T18:31:02Z"
      rto_seconds: 62.1
      rpo_seconds: 45030
      artifact: {path: /var/backups/fleet-telemetry/backup_2026-12-01_06-00-00.sql.zst, size: 17825792}
      tables: "{{ restored.tables }}"
      photos: "{{ restored.photos }}"
      steps:
        - {name: restore, ok: true, seconds: 41.2}
        - {name: verify, ok: true, seconds: 6.3}
  register: report

- name: Show where the report is
  ansible.builtin.debug:
    msg: "{{ report.summary }}; report {{ report.markdown_path }}"
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
  description: V(true) when a file was (in check mode, would be) written or the history changed.
  returned: always
  type: bool
msg:
  description: One sentence; on failure the cause and what to change.
  returned: always
  type: str
error_code:
  description: Stable code of a failure, V(bad_option), V(bad_data), V(secret_in_data), V(bad_destination), V(write_failed) or
    V(history_failed).
  returned: failure
  type: str
  sample: secret_in_data
status:
  description: The report's status, V(passed) or V(failed).
  returned: success
  type: str
json_path:
  description: The JSON report, or V(null) when not among O(formats).
  returned: success
  type: str
  sample: /var/backups/fleet-telemetry/reports/drill_2026-12-01_18-30-00.json
markdown_path:
  description: The Markdown report, or V(null) when not among O(formats).
  returned: success
  type: str
  sample: /var/backups/fleet-telemetry/reports/drill_2026-12-01_18-30-00.md
junit_path:
  description: The JUnit XML report, or V(null) when not among O(formats).
  returned: success
  type: str
  sample: /var/backups/fleet-telemetry/reports/drill_2026-12-01_18-30-00.xml
history_path:
  description: The history file, or V(null) without O(history).
  returned: success
  type: str
history_skipped_lines:
  description: Lines of the history that were not JSON objects (and are dropped when it is rewritten).
  returned: success
  type: int
  sample: 0
written:
  description: The files written (in check mode, that would be written) by this run.
  returned: success
  type: list
  elements: str
trend:
  description:
    - The last O(trend_size) history rows, oldest first, this report's included. Empty without O(history).
    - Each row has C(name), C(kind), C(status), C(failed_step), C(started_at), C(finished_at), C(rto_seconds), C(rpo_seconds),
      C(database), C(target), C(artifact) (base name), C(size), C(sha256), C(counts) (table to actual rows), C(photos_checked)
      and C(photos_failed).
  returned: success
  type: list
  elements: dict
  sample:
    - {name: drill_2026-12-01_18-30-00, status: passed, rto_seconds: 62.1, rpo_seconds: 45030, size: 17825792,
       counts: {audit_log: 300, photo: 24}, photos_checked: 24, photos_failed: 0}
summary:
  description: The report in one line.
  returned: success
  type: str
  sample: "drill drill_2026-12-01_18-30-00 passed: telemetry_db from backup_2026-12-01_06-00-00.sql.zst (17.0 MiB), RTO 1 min 2 s, ..."
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._report import FORMATS, KINDS, write_report
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._results import fail_with, timed


def argument_spec():
    return dict(
        report_dir=dict(type='path', required=True),
        name=dict(type='str', required=True),
        kind=dict(type='str', choices=list(KINDS), default='drill'),
        data=dict(type='dict', required=True),
        formats=dict(type='list', elements='str', choices=list(FORMATS), default=list(FORMATS)),
        history=dict(type='path'),
        trend_size=dict(type='int', default=10),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    timed(module)
    params = module.params
    try:
        result = write_report(params['report_dir'], params['name'], params['kind'], params['data'], formats=params['formats'],
                              history=params['history'], trend_size=params['trend_size'], check_mode=module.check_mode)
    except FleetDrError as exc:
        fail_with(module, exc)
    where = result['markdown_path'] or result['json_path'] or result['junit_path']
    result['msg'] = '%s; report %s' % (result['summary'], where)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
