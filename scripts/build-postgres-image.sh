#!/usr/bin/env bash
# Builds a PostgreSQL 15 image from Debian's packages when no image is tagged $FLEET_DR_PG_IMAGE
# (default postgres:15). No registry is reachable on these machines, so nothing is pulled:
# debootstrap a minimal bookworm with postgresql-15, add an entrypoint compatible with the official
# image, import it under a temporary tag, smoke-test it, and only then give it the real tag.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

force=0
[ "${1:-}" = "--force" ] && force=1

if [ "$force" = 0 ] && docker image inspect "$FLEET_DR_PG_IMAGE" >/dev/null 2>&1; then
    log "image $FLEET_DR_PG_IMAGE already present"
    exit 0
fi
is_root || die "building the PostgreSQL image needs root (debootstrap); run as root or provide an image tagged $FLEET_DR_PG_IMAGE"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap (scripts/setup.sh does it)"

# The mirror apt already uses, so the build works wherever apt works.
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*debian\/\{0,1\}\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d /var/tmp/fleet-dr-pgimage.XXXXXX)
tmp_tag="fleet-dr-pg-build:$$"
cleanup() {
    rm -rf "$work"
    docker rm -f "fleet-dr-pg-smoke-$$" >/dev/null 2>&1 || true
    docker rmi "$tmp_tag" >/dev/null 2>&1 || true
}
trap cleanup EXIT

log "debootstrap bookworm + postgresql-15 from $mirror (about a minute)"
if ! debootstrap --variant=minbase --include=postgresql-15 bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" >&2
    die "debootstrap failed (log above); check that $mirror is reachable (apt-get update works?)"
fi

root=$work/root
install -m 0755 "$FLEET_DR_ROOT/scripts/postgres-image/docker-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
mkdir -p "$root/docker-entrypoint-initdb.d" "$root/var/lib/postgresql/data"
rm -rf "$root/var/lib/postgresql/15" "$root/etc/postgresql/15"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

log "importing the image"
tar -C "$root" -c . | docker import \
    -c 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    -c 'CMD ["postgres"]' \
    -c 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV PGDATA=/var/lib/postgresql/data' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'EXPOSE 5432' \
    -c 'LABEL org.opencontainers.image.title="postgres 15 built locally by fleet_telemetry.dr"' \
    - "$tmp_tag" >/dev/null

log "smoke test"
docker run -d --name "fleet-dr-pg-smoke-$$" -e POSTGRES_PASSWORD=smoke -e POSTGRES_USER=smoke -e POSTGRES_DB=smokedb "$tmp_tag" >/dev/null
ok=0
for _ in $(seq 1 60); do
    if docker exec "fleet-dr-pg-smoke-$$" psql -X -U smoke -d smokedb -tAc 'select 1' 2>/dev/null | grep -qx 1; then
        ok=1
        break
    fi
    sleep 1
done
if [ "$ok" != 1 ]; then
    docker logs "fleet-dr-pg-smoke-$$" >&2 || true
    die "the freshly built image did not start PostgreSQL; it was not tagged $FLEET_DR_PG_IMAGE"
fi

docker tag "$tmp_tag" "$FLEET_DR_PG_IMAGE"
log "built and tagged $FLEET_DR_PG_IMAGE"
