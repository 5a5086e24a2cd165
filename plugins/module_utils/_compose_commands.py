# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The compose command runner: a project's compose files and name, and the docker and compose commands that read it.

Internal to fleet_telemetry.dr: not a public API, it may change without notice.

``Commands`` runs the compose command (``docker compose`` v2 or ``docker-compose`` v1, from ``_transport.compose_base``;
``is_v2`` tells them apart) and the docker CLI for one project. What exists is read from Docker itself by the labels
compose puts on what it creates (``com.docker.compose.project`` and ``com.docker.compose.service``), which v1 and v2
write alike. The project operations built on it (up, down, wait) are ``_compose``.

``env`` holds secrets (``POSTGRES_PASSWORD``): it goes into the environment of the commands only, never into
argv or a result.
"""

from __future__ import annotations

import json
import os
import re

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML comes with ansible-core
    yaml = None

_PARSE_ERRORS = (ValueError, yaml.YAMLError) if yaml else (ValueError,)

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import (
    Connection,
    TransportError,
    classify_error,
    compose_base,
    run,
)

DEFAULT_FILES = ('compose.yaml', 'compose.yml', 'docker-compose.yaml', 'docker-compose.yml')
PROJECT_LABEL = 'com.docker.compose.project'
SERVICE_LABEL = 'com.docker.compose.service'
_SEP = '\t'
COMMAND_TIMEOUT = 600


class ComposeError(TransportError):
    """A failure of compose_project: one sentence, a code (no_docker, no_project, compose_failed, not_ready)."""

    def __init__(self, msg, code='compose_failed', **kwargs):
        super(ComposeError, self).__init__(msg, code=code, **kwargs)


class ComposeProject(object):
    """What the module was asked about: plain data. ``env`` is secret."""

    def __init__(self, project_src, project_name=None, files=None, env=None, db_service='db', db_user='challengeuser',
                 db_name='telemetry_db', docker_cli='docker', db_password=None):
        self.project_src = project_src
        self.project_name = project_name
        self.files = list(files or [])
        self.env = dict(env or {})
        self.db_service = db_service
        self.db_user = db_user
        self.db_name = db_name
        self.docker_cli = docker_cli
        self.db_password = db_password


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

def normalize_project_name(name, v2=False):
    """The project name as compose stores it in its labels: lower case, only ``a-z0-9_-``; v2 also strips leading ``_`` and ``-``."""
    name = re.sub(r'[^-_a-z0-9]', '', (name or '').lower())
    return name.lstrip('_-') if v2 else name


def read_env_file(path):
    """``NAME=value`` pairs of a compose ``.env`` file (comments and blank lines skipped, one level of quotes removed)."""
    values = {}
    try:
        with open(path) as fileobj:
            lines = fileobj.read().splitlines()
    except (IOError, OSError):
        return values
    for line in lines:
        line = line.strip()
        if not line or line.startswith('#') or '=' not in line:
            continue
        name, value = line.split('=', 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in '"\'':
            value = value[1:-1]
        values[name.strip()] = value
    return values


def effective_project_name(project, environ=None, v2=False):
    """The name docker-compose v1 will use: ``project_name``, else COMPOSE_PROJECT_NAME (env option, environment, ``.env``),
    else the directory's name. v2 also reads a top-level ``name:`` of the compose file: use ``resolved_project_name``,
    which asks compose itself; this is its fallback (with ``v2``, normalised as v2 does)."""
    environ = os.environ if environ is None else environ
    name = project.project_name or project.env.get('COMPOSE_PROJECT_NAME') or environ.get('COMPOSE_PROJECT_NAME')
    if not name:
        name = read_env_file(os.path.join(project.project_src, '.env')).get('COMPOSE_PROJECT_NAME')
    if not name:
        name = os.path.basename(os.path.abspath(project.project_src))
    return normalize_project_name(name, v2=v2)


def project_name_of(cmds, files):
    """The name compose gives the project, as in its labels.

    v2: the ``name`` of ``docker compose config --format json`` (which weighs ``-p``, COMPOSE_PROJECT_NAME, ``.env``, the
    compose file's top-level ``name:`` and the directory as v2 does), else ``effective_project_name`` normalised as v2.
    v1 (no top-level ``name:``, no JSON output): ``effective_project_name``.
    """
    if not cmds.is_v2():
        return effective_project_name(cmds.project, environ=cmds.env)
    try:
        name = compose_config(cmds, files).get('name')
    except ComposeError:
        name = None
    if name and isinstance(name, str):
        return normalize_project_name(name, v2=True)
    return effective_project_name(cmds.project, environ=cmds.env, v2=True)


def resolved_project_name(project, runner=None, environ=None):
    """``project_name_of`` for a ``ComposeProject`` (finds its compose files and command first)."""
    cmds = Commands(project, runner=runner or run, environ=environ)
    return project_name_of(cmds, compose_files(project))


def compose_files(project):
    """The compose files (absolute paths); ComposeError ``no_project`` when the directory or a file is missing."""
    src = project.project_src
    if not src or not os.path.isdir(src):
        raise ComposeError('compose project directory %s does not exist: set project_src to the directory that holds docker-compose.yml'
                           % src, code='no_project')
    if project.files:
        paths = [f if os.path.isabs(f) else os.path.join(src, f) for f in project.files]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise ComposeError('compose file %s does not exist: fix files (or project_src)' % missing[0], code='no_project')
        return paths
    for name in DEFAULT_FILES:
        path = os.path.join(src, name)
        if os.path.isfile(path):
            return [path]
    raise ComposeError('no compose file (%s) in %s: set project_src to the directory that holds it, or name it in files'
                       % (', '.join(DEFAULT_FILES), src), code='no_project')


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------

class Commands(object):
    """Runs docker and compose commands for one project with the project's environment (``runner`` as ``_transport.run``)."""

    def __init__(self, project, runner=run, environ=None):
        self.project = project
        self._runner = runner
        base_env = dict(os.environ if environ is None else environ)
        base_env.update(dict((k, str(v)) for k, v in project.env.items()))
        self.env = base_env
        self._base = None

    def runner(self, argv, **kwargs):
        kwargs.setdefault('env', self.env)
        kwargs.setdefault('timeout', COMMAND_TIMEOUT)
        try:
            return self._runner(argv, **kwargs)
        except TransportError as exc:
            if exc.code == 'missing_binary':
                if argv[0] == self.project.docker_cli:
                    raise ComposeError('the docker CLI (%s) is not installed or not on PATH: install Docker' % argv[0], code='no_docker')
                raise ComposeError('%s is not installed or not on PATH: install docker compose or docker-compose' % argv[0],
                                   code='no_docker')
            raise ComposeError(str(exc), code='compose_failed', cmd=exc.cmd)

    def docker(self, args):
        return self.runner([self.project.docker_cli] + list(args))

    def compose_argv(self, args, files):
        if self._base is None:
            conn = Connection(transport='compose', project_src=self.project.project_src, project_name=self.project.project_name,
                              docker_cli=self.project.docker_cli)
            try:
                self._base = compose_base(conn, self.runner)
            except ComposeError:
                raise
            except TransportError as exc:
                raise ComposeError(str(exc), code='no_docker', cmd=exc.cmd)
        file_args = []
        if self.project.files:
            for path in files:
                file_args += ['-f', path]
        return self._base + file_args + list(args)

    def compose(self, args, files):
        argv = self.compose_argv(args, files)
        rc, out, err = self.runner(argv, cwd=self.project.project_src)
        return argv, rc, out, err

    def is_v2(self):
        """True for ``docker compose`` (v2), False for ``docker-compose`` (v1) or another command."""
        base = self.compose_argv([], [])
        return len(base) >= 2 and base[0] == self.project.docker_cli and base[1] == 'compose'


def compose_config(cmds, files):
    """The project as compose resolves it (``config``; JSON with v2, YAML with v1) as a dict.

    The output holds the interpolated environment (secrets among it): it is parsed here and never returned or logged.
    """
    v2 = cmds.is_v2()
    argv, rc, out, err = cmds.compose(['config', '--format', 'json'] if v2 else ['config'], files)
    if rc != 0:
        raise compose_failure(argv, rc, err, 'compose could not read the project')
    if not v2 and yaml is None:
        raise ComposeError('reading the output of docker-compose config needs PyYAML: install it (it comes with ansible-core)',
                           code='compose_failed')
    try:
        config = json.loads(out) if v2 else yaml.safe_load(out)
    except _PARSE_ERRORS as exc:
        raise ComposeError('compose config gave output that is not %s: %s' % ('JSON' if v2 else 'YAML', (str(exc).splitlines() or ['?'])[0]),
                           code='compose_failed')
    return config if isinstance(config, dict) else {}


def docker_problem(rc, err, what):
    """A ComposeError for a failed docker command: no_docker when the daemon does not answer."""
    code, sentence = classify_error(err)
    if code == 'no_docker':
        return ComposeError(sentence, code='no_docker', rc=rc, stderr=(err or '').strip()[-2000:])
    return ComposeError('%s failed (rc=%s): %s' % (what, rc, sentence), code='compose_failed', rc=rc, stderr=(err or '').strip()[-2000:])


def check_docker(cmds):
    rc, out, err = cmds.docker(['version', '--format', '{{.Server.Version}}'])
    if rc != 0:
        code, sentence = classify_error(err)
        if code != 'no_docker':
            sentence = 'the Docker daemon does not answer (%s): start dockerd (or the docker service)' % sentence
        raise ComposeError(sentence, code='no_docker', rc=rc, stderr=(err or '').strip()[-2000:])
    return out.strip()


def parse_lines(out, fields):
    """Rows of tab-separated docker ``--format`` output as dicts of ``fields``."""
    rows = []
    for line in out.splitlines():
        if not line.strip():
            continue
        values = line.split(_SEP)
        values += [''] * (len(fields) - len(values))
        rows.append(dict(zip(fields, [v.strip() for v in values])))
    return rows


def list_containers(cmds, project_name):
    """Containers of the project (running or not): ``{service, name, state, id}``, sorted by service and name."""
    fmt = _SEP.join(['{{.Label "%s"}}' % SERVICE_LABEL, '{{.Names}}', '{{.State}}', '{{.ID}}'])
    rc, out, err = cmds.docker(['ps', '-a', '--no-trunc', '--filter', 'label=%s=%s' % (PROJECT_LABEL, project_name), '--format', fmt])
    if rc != 0:
        raise docker_problem(rc, err, 'docker ps')
    rows = parse_lines(out, ('service', 'name', 'state', 'id'))
    return sorted(rows, key=lambda row: (row['service'], row['name']))


def list_labelled(cmds, kind, project_name):
    """Names of the project's volumes or networks (``kind`` is ``volume`` or ``network``), sorted."""
    rc, out, err = cmds.docker([kind, 'ls', '--filter', 'label=%s=%s' % (PROJECT_LABEL, project_name), '--format', '{{.Name}}'])
    if rc != 0:
        raise docker_problem(rc, err, 'docker %s ls' % kind)
    return sorted(line.strip() for line in out.splitlines() if line.strip())


def list_services(cmds, files):
    """Every service of the compose file (``config --services``)."""
    argv, rc, out, err = cmds.compose(['config', '--services'], files)
    if rc != 0:
        raise compose_failure(argv, rc, err, 'compose could not read the project')
    return [line.strip() for line in out.splitlines() if line.strip()]


def compose_failure(argv, rc, err, what):
    code, sentence = classify_error(err)
    if code == 'no_docker':
        return ComposeError(sentence, code='no_docker', rc=rc, stderr=(err or '').strip()[-4000:], cmd=argv)
    lines = [line.strip() for line in (err or '').strip().splitlines() if line.strip()]
    return ComposeError('%s (rc=%s): %s' % (what, rc, lines[-1] if lines else 'no message'), code='compose_failed', rc=rc,
                        stderr=(err or '').strip()[-4000:], cmd=argv)
