# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Neither the database password nor ENCRYPTION_KEY leaks: not in -vvvv output, manifests, async job files or argv."""

from __future__ import annotations

import json
import os


def leaked(text, forms):
    return [form for form in forms if form in text]


def test_the_verbose_run_succeeds(verbose_secret_run):
    """The run being scanned is a real, complete backup (with the key proven), not an early failure."""
    run = verbose_secret_run
    assert run.rc == 0, run.output[-6000:]
    assert 'backup of telemetry_db written to %s/backup_' % run.backup_dir in run.output
    assert run.notes['jobs'], 'no async job id in the output'


def test_no_secret_in_the_vvvv_output(verbose_secret_run):
    run = verbose_secret_run
    assert len(run.output) > 10000, 'suspiciously short -vvvv output'
    assert leaked(run.output, run.notes['forms']) == []


def test_no_secret_in_the_manifest(verbose_secret_run):
    run = verbose_secret_run
    manifests = [name for name in os.listdir(run.backup_dir) if name.endswith('.manifest.json')]
    assert len(manifests) == 1, os.listdir(run.backup_dir)
    with open(os.path.join(run.backup_dir, manifests[0])) as fileobj:
        text = fileobj.read()
    manifest = json.loads(text)
    assert manifest['key_fingerprint'], 'the key fingerprint must be recorded'
    assert manifest['transport']['transport'] == 'direct'
    assert leaked(text, run.notes['forms']) == []


def test_no_secret_in_the_async_job_files(verbose_secret_run):
    """The async job's status file, read again and again while the job ran, never held a secret, and the role
    removed it afterwards; nothing else written under ~/.ansible_async during the run holds one either."""
    run = verbose_secret_run
    scanner = run.notes['scanner']
    assert run.notes['jobs'], 'no async job id in the output'
    assert set(run.notes['jobs']) <= scanner.files_seen, 'the job files %s were never seen in ~/.ansible_async' % run.notes['jobs']
    assert sorted(scanner.file_leaks) == []
    assert [path for path in run.notes['async_files'] if os.path.basename(path) in run.notes['jobs']] == [], 'job file not removed'
    for path in run.notes['async_files']:
        with open(path, 'rb') as fileobj:
            text = fileobj.read().decode('utf-8', 'replace')
        assert leaked(text, run.notes['forms']) == [], path


def test_no_secret_in_any_process_argv(verbose_secret_run):
    """/proc/*/cmdline of every process, scanned while the dump ran: pg_dump was seen, the secrets never."""
    scanner = verbose_secret_run.notes['scanner']
    assert scanner.seen, 'the scan never saw the dump running (%d scans): it proves nothing' % scanner.scans
    assert scanner.leaks == []
