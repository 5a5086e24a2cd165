# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Rekognition re-indexing benchmark: playbooks/rekognition_reindex.yml against the runbook's serial loop, in one run.

It brings up a scratch copy of examples/telemetry_app (own compose project, container, port, password and
ENCRYPTION_KEY), seeds it with ``--photos`` encrypted photos, and starts the local Rekognition endpoint
(tests/support/rekognition_endpoint.py) as a separate process with ``--latency-ms`` added to every request
and IndexFaces throttled above each TPS limit of ``--tps`` (the endpoint's default burst, like AWS's token
bucket). For each limit, on the same photos and starting from an empty endpoint, it measures:

* naive: the runbook's four sentences as a script - read every ``photo`` row, then for each one decrypt it
  with ENCRYPTION_KEY and call IndexFaces, one by one, with a default boto3 client (botocore's default
  retries); an error is counted and the loop goes on;
* collection: ``ansible-playbook playbooks/rekognition_reindex.yml`` with the role's defaults
  (concurrency 8, compose transport), ``rekognition_reindex_tps`` set to the limit.

Columns: ``photos/s`` is photos sent to IndexFaces per second of the procedure's own run (the module's
``photos_per_second``; for the loop, from before the read to after the last call); ``served/s`` is what the
endpoint served, successful IndexFaces calls between its first and its last success; ``% of TPS`` is
served/s over the limit; ``wall s`` is the whole command (for the playbook: ansible start-up and the
role's polling included); ``throttled`` counts the endpoint's throttling answers; ``lost`` is face-bearing
photos (by the endpoint's own face rule applied here to every decrypted photo) missing from the collection
afterwards, ``extra faces`` faces beyond those (duplicates); both must be 0 for the collection.

Reuses the system test's scratch stack and ansible helpers (tests/system/test_rekognition_reindex.py).
Run it with ``bash bench/run_rekognition.sh [options]`` (venv and collection path set up) or from that venv.
CPU is shared: the ratios come from one run, but other load on the machine slows the procedures unevenly.
"""

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time

import botocore.exceptions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENDPOINT = os.path.join(REPO, 'tests', 'support', 'rekognition_endpoint.py')


_SPEC = importlib.util.spec_from_file_location('fleet_dr_rekognition_system', os.path.join(REPO, 'tests', 'system', 'test_rekognition_reindex.py'))
system = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(system)
endpoint_support = system.endpoint_support
photo_crypto = system.photo_crypto


def log(message):
    print('[bench] %s' % message, file=sys.stderr, flush=True)


def seed(stack, photos, photo_kb):
    env = stack.env
    env['ENCRYPTION_KEY'] = stack.key_hex
    proc = system.run([sys.executable, os.path.join(system.APP_DIR, 'seed.py'), '--size', 'small', '--photos', str(photos),
                       '--photo-kb', str(photo_kb), '--telemetry-rows', '3000', '--audit-rows', '300', '--random-seed', '20251201',
                       '--jobs', '2', '--psql', ' '.join(stack.psql_argv())], env=env, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit('seed.py failed: %s' % proc.stderr[-3000:])


class EndpointProcess(object):
    """tests/support/rekognition_endpoint.py as a program: its own process, so its CPU is not the loop's GIL."""

    def __init__(self, latency_ms):
        self.proc = subprocess.Popen([sys.executable, ENDPOINT, '--port', '0', '--latency-ms', str(latency_ms)],
                                     stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith('http://'):
            self.stop()
            raise SystemExit('the local Rekognition endpoint did not start')

    def fresh(self, tps, latency_ms):
        """No collection, no counters; IndexFaces throttled above ``tps``."""
        endpoint_support.control(self.url, reset=True, tps=tps, latency_ms=latency_ms, throttle_operations=['IndexFaces'])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def naive_loop(stack, endpoint_url):
    """The runbook by hand: read ``photo``, decrypt each, IndexFaces one by one. Returns (sent, failed, seconds)."""
    started = time.monotonic()
    client = system.rekognition(endpoint_url)
    client.create_collection(CollectionId=system.COLLECTION)
    sent = failed = 0
    for dummy, external_id, ciphertext in stack.photos():
        image = photo_crypto.decrypt(stack.key, ciphertext)
        try:
            client.index_faces(CollectionId=system.COLLECTION, Image={'Bytes': image}, ExternalImageId=external_id)
            sent += 1
        except botocore.exceptions.ClientError:
            failed += 1
    return sent, failed, time.monotonic() - started


def collection_playbook(ansible, endpoint_url, tps, workdir):
    """playbooks/rekognition_reindex.yml with the role's defaults; returns (module result, wall seconds)."""
    state_dir = tempfile.mkdtemp(prefix='state-', dir=workdir)
    variables = ansible.playbook_vars(endpoint_url, state_dir, rekognition_reindex_tps=tps)
    started = time.monotonic()
    proc = ansible.run_playbook(variables)
    wall = time.monotonic() - started
    shutil.rmtree(state_dir, ignore_errors=True)
    result = system.task_result(proc, 'Wait for the re-indexing')
    if proc.returncode != 0 or result.get('failed'):
        raise SystemExit('the playbook failed: %s' % (result.get('msg') or proc.stdout[-3000:]))
    return result, wall


def outcome(endpoint_url, expected, tps):
    """What the endpoint served and what the collection holds, against the expected faces."""
    stats = system.stats(endpoint_url)
    found = system.collection_faces(endpoint_url)
    succeeded = stats['succeeded'].get('IndexFaces', 0)
    window = stats['last_success'].get('IndexFaces', 0) - stats['first_success'].get('IndexFaces', 0)
    served = (succeeded - 1) / window if succeeded > 1 and window > 0 else 0.0
    lost = sum(1 for external_id in expected if external_id not in found)
    extra = sum(max(0, len(boxes) - len(expected.get(external_id, ()))) for external_id, boxes in found.items())
    return {'served': served, 'pct': 100.0 * served / tps, 'throttled': stats['throttled'].get('IndexFaces', 0),
            'lost': lost, 'extra': extra}


def run(args):
    workdir = tempfile.mkdtemp(prefix='fleet-dr-rekognition-bench-')
    stack = system.Stack(workdir)
    endpoint = None
    rows = []
    try:
        log('bringing up %s and seeding %d photos of about %d KB...' % (stack.project, args.photos, args.photo_kb))
        stack.up()
        seed(stack, args.photos, args.photo_kb)
        photos = len(stack.photos())
        expected = system.faces_of_photos(stack)
        log('%d photos, %d with faces (%d faces)' % (photos, len(expected), sum(len(boxes) for boxes in expected.values())))
        os.makedirs(os.path.join(workdir, 'ansible', 'tmp'))
        ansible = system.Ansible(os.path.join(workdir, 'ansible'), stack)
        endpoint = EndpointProcess(args.latency_ms)
        for tps in args.tps:
            endpoint.fresh(tps, args.latency_ms)
            log('tps %s: naive serial loop...' % tps)
            sent, failed, seconds = naive_loop(stack, endpoint.url)
            naive = dict(outcome(endpoint.url, expected, tps), name='naive serial loop', tps=tps, photos=photos, sent=sent,
                         failed=failed, seconds=seconds, rate=sent / seconds, wall=seconds)
            endpoint.fresh(tps, args.latency_ms)
            log('tps %s: playbooks/rekognition_reindex.yml...' % tps)
            result, wall = collection_playbook(ansible, endpoint.url, tps, workdir)
            module = dict(outcome(endpoint.url, expected, tps), name='rekognition_reindex.yml', tps=tps, photos=photos,
                          sent=result['indexed'] + result['no_face'], failed=result['failed_photos'], seconds=result['seconds'],
                          rate=result['photos_per_second'], wall=wall)
            module['ratio'] = module['rate'] / naive['rate'] if naive['rate'] else float('inf')
            naive['ratio'] = 1.0
            rows.extend([naive, module])
    finally:
        if endpoint is not None:
            endpoint.stop()
        stack.down()
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def print_table(rows, args):
    load = subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()
    print('\n%d photos of about %d KB, %g ms latency per request at the local endpoint; load at the end: %s'
          % (rows[0]['photos'], args.photo_kb, args.latency_ms, load))
    print('| procedure | TPS limit | photos sent | failed | photos/s | served/s | % of TPS | photos/s vs naive | wall s | throttled | lost | extra faces |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|')
    for row in rows:
        print('| %(name)s | %(tps)g | %(sent)d | %(failed)d | %(rate).2f | %(served).2f | %(pct).1f%% | %(ratio).2f | %(wall).1f | %(throttled)d | %(lost)d '
              '| %(extra)d |' % row)
    verdict = [row for row in rows if row['name'] != 'naive serial loop' and (row['pct'] < args.target or row['lost'] or row['extra'])]
    print('\ntarget: the collection sustains at least %g%% of the TPS limit with 0 photos lost and 0 extra faces: %s'
          % (args.target, 'met' if not verdict else 'NOT met (%s)' % ', '.join('TPS %g' % row['tps'] for row in verdict)))
    return 0 if not verdict else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--photos', type=int, default=300, help='photos to seed (default: %(default)s)')
    parser.add_argument('--photo-kb', type=int, default=100, help='average photo size in KB (default: %(default)s)')
    parser.add_argument('--tps', default='5,20', help='comma-separated IndexFaces TPS limits (default: %(default)s)')
    parser.add_argument('--latency-ms', type=float, default=100.0, help='latency of every request at the endpoint (default: %(default)s)')
    parser.add_argument('--target', type=float, default=90.0, help='percent of the TPS limit the collection must sustain (default: %(default)s)')
    args = parser.parse_args()
    args.tps = [float(value) for value in args.tps.split(',') if value.strip()]
    return print_table(run(args), args)


if __name__ == '__main__':
    sys.exit(main())
