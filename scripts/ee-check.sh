#!/usr/bin/env bash
# Checks the execution environment (ee/execution-environment.yml) offline, without building an image:
#   1. builds this collection's tarball, the one ee/requirements.yml installs, and installs it offline as the image would;
#   2. ansible-builder create: the build context (Containerfile, _build/ with the requirement files and the tarball);
#   3. ansible-builder introspect over the installed collection and the others ee/requirements.yml names (taken from the
#      venv's `ansible` bundle): the Python and system requirements the image's builder stage will install;
#   4. checks that the Containerfile, the requirement files and the bindep lists for the image (CentOS Stream 9) and for
#      a Debian 12 host name what the modules need: PostgreSQL 15 client, zstd, age, the docker client, boto3/botocore,
#      cryptography.
#
#   bash scripts/ee-check.sh [CONTEXT_DIR]
#
# With CONTEXT_DIR the build context is kept there, ready for `podman build` or `docker build` where a registry is
# reachable (docs/ee.md). Needs ansible-builder on PATH (requirements-test.txt).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

activate_venv
cd "$FLEET_DR_ROOT"

BUILDER=$(command -v ansible-builder) ||
    die "ansible-builder is not on PATH: it is pinned in requirements-test.txt (scripts/setup.sh installs it into the venv)"
# The checks below use bindep, PyYAML and packaging, which come with ansible-builder: run them with its interpreter.
read -r -a shebang < <(sed -n '1s/^#! *//p' "$BUILDER") || true
BUILDER_PY=${shebang[0]:-python3}
log "$("$BUILDER" --version | head -n1 | sed 's/^/ansible-builder /') ($BUILDER)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fleet-dr-ee-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
CONTEXT=${1:-$WORK/context}

# 1. The collection's tarball, at the path ee/execution-environment.yml copies into the build context.
cp -r ee "$WORK/ee"
mkdir -p "$WORK/build" "$WORK/ee/collections"
ansible-galaxy collection build --force --output-path "$WORK/build" . >"$WORK/galaxy-build.log" 2>&1 ||
    { cat "$WORK/galaxy-build.log" >&2; die "ansible-galaxy collection build failed"; }
TARBALL="$WORK/ee/collections/fleet_telemetry-dr.tar.gz"
mv "$WORK"/build/fleet_telemetry-dr-*.tar.gz "$TARBALL"
ansible-galaxy collection install --offline --no-deps -p "$WORK/collections" "$TARBALL" >"$WORK/galaxy-install.log" 2>&1 ||
    { cat "$WORK/galaxy-install.log" >&2; die "the collection's tarball does not install offline"; }

# 2. The build context.
"$BUILDER" create -f "$WORK/ee/execution-environment.yml" -c "$CONTEXT" --output-filename Containerfile >"$WORK/create.log" 2>&1 ||
    { cat "$WORK/create.log" >&2; die "ansible-builder create failed on ee/execution-environment.yml"; }
log "ansible-builder create: build context in $CONTEXT"

# 3. Introspection over the collections the image installs: this one (installed above) and the others of
# ee/requirements.yml, linked from the `ansible` bundle of the venv.
bundle=$(python -c 'import ansible_collections, os; print(list(ansible_collections.__path__)[0])')
while read -r fqcn; do
    [ -d "$bundle/${fqcn%%.*}/${fqcn#*.}" ] || die "ee/requirements.yml names $fqcn, which the venv's ansible package does not bundle"
    mkdir -p "$WORK/collections/ansible_collections/${fqcn%%.*}"
    ln -s "$bundle/${fqcn%%.*}/${fqcn#*.}" "$WORK/collections/ansible_collections/${fqcn%%.*}/${fqcn#*.}"
