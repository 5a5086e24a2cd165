# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""rekognition_reindex end to end: a real scratch stack, the local Rekognition endpoint, real ansible runs.

The endpoint (tests/support/rekognition_endpoint.py) runs in this process; ansible talks to it through
``endpoint_url`` with boto3, as to AWS. What the collection holds is checked by an independent path:
boto3's ListFaces against the endpoint, compared with the endpoint's own face rule (``detect_faces``)
applied to every photo decrypted here. Request counters come from the endpoint's control API.

Self-contained (fixtures in this file): run with ``python -m pytest tests/system/test_rekognition_reindex.py``
as root with Docker and docker-compose; about a minute and a half.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import boto3
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
APP_DIR = os.path.join(REPO_ROOT, 'examples', 'telemetry_app')
PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'rekognition_reindex.yml')
MODULE = 'fleet_telemetry.dr.rekognition_reindex'
HOST = 'scratch'
COLLECTION = 'fleet-drivers'
DB_USER = 'challengeuser'
DB_NAME = 'telemetry_db'
AWS_ACCESS_KEY = 'FLEETDRTESTACCESSKEY'  # made up; the local endpoint checks only that one is given
AWS_SECRET_KEY = 'fleetdr/SYSTEM+test/secret-' + os.urandom(8).hex()
PYTHON = sys.executable
TIMEOUT = 300


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


endpoint_support = _load('fleet_dr_rekognition_endpoint', os.path.join(REPO_ROOT, 'tests', 'support', 'rekognition_endpoint.py'))
photo_crypto = _load('fleet_dr_photo_crypto_system', os.path.join(REPO_ROOT, 'plugins', 'module_utils', '_photo_crypto.py'))


def run(argv, **kwargs):
    kwargs.setdefault('stdout', subprocess.PIPE)
    kwargs.setdefault('stderr', subprocess.PIPE)
    kwargs.setdefault('timeout', TIMEOUT)
    return subprocess.run(argv, check=False, text=True, **kwargs)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def compose_command():
    try:
        if run(['docker', 'compose', 'version'], timeout=60).returncode == 0:
            return ['docker', 'compose']
    except FileNotFoundError:
        pass
    return ['docker-compose']


