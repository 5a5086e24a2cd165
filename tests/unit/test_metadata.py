# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a user expects of a collection: galaxy.yml's links, a requires_ansible that matches the ansible-core actually
tested, an ansible-doc page for every module and role, and a changelog built by antsibull-changelog."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.parse

import pytest
import yaml

from ansible.release import __version__ as ansible_core_version

from ansible_collections.fleet_telemetry.dr.tests.unit.support import ansible_cli

ROOT = ansible_cli.REPO_ROOT
Version = pytest.importorskip('packaging.version').Version
SpecifierSet = pytest.importorskip('packaging.specifiers').SpecifierSet


def load(path):
    with open(os.path.join(ROOT, path)) as handle:
        return yaml.safe_load(handle)


def pinned_ansible_core():
    """The ansible-core that requirements-test.txt pins: the one every test of the project runs on."""
    with open(os.path.join(ROOT, 'requirements-test.txt')) as handle:
        pins = dict(re.findall(r'^([A-Za-z0-9_.-]+)==(\S+)', handle.read(), re.MULTILINE))
    return Version(pins['ansible-core'])


def test_galaxy_yml_links_to_the_repository_its_documentation_and_issues():
    galaxy = load('galaxy.yml')
    links = {key: galaxy.get(key) for key in ('repository', 'documentation', 'homepage', 'issues')}
    for key, url in links.items():
        parsed = urllib.parse.urlparse(url or '')
        assert parsed.scheme == 'https' and parsed.netloc, '%s: %r' % (key, url)
    repository = links['repository'].rstrip('/')
    assert links['issues'] == repository + '/issues'
    assert links['homepage'] == repository
    # The documentation is the docs/ directory of the repository's main branch, which this checkout has.
    assert links['documentation'] == repository + '/tree/main/docs'
    assert os.path.isfile(os.path.join(ROOT, 'docs', 'awx.md'))


def test_requires_ansible_starts_at_the_tested_ansible_core_line():
    requires = SpecifierSet(load('meta/runtime.yml')['requires_ansible'])
    tested = pinned_ansible_core()
    # The suite runs on the pinned ansible-core, which the collection declares it supports...
    assert Version(ansible_core_version) == tested
    assert tested in requires
    # ... and it claims no older line, none of which is tested.
    assert Version('%d.%d.0' % (tested.major, tested.minor)) in requires
    assert Version('%d.%d.99' % (tested.major, tested.minor - 1)) not in requires


def test_the_execution_environment_installs_the_tested_ansible_core_line():
    tested = pinned_ansible_core()
    ee = load('ee/execution-environment.yml')
    installed = SpecifierSet(ee['dependencies']['ansible_core']['package_pip'].split('ansible-core', 1)[1])
    assert tested in installed
    assert Version('%d.%d.0' % (tested.major, tested.minor + 1)) not in installed
    assert Version('%d.%d.99' % (tested.major, tested.minor - 1)) not in installed


def page_titles(kind, names):
    """The names whose page ``ansible-doc -t <kind>`` renders, all of them in one run; its stderr on failure."""
    result = ansible_cli.run('doc', '-t', kind, *names)
    text = re.sub(r'\x1b\[[0-9;]*m', '', result.stdout)
    assert result.returncode == 0, result.stderr
    assert 'WARNING' not in result.stderr, result.stderr
    # Without colours ansible-doc marks the title *bold*.
    return sorted(re.findall(r'^> %s:? \*?([\w.]+)\*? ' % kind.upper(), text, re.MULTILINE)), text


def test_every_module_has_an_ansible_doc_page():
    names = sorted('fleet_telemetry.dr.' + name[:-3] for name in os.listdir(os.path.join(ROOT, 'plugins', 'modules'))
                   if name.endswith('.py') and not name.startswith('_'))
    assert len(names) >= 16
    titles, text = page_titles('module', names)
    assert titles == names
    for section in ('OPTIONS', 'ATTRIBUTES', 'EXAMPLES:', 'RETURN VALUES:'):
        assert text.count(section) >= len(names), section


def test_every_role_has_an_ansible_doc_page():
    names = sorted('fleet_telemetry.dr.' + name for name in os.listdir(os.path.join(ROOT, 'roles'))
                   if os.path.isfile(os.path.join(ROOT, 'roles', name, 'meta', 'argument_specs.yml')))
    assert names == sorted('fleet_telemetry.dr.' + name for name in os.listdir(os.path.join(ROOT, 'roles')))
    titles, text = page_titles('role', names)
    assert titles == names
    assert len(re.findall(r'^ENTRY POINT: \*?main\*? - \S', text, re.MULTILINE)) == len(names)


def test_the_changelog_is_the_one_antsibull_changelog_builds(tmp_path):
    antsibull = shutil.which('antsibull-changelog', path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    if antsibull is None:
        pytest.skip('antsibull-changelog is not installed (requirements-test.txt)')
    for path in ('galaxy.yml', 'changelogs', 'CHANGELOG.rst'):
        copy = shutil.copytree if os.path.isdir(os.path.join(ROOT, path)) else shutil.copy
        copy(os.path.join(ROOT, path), tmp_path / path)
    subprocess.run([antsibull, 'generate'], cwd=tmp_path, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with open(os.path.join(ROOT, 'CHANGELOG.rst')) as built, open(tmp_path / 'CHANGELOG.rst') as regenerated:
        assert built.read() == regenerated.read()
    version = load('galaxy.yml')['version']
    release = load('changelogs/changelog.yaml')['releases'][version]
    assert release['changes']
    # Every module is new in this first release (version_added), so the changelog names each of them.
    modules = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, 'plugins', 'modules')) if name.endswith('.py') and name != '__init__.py')
    assert sorted(module['name'] for module in release['modules']) == modules
