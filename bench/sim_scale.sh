#!/usr/bin/env bash
# Simulation scale: 10,000 registered virtual clients, 100 per round, cnn,
# IID shards of Fashion-MNIST. Reports per-round time and peak RSS
# (target <= 2 GB).
#   bench/sim_scale.sh [build dir] [rounds]
set -euo pipefail
build="${1:-build/release}"
rounds="${2:-3}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$build/simulations/fedge-sim" --set partition.method=iid --set partition.num_clients=10000 \
    --set round.clients_per_round=100 --set model.architecture=cnn --set round.rounds="$rounds" \
    --set train.local_epochs=1 --set run.progress=off --out "$out" > "$out.log" 2>&1
echo "sim_scale: 10000 clients, 100 per round, cnn, $rounds rounds"
echo "  round wall times (s): $(tail -n +2 "$out/rounds.csv" | cut -d, -f8 | tr '\n' ' ')"
echo "  test accuracy after last round: $(tail -n 1 "$out/rounds.csv" | cut -d, -f2)"
echo "  peak RSS: $(sed -n 's/.*"peak_rss_mb": *\([0-9.]*\).*/\1/p' "$out/summary.json") MB (target <= 2048)"
rm -f "$out.log"
