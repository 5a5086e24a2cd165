# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import (
    _artifact, _atomic, _compose_commands, _drill, _errors, _lock, _manifest, _photo_crypto, _report, _restore_plan, _results, _transport)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition import errors as _rekognition
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._restore import errors as _restore


@pytest.mark.parametrize('error, code', [
    (_artifact.ArtifactError('x'), 'artifact_error'),
    (_atomic.NoSpaceError('x'), 'disk_full'),
    (_manifest.ManifestMissingError('x'), 'artifact_error'),
    (_lock.LockError('x'), 'lock_error'),
    (_lock.LockHeldError('x', {'pid': 1}, '/b/.l.lock'), 'lock_held'),
    (_photo_crypto.KeyFormatError('x'), 'bad_key'),
    (_photo_crypto.DecryptError('x', 'authentication_failed'), 'bad_key'),
    (_transport.TransportError('x'), 'error'),
    (_compose_commands.ComposeError('x'), 'compose_failed'),
    (_drill.DrillError('x', code='not_isolated'), 'not_isolated'),
    (_restore.RestoreError('x', code='wrong_key'), 'wrong_key'),
    (_rekognition.ReindexError('x', code='aws_auth'), 'aws_auth'),
    (_report.ReportError('x'), 'report_failed'),
    (_restore_plan.PlanError('x'), 'refused'),
])
def test_every_error_a_module_reports_derives_from_one_base_and_carries_its_code(error, code):
    assert isinstance(error, _errors.FleetDrError)
    result = error.to_result()
    assert result['msg'] == 'x' and result['error_code'] == code


def test_a_result_holds_what_the_run_found_then_the_details_then_the_sentence():
    error = _transport.TransportError('psql failed', code='db_down', rc=2, stderr='boom', cmd=['psql'], host='h')
    error.partial = {'timings': {'dump_seconds': 1.5}, 'msg': 'overwritten'}
    assert error.to_result() == {'timings': {'dump_seconds': 1.5}, 'host': 'h', 'msg': 'psql failed', 'error_code': 'db_down',
                                 'rc': 2, 'stderr': 'boom', 'cmd': ['psql']}


def test_a_held_lock_names_its_holder_and_file():
    result = _lock.LockHeldError('another backup is running', {'pid': 7}, '/b/.backup-db.lock').to_result()
    assert result == {'holder': {'pid': 7}, 'path': '/b/.backup-db.lock', 'msg': 'another backup is running', 'error_code': 'lock_held'}


class _Module(object):
    def fail_json(self, **result):
        self.result = result


def test_fail_with_reports_no_change_unless_the_error_says_so():
    module = _Module()
    _results.fail_with(module, _restore_plan.PlanError('no'), path='/x')
    assert module.result == {'changed': False, 'msg': 'no', 'error_code': 'refused', 'path': '/x'}
    _results.fail_with(module, _restore.RestoreError('half restored', changed=True))
    assert module.result['changed'] is True and module.result['mismatches'] == []


class _Recorder(object):
    def exit_json(self, **result):
        self.exited = result

    def fail_json(self, msg, **result):
        self.failed = dict(result, msg=msg)


def test_a_timed_module_reports_when_its_step_started_and_ended():
    ticks = iter([1796083200.25, 1796083201.5, 1796083202.75])
    module = _results.timed(_Recorder(), clock=lambda: next(ticks))
    module.exit_json(changed=True)
    assert module.exited == {'changed': True, 'started_at': '2026-12-01T00:00:00.250000Z', 'finished_at': '2026-12-01T00:00:01.500000Z'}
    _results.fail_with(module, _lock.LockError('no'))
    assert module.failed['started_at'] == '2026-12-01T00:00:00.250000Z'
    assert module.failed['finished_at'] == '2026-12-01T00:00:02.750000Z' and module.failed['error_code'] == 'lock_error'
