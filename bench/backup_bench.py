#!/usr/bin/env python3
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Backup benchmark: this collection's backup against the runbook and raw pg_dump, measured in one run.

For each scale (1 = about 1.5 GB of database, like OFFLINE.md's dataset) it brings up a scratch copy of
examples/telemetry_app (own compose project, container and port), seeds it, and times, on the same data:

* runbook: ``docker-compose exec -T db pg_dump -U challengeuser telemetry_db > backup.sql`` (the seed's command);
* pg_dump -Fc: ``docker-compose exec -T db pg_dump -Fc ... > backup.dump``;
* pg_dump -Fd -j2: inside the container, to the container's disk;
* raw: the exact pipeline the collection drives, by hand in a shell (``docker exec -i pg_dump ... | zstd``);
* collection: ``ansible -m fleet_telemetry.dr.pg_logical_backup`` with its defaults.

It prints wall time, artifact size and peak memory (sum of PSS over the launched process tree, sampled
every 20 ms, i.e. the Ansible side with ansible itself included; processes inside the container are not
counted) and the ratios. Run it on an otherwise idle machine: the ratios come from one run, but other load
slows the procedures unevenly.
Run it with ``bash bench/run.sh`` (sets up the venv and collection path) or directly from that venv.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(REPO, 'examples', 'telemetry_app')


def _pss(pid):
    """Proportional set size of a process in bytes: shared pages are split between their users, so the
    forked Ansible worker that shares most of its memory with its parent is not counted twice."""
    try:
        with open('/proc/%d/smaps_rollup' % pid) as handle:
            for line in handle:
                if line.startswith('Pss:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(root_pid):
    """Sum of PSS (bytes) of ``root_pid`` and all its descendants."""
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as handle:
                fields = handle.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += _pss(pid)
        stack.extend(children.get(pid, []))
    return total


def measure(argv, env=None, cwd=None):
    """Run a command; return (wall seconds, peak tree RSS bytes, stdout)."""
    out = tempfile.TemporaryFile()
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.PIPE)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err = proc.stderr.read()
    rc = proc.wait()
    wall = time.monotonic() - start
    done.set()
    sampler.join()
    out.seek(0)
    stdout = out.read().decode('utf-8', 'replace')
    if rc != 0:
        raise SystemExit('command failed (rc=%s): %s\n%s\n%s' % (rc, ' '.join(argv)[:300], stdout[-2000:], err.decode()[-2000:]))
    return wall, peak[0], stdout


def compose(project, env, *args):
    subprocess.run(['docker-compose', '-p', project] + list(args), cwd=APP, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def up_and_seed(project, port, scale, env):
    compose(project, env, 'up', '-d', 'db')
    container = env['DB_CONTAINER_NAME']
    for _ in range(120):
        state = subprocess.run(['docker', 'inspect', '-f', '{{.State.Health.Status}}', container],
                               capture_output=True, text=True, check=False).stdout.strip()
        if state == 'healthy':
            break
        time.sleep(1)
    count = subprocess.run(['docker', 'exec', container, 'psql', '-X', '-At', '-U', 'challengeuser', '-d', 'telemetry_db',
                            '-c', 'SELECT count(*) FROM photo'], capture_output=True, text=True, check=True).stdout.strip()
    if count == '0':
        print('seeding %s at scale %s (about %d MB)...' % (project, scale, 1500 * scale), file=sys.stderr)
        subprocess.run([sys.executable, os.path.join(APP, 'seed.py'), '--size', 'bench', '--target-mb', str(int(1500 * scale)),
                        '--psql', 'docker exec -i %s psql -X -v ON_ERROR_STOP=1 -q -U challengeuser -d telemetry_db' % container],
                       env=env, check=True, stdout=subprocess.DEVNULL)
    return container


def size_of(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, dummy, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def run_scale(scale, workdir, keep):
    project = 'fdrbench%d' % scale
    env = dict(os.environ, POSTGRES_PASSWORD='bench-%d' % os.getpid(), DB_PORT=str(55460 + scale),
               DB_CONTAINER_NAME='%s_db' % project, ENCRYPTION_KEY=os.urandom(32).hex())
    keyfile = os.path.join(workdir, 'key-%d' % scale)
    if os.path.exists(keyfile):
        with open(keyfile) as handle:
            env['ENCRYPTION_KEY'] = handle.read().strip()
    else:
        with open(keyfile, 'w') as handle:
            handle.write(env['ENCRYPTION_KEY'])
    container = up_and_seed(project, env['DB_PORT'], scale, env)
    out = os.path.join(workdir, 'out-%d' % scale)
    results = {}
    try:
        def fresh():
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            subprocess.run(['sync'], check=True)

        fresh()
        target = os.path.join(out, 'backup.sql')
        wall, peak, dummy = measure(['sh', '-c', 'docker-compose -p %s exec -T db pg_dump -U challengeuser telemetry_db > %s' % (project, target)],
                                    env=env, cwd=APP)
        results['runbook'] = (wall, size_of(target), peak)

        fresh()
        target = os.path.join(out, 'backup.dump')
        wall, peak, dummy = measure(['sh', '-c', 'docker-compose -p %s exec -T db pg_dump -Fc -U challengeuser telemetry_db > %s' % (project, target)],
                                    env=env, cwd=APP)
        results['pg_dump -Fc'] = (wall, size_of(target), peak)

        fresh()
        wall, peak, dummy = measure(['docker', 'exec', container, 'pg_dump', '-Fd', '-j2', '-f', '/tmp/bench.dir', '-U', 'challengeuser', 'telemetry_db'])
        size = int(subprocess.run(['docker', 'exec', container, 'du', '-sb', '/tmp/bench.dir'], capture_output=True, text=True,
                                  check=True).stdout.split()[0])
        subprocess.run(['docker', 'exec', container, 'rm', '-rf', '/tmp/bench.dir'], check=True)
        results['pg_dump -Fd -j2'] = (wall, size, peak)

        fresh()
        target = os.path.join(out, 'raw.sql.zst')
        wall, peak, dummy = measure(['bash', '-o', 'pipefail', '-c', 'docker exec -i %s pg_dump -U challengeuser -d telemetry_db --format=plain --clean '
                                     '--if-exists | zstd -q -c -1 -T0 > %s' % (container, target)])
        results['raw (pg_dump | zstd -1)'] = (wall, size_of(target), peak)

        fresh()
        wall, peak, stdout = measure(['ansible', 'localhost', '-o', '-m', 'fleet_telemetry.dr.pg_logical_backup', '-a',
                                      'project_src=%s project_name=%s backup_dir=%s' % (APP, project, out),
                                      '-e', 'ansible_python_interpreter=%s' % sys.executable], env=env)
        result = json.loads(stdout.split('=>', 1)[1])
        results['collection (defaults)'] = (wall, result['size'], peak)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if not keep:
            compose(project, env, 'down', '-v')
    return results


def print_table(scale, results):
    base_wall, base_size, dummy = results['runbook']
    raw_wall, raw_size, dummy = results['raw (pg_dump | zstd -1)']
    print('\nscale %sx (runbook .sql = %.2f GB)' % (scale, base_size / 1e9))
    print('| procedure | wall s | size GB | peak MiB PSS (Ansible side) | wall / runbook | size / runbook | size / raw |')
    print('|---|---|---|---|---|---|---|')
    for name, (wall, size, peak) in results.items():
        print('| %s | %.1f | %.2f | %.0f | %.2f | %.2f | %.2f |' % (name, wall, size / 1e9, peak / 2 ** 20, wall / base_wall, size / base_size,
                                                                 size / raw_size))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--scales', default='1', help='comma-separated dataset scales, 1 = about 1.5 GB (default: %(default)s; the memory check uses 1,4)')
    parser.add_argument('--workdir', default='/var/tmp/fleet-dr-bench', help='where artifacts are written (default: %(default)s)')
    parser.add_argument('--keep', action='store_true', help='keep the seeded stacks for the next run (seeding is the slow part)')
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    all_results = {}
    for scale in [int(s) for s in args.scales.split(',')]:
        all_results[scale] = run_scale(scale, args.workdir, args.keep)
        print_table(scale, all_results[scale])
    if len(all_results) > 1:
        scales = sorted(all_results)
        peaks = [all_results[s]['collection (defaults)'][2] / 2 ** 20 for s in scales]
        print('\ncollection peak memory: %s MiB (ratio largest/smallest %.2f)' % (
            ', '.join('%.0f at %dx' % (p, s) for p, s in zip(peaks, scales)), peaks[-1] / peaks[0]))


if __name__ == '__main__':
    main()