class Stack(object):
    """A scratch copy of examples/telemetry_app: own project, container, port, password and key."""

    def __init__(self, base_dir):
        self.project = 'fdrrk%d%s' % (os.getpid(), os.urandom(3).hex())
        self.container_name = self.project + '_db'
        self.port = free_port()
        self.password = 'pw-' + os.urandom(16).hex()
        self.key_hex = os.urandom(32).hex()
        self.key = bytes.fromhex(self.key_hex)
        self.directory = os.path.join(base_dir, 'telemetry_app')
        os.makedirs(self.directory)
        shutil.copy2(os.path.join(APP_DIR, 'docker-compose.yml'), self.directory)
        shutil.copytree(os.path.join(APP_DIR, 'schema'), os.path.join(self.directory, 'schema'))
        self.compose_cmd = compose_command()
        self.container = None

    @property
    def env(self):
        """Environment of compose, and of ansible (the module runs compose too): the stack's secrets travel here only."""
        env = dict(os.environ)
        for name in ('PGPASSWORD', 'ENCRYPTION_KEY', 'ANSIBLE_CONFIG'):
            env.pop(name, None)
        env.update(POSTGRES_PASSWORD=self.password, DB_PORT=str(self.port), DB_CONTAINER_NAME=self.container_name)
        return env

    def compose(self, *args):
        return run(self.compose_cmd + ['-p', self.project] + list(args), cwd=self.directory, env=self.env)

    def up(self):
        proc = self.compose('up', '-d', 'db')
        assert proc.returncode == 0, 'compose up failed: %s' % proc.stderr[-3000:]
        self.container = self.compose('ps', '-q', 'db').stdout.strip()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            status = run(['docker', 'inspect', '-f', '{{.State.Health.Status}}', self.container]).stdout.strip()
            if status == 'healthy':
                return
            time.sleep(0.5)
        raise AssertionError('the scratch database did not become healthy')

    def down(self):
        self.compose('down', '-v', '--remove-orphans', '--timeout', '5')

    def psql_argv(self):
        return ['docker', 'exec', '-i', self.container, 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-U', DB_USER, '-d', DB_NAME]

    def psql(self, sql):
        proc = run(self.psql_argv() + ['-A', '-t', '-F', '|'], input=sql)
        assert proc.returncode == 0, 'psql failed: %s' % proc.stderr[-2000:]
        return proc.stdout.strip()

    def seed(self):
        env = self.env
        env['ENCRYPTION_KEY'] = self.key_hex
        proc = run([PYTHON, os.path.join(APP_DIR, 'seed.py'), '--size', 'tiny', '--random-seed', '20251125', '--jobs', '2',
                    '--psql', ' '.join(self.psql_argv())], env=env)
        assert proc.returncode == 0, 'seed.py failed: %s' % proc.stderr[-3000:]

    def photos(self, where='true'):
        """``[(id, external_image_id, ciphertext)]`` straight from the table."""
        out = self.psql("SELECT id, external_image_id, encode(data, 'hex') FROM photo WHERE %s ORDER BY id;" % where)
        return [(int(i), ext, bytes.fromhex(data)) for i, ext, data in (line.split('|') for line in out.splitlines())]


class Ansible(object):
    """``ansible`` and ``ansible-playbook`` from this interpreter's bin directory, the checkout as fleet_telemetry.dr."""

    def __init__(self, workdir, stack):
        self.workdir = workdir
        self.stack = stack
        tree = os.path.join(workdir, 'collections')
        os.makedirs(os.path.join(tree, 'ansible_collections', 'fleet_telemetry'))
        os.symlink(REPO_ROOT, os.path.join(tree, 'ansible_collections', 'fleet_telemetry', 'dr'))
        import ansible  # pylint: disable=import-outside-toplevel
        site = os.path.dirname(os.path.dirname(os.path.realpath(ansible.__file__)))
        self.collections_path = os.pathsep.join([tree, site])
        self.async_dir = os.path.join(workdir, 'async')
        self.inventory = os.path.join(workdir, 'inventory.json')
        with open(self.inventory, 'w') as fileobj:
            json.dump({'all': {'children': {'telemetry_db': {'hosts': {HOST: {
                'ansible_connection': 'local', 'ansible_python_interpreter': PYTHON}}}}}}, fileobj)
        bindir = os.path.dirname(PYTHON)
        self.ansible = os.path.join(bindir, 'ansible')
        self.playbook = os.path.join(bindir, 'ansible-playbook')

    def env(self, json_output=True, aws_env=True):
        env = self.stack.env
        env.update(ANSIBLE_COLLECTIONS_PATH=self.collections_path, ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='False',
                   ANSIBLE_DEPRECATION_WARNINGS='False', ANSIBLE_LOCAL_TEMP=os.path.join(self.workdir, 'tmp'),
                   ANSIBLE_ASYNC_DIR=self.async_dir)
        for name in [key for key in env if key.startswith('AWS_')]:
            del env[name]
        if aws_env:
            env.update(AWS_ACCESS_KEY_ID=AWS_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=AWS_SECRET_KEY, AWS_REGION='us-east-1')
        if json_output:
            env.update(ANSIBLE_STDOUT_CALLBACK='json', ANSIBLE_LOAD_CALLBACK_PLUGINS='1')
        return env

    def module_args(self, endpoint_url, **extra):
        args = {'project_src': self.stack.directory, 'project_name': self.stack.project, 'encryption_key': self.stack.key_hex,
                'collection_id': COLLECTION, 'endpoint_url': endpoint_url, 'tps': 50, 'concurrency': 8}
        args.update(extra)
        return args

    def start_module(self, args, check=False):
        argv = [self.ansible, HOST, '-i', self.inventory, '-m', MODULE, '-a', json.dumps(args)] + (['--check'] if check else [])
        return subprocess.Popen(argv, cwd=self.workdir, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

    def module(self, args, check=False):
        """Run the module ad hoc; return its result dict."""
        proc = self.start_module(args, check)
        out, err = proc.communicate(timeout=TIMEOUT)
        try:
            doc = json.loads(out[out.index('{'):])
        except ValueError:
            raise AssertionError('no JSON from ansible:\n%s\n%s' % (out[-3000:], err[-3000:])) from None
        return doc['plays'][0]['tasks'][0]['hosts'][HOST]

    def run_playbook(self, extra_vars, extra_args=(), json_output=True, before=()):
        """ansible-playbook [before...] playbooks/rekognition_reindex.yml, the variables in a 0600 file."""
        path = os.path.join(self.workdir, 'vars-%s.json' % os.urandom(4).hex())
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), 'w') as fileobj:
            json.dump(extra_vars, fileobj)
        try:
            return run([self.playbook, '-i', self.inventory] + list(before) + [PLAYBOOK, '-e', '@' + path] + list(extra_args),
                       cwd=self.workdir, env=self.env(json_output=json_output, aws_env=False))
        finally:
            os.unlink(path)

    def playbook_vars(self, endpoint_url, state_dir, **extra):
        variables = {
            'fleet_dr_project_src': self.stack.directory, 'fleet_dr_project_name': self.stack.project,
            'fleet_dr_encryption_key': self.stack.key_hex, 'fleet_dr_db_password': self.stack.password,
            'fleet_dr_aws_region': 'us-east-1', 'fleet_dr_aws_access_key': AWS_ACCESS_KEY, 'fleet_dr_aws_secret_key': AWS_SECRET_KEY,
            'rekognition_reindex_endpoint_url': endpoint_url, 'rekognition_reindex_state_dir': state_dir,
            'rekognition_reindex_tps': 50, 'rekognition_reindex_poll_interval': 1,
        }
        variables.update(extra)
        return variables


