#!/usr/bin/env bash
# Simulation overhead: one fedge-sim round against the same work done with
# plain LibTorch loops (bench/plain_round.cc), in the same run, same data,
# same shards, same thread count. Target: ratio <= 1.05, fedge-sim peak RSS
# <= 500 MB.
#   bench/sim_overhead.sh [build dir] [rounds]
set -euo pipefail
build="${1:-build/release}"
rounds="${2:-3}"
threads=2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

common=(--set data.dataset=fashion-mnist --set partition.method=iid --set partition.num_clients=10
        --set round.clients_per_round=10 --set model.architecture=cnn-large
        --set train.local_epochs=1 --set train.batch_size=32 --set train.learning_rate=0.05
        --set train.momentum=0 --set run.threads=$threads --set run.progress=off
        --set round.rounds=$rounds --set run.seed=42)

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# Alternate the two so that drift in machine speed hits both alike.
fedge_times=(); plain_times=()
for pass in 1 2; do
  "$build/simulations/fedge-sim" "${common[@]}" --out "$out/fedge$pass" > "$out/fedge$pass.log" 2>&1
  fedge_times+=($(tail -n +2 "$out/fedge$pass/rounds.csv" | cut -d, -f8))
  rss=$(sed -n 's/.*"peak_rss_mb": *\([0-9.]*\).*/\1/p' "$out/fedge$pass/summary.json")
  "$build/bench/fedge_plain_round" --clients 10 --model cnn-large --threads $threads \
      --rounds "$rounds" --epochs 1 --batch 32 --lr 0.05 --seed 42 > "$out/plain$pass.log"
  plain_times+=($(sed -n 's/^round [0-9]*: \([0-9.]*\) s.*/\1/p' "$out/plain$pass.log"))
  plain_rss=$(sed -n 's/^peak RSS \([0-9.]*\) MB/\1/p' "$out/plain$pass.log")
done
f=$(printf '%s\n' "${fedge_times[@]}" | median)
p=$(printf '%s\n' "${plain_times[@]}" | median)
echo "sim_overhead: cnn-large, 10 IID clients of Fashion-MNIST, 1 epoch, batch 32, $threads threads"
echo "  fedge-sim round times (s):  ${fedge_times[*]}"
echo "  plain LibTorch round times: ${plain_times[*]}"
awk -v f="$f" -v p="$p" 'BEGIN {printf "  median round: fedge-sim %.3f s, plain %.3f s, ratio %.3f (target <= 1.05)\n", f, p, f/p}'
echo "  fedge-sim peak RSS: ${rss} MB (target <= 500); plain LibTorch process: ${plain_rss} MB"
