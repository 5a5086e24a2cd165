# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""pg_restore_verify preflight_scan: a plain dump whose counts differ from its manifest is refused in the preflight."""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.tests.unit.plugins.modules.test_pg_restore_verify import (  # pylint: disable=unused-import
    _photos,
    database,
    direct,
    make_dump,
    module_exits,
    publish,
    run_module,
)


def test_counts_altered_in_the_manifest_pass_without_the_scan(tmp_path, database):
    path = publish(tmp_path, make_dump(_photos(4)), row_counts={'photo': 5, 'audit_log': 3})
    outcome, result = run_module(direct(artifact=path, preflight_only=True))
    assert outcome == 'exit', result


def test_counts_altered_in_the_manifest_are_refused_with_the_scan(tmp_path, database):
    path = publish(tmp_path, make_dump(_photos(4)), row_counts={'photo': 5, 'audit_log': 3})
    outcome, result = run_module(direct(artifact=path, preflight_only=True, preflight_scan=True))
    assert outcome == 'fail' and result['error_code'] == 'dump_incomplete', result
    assert 'the dump holds 4 rows of photo, the manifest says 5' in result['msg']
    assert [m['table'] for m in result['mismatches'] if m['kind'] == 'row_count'] == ['photo']
    assert database.instances == []


def test_whole_dump_passes_the_scan(tmp_path, database):
    path = publish(tmp_path, make_dump(_photos(4)))
    outcome, result = run_module(direct(artifact=path, preflight_only=True, preflight_scan=True))
    assert outcome == 'exit', result
    assert result['expected_counts'] == {'photo': 4, 'audit_log': 3}