def task_result(proc, task_name):
    """The host result of the task whose name contains ``task_name``, from the json callback's output."""
    try:
        doc = json.loads(proc.stdout[proc.stdout.index('{'):])
    except ValueError:
        raise AssertionError('no JSON from ansible-playbook:\n%s\n%s' % (proc.stdout[-3000:], proc.stderr[-3000:])) from None
    for play in doc['plays']:
        for task in play['tasks']:
            if task_name in task['task']['name'] and HOST in task['hosts']:
                return task['hosts'][HOST]
    raise AssertionError('no task %r in the output: %s' % (task_name, proc.stdout[-3000:]))


def succeeded(result):
    assert not result.get('failed'), json.dumps(result, indent=1)[-4000:]
    return result


# ------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def stack(tmp_path_factory):
    stack = Stack(str(tmp_path_factory.mktemp('rekognition_stack')))
    try:
        stack.up()
        stack.seed()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope='module')
def ansible(tmp_path_factory, stack):
    workdir = str(tmp_path_factory.mktemp('rekognition_ansible'))
    os.makedirs(os.path.join(workdir, 'tmp'))
    return Ansible(workdir, stack)


@pytest.fixture(scope='module')
def endpoint_server():
    with endpoint_support.RekognitionEndpoint() as server:
        yield server


@pytest.fixture
def endpoint(endpoint_server):
    """The endpoint's URL, with no collection, no counters and no faults (reset through the control API)."""
    endpoint_support.control(endpoint_server.endpoint_url, reset=True)
    return endpoint_server.endpoint_url


def faces_of_photos(stack):
    """``{ExternalImageId: sorted bounding boxes}`` of every face-bearing photo of the stack, by the endpoint's own rule."""
    expected = {}
    for dummy, external_id, ciphertext in stack.photos():
        faces = endpoint_support.detect_faces(photo_crypto.decrypt(stack.key, ciphertext))
        if faces:
            expected[external_id] = sorted(tuple(sorted(face.bounding_box.items())) for face in faces)
    return expected


