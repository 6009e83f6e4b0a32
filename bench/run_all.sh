#!/usr/bin/env bash
# Builds and runs every benchmark; paste the output into docs/benchmarks.md.
#   bench/run_all.sh [build dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/release}"
[ -d "$build" ] || scripts/build.sh release
cmake --build "$build" --target fedge-sim fedge_trainer_bench fedge_plain_round fedge_aggregation_bench fedge_drift_bench
echo "== trainer overhead"; "$build/bench/fedge_trainer_bench"
echo "== streaming aggregation"; "$build/bench/fedge_aggregation_bench"
echo "== simulation overhead"; bench/sim_overhead.sh "$build"
echo "== simulation scale"; bench/sim_scale.sh "$build"
echo "== drift detectors (per-observation cost)"; "$build/bench/fedge_drift_bench"
echo "== drift scenario (docs/drift.md)"; bench/drift_scenario.sh "$build"
