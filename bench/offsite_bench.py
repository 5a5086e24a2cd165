#!/usr/bin/env python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Offsite copy benchmark: the offsite_copy module against a plain boto3 ``upload_file`` to the same S3 endpoint.

S3 is moto in server mode on loopback (tests/support/moto_server.py), started by the bench. For each scale (1 = about
1.5 GB, like the backup's dataset) it writes an artifact of incompressible bytes with a valid manifest (built with the
collection's ``build_manifest``/``write_manifest``; kept under ``<workdir>/offsite`` with ``--keep`` and reused when its
size matches), then times, alternating the order from one repetition to the next, ``--repeat`` times:

* upload_file: ``boto3`` ``client.upload_file`` of the same file to the same endpoint and bucket, with the default
  ``TransferConfig`` (8 MiB parts, 10 threads), in a Python subprocess of its own; the upload alone is timed inside it;
* offsite_copy: ``ansible localhost -m fleet_telemetry.dr.offsite_copy`` with its defaults (8 MiB parts, 6 threads;
  ``--variants`` adds other ``part_size_mb``/``concurrency`` settings). Its own ``upload_seconds`` (the multipart upload,
  with the local SHA-256 of the file and of every part) and ``verify_seconds`` (the read-back and its SHA-256) come from
  the module's result; the wall time includes ansible.