@pytest.fixture(scope='module')
def expected_faces(stack):
    expected = faces_of_photos(stack)
    assert 5 <= len(expected) < len(stack.photos()), 'the tiny seed should give photos with and without faces'
    return expected


def rekognition(endpoint_url):
    return boto3.client('rekognition', endpoint_url=endpoint_url, region_name='us-east-1',
                        aws_access_key_id=AWS_ACCESS_KEY, aws_secret_access_key=AWS_SECRET_KEY)


def collection_faces(endpoint_url):
    """``{ExternalImageId: sorted bounding boxes}`` of the collection, by ListFaces (small pages, to paginate)."""
    client = rekognition(endpoint_url)
    found = collections.defaultdict(list)
    kwargs = {'CollectionId': COLLECTION, 'MaxResults': 7}
    while True:
        page = client.list_faces(**kwargs)
        for face in page['Faces']:
            found[face['ExternalImageId']].append(tuple(sorted(face['BoundingBox'].items())))
        if not page.get('NextToken'):
            return dict((external_id, sorted(boxes)) for external_id, boxes in found.items())
        kwargs['NextToken'] = page['NextToken']


def process_tree(pid):
    """``pid`` and every process descended from it (ansible's local connection starts the module in a session of its own)."""
    children = collections.defaultdict(list)
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/stat' % entry) as fileobj:
                    fields = fileobj.read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            children[int(fields[1])].append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def kill_tree(pid):
    for process in process_tree(pid):
        try:
            os.kill(process, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stats(endpoint_url):
    return endpoint_support.fetch_state(endpoint_url)['stats']


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------

def test_playbook_rebuilds_a_deleted_collection_and_a_rerun_changes_nothing(stack, ansible, endpoint, expected_faces, tmp_path):
    state_dir = str(tmp_path / 'state')
    variables = ansible.playbook_vars(endpoint, state_dir, rekognition_reindex_update_face_ids=True)
    stale = set(stack.psql('SELECT face_id FROM recognition_result;').split())
    # the collection existed and was lost
    rekognition(endpoint).create_collection(CollectionId=COLLECTION)
    rekognition(endpoint).delete_collection(CollectionId=COLLECTION)
    endpoint_support.control(endpoint, reset_stats=True)

    plan = succeeded(task_result(ansible.run_playbook(variables, ['--check']), 'Plan the re-indexing'))
    assert plan['would_index'] == len(stack.photos()) and plan['collection']['would_create']
    assert stats(endpoint)['requests'].get('IndexFaces', 0) == 0 and stats(endpoint)['requests'].get('CreateCollection', 0) == 0
    assert not os.path.exists(state_dir)

    proc = ansible.run_playbook(variables)
    assert proc.returncode == 0, proc.stdout[-4000:]
    result = succeeded(task_result(proc, 'Wait for the re-indexing'))
    assert result['changed'] and result['collection']['created'] and result['complete']
    assert collection_faces(endpoint) == expected_faces
    assert result['indexed'] == len(expected_faces)
    assert result['indexed'] + result['no_face'] == len(stack.photos()) and result['failed_photos'] == 0

    # the application's stored Face IDs now point into the rebuilt collection
    with open(os.path.join(state_dir, COLLECTION + '.face-ids.json')) as fileobj:
        mapping = json.load(fileobj)
    new_ids = set(face_id for ids in mapping['face_ids'].values() for face_id in ids)
    stored = set(stack.psql('SELECT face_id FROM recognition_result;').split())
    assert stored and stored <= new_ids and not stored & stale
    assert result['face_id_update']['rows_updated'] == len(stored)
    assert set(mapping['face_ids']) == set(expected_faces)
    assert not os.listdir(ansible.async_dir), 'the finished job left its status file behind'

    before = endpoint_support.fetch_state(endpoint)
    proc = ansible.run_playbook(variables)
    again = succeeded(task_result(proc, 'Wait for the re-indexing'))
    assert not again['changed'] and again['indexed'] == 0 and again['no_face'] == 0
    assert again['already_indexed'] == len(expected_faces) and again['known_no_face'] == len(stack.photos()) - len(expected_faces)
    after = endpoint_support.fetch_state(endpoint)
    assert after['stats']['requests'].get('IndexFaces', 0) == before['stats']['requests'].get('IndexFaces', 0)
    assert after['collections'] == before['collections']
    assert set(stack.psql('SELECT face_id FROM recognition_result;').split()) == stored


def test_a_run_stopped_by_its_limit_then_rerun_completes_without_duplicates(ansible, endpoint, expected_faces, stack, tmp_path):
    mapping = str(tmp_path / 'map.json')
    first = succeeded(ansible.module(ansible.module_args(endpoint, limit=7, mapping_file=mapping)))
    assert not first['complete'] and first['indexed'] + first['no_face'] == 7
    second = succeeded(ansible.module(ansible.module_args(endpoint, mapping_file=mapping)))
    assert second['complete'] and second['indexed'] + second['no_face'] == len(stack.photos()) - 7
    assert collection_faces(endpoint) == expected_faces


def test_a_killed_run_then_rerun_completes_without_duplicates(ansible, endpoint, expected_faces):
    endpoint_support.control(endpoint, latency_ms=150)
    proc = ansible.start_module(ansible.module_args(endpoint, tps=5, concurrency=2))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and stats(endpoint)['succeeded'].get('IndexFaces', 0) < 4:
        time.sleep(0.05)
    kill_tree(proc.pid)
    proc.communicate(timeout=60)
    time.sleep(0.5)  # let calls already on the wire land
    partial = collection_faces(endpoint)
    assert 0 < stats(endpoint)['succeeded']['IndexFaces'] < len(expected_faces) + 10
    endpoint_support.control(endpoint, latency_ms=0)
    result = succeeded(ansible.module(ansible.module_args(endpoint)))
    assert result['complete'] and result['already_indexed'] == len(partial)
    assert collection_faces(endpoint) == expected_faces


def read_json(path):
    """The JSON document at ``path``, or None while it does not exist (it is replaced atomically, never half written)."""
    try:
        with open(path) as fileobj:
            return json.load(fileobj)
    except FileNotFoundError:
        return None


def _lock_holder(state_dir):
    from ansible_collections.fleet_telemetry.dr.plugins.module_utils._lock import lock_file_held  # pylint: disable=import-outside-toplevel
    return lock_file_held(os.path.join(state_dir, '.reindex-%s.lock' % COLLECTION), 're-indexing')


def test_an_interrupted_play_then_an_immediate_rerun_never_overlap_and_index_each_face_once(
        ansible, endpoint, expected_faces, tmp_path):
    """Ctrl-C of ansible-playbook while the re-indexing runs: the job goes on in the background (the play said how to stop
    it); a rerun started at once is refused, naming the running job, and sends nothing; once that job ended, a rerun
    completes; every face-bearing photo is in the collection exactly once."""
    state_dir = str(tmp_path / 'state')
    variables = ansible.playbook_vars(endpoint, state_dir, rekognition_reindex_tps=5, rekognition_reindex_concurrency=2)
    endpoint_support.control(endpoint, latency_ms=150)
    path = os.path.join(ansible.workdir, 'vars-interrupted.json')
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), 'w') as fileobj:
        json.dump(variables, fileobj)
    first = subprocess.Popen([ansible.playbook, '-i', ansible.inventory, PLAYBOOK, '-e', '@' + path], cwd=ansible.workdir,
                             env=ansible.env(json_output=False, aws_env=False), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while stats(endpoint)['succeeded'].get('IndexFaces', 0) < 4:
            assert time.monotonic() < deadline and first.poll() is None, 'the first run never indexed'
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGINT)
        out, dummy = first.communicate(timeout=60)
    finally:
        os.unlink(path)
    assert first.returncode != 0
    assert "stop=true'" in out and 'if this play is interrupted the re-indexing goes on' in out, out[-3000:]
    holder = _lock_holder(state_dir)
    assert holder is not None, 'the interrupted job was expected to go on in the background'
    describes = stats(endpoint)['requests'].get('DescribeCollection', 0)

    refused = ansible.run_playbook(variables)
    assert refused.returncode != 0
    wait = task_result(refused, 'Wait for the re-indexing')
    assert wait['error_code'] == 'lock_held', wait
    assert 'another re-indexing of collection %s is running: pid %s' % (COLLECTION, holder.holder['pid']) in wait['msg'], wait['msg']
    assert stats(endpoint)['requests'].get('DescribeCollection', 0) == describes, 'the refused run called Rekognition'

    deadline = time.monotonic() + 180
    while _lock_holder(state_dir) is not None:
        assert time.monotonic() < deadline, 'the interrupted job did not end'
        time.sleep(0.2)
    endpoint_support.control(endpoint, latency_ms=0)
    indexed_before = stats(endpoint)['succeeded'].get('IndexFaces', 0)
    rerun = succeeded(task_result(ansible.run_playbook(variables), 'Wait for the re-indexing'))
    assert rerun['complete'] and rerun['indexed'] == 0, rerun
    assert stats(endpoint)['succeeded'].get('IndexFaces', 0) == indexed_before
    assert collection_faces(endpoint) == expected_faces


