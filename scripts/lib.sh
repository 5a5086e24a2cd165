# shellcheck shell=bash
# Shared helpers for the project's scripts. Sourced, never executed.

FLEET_DR_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FLEET_DR_CACHE=${FLEET_DR_CACHE:-/var/cache/fleet-telemetry-dr}
FLEET_DR_PG_IMAGE=${FLEET_DR_PG_IMAGE:-postgres:15}
export FLEET_DR_ROOT FLEET_DR_CACHE FLEET_DR_PG_IMAGE

log() { printf '[fleet-dr] %s\n' "$*" >&2; }
die() { printf '[fleet-dr] ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# The venv lives outside the work tree so fresh clones (CI) reuse it; its name
# carries a hash of the requirements so a change of pins builds a new one.
venv_dir() {
    local digest
    digest=$(sha256sum "$FLEET_DR_ROOT/requirements-test.txt" | cut -c1-12)
    printf '%s/venv-%s' "$FLEET_DR_CACHE" "$digest"
}

activate_venv() {
    local dir
    dir=$(venv_dir)
    [ -x "$dir/bin/python" ] || die "no virtual environment at $dir; run scripts/setup.sh first"
    export FLEET_DR_VENV="$dir"
    export PATH="$dir/bin:$PATH"
}

# Prints the compose command: docker compose v2 when the plugin answers, else docker-compose v1.
compose_cmd() {
    if docker compose version >/dev/null 2>&1; then
        echo "docker compose"
    elif command -v docker-compose >/dev/null 2>&1; then
        echo "docker-compose"
    else
        return 1
    fi
}

# Puts this checkout on the collection path as fleet_telemetry.dr, beside the collections the
# `ansible` package bundles (amazon.aws, community.docker, ...), without installing anything.
use_checkout_collection() {
    local tree
    tree="$FLEET_DR_CACHE/collections-$(printf '%s' "$FLEET_DR_ROOT" | sha256sum | cut -c1-12)"
    mkdir -p "$tree/ansible_collections/fleet_telemetry"
    ln -sfn "$FLEET_DR_ROOT" "$tree/ansible_collections/fleet_telemetry/dr"
    local bundled
    bundled=$(python -c 'import ansible_collections, os; print(os.path.dirname(list(ansible_collections.__path__)[0]))')
    export ANSIBLE_COLLECTIONS_PATH="$tree:$bundled"
}
