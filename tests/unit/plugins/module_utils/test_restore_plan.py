# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of _restore_plan: the safety-dump decision, the recovery text and the report of the restore role."""

from __future__ import annotations

import datetime
import shlex

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _restore_plan as rp

STARTED = '2026-12-01T18:30:00.250000Z'
NOW = datetime.datetime(2026, 12, 1, 18, 31, 2, 750000, tzinfo=datetime.timezone.utc)
ARTIFACT = '/var/backups/fleet-telemetry/backup_2026-12-01_06-00-00.sql.zst'
SAFETY = '/var/backups/fleet-telemetry/safety/safety_2026-12-01_18-30-05.sql.zst'
UP = {'msg': 'the database container is not running: start it', 'error_code': 'container_down', 'failed': False}


# --------------------------------------------------------------------------------------------
# The safety dump
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('policy', ['continue', 'stop', 'force'])
def test_reachable_database_is_always_dumped(policy):
    decision = rp.safety_decision({'changed': True, 'msg': 'would back up telemetry_db'}, ['p_db_data'], policy)
    assert decision['take'] is True and decision['reachable'] is True


@pytest.mark.parametrize('code', ['db_down', 'container_down'])
def test_unreachable_without_volume_goes_on_by_default(code):
    decision = rp.safety_decision(dict(UP, error_code=code), [], 'continue')
    assert decision == {'take': False, 'reachable': False, 'note': decision['note']}
    assert 'nothing to save' in decision['note']


def test_unreachable_with_volume_stops_by_default():
    with pytest.raises(rp.PlanError) as err:
        rp.safety_decision(UP, ['p_db_data'], 'continue')
    assert err.value.code == 'unreachable'
    assert 'p_db_data' in str(err.value) and 'restore_unreachable=force' in str(err.value) and 'nothing was changed' in str(err.value)


def test_unreachable_with_volume_and_force_goes_on_without_dump():
    decision = rp.safety_decision(UP, ['p_db_data'], 'force')
    assert decision['take'] is False and 'p_db_data' in decision['note']


@pytest.mark.parametrize('mount', ['bind mount /srv/pgdata', 'external volume shared_pg'])
def test_unreachable_with_data_on_a_mount_stops_unless_force(mount):
    """No named volume of the project, but the cluster is on a bind mount or an external volume: not "nothing to save"."""
    with pytest.raises(rp.PlanError) as err:
        rp.safety_decision(UP, [], 'continue', mounts=[mount])
    assert err.value.code == 'unreachable' and mount in str(err.value) and 'restore_unreachable=force' in str(err.value)
    decision = rp.safety_decision(UP, [], 'force', mounts=[mount])
    assert decision['take'] is False and mount in decision['note']
    with pytest.raises(rp.PlanError):
        rp.safety_decision(UP, [], 'stop', mounts=[mount])


def test_unreachable_and_stop_never_goes_on():
    with pytest.raises(rp.PlanError) as err:
        rp.safety_decision(UP, [], 'stop')
    assert err.value.code == 'unreachable' and 'restore_unreachable=stop' in str(err.value)


@pytest.mark.parametrize('code', ['auth_failed', 'no_database', 'no_role', 'no_project'])
def test_other_check_failures_are_settings_to_fix(code):
    with pytest.raises(rp.PlanError) as err:
        rp.safety_decision({'failed': True, 'error_code': code, 'msg': 'PostgreSQL rejected the password'}, [], 'force')
    assert err.value.code == 'safety_check_failed' and 'PostgreSQL rejected the password' in str(err.value)


def test_no_room_for_the_safety_dump_stops():
    with pytest.raises(rp.PlanError) as err:
        rp.safety_decision({'changed': True, 'free_space_problem': '/b/safety has 3 MiB free, 40 MiB needed'}, ['v'], 'force')
    assert err.value.code == 'disk_full' and '3 MiB free' in str(err.value)


def test_bad_policy():
    with pytest.raises(rp.PlanError) as err:
        rp.safety_decision({}, [], 'maybe')
    assert err.value.code == 'bad_option'


# --------------------------------------------------------------------------------------------
# Recovery
# --------------------------------------------------------------------------------------------

def test_restore_command_is_exact_and_quoted():
    command = rp.restore_command('/b/safety/safety 1.sql', inventory='/etc/ansible/prod inv.yml', playbook='playbooks/restore.yml',
                                 limit='db-1')
    assert shlex.split(command) == ['ansible-playbook', '-i', '/etc/ansible/prod inv.yml', 'playbooks/restore.yml', '-l', 'db-1',
                                    '-e', 'restore_artifact=/b/safety/safety 1.sql', '-e', 'restore_confirm=true',
                                    '-e', 'restore_unreachable=force']