def test_a_killed_job_is_noticed_and_the_rerun_resends_nothing_it_learned(ansible, endpoint, expected_faces, stack, tmp_path):
    """kill -9 of the re-indexing's whole job (wrappers and module) under a play: the wait fails within a poll, naming the
    job; the mapping file holds what the job learned, so the rerun sends only the photos it had not reached."""
    from conftest import job_processes, sigkill  # pylint: disable=import-outside-toplevel
    state_dir = str(tmp_path / 'state')
    variables = ansible.playbook_vars(endpoint, state_dir, rekognition_reindex_tps=5, rekognition_reindex_concurrency=2,
                                      rekognition_reindex_progress_interval=1)
    mapping_file = os.path.join(state_dir, COLLECTION + '.face-ids.json')
    endpoint_support.control(endpoint, latency_ms=100)
    path = os.path.join(ansible.workdir, 'vars-killed.json')
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), 'w') as fileobj:
        json.dump(variables, fileobj)
    proc = subprocess.Popen([ansible.playbook, '-i', ansible.inventory, PLAYBOOK, '-e', '@' + path], cwd=ansible.workdir,
                            env=ansible.env(aws_env=False), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # Killed once the mapping file, written as the run goes, knows a photo without a face.
        while not (read_json(mapping_file) or {}).get('no_face'):
            assert time.monotonic() < deadline and proc.poll() is None, 'the run never wrote a photo without a face'
            time.sleep(0.05)
        job = job_processes('AnsiballZ_rekognition_reindex.py')
        assert sigkill(job['wrapper'] + job['module'])
        out, err = proc.communicate(timeout=60)
    finally:
        os.unlink(path)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    wait = task_result(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), 'Wait for the re-indexing')
    assert wait['error_code'] == 'job_died' and 'the re-indexing of %s' % COLLECTION in wait['msg'], wait
    time.sleep(0.5)  # calls already on the wire land
    with open(mapping_file) as fileobj:
        mapping = json.load(fileobj)
    learned = set(mapping['face_ids']) | set(mapping['no_face'])
    assert mapping['no_face'] and learned, mapping
    endpoint_support.control(endpoint, latency_ms=0, reset_stats=True)
    rerun = succeeded(task_result(ansible.run_playbook(variables), 'Wait for the re-indexing'))
    assert rerun['complete'] and rerun['known_no_face'] >= len(mapping['no_face'])
    assert stats(endpoint)['succeeded'].get('IndexFaces', 0) == len(stack.photos()) - rerun['already_indexed'] - rerun['known_no_face']
    assert stats(endpoint)['succeeded'].get('IndexFaces', 0) <= len(stack.photos()) - len(learned)
    assert collection_faces(endpoint) == expected_faces


