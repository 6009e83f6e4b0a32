#!/usr/bin/env bash
# Accuracy versus privacy for DP-FedAvg on Fashion-MNIST: configs/dp-fedavg.yaml
# (1,000 clients, ~100 per round by Poisson sampling, cnn, adaptive clipping,
# central Gaussian noise) at several noise multipliers, and the same
# federation without DP (same clients, sampling and uniform weights are
# what DP changes; the baseline keeps FedAvg's example weights).
# Prints a Markdown table: noise multiplier, epsilon at delta = 1e-5 after
# the last round, final and best test accuracy, wall time.
#   bench/dp_accuracy.sh [build dir] [rounds] [noise multipliers...]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/release}"
rounds="${2:-40}"
shift 2 || shift $#
levels=("$@")
if [ ${#levels[@]} -eq 0 ]; then levels=(none 0.5 1.0 2.0 4.0 8.0); fi
sim="$build/simulations/fedge-sim"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "dp_accuracy: configs/dp-fedavg.yaml, $rounds rounds, levels: ${levels[*]}"
echo
echo "| noise multiplier z | epsilon (delta 1e-5) | final accuracy | best accuracy | wall time |"
echo "|---|---|---|---|---|"
for z in "${levels[@]}"; do
  args=(--config configs/dp-fedavg.yaml --set round.rounds="$rounds" --set run.progress=off)
  if [ "$z" = none ]; then
    args+=(--set privacy.mode=none)
  else
    args+=(--set privacy.noise_multiplier="$z")
  fi
  label="$z"; [ "$z" = none ] && label="no DP (FedAvg)"
  if ! "$sim" "${args[@]}" --out "$out/$z" > "$out/$z.log" 2>&1; then
    # Too much noise can make local training diverge: say so in the table.
    eps=$(sed -n 's/.*| eps \([^ ]*\) .*/\1/p' "$out/$z.log" | tail -n 1)
    why=$(sed -n 's/^fedge-sim: error: //p' "$out/$z.log" | cut -c1-60)
    echo "| $label | ${eps:-?} when it stopped | failed: $why | | |"
    continue
  fi
  summary="$out/$z/summary.json"
  field() { sed -n "s/^  \"$1\": *\([^,]*\),*$/\1/p" "$summary"; }
  eps=$(field epsilon); [ "$eps" = null ] && eps=inf || eps=$(printf '%.2f' "$eps")
  final=$(awk -v a="$(field final_accuracy)" 'BEGIN { printf "%.2f%%", 100 * a }')
  best=$(awk -v a="$(field best_accuracy)" 'BEGIN { printf "%.2f%%", 100 * a }')
  wall=$(awk -v a="$(field wall_seconds)" 'BEGIN { printf "%.0f s", a }')
  echo "| $label | $eps | $final | $best | $wall |"
done