done < <("$BUILDER_PY" -c '
import sys, yaml
for c in yaml.safe_load(open(sys.argv[1]))["collections"]:
    if c.get("type") != "file":
        print(c["name"])' ee/requirements.yml)
"$BUILDER" introspect "$WORK/collections" --write-pip "$WORK/pip.txt" --write-bindep "$WORK/bindep.txt" >"$WORK/introspect.log" 2>&1 ||
    { cat "$WORK/introspect.log" >&2; die "ansible-builder introspect failed"; }
log "ansible-builder introspect: $(grep -c . "$WORK/pip.txt") Python and $(grep -c . "$WORK/bindep.txt") system requirements"

# 4. What they produced names what the collection needs.
"$BUILDER_PY" - "$CONTEXT" "$TARBALL" "$WORK/pip.txt" "$WORK/bindep.txt" galaxy.yml <<'EOF'
import json
import os
import re
import sys
import tarfile

import yaml
from bindep.depends import Depends
from packaging.requirements import Requirement

context, tarball, pip_file, bindep_file, galaxy_file = sys.argv[1:]
problems = []


def check(ok, what):
    print('%s: %s' % ('ok' if ok else 'FAILED', what))
    if not ok:
        problems.append(what)


galaxy = yaml.safe_load(open(galaxy_file))

# The Containerfile: the base stage gets the repositories and ansible-core 2.19, the builder stage installs what
# introspection finds, the final stage installs it.
containerfile = open(os.path.join(context, 'Containerfile')).read()
for needle, why in [
    ('dnf module enable -y postgresql:15', 'the PostgreSQL 15 client stream is enabled'),
    ('epel-release', 'EPEL (age) is enabled'),
    ('docker-ce.repo', "Docker's repository (docker-ce-cli) is added"),
    ('ansible-core>=2.19.0,<2.20', 'ansible-core 2.19 is installed'),
    ('introspect.py introspect', "the builder stage introspects the installed collections' requirements"),
    ('/output/scripts/assemble', 'the builder stage resolves them with bindep and pip'),
    ('/output/scripts/install-from-bindep', 'the final stage installs them'),
    ('ansible-galaxy collection install', 'the collections are installed'),
]:
    check(needle in containerfile, 'Containerfile: %s (%s)' % (why, needle))

# The galaxy requirements of the context install this collection from the tarball in the context.
requirements = yaml.safe_load(open(os.path.join(context, '_build', 'requirements.yml')))['collections']
files = [c['name'] for c in requirements if c.get('type') == 'file']
check(len(files) == 1 and files[0].startswith('/build/')
      and os.path.isfile(os.path.join(context, '_build', files[0][len('/build/'):])),
      '_build/requirements.yml installs the collection from a tarball inside the build context (%s)' % files)
check(any(c['name'] == 'amazon.aws' for c in requirements), '_build/requirements.yml installs amazon.aws (galaxy.yml dependency)')

# The tarball is this collection, with the files introspection reads, and without the image's own definition.
with tarfile.open(tarball) as tar:
    names = set(tar.getnames())
    manifest = json.load(tar.extractfile('MANIFEST.json'))['collection_info']
check((manifest['namespace'], manifest['name'], manifest['version']) == (galaxy['namespace'], galaxy['name'], galaxy['version']),
      'the tarball is %s.%s %s' % (galaxy['namespace'], galaxy['name'], galaxy['version']))
for name in ('meta/execution-environment.yml', 'meta/ee-requirements.txt', 'meta/ee-bindep.txt', 'meta/runtime.yml'):
    check(name in names, 'the tarball carries %s' % name)
check(not any(n == 'ee' or n.startswith('ee/') for n in names), 'the tarball leaves ee/ out (build_ignore)')

# Python requirements found by introspection, by project name.
pip = {}
for line in open(pip_file):
    line = re.sub(r'\s+#.*$', '', line).strip()
    if line:
        req = Requirement(line)
        pip.setdefault(req.name.lower(), set()).add(str(req.specifier))
for name in ('boto3', 'botocore', 'cryptography', 'pillow', 'pytz', 'python-dateutil'):
    check(name in pip, 'introspected Python requirements name %s %s' % (name, sorted(pip.get(name, []))))


# System packages, as the builder stage's bindep resolves them: on the image's platform (CentOS Stream 9, the
# default profile and then EPEL, as ansible-builder's assemble script does) and on a Debian 12 host.
def packages(profiles, platform):
    depends = Depends(open(bindep_file).read())
    return {rule[0] for rule in depends.active_rules(profiles + platform)}


centos = ['platform:rpm', 'platform:centos', 'platform:centos-9', 'platform:redhat', 'platform:dnf']
debian = ['platform:dpkg', 'platform:debian', 'platform:debian-12', 'platform:python3']
image = packages(['default'], centos)
epel = packages(['epel'], centos) - image
host = packages(['default'], debian)
print('image packages: %s; from EPEL: %s' % (' '.join(sorted(image)), ' '.join(sorted(epel))))
print('Debian 12 host packages: %s' % ' '.join(sorted(host)))
for what, have, need in [
    ('image', image, {'postgresql', 'zstd', 'gzip', 'docker-ce-cli', 'docker-compose-plugin', 'openssh-clients'}),
    ('image, EPEL', epel, {'age'}),
    ('Debian 12 host', host, {'postgresql-client-15', 'zstd', 'gzip', 'age', 'docker.io', 'docker-compose', 'openssh-client'}),
]:
    check(need <= have, 'bindep (%s) names %s%s' % (what, ' '.join(sorted(need)),
                                                  '' if need <= have else '; missing: ' + ' '.join(sorted(need - have))))

if problems:
    sys.exit('ee-check: %d check(s) failed: %s' % (len(problems), '; '.join(problems)))
print('ee-check: all checks passed')
EOF
