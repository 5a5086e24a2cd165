#!/usr/bin/env bash
# Runs the Rekognition re-indexing benchmark (bench/rekognition_bench.py) with the project's venv and this
# collection on the collection path; bench/run.sh runs the backup benchmark. Examples:
#   bash bench/run_rekognition.sh                          # 300 photos, TPS limits 5 and 20, 100 ms latency
#   bash bench/run_rekognition.sh --photos 600 --tps 50    # one limit, more photos
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"
"$FLEET_DR_ROOT/scripts/setup.sh" >/dev/null
activate_venv
use_checkout_collection
python "$FLEET_DR_ROOT/bench/rekognition_bench.py" "$@"
