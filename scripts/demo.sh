#!/usr/bin/env bash
# The main job on the demo stack: set everything up, bring up examples/telemetry_app with seeded data,
# take a verified backup of it with playbooks/backup.yml, and prove that backup with a DR drill
# (playbooks/dr_drill.yml: restore into a scratch stack beside the demo, verify, report, tear down).
#   bash scripts/demo.sh          set up, start and seed the demo stack, back it up, drill the backup
#   bash scripts/demo.sh down     remove the demo's containers, network and volume (and any scratch stack of a drill)
# Settings: DEMO_SIZE (seeder preset, default small), DEMO_PROJECT (compose project, default fleetdemo).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

APP_DIR="$FLEET_DR_ROOT/examples/telemetry_app"
DEMO_PROJECT=${DEMO_PROJECT:-fleetdemo}
DEMO_SIZE=${DEMO_SIZE:-small}

compose() { (cd "$APP_DIR" && $(compose_cmd) -p "$DEMO_PROJECT" "$@"); }

DRILL_WORK_DIR=${DRILL_WORK_DIR:-/var/tmp/fleet-dr-drill}
INVENTORY="$FLEET_DR_ROOT/examples/inventory.yml"
export DEMO_PROJECT DEMO_BACKUP_DIR=${DEMO_BACKUP_DIR:-/var/backups/fleet-telemetry-demo}

# A drill removes its scratch stack itself, also when it fails; this is for one that was killed: the module the
# drill's teardown runs, against the demo's inventory.
remove_scratch_stack() {
    local out
    [ -x "$(venv_dir)/bin/python" ] || { log "no virtual environment: no drill ever ran, no scratch stack to remove"; return 0; }
    activate_venv
    use_checkout_collection
    # shellcheck disable=SC2016 # {{ }} are Jinja, templated by ansible from the inventory
    if ! out=$(ansible -i "$INVENTORY" telemetry_db -m fleet_telemetry.dr.dr_scratch_stack \
        -a 'state=absent production_project_src={{ fleet_dr_project_src }} production_project_name={{ fleet_dr_project_name }}'" work_dir=$DRILL_WORK_DIR" 2>&1); then
        printf '%s\n' "$out" >&2
        die "could not remove the scratch stack of a drill (see above)"
    fi
    [ ! -d "$DRILL_WORK_DIR" ] || rmdir --ignore-fail-on-non-empty "$DRILL_WORK_DIR"
}

if [ "${1:-up}" = down ]; then
    compose down -v --remove-orphans
    remove_scratch_stack
    log "demo stack $DEMO_PROJECT removed (containers, network, volume, drill scratch stack); backups stay in $DEMO_BACKUP_DIR"
    exit 0
fi

"$FLEET_DR_ROOT/scripts/setup.sh"
activate_venv

if [ ! -f "$APP_DIR/.env" ]; then
    log "writing $APP_DIR/.env with a fresh password and ENCRYPTION_KEY (mode 0600)"
    (
        umask 077
        sed -e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')/" \
            -e "s/^ENCRYPTION_KEY=.*/ENCRYPTION_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')/" \
            -e "s/^DB_PORT=.*/DB_PORT=55432/" \
            "$APP_DIR/.env.example" > "$APP_DIR/.env"
    )
fi

log "starting the demo stack (project $DEMO_PROJECT)"
compose up -d db >/dev/null
container=$(compose ps -q db)
for _ in $(seq 1 90); do
    status=$(docker inspect -f '{{.State.Health.Status}}' "$container" 2>/dev/null || echo unknown)
    [ "$status" = healthy ] && break
    sleep 1
done
[ "$status" = healthy ] || die "the demo database did not become healthy (docker logs $container)"

photos=$(docker exec "$container" psql -X -At -U challengeuser -d telemetry_db -c 'SELECT count(*) FROM photo')
if [ "$photos" = 0 ]; then
    log "seeding the demo database (size $DEMO_SIZE)"
    python "$APP_DIR/seed.py" --env-file "$APP_DIR/.env" --size "$DEMO_SIZE" \
        --psql "docker exec -i $container psql -X -v ON_ERROR_STOP=1 -q -U challengeuser -d telemetry_db"
else
    log "demo database already seeded ($photos photos)"
fi
python "$APP_DIR/seed.py" --env-file "$APP_DIR/.env" --verify \
    --psql "docker exec -i $container psql -X -v ON_ERROR_STOP=1 -q -U challengeuser -d telemetry_db"
log "demo stack up: container $container, database telemetry_db on 127.0.0.1:55432"

log "taking a verified backup with playbooks/backup.yml"
use_checkout_collection
ansible-playbook -i "$INVENTORY" "$FLEET_DR_ROOT/playbooks/backup.yml"
log "backups of the demo are in $DEMO_BACKUP_DIR"

log "drilling the newest verified backup with playbooks/dr_drill.yml (scratch stack ${DEMO_PROJECT}_drill beside the demo)"
output=$(mktemp)
trap 'rm -f "$output"' EXIT
drill_rc=0
# The report of this run is the one its set_stats names (printed by the default callback as CUSTOM STATS).
ANSIBLE_SHOW_CUSTOM_STATS=true ansible-playbook -i "$INVENTORY" "$FLEET_DR_ROOT/playbooks/dr_drill.yml" \
    -e "dr_drill_work_dir=$DRILL_WORK_DIR" | tee "$output" || drill_rc=$?
report=$(sed -n 's/.*"fleet_dr_drill_report": "\([^"]*\)".*/\1/p' "$output" | tail -n 1)
[ "$drill_rc" = 0 ] || die "the DR drill failed (ansible-playbook exit $drill_rc); report: ${report:-none written}"
[ -n "$report" ] || die "the DR drill passed but its set_stats named no report"
log "DR drill passed; report: $report (also .json and .xml beside it; history $(dirname "$report")/drill_history.jsonl)"
