#!/usr/bin/env bash
# Runs the backup benchmark (bench/backup_bench.py) with the project's venv and this collection on the
# collection path. Examples:
#   bash bench/run.sh                      # 1x (~1.5 GB): time and size ratios
#   bash bench/run.sh --scales 1,4 --keep  # adds the 4x dataset for the memory check; keeps seeded stacks
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"
"$FLEET_DR_ROOT/scripts/setup.sh" >/dev/null
activate_venv
use_checkout_collection
python "$FLEET_DR_ROOT/bench/backup_bench.py" "$@"
