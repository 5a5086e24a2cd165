#!/usr/bin/env bash
# Runs the benchmarks with the project's venv and this collection on the collection path. Examples:
#   bash bench/run.sh                          # backup benchmark at 1x (~1.5 GB): time, size and memory ratios
#   bash bench/run.sh --scales 1,4 --keep      # adds the 4x dataset for the memory check; keeps seeded stacks
#   bash bench/run.sh restore                  # restore benchmark at 1x (reuses a kept 1x stack)
#   bash bench/run.sh restore --repeat 3       # median of three runs of every procedure
#   bash bench/run.sh pipe                     # the restore's pass-through alone, 64 KiB vs 1 MiB pipes (no database)
#   bash bench/run.sh offsite --scales 1,4     # offsite_copy to S3 (moto) against boto3 upload_file, medians of 3 (no Docker)
#   bash bench/run.sh encryption --keep        # backup and restore with encryption=age against clear, 1x, medians of 3
#   bash bench/run.sh encryption --scales 1,4  # adds 4x for the memory check (--repeat N: runs of each, default 3)
#   bash bench/run.sh playbooks --keep        # backup.yml, restore.yml, dr_drill.yml end to end against the runbook, 1x, medians of 3
#   bash bench/run.sh parallel-load --keep    # probe: a plain dump loaded in 1 session vs 2 (split into files), medians of 3
#   bash bench/run.sh restore --help           # options (likewise backup, pipe, offsite, encryption, playbooks)
#   bash bench/run.sh clean                    # remove every bench stack, its volume, and the work directory
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"
"$FLEET_DR_ROOT/scripts/setup.sh" >/dev/null
activate_venv
use_checkout_collection
# The benchmarks import the collection's own code (module_utils) from the collection path.
export PYTHONPATH="${ANSIBLE_COLLECTIONS_PATH%%:*}"
bench=backup_bench.py
case "${1:-}" in
    backup) shift ;;
    restore) bench=restore_bench.py; shift ;;
    pipe) bench=pipe_bench.py; shift ;;
    offsite) bench=offsite_bench.py; shift ;;
    encryption) bench=encryption_bench.py; shift ;;
    playbooks) bench=playbook_bench.py; shift ;;
    parallel-load) bench=parallel_load_probe.py; shift ;;
    clean) shift; exec python "$FLEET_DR_ROOT/bench/benchlib.py" clean "$@" ;;
esac
exec python "$FLEET_DR_ROOT/bench/$bench" "$@"