Every run gets a fresh moto server (moto keeps each object and its parts in memory or spooled temp files; a
restart frees them) and reads the file once untimed before it, so every run starts with the file in the page cache.
Memory is the peak sum of PSS of the measured process tree (benchlib.measure): for the module, its AnsiballZ process
and what it runs (without ansible's controller and worker); for upload_file, its Python process. The CPU time of
the measured tree and of the moto server over each run tells who was busy. AWS credentials reach both through the
environment, never through argv.

It prints medians and the ratios, whether each target of the offsite issue is met (throughput >= 0.9x upload_file's,
module-side memory <= 100 MiB and flat from 1x to 4x), and writes the same report to ``<workdir>/offsite/report.md``
(and the raw figures beside it, ``results.json``). Run it with ``bash bench/run.sh offsite [--scales 1,4] [--repeat 3]``.
"""

import argparse
import datetime
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import benchlib
from benchlib import MIB, measure

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._artifact import artifact_name, manifest_path
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._manifest import build_manifest, write_manifest
from ansible_collections.fleet_telemetry.dr.tests.support import moto_server as moto_support

UPLOAD_FILE = 'upload_file'
MODULE = 'offsite_copy'
MODULE_NAME = 'fleet_telemetry.dr.offsite_copy'
# The module's process as benchlib names it: ``sh -c '<python> .../AnsiballZ_offsite_copy.py'`` and its python.
MODULE_PROCESS = 'AnsiballZ_offsite_copy'
BUCKET = 'fleet-dr-bench'
PREFIX = 'bench/'
CHUNK = 16 * MIB
THROUGHPUT_TARGET = 0.9
PEAK_TARGET_MIB = 100
FLAT_TARGET = 1.1
TICKS = os.sysconf('SC_CLK_TCK')
# What a run needs besides the artifact: moto spools every part and then the completed object to its temp directory
# (2x the artifact on disk), and builds the object in memory while it completes the upload (a bytearray of the whole
# object and a bytes copy of it; a GET reads the whole object into memory again): its RSS peaked at 3.9 GB at 1x and
# 13.4 GB at 4x (6 GB), so 2.4x the artifact and a margin.
MOTO_DISK_FACTOR = 2.0
MOTO_RAM_FACTOR = 2.4
MARGIN = 2 * 2 ** 30


# ----------------------------------------------------------------------------------------------
# The artifact
# ----------------------------------------------------------------------------------------------

def artifact_size(scale):
    return int(scale * benchlib.MB_PER_SCALE * 1000 * 1000)


def artifact_dir(workdir, scale):
    return os.path.join(workdir, 'offsite', '%dx' % scale)


def kept_artifact(directory):
    """``(path, manifest)`` of the artifact kept in ``directory``, or None."""
    if not os.path.isdir(directory):
        return None
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.startswith('backup_') and not name.endswith('.manifest.json') and os.path.isfile(manifest_path(path)):
            with open(manifest_path(path)) as handle:
                return path, json.load(handle)
    return None


def make_artifact(workdir, scale):
    """The artifact of ``scale`` (reused when a kept one has the right size): ``(path, size, sha256)``."""
    directory = artifact_dir(workdir, scale)
    size = artifact_size(scale)
    kept = kept_artifact(directory)
    if kept and kept[1].get('size') == size and os.path.getsize(kept[0]) == size:
        benchlib.log('scale %dx: reusing %s (%.2f GB)' % (scale, kept[0], size / 1e9))
        return kept[0], size, kept[1]['sha256']
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    started_at = datetime.datetime(2026, 12, 1, 3, 0, scale, tzinfo=datetime.timezone.utc)
    name = artifact_name(started_at, 'custom', 'none')
    path = os.path.join(directory, name)
    benchlib.log('scale %dx: writing %s, %.2f GB of random bytes' % (scale, path, size / 1e9))
    began = time.monotonic()
    digest, left = hashlib.sha256(), size
    with open(path, 'wb') as handle:
        while left:
            data = os.urandom(min(CHUNK, left))
            digest.update(data)
            handle.write(data)
            left -= len(data)
    manifest = build_manifest(
        collection_version='0.2.0', file=name, dump_format='custom', compression='none', size=size, sha256=digest.hexdigest(),
        database='telemetry_db', server_version='15.8', pg_dump_version='15.8', started_at=started_at,
        finished_at=started_at + datetime.timedelta(seconds=30), row_counts={'photo': 1}, transport='compose',
        source={'bench': 'offsite_bench.py: random bytes, not a dump'})
    write_manifest(path, manifest)
    benchlib.sync()
    benchlib.log('scale %dx: written in %.0f s' % (scale, time.monotonic() - began))
    return path, size, manifest['sha256']


def warm(path):
    """Read the file once (untimed): every run starts with it in the page cache."""
    with open(path, 'rb', buffering=0) as handle:
        while handle.read(CHUNK):
            pass


# ----------------------------------------------------------------------------------------------
# Room on the machine
# ----------------------------------------------------------------------------------------------

def mem_available():
    with open('/proc/meminfo') as handle:
        for line in handle:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024
    return 0


def df_lines(paths):
    return subprocess.run(['df', '-h'] + paths, capture_output=True, text=True, check=False).stdout.strip()


def room_for(workdir, scale):
    """None when a run of ``scale`` fits on disk and in memory, else why not (one sentence)."""
    size = artifact_size(scale)
    kept = kept_artifact(artifact_dir(workdir, scale))
    artifact_needed = 0 if kept and kept[1].get('size') == size else size
    tmp = tempfile.gettempdir()
    needs = {}   # filesystem -> bytes
    for path, need in ((workdir, artifact_needed), (tmp, int(size * MOTO_DISK_FACTOR))):
        dev = os.stat(path).st_dev
        needs.setdefault(dev, [path, 0])[1] += need
    for dev, (path, need) in needs.items():
        free = shutil.disk_usage(path).free
        if free < need + MARGIN:
            return ('%dx does not fit on disk: it needs %.1f GB on the filesystem of %s (the artifact and moto\'s spooled parts '
                    'and object) and %.1f GB is free' % (scale, (need + MARGIN) / 1e9, path, free / 1e9))
    ram = int(size * MOTO_RAM_FACTOR) + MARGIN
    if mem_available() < ram:
        return ('%dx does not fit in memory: moto needs about %.1f GB to complete the upload and %.1f GB is available'
                % (scale, ram / 1e9, mem_available() / 1e9))
    return None


# ----------------------------------------------------------------------------------------------
# moto
# ----------------------------------------------------------------------------------------------

def proc_cpu(pid):
    """``(utime, stime)`` of a running process, in seconds (zeros when it is gone)."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            fields = handle.read().rsplit(')', 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def proc_rss(pid):
    try:
        with open('/proc/%d/status' % pid) as handle:
            for line in handle:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Watch(object):
    """Samples the moto server's RSS, the machine's MemAvailable and the free space of moto's temp directory."""

    def __init__(self, pid, interval=0.5):
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.min_available = mem_available()
        self.min_tmp_free = shutil.disk_usage(tempfile.gettempdir()).free
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._done.is_set():
            self.peak_rss = max(self.peak_rss, proc_rss(self.pid))
            self.min_available = min(self.min_available, mem_available())
            self.min_tmp_free = min(self.min_tmp_free, shutil.disk_usage(tempfile.gettempdir()).free)
            self._done.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._done.set()
        self._thread.join()


def fresh_moto():
    """A started moto server with the bench's bucket."""
    server = moto_support.start_moto_server()
    server.client('s3').create_bucket(Bucket=BUCKET)
    return server


def aws_env():
    return dict(os.environ, AWS_ACCESS_KEY_ID=moto_support.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=moto_support.SECRET_KEY,
                AWS_DEFAULT_REGION=moto_support.REGION)


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ----------------------------------------------------------------------------------------------
# Procedures
# ----------------------------------------------------------------------------------------------

# The upload_file procedure, in a Python process of its own that imports boto3 alone: prints the seconds of the
# upload_file call (the client is made before the clock starts, as the module's upload_seconds leaves out its own).
UPLOAD_FILE_CODE = """
import json, sys, time
import boto3
path, bucket, key, url = sys.argv[1:5]
client = boto3.session.Session().client('s3', endpoint_url=url)
started = time.monotonic()
client.upload_file(path, bucket, key)
print(json.dumps({'seconds': time.monotonic() - started}))
"""


def upload_file_argv(path, key, url):
    return [sys.executable, '-c', UPLOAD_FILE_CODE, path, BUCKET, key, url]


def module_argv(path, url, options, vars_file):
    target = {'kind': 's3', 'bucket': BUCKET, 'prefix': PREFIX, 'endpoint_url': url}
    target.update(options)
    return benchlib.ansible_module_argv(MODULE_NAME, json.dumps({'path': path, 'target': target}), vars_file)


def parse_options(text):
    """``part_size_mb=16,concurrency=4`` -> {'part_size_mb': 16, 'concurrency': 4}."""
    options = {}
    for item in text.split(','):
        if item.strip():
            key, value = item.split('=', 1)
            options[key.strip()] = int(value)
    return options


def procedure_name(options):
    if not options:
        return MODULE
    return '%s (%s)' % (MODULE, ', '.join('%s=%s' % kv for kv in sorted(options.items())))


def run_once(name, options, path, size, sha256, vars_file):
    """One timed run of one procedure against a fresh moto server; returns its figures."""
    server = fresh_moto()
    try:
        key = PREFIX + os.path.basename(path)
        warm(path)
        moto_cpu = proc_cpu(server.process.pid)
        cpu = children_cpu()
        with Watch(server.process.pid) as watch:
            if name == UPLOAD_FILE:
                run = measure(upload_file_argv(path, key, server.url), env=aws_env(), subtree=None)
            else:
                run = measure(module_argv(path, server.url, options, vars_file), env=aws_env(), subtree=MODULE_PROCESS)
        figures = {'wall': run['wall'], 'peak': run['peak'], 'peak_module': run['peak_subtree'],
                   'breakdown': benchlib.describe_breakdown(run['breakdown']), 'cpu': children_cpu() - cpu,
                   'moto_user': proc_cpu(server.process.pid)[0] - moto_cpu[0], 'moto_sys': proc_cpu(server.process.pid)[1] - moto_cpu[1],
                   'moto_peak_rss': watch.peak_rss,
                   'min_available': watch.min_available, 'min_tmp_free': watch.min_tmp_free}
        if name == UPLOAD_FILE:
            figures['upload'] = json.loads(run['stdout'].strip().splitlines()[-1])['seconds']
            figures['peak_module'] = run['peak']
            head = server.client('s3').head_object(Bucket=BUCKET, Key=key)
            if head['ContentLength'] != size:
                raise benchlib.CommandFailed('upload_file stored %d bytes, not %d' % (head['ContentLength'], size))
        else:
            copy = benchlib.module_result(run['stdout'])['copy']
            if copy['status'] != 'copied' or copy['sha256'] != sha256 or not copy['verified']:
                raise benchlib.CommandFailed('offsite_copy did not copy and verify: %s' % (copy,))
            figures['upload'] = copy['upload_seconds']
            figures['verify'] = copy['verify_seconds']
        return figures
    finally:
        server.stop()


def run_scale(scale, args, procedures):
    path, size, sha256 = make_artifact(args.workdir, scale)
    vars_file = benchlib.secret_vars_file(artifact_dir(args.workdir, scale), 'offsite-vars', {})
    runs = dict((name, []) for name, dummy in procedures)
    loads = [benchlib.load_line()]
    code = code_line()
    try:
        for rep in range(args.repeat):
            order = procedures if rep % 2 == 0 else list(reversed(procedures))
            for name, options in order:
                benchlib.log('scale %dx, run %d/%d: %s' % (scale, rep + 1, args.repeat, name))
                figures = run_once(name, options, path, size, sha256, vars_file)
                benchlib.log('  upload %.1f s, wall %.1f s, peak %.0f MiB (module side %.0f), cpu %.1f s, moto cpu %.1f user + %.1f sys, '
                             'moto rss %.1f GB' % (figures['upload'], figures['wall'], figures['peak'] / MIB, figures['peak_module'] / MIB,
                                                   figures['cpu'], figures['moto_user'], figures['moto_sys'], figures['moto_peak_rss'] / 1e9))
                runs[name].append(figures)
        loads.append(benchlib.load_line())
    finally:
        os.unlink(vars_file)
        if not args.keep:
            shutil.rmtree(artifact_dir(args.workdir, scale), ignore_errors=True)
    if code_line() != code:
        code += '; CHANGED DURING THE RUN, to: %s' % code_line()
    return {'size': size, 'runs': runs, 'loads': loads, 'code': code}


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------

def code_line():
    """Which code of the module was measured: the commit, the files of the module that differ from it, and a digest
    of those files as they were (the figures change with the module's code)."""
    files = ['plugins/modules/offsite_copy.py'] + sorted(
        os.path.join('plugins/module_utils/_offsite', name)
        for name in os.listdir(os.path.join(benchlib.REPO, 'plugins', 'module_utils', '_offsite')) if name.endswith('.py'))
    digest = hashlib.sha256()
    for name in files:
        with open(os.path.join(benchlib.REPO, name), 'rb') as handle:
            digest.update(name.encode() + b'\0' + handle.read())

    def git(*argv):
        return subprocess.run(['git', '-C', benchlib.REPO] + list(argv), capture_output=True, text=True, check=False).stdout.strip()
    changed = git('status', '--porcelain', '--', *files).splitlines()
    return 'commit %s%s; sha256 of the module and _offsite/*.py: %s' % (
        git('rev-parse', '--short', 'HEAD') or '?',
        ' with uncommitted changes to %s' % ', '.join(os.path.basename(line[3:]) for line in changed) if changed else '',
        digest.hexdigest()[:12])


def med(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def scale_report(scale, measured, command):
    size = measured['size']
    runs = measured['runs']
    base = med(runs[UPLOAD_FILE], 'upload')
    base_wall = med(runs[UPLOAD_FILE], 'wall')
    lines = ['### Offsite copy, scale %dx (%.2f GB artifact), medians of %d runs' % (scale, size / 1e9, len(runs[UPLOAD_FILE])), '',
             'Load: %s' % ' / '.join(measured['loads']), '', 'Command: `%s`' % command, '', 'Module code: %s' % measured['code'], '']
    rows = []
    for name, name_runs in runs.items():
        upload, wall, verify = med(name_runs, 'upload'), med(name_runs, 'wall'), med(name_runs, 'verify')
        rows.append([name, '%.1f' % upload, '%.0f' % (size / 1e6 / upload), '%.2fx' % (base / upload),
                     '%.1f' % verify if verify is not None else '', '%.1f' % wall, '%.0f' % (size / 1e6 / wall), '%.2fx' % (base_wall / wall),
                     '%.0f' % (max(r['peak_module'] for r in name_runs) / MIB), '%.0f' % (max(r['peak'] for r in name_runs) / MIB),
                     '%.1f' % med(name_runs, 'cpu'), '%.1f + %.1f' % (med(name_runs, 'moto_user'), med(name_runs, 'moto_sys'))])
    lines.append(benchlib.markdown_table(
        ['procedure', 'upload s', 'upload MB/s', 'throughput / upload_file', 'read-back verify s', 'wall s (end to end)',
         'end-to-end MB/s', 'end to end / upload_file wall', 'peak MiB PSS (module side)', 'peak MiB PSS (whole tree)',
         'CPU s of the tree', 'CPU s of moto (user + sys)'], rows))
    lines.append('')
    lines.append('All runs (upload s / wall s / peak module-side MiB):')
    for name, name_runs in runs.items():
        lines.append('- %s: %s' % (name, '; '.join('%.1f / %.1f / %.0f' % (r['upload'], r['wall'], r['peak_module'] / MIB) for r in name_runs)))
    module = runs[MODULE]
    lines.append('- offsite_copy peak sample (MiB PSS): %s' % module[-1]['breakdown'])
    lines.append('- moto server: peak RSS %.1f GB; lowest MemAvailable %.1f GB; lowest free space in %s %.1f GB'
                 % (max(r['moto_peak_rss'] for n in runs.values() for r in n) / 1e9,
                    min(r['min_available'] for n in runs.values() for r in n) / 1e9, tempfile.gettempdir(),
                    min(r['min_tmp_free'] for n in runs.values() for r in n) / 1e9))
    lines.append('')
    lines.append('Throughput against upload_file within each repetition (upload_file s / procedure upload s, the same '
                 'repetition):')
    for name, name_runs in runs.items():
        if name != UPLOAD_FILE:
            ratios = [b['upload'] / r['upload'] for b, r in zip(runs[UPLOAD_FILE], name_runs)]
            lines.append('- %s: %s (median %.2fx)' % (name, ', '.join('%.2fx' % x for x in ratios), statistics.median(ratios)))
    lines.append('')
    ratio = base / med(module, 'upload')
    peak = max(r['peak_module'] for r in module) / MIB
    checks = [['throughput >= %.1fx upload_file\'s (upload_file s / module upload_seconds)' % THROUGHPUT_TARGET, '%.3fx' % ratio,
               benchlib.verdict(ratio >= THROUGHPUT_TARGET)],
              ['(for reference) end to end, read-back verify and ansible included: upload_file wall / module wall',
               '%.2fx' % (base_wall / med(module, 'wall')), ''],
              ['peak memory <= %d MiB (the module process, without ansible\'s controller and worker)' % PEAK_TARGET_MIB, '%.0f MiB' % peak,
               benchlib.verdict(peak <= PEAK_TARGET_MIB)]]
    lines.append(benchlib.markdown_table(['target', 'measured', ''], checks))
    return '\n'.join(lines)


def flatness_report(all_results):
    scales = sorted(all_results)
    rows = []
    for key, label in (('peak_module', 'module side'), ('peak', 'whole tree')):
        peaks = [max(r[key] for r in all_results[s]['runs'][MODULE]) / MIB for s in scales]
        ratio = peaks[-1] / peaks[0]
        rows.append(['offsite_copy peak MiB PSS, %s' % label, ', '.join('%.0f at %dx' % (p, s) for p, s in zip(peaks, scales)),
                     '%.2f' % ratio, benchlib.verdict(ratio <= FLAT_TARGET) if key == 'peak_module' else ''])
    peaks = [max(r['peak'] for r in all_results[s]['runs'][UPLOAD_FILE]) / MIB for s in scales]
    rows.append(['(for reference) upload_file peak MiB PSS', ', '.join('%.0f at %dx' % (p, s) for p, s in zip(peaks, scales)),
                 '%.2f' % (peaks[-1] / peaks[0]), ''])
    return '\n'.join(['### Offsite copy memory from %dx to %dx' % (scales[0], scales[-1]), '', benchlib.markdown_table(
        ['measure', 'peaks', '%dx / %dx (flat: <= %.1f)' % (scales[-1], scales[0], FLAT_TARGET), ''], rows)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--scales', default='1', help='comma-separated scales, 1 = %d MB of artifact (default: %%(default)s; the memory '
                                                      'check uses 1,4)' % benchlib.MB_PER_SCALE)
    parser.add_argument('--repeat', type=int, default=3, help='runs of every procedure, alternating their order; medians (default: %(default)s)')
    parser.add_argument('--variants', action='append', default=[], metavar='OPTIONS',
                        help='also time the module with these target options, e.g. part_size_mb=16,concurrency=4 (repeatable)')
    parser.add_argument('--workdir', default=benchlib.DEFAULT_WORKDIR, help='work directory; artifacts go to <workdir>/offsite '
                                                                            '(default: %(default)s)')
    parser.add_argument('--keep', action='store_true', help='keep the artifacts for the next run (bash bench/run.sh clean removes them)')
    args = parser.parse_args()
    benchlib.terminate_on_sigterm()
    os.makedirs(os.path.join(args.workdir, 'offsite'), exist_ok=True)
    command = ' '.join(['bash bench/run.sh offsite'] + sys.argv[1:])
    procedures = [(UPLOAD_FILE, None), (MODULE, {})] + [(procedure_name(parse_options(v)), parse_options(v)) for v in args.variants]
    print('Disk before the run:\n%s\nMemAvailable %.1f GB\n' % (df_lines([args.workdir, tempfile.gettempdir()]), mem_available() / 1e9))
    report, all_results = [], {}
    for scale in benchlib.parse_scales(args.scales):
        problem = room_for(args.workdir, scale)
        if problem:
            message = 'SKIPPED: %s.' % problem
            benchlib.log(message)
            print(message)
            report.append(message)
            continue
        all_results[scale] = run_scale(scale, args, procedures)
        text = scale_report(scale, all_results[scale], command)
        print('\n' + text)
        sys.stdout.flush()
        report.append(text)
    if len(all_results) > 1:
        text = flatness_report(all_results)
        print('\n' + text)
        report.append(text)
    out = os.path.join(args.workdir, 'offsite')
    with open(os.path.join(out, 'report.md'), 'w') as handle:
        handle.write('\n\n'.join(report) + '\n')
    with open(os.path.join(out, 'results.json'), 'w') as handle:
        json.dump({'command': command, 'results': all_results}, handle, indent=1, default=str)
    benchlib.log('report written to %s' % os.path.join(out, 'report.md'))


if __name__ == '__main__':
    main()
