#!/usr/bin/env bash
# Runs every test: sets the machine up first (scripts/setup.sh), then
#   unit         pytest tests/unit from the checkout
#   sanity       ansible-test sanity (no ignore entries)
#   lint         ansible-lint --profile production on the collection (.ansible-lint; offline)
#   units        ansible-test units
#   integration  ansible-test integration targets against real scratch compose stacks
#   system       pytest tests/system: failure cases (kill, disk full, lock, secrets at -vvvv) through ansible
#   molecule     the molecule scenarios against a real scratch compose stack
#   build        collection build + offline install
#   ee           the execution environment: ansible-builder create + introspect, offline (scripts/ee-check.sh)
# Select steps with TEST_STEPS (default: "unit sanity lint units integration system molecule build ee").
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

STEPS=${TEST_STEPS:-unit sanity lint units integration system molecule build ee}

"$FLEET_DR_ROOT/scripts/setup.sh"
activate_venv
cd "$FLEET_DR_ROOT"

passed=0
failed=0
failed_steps=""
step() {
    local name=$1
    shift
    case " $STEPS " in *" $name "*) ;; *) log "step $name skipped (TEST_STEPS)"; return 0 ;; esac
    log "=== step: $name"
    local start=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        log "=== step $name passed in $((SECONDS - start)) s"
    else
        failed=$((failed + 1))
        failed_steps="$failed_steps $name"
        log "=== step $name FAILED after $((SECONDS - start)) s"
    fi
}

# pytest exits 5 when it collected nothing: an empty suite is a failure here, not a pass.
run_pytest() {
    local suite=$1 rc=0
    shift
    python -m pytest -q -p no:cacheprovider "$suite" "$@" || rc=$?
    if [ "$rc" = 5 ]; then
        log "pytest collected no tests in $suite: the suite must not be empty"
        return 1
    fi
    return "$rc"
}

run_molecule() {
    local scenario rc=0 ephemeral
    for scenario in molecule/*/molecule.yml; do
        [ -e "$scenario" ] || { log "no molecule scenario found"; return 1; }
        scenario=$(basename "$(dirname "$scenario")")
        # A private ephemeral directory: two test runs on one machine (or two checkouts with the same
        # directory name) would otherwise share molecule's state under ~/.ansible/tmp.
        ephemeral=$(mktemp -d "${TMPDIR:-/tmp}/fleet-dr-molecule-$scenario.XXXXXX")
        MOLECULE_EPHEMERAL_DIRECTORY=$ephemeral molecule test -s "$scenario" || rc=1
        rm -rf "$ephemeral"
    done
    return "$rc"
}

# The roles and playbooks call fleet_telemetry.dr's own modules: its syntax check needs this checkout on the
# collection path. In a subshell, so that path does not reach the other steps.
run_lint() {
    (use_checkout_collection && ansible-lint --offline)
}

build_and_install() {
    local out
    out=$(mktemp -d)
    ansible-galaxy collection build --force --output-path "$out" . >/dev/null &&
        ansible-galaxy collection install --offline --no-deps -p "$out/collections" "$out"/fleet_telemetry-dr-*.tar.gz >/dev/null &&
        ANSIBLE_COLLECTIONS_PATH="$out/collections" ansible-doc -t module fleet_telemetry.dr.pg_logical_backup >/dev/null &&
        log "built and installed offline: $(basename "$out"/fleet_telemetry-dr-*.tar.gz)"
    local rc=$?
    rm -rf "$out"
    return $rc
}

step unit run_pytest tests/unit
step sanity "$FLEET_DR_ROOT/scripts/ansible-test.sh" sanity
step lint run_lint
step units "$FLEET_DR_ROOT/scripts/ansible-test.sh" units
# The targets start and remove their own compose stacks on this host's Docker: "destructive" for ansible-test.
step integration "$FLEET_DR_ROOT/scripts/ansible-test.sh" integration --allow-destructive
step system run_pytest tests/system
step molecule run_molecule
step build build_and_install
step ee "$FLEET_DR_ROOT/scripts/ee-check.sh"

echo "test steps: $passed passed, $failed failed"
[ "$failed" = 0 ] || { log "failed steps:$failed_steps"; exit 1; }
