#!/usr/bin/env bash
# Sets up everything the demo and the tests need on a Debian 12 machine, as root:
# Docker Engine + docker-compose (and dockerd started when no daemon answers), debootstrap,
# the host's PostgreSQL client, the locally built PostgreSQL image, and a pinned Python venv.
# Idempotent: a second run checks, finds everything in place, and changes nothing.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

APT_PACKAGES=(docker.io docker-compose debootstrap postgresql-client zstd age python3-venv ca-certificates openssh-server)

missing_packages() {
    local p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || printf '%s ' "$p"
    done
}

ensure_packages() {
    local missing
    missing=$(missing_packages)
    [ -z "$missing" ] && { log "system packages present"; return; }
    if ! is_root; then
        die "missing Debian packages: $missing; install them as root: apt-get install $missing"
    fi
    command -v apt-get >/dev/null || die "missing packages ($missing) and no apt-get: install them with your package manager"
    log "installing $missing"
    local aptlog=/var/log/fleet-dr-apt.log
    # shellcheck disable=SC2086
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l apt-get install -y -qq $missing; } >"$aptlog" 2>&1; then
        tail -n 20 "$aptlog" >&2
        die "apt-get could not install: $missing; check that Debian's package archive is reachable (apt-get update)"
    fi
}

ensure_dockerd() {
    if docker info >/dev/null 2>&1; then
        log "Docker daemon answers"
        return
    fi
    is_root || die "no Docker daemon answers and starting one needs root: start dockerd (or the docker service) and rerun"
    command -v dockerd >/dev/null || die "dockerd is missing: apt-get install docker.io"
    log "starting dockerd (log: /var/log/fleet-dr-dockerd.log)"
    setsid nohup dockerd >/var/log/fleet-dr-dockerd.log 2>&1 < /dev/null &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && { log "Docker daemon started"; return; }
        sleep 1
    done
    tail -n 20 /var/log/fleet-dr-dockerd.log >&2 || true
    die "dockerd did not answer within 60 s (log above)"
}

ensure_venv() {
    local dir
    dir=$(venv_dir)
    if [ -x "$dir/bin/python" ] && [ -f "$dir/.complete" ]; then
        log "Python venv present: $dir"
        return
    fi
    mkdir -p "$FLEET_DR_CACHE"
    rm -rf "$dir"
    log "creating Python venv $dir (about a minute)"
    python3 -m venv "$dir" || die "python3 -m venv failed: apt-get install python3-venv"
    local piplog="$FLEET_DR_CACHE/pip-install.log"
    if ! "$dir/bin/python" -m pip install -r "$FLEET_DR_ROOT/requirements-test.txt" >"$piplog" 2>&1; then
        grep -v "is ignored: it is neither" "$piplog" | tail -n 20 >&2
        rm -rf "$dir"
        die "pip could not install requirements-test.txt; check that PyPI is reachable"
    fi
    touch "$dir/.complete"
}

ensure_packages
ensure_dockerd
compose_cmd >/dev/null || die "neither 'docker compose' nor 'docker-compose' works: apt-get install docker-compose"
"$FLEET_DR_ROOT/scripts/build-postgres-image.sh"
ensure_venv
log "setup complete (compose: $(compose_cmd); venv: $(venv_dir))"