def test_recovery_names_the_safety_dump_and_its_command():
    text = rp.recovery_text(True, SAFETY, ARTIFACT, inventory='inv.yml')
    assert SAFETY in text and rp.restore_command(SAFETY, 'inv.yml') in text and 'AWX' in text


def test_recovery_without_safety_dump_restores_the_artifact_again():
    text = rp.recovery_text(True, None, ARTIFACT)
    assert 'no safety dump' in text and rp.restore_command(ARTIFACT) in text


def test_no_recovery_before_anything_was_destroyed():
    assert rp.recovery_text(False, SAFETY, ARTIFACT) is None


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------

def results(**overrides):
    base = {
        'fetch': {'skipped': True},
        'artifact': {'path': ARTIFACT, 'size': 1000, 'sha256': 'ab' * 32, 'dump_format': 'plain', 'kind': 'artifact',
                     'manifest': {'started_at': '2026-12-01T06:00:00Z'}, 'changed': False},
        'preflight': {'msg': 'preflight passed', 'timings': {'total_seconds': 0.5}},
        'confirm': {'changed': False},
        'safety_check': {'changed': True, 'path': SAFETY},
        'safety_plan': {'take': True, 'note': 'the current database answers: a safety dump is taken'},
        'safety': {'path': SAFETY, 'sha256': 'cd' * 32, 'timings': {'total_seconds': 1.5}, 'finished': 1},
        'down': {'changed': True, 'volumes_removed': ['p_db_data']},
        'up_db': {'changed': True, 'ready_seconds': 4.0},
        'restore': {'changed': True, 'msg': 'restored and verified', 'timings': {'total_seconds': 30.0},
                    'tables': [{'table': 'photo', 'expected': 24, 'actual': 24, 'ok': True, 'source': 'manifest'},
                               {'table': 'audit_log', 'expected': 300, 'actual': 300, 'ok': True, 'source': 'manifest'}],
                    'photos': {'checked': 24, 'failed': 0, 'failures': [], 'total': 24, 'sample': 'all'}},
        'up_all': {'changed': True},
    }
    base.update(overrides)
    return base


def test_passed_report():
    report = rp.build_report(results(), STARTED, confirmed=True, database='telemetry_db', now=NOW, backup_dir='/b')
    data = report['data']
    assert report['status'] == data['status'] == 'passed'
    assert report['name'] == 'restore_2026-12-01_18-30-00'
    assert report['report_dir'] == '/b/reports' and report['history_path'] == '/b/reports/restore_history.jsonl'
    assert data['rto_seconds'] == 62.5
    assert data['rpo_seconds'] == 45000.25
    assert data['artifact']['path'] == ARTIFACT and data['artifact']['started_at'] == '2026-12-01T06:00:00Z'
    assert data['safety_dump'] == {'path': SAFETY, 'sha256': 'cd' * 32}
    assert data['photos'] == {'checked': 24, 'failed': 0, 'total': 24}
    # A local restore: every step but the download from offsite.
    assert [s['name'] for s in data['steps']] == [name for key, name in rp.STEPS if key != 'fetch']
    assert all(s['ok'] for s in data['steps'])
    assert report['recovery'] is None and 'recovery' not in data
    assert report['stats'] == {'fleet_dr_restore_status': 'passed', 'fleet_dr_restore_artifact': ARTIFACT,
                               'fleet_dr_restore_row_counts': {'photo': 24, 'audit_log': 300}, 'fleet_dr_restore_rto_seconds': 62.5,
                               'fleet_dr_restore_safety_dump': SAFETY}
    assert report['msg'].startswith('restored and verified telemetry_db from %s (photo=24, audit_log=300; 24 photo(s) decrypt)' % ARTIFACT)


def test_failure_before_down_says_nothing_was_changed():
    res = results(preflight={'failed': True, 'msg': 'encryption_key does not match', 'error_code': 'wrong_key'})
    for key in ('confirm', 'safety_check', 'safety_plan', 'safety', 'down', 'up_db', 'restore', 'up_all'):
        res[key] = {}
    report = rp.build_report(res, STARTED, failed_step=rp.find_failed_step(res), failed_msg='encryption_key does not match',
                             database='telemetry_db', now=NOW)
    assert report['status'] == 'failed' and report['destroyed'] is False
    assert report['msg'] == 'the restore failed at step "key preflight": encryption_key does not match. Nothing was changed: ' \
                            'the current database is untouched'
    assert report['recovery'] is None
    assert [(s['name'], s['ok']) for s in report['data']['steps']] == [('pick and verify the artifact', True), ('key preflight', False)]
    assert 'rto_seconds' not in report['data']