def test_a_missing_external_id_column_names_the_setting_and_an_expression_derives_the_id(ansible, endpoint, stack):
    """A photo table without the external id column: the error names the column and both settings; an expression over the
    row gives the ids instead."""
    result = ansible.module(ansible.module_args(endpoint, external_id_column='image_ref'))
    assert result.get('failed') and result['error_code'] == 'no_column', result
    assert ('the external image id column image_ref does not exist in photo: set external_id_column '
            '(role: rekognition_reindex_external_id_column)') in result['msg'], result['msg']
    assert 'external_id_expression' in result['msg'] and stats(endpoint)['requests_total'] == 0
    derived = succeeded(ansible.module(ansible.module_args(endpoint, external_id_expression="'photo-' || id", return_face_ids=True)))
    ids = set(collection_faces(endpoint))
    assert ids and all(external_id.startswith('photo-') for external_id in ids)
    assert ids == set(derived['face_ids']) and derived['indexed'] == len(ids)
    photo_ids = set(int(external_id[len('photo-'):]) for external_id in ids)
    assert photo_ids <= set(photo_id for photo_id, dummy, dummy2 in stack.photos())


@pytest.mark.parametrize('throttle_error', ['ProvisionedThroughputExceededException', 'ThrottlingException'])
def test_a_run_throttled_at_5_tps_loses_no_photo(ansible, endpoint, expected_faces, stack, throttle_error):
    endpoint_support.control(endpoint, tps=5, burst=1, throttle_error=throttle_error, throttle_operations=['IndexFaces'])
    result = succeeded(ansible.module(ansible.module_args(endpoint, tps=40, concurrency=8)))
    state = stats(endpoint)
    assert state['throttled'].get('IndexFaces', 0) > 0 and result['throttle_retries'] == state['throttled']['IndexFaces']
    assert result['failed_photos'] == 0 and result['indexed'] + result['no_face'] == len(stack.photos())
    assert collection_faces(endpoint) == expected_faces


