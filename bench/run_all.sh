#!/usr/bin/env bash
# Builds and runs every benchmark; paste the output into docs/benchmarks.md.
#   bench/run_all.sh [build dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/release}"
[ -d "$build" ] || scripts/build.sh release
cmake --build "$build" --target fedge-sim fedge_trainer_bench fedge_plain_round fedge_aggregation_bench \
    fedge_accountant_bench fedge_drift_bench fedge_inference_bench
echo "== trainer overhead"; "$build/bench/fedge_trainer_bench"
echo "== streaming aggregation"; "$build/bench/fedge_aggregation_bench"
echo "== simulation overhead"; bench/sim_overhead.sh "$build"
echo "== simulation scale"; bench/sim_scale.sh "$build"
echo "== drift detectors (per-observation cost)"; "$build/bench/fedge_drift_bench"
echo "== drift scenario (docs/drift.md)"; bench/drift_scenario.sh "$build"
echo "== privacy accountant"; "$build/bench/fedge_accountant_bench"
echo "== inference (fp32 vs int8)"; "$build/bench/fedge_inference_bench"
# Accuracy against epsilon (docs/privacy.md) takes about 20 minutes on 2 cores:
# FEDGE_BENCH_DP=1 bench/run_all.sh
if [ "${FEDGE_BENCH_DP:-0}" = 1 ]; then echo "== DP accuracy"; bench/dp_accuracy.sh "$build" 40; fi
# The compression table (docs/compression.md) takes about half an hour on 2
# cores: FEDGE_BENCH_COMPRESSION=1 bench/run_all.sh
if [ "${FEDGE_BENCH_COMPRESSION:-0}" = 1 ]; then echo "== compression"; bench/compression.sh "$build" 30; fi
# The aggregator load benchmark (docs/deployment.md: 100, 500 and 1,000 token
# devices on loopback, cnn-large, 3 rounds) takes about 5 minutes on 2 cores
# and ~8 GB of memory for the load generator: FEDGE_BENCH_LOAD=1 bench/run_all.sh
if [ "${FEDGE_BENCH_LOAD:-0}" = 1 ]; then
  cmake --build "$build" --target fedge_load_bench
  echo "== aggregator load"; bench/load.sh "$build" 3
fi
# The status API with 10,000 registered devices (docs/operations.md) takes
# about a minute: FEDGE_BENCH_OPS=1 bench/run_all.sh
if [ "${FEDGE_BENCH_OPS:-0}" = 1 ]; then
  cmake --build "$build" --target fedge_ops_bench
  echo "== status API at 10,000 devices"; "$build/bench/fedge_ops_bench" 10000 400 4 3 2>/dev/null
fi
# The secure-aggregation cost grid (docs/secure-aggregation.md: SecAgg+ for
# n in {10, 100, 1000}, SecAgg for n in {10, 100}, d up to 10^6, dropouts
# 0/10/30%) takes several minutes on 2 cores: FEDGE_BENCH_SECAGG=1 bench/run_all.sh
if [ "${FEDGE_BENCH_SECAGG:-0}" = 1 ]; then
  cmake --build "$build" --target fedge_secagg_round_bench
  echo "== secure aggregation rounds"; bench/secagg_round.sh "$build" "$build/secagg_round.md"
fi