def test_refused_confirmation_is_the_failed_step():
    res = results(confirm={'failed': True, 'msg': 'restore_confirm is not set'})
    for key in ('safety_check', 'safety_plan', 'safety', 'down', 'up_db', 'restore', 'up_all'):
        res[key] = {}
    step = rp.find_failed_step(res, 'Refuse without explicit confirmation (restore_confirm)')
    assert step == 'confirm'
    report = rp.build_report(res, STARTED, failed_step=step, failed_msg='restore_confirm is not set', now=NOW)
    assert 'Nothing was changed' in report['msg'] and '"confirmation"' in report['msg']


def test_failure_after_down_gives_the_way_back():
    res = results(up_db={'failed': True, 'changed': True, 'error_code': 'not_ready', 'msg': 'not ready within 1 s'}, restore={'skipped': True},
                  up_all={})
    step = rp.find_failed_step(res)
    assert step == 'up_db'
    report = rp.build_report(res, STARTED, failed_step=step, failed_msg='not ready within 1 s', inventory='inv.yml', limit='h',
                             playbook='/c/playbooks/restore.yml', now=NOW)
    assert report['destroyed'] is True
    command = rp.restore_command(SAFETY, 'inv.yml', '/c/playbooks/restore.yml', 'h')
    assert command in report['recovery'] and report['data']['recovery'] == report['recovery']
    assert report['msg'].startswith('the restore failed at step "start the database": not ready within 1 s. The database was already '
                                    'removed: the database before this restore is saved in the safety dump %s' % SAFETY)
    assert report['data']['safety_dump']['path'] == SAFETY


def test_failed_restore_keeps_its_tables_in_the_report():
    failed = {'failed': True, 'changed': True, 'msg': 'restored, but the database does not verify', 'error_code': 'verify_failed',
              'tables': [{'table': 'photo', 'expected': 24, 'actual': 23, 'ok': False}], 'photos': {'checked': 23, 'failed': 0, 'total': 23}}
    res = results(restore=failed, up_all={})
    report = rp.build_report(res, STARTED, failed_step=rp.find_failed_step(res), failed_msg=failed['msg'], now=NOW)
    assert report['data']['tables'] == failed['tables'] and report['data']['failed_step'] == 'restore and verify'
    assert SAFETY in report['msg']


def test_failure_after_down_without_a_safety_dump():
    res = results(safety={'skipped': True}, safety_check=dict(UP), safety_plan={'take': False, 'note': 'nothing to save'},
                  restore={'failed': True, 'msg': 'restore_failed'}, up_all={})
    report = rp.build_report(res, STARTED, failed_step='restore', failed_msg='psql failed', now=NOW)
    assert 'no safety dump' in report['recovery'] and rp.restore_command(ARTIFACT) in report['recovery']
    assert 'safety_dump' not in report['data'] and report['data']['safety_note'] == 'nothing to save'


def test_only_starting_the_rest_failed():
    res = results(up_all={'failed': True, 'msg': 'compose up failed'})
    report = rp.build_report(res, STARTED, failed_step='up_all', failed_msg='compose up failed', target={'project_src': '/srv/t'}, now=NOW)
    assert 'The database was restored and verified' in report['recovery'] and report['msg'].endswith(report['recovery']) and '/srv/t' in report['recovery']


def test_check_mode_report_says_what_would_happen():
    res = results(confirm={'skipped': True}, safety={'skipped': True}, restore={'skipped': True})
    report = rp.build_report(res, STARTED, check_mode=True, confirmed=False, database='telemetry_db', now=NOW)
    assert report['status'] == 'passed' and report['destroyed'] is False
    assert report['msg'] == ('check mode: would restore %s into telemetry_db, after a safety dump of the current database; '
                             'a real run needs restore_confirm=true' % ARTIFACT)
    assert 'rto_seconds' not in report['data'] and 'safety_dump' not in report['data']


def test_unknown_failed_task():
    assert rp.find_failed_step({'artifact': {'changed': False}}, 'Note when the restore started') == 'Note when the restore started'
    assert rp.find_failed_step({}, None) is None


def test_runbook_artifact_has_no_rpo():
    res = results(artifact={'path': '/r/backup.sql', 'kind': 'runbook', 'manifest': None})
    assert 'rpo_seconds' not in rp.build_report(res, STARTED, now=NOW)['data']


def test_configured_report_dir_and_no_history():
    report = rp.build_report(results(), STARTED, now=NOW, backup_dir='/b', configured_report_dir='/r', history=False)
    assert report['report_dir'] == '/r' and report['history_path'] is None