def test_a_run_at_the_quota_stays_just_below_it(ansible, endpoint, expected_faces):
    endpoint_support.control(endpoint, tps=5, throttle_operations=['IndexFaces'])
    result = succeeded(ansible.module(ansible.module_args(endpoint, tps=5, concurrency=4)))
    assert stats(endpoint)['throttled'].get('IndexFaces', 0) == 0 and result['rate_limit'] == pytest.approx(4.75)
    assert collection_faces(endpoint) == expected_faces


def test_a_wrong_key_fails_before_any_call(ansible, endpoint):
    result = ansible.module(ansible.module_args(endpoint, encryption_key=os.urandom(32).hex()))
    assert result.get('failed') and result['error_code'] == 'bad_key'
    assert 'nothing was sent to Rekognition' in result['msg']
    assert stats(endpoint)['requests_total'] == 0


def test_check_mode_calls_nothing_that_changes_the_collection(ansible, endpoint, stack):
    result = succeeded(ansible.module(ansible.module_args(endpoint), check=True))
    assert result['would_index'] == len(stack.photos())
    assert set(stats(endpoint)['requests']) <= {'DescribeCollection'}


def test_a_corrupted_photo_is_reported_and_the_rest_are_indexed(ansible, endpoint, expected_faces, stack):
    victim_id, victim, dummy = next(photo for photo in stack.photos() if photo[1] in expected_faces)
    flip = 'UPDATE photo SET data = set_byte(data, 40, get_byte(data, 40) # 255) WHERE id = %d;' % victim_id
    stack.psql(flip)
    try:
        result = succeeded(ansible.module(ansible.module_args(endpoint)))
    finally:
        stack.psql(flip)
    assert result['failed_photos'] == 1 and result['failure_reasons'] == {'authentication_failed': 1}
    assert result['failures'][0]['id'] == victim_id and result['failures'][0]['external_image_id'] == victim
    assert any('could not be indexed' in warning for warning in result.get('warnings', []))
    expected = dict(expected_faces)
    del expected[victim]
    assert collection_faces(endpoint) == expected