# --------------------------------------------------------------------------------------------
# Other services' volumes and orphan containers that down -v removes (review finding 6)
# --------------------------------------------------------------------------------------------

def test_other_volumes_are_refused_unless_allowed():
    assert rp.other_volumes_problem([], False, []) is None
    with pytest.raises(rp.PlanError) as err:
        rp.other_volumes_problem(['p_uploads'], False, ['p_old_worker_1'])
    message = str(err.value)
    assert err.value.code == 'other_volumes'
    assert 'p_uploads' in message and 'p_old_worker_1' in message and 'restore_remove_other_volumes=true' in message
    assert message.endswith('nothing was changed')
    allowed = rp.other_volumes_problem(['p_uploads'], True, [])
    assert 'p_uploads' in allowed and 'no safety dump saves' in allowed


def test_orphans_alone_are_named_not_refused():
    text = rp.other_volumes_problem([], False, ['p_old_worker_1'])
    assert 'p_old_worker_1' in text and '--remove-orphans' in text


def test_report_names_what_else_was_removed():
    results = {'safety_plan': {'take': True, 'note': 'n', 'also_removed': 'down -v also removes volume(s) p_uploads of other services'}}
    report = rp.build_report(results, '2026-12-01T10:00:00Z', now=rp.parse_timestamp('2026-12-01T10:01:00Z'))
    assert report['data']['also_removed'].endswith('p_uploads of other services')


@pytest.mark.parametrize('key, result, seconds', [
    ('restore', {'timings': {'total_seconds': 12.5}, 'started_at': '2026-12-01T00:00:00Z', 'finished_at': '2026-12-01T00:01:00Z'}, 12.5),
    ('up_db', {'ready_seconds': 3.0, 'started_at': '2026-12-01T00:00:00Z', 'finished_at': '2026-12-01T00:00:09Z'}, 3.0),
    ('down', {'started_at': '2026-12-01T00:00:00.250000Z', 'finished_at': '2026-12-01T00:00:02.000000Z'}, 1.75),
    ('artifact', {'msg': 'no times'}, None),
    ('down', {'skipped': True, 'started_at': '2026-12-01T00:00:00Z', 'finished_at': '2026-12-01T00:00:02Z'}, None),
])
def test_a_step_s_seconds_come_from_its_module_s_own_times(key, result, seconds):
    assert rp.step_seconds(key, result) == seconds


def test_every_step_of_the_report_has_a_registered_variable():
    assert sorted(rp.REGISTERED) == sorted(rp.RESULT_KEYS)


def test_report_names_the_offsite_source():
    fetched = {'changed': True, 'target': 's3://b/p/', 'location': 's3://b/p/backup.sql.zst', 'path': ARTIFACT,
               'started_at': '2026-12-01T07:00:00Z', 'finished_at': '2026-12-01T07:00:03Z'}
    report = rp.build_report(results(fetch=fetched), STARTED)
    assert report['data']['source'] == {'target': 's3://b/p/', 'location': 's3://b/p/backup.sql.zst'}
    assert report['data']['steps'][0] == {'name': 'download from offsite', 'ok': True, 'seconds': 3.0, 'msg': None}


def test_report_of_a_local_restore_has_no_source():
    assert 'source' not in rp.build_report(results(), STARTED)['data']


def test_secret_sources_name_the_vault_without_a_secret_looking_key():
    from ansible_collections.fleet_telemetry.dr.plugins.module_utils._report import secret_keys
    result = {'key_source': {'from': 'secrets_manager', 'secret_id': 'fleet/prod/key', 'version_id': 'v2',
                             'stages': ['AWSPREVIOUS'], 'fingerprint': 'v1:abcdef0123456789', 'tried': [{'version_id': 'v3'}]},
              'identity_source': {'from': 'file', 'path': '/root/id.txt', 'recipients': ['sha256:0123456789abcdef']}}
    sources = rp.secret_sources(result)
    assert sources == {'key_source': {'from': 'secrets_manager', 'vault': 'fleet/prod/key', 'version_id': 'v2',
                                      'stages': ['AWSPREVIOUS'], 'fingerprint': 'v1:abcdef0123456789'},
                       'identity_source': {'from': 'file', 'path': '/root/id.txt', 'recipients': ['sha256:0123456789abcdef']}}
    assert secret_keys(sources) == []


def test_secret_sources_of_a_step_that_did_not_run_are_empty():
    assert rp.secret_sources({'skipped': True, 'key_source': {'from': 'option'}}) == {}
    assert rp.secret_sources(None) == {}