def test_an_oversized_photo_is_downscaled_or_reported(ansible, endpoint, stack):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    import io  # pylint: disable=import-outside-toplevel
    image = Image.frombytes('RGB', (1400, 1400), os.urandom(1400 * 1400 * 3))
    image.paste(endpoint_support.SKIN_RGB, (500, 500, 760, 760))
    out = io.BytesIO()
    image.save(out, format='PNG')
    data = out.getvalue()
    assert len(data) > 5 * 1024 * 1024
    ciphertext = photo_crypto.encrypt(stack.key, data)
    external_id = 'oversize-%s' % os.urandom(3).hex()
    stack.psql("INSERT INTO photo (vehicle_id, taken_at, content_type, data, external_image_id) "
               "VALUES ((SELECT min(id) FROM vehicle), now(), 'image/png', '\\x%s'::bytea, '%s');" % (ciphertext.hex(), external_id))
    where = "external_image_id = '%s'" % external_id
    try:
        reported = succeeded(ansible.module(ansible.module_args(endpoint, where=where, oversize='report')))
        assert reported['failure_reasons'] == {'too_large': 1} and reported['photos'] == 1
        assert stats(endpoint)['requests'].get('IndexFaces', 0) == 0
        downscaled = succeeded(ansible.module(ansible.module_args(endpoint, where=where)))
        assert downscaled['downscaled'] == 1 and downscaled['indexed'] == 1 and downscaled['faces_indexed'] == 1
        assert list(collection_faces(endpoint)) == [external_id]
    finally:
        stack.psql("DELETE FROM photo WHERE external_image_id = '%s';" % external_id)


def test_no_secret_appears_at_vvvv(ansible, endpoint, stack, tmp_path):
    variables = ansible.playbook_vars(endpoint, str(tmp_path / 'state'), rekognition_reindex_update_face_ids=True,
                                      rekognition_reindex_return_face_ids=True)
    good = ansible.run_playbook(variables, ['-vvvv'], json_output=False)
    assert good.returncode == 0, good.stdout[-4000:]
    assert 'indexed %d photos' % 0 not in good.stdout
    bad = ansible.run_playbook(dict(variables, fleet_dr_encryption_key=os.urandom(32).hex()), ['-vvvv'], json_output=False)
    assert bad.returncode != 0 and 'nothing was sent to Rekognition' in bad.stdout
    secrets = {'AWS secret key': AWS_SECRET_KEY, 'ENCRYPTION_KEY': stack.key_hex, 'database password': stack.password}
    job_files = [os.path.join(ansible.async_dir, name) for name in os.listdir(ansible.async_dir)]
    assert job_files, 'the failed job should leave its status file for the operator'
    outputs = [proc.stdout + proc.stderr for proc in (good, bad)]
    for path in job_files:
        with open(path) as fileobj:
            outputs.append(fileobj.read())
    for output in outputs:
        for name, secret in secrets.items():
            assert secret not in output, '%s appears in the -vvvv output or an async job file' % name
    assert 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER' in good.stdout


def test_chained_after_a_play_that_failed_the_host_it_does_not_run(ansible, endpoint, tmp_path):
    """The opt-in step after a restore: ``ansible-playbook restore.yml rekognition_reindex.yml``. Here a
    stand-in first playbook fails the host the way a failed restore does; the re-indexing must not start."""
    failing = tmp_path / 'failed_restore.yml'
    failing.write_text('- name: Stand-in for a restore that fails\n  hosts: telemetry_db\n  gather_facts: false\n  tasks:\n'
                       '    - name: Fail as a restore whose verification failed\n      ansible.builtin.fail:\n'
                       '        msg: restore verification failed\n')
    proc = ansible.run_playbook(ansible.playbook_vars(endpoint, str(tmp_path / 'state')), before=[str(failing)])
    assert proc.returncode != 0
    assert 'Fail as a restore' in proc.stdout and 'Re-index the photos' not in proc.stdout
    assert stats(endpoint)['requests_total'] == 0 and not os.path.exists(str(tmp_path / 'state'))
