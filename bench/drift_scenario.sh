#!/usr/bin/env bash
# Drift detection and reaction on Fashion-MNIST (configs/drift.yaml): 60-degree
# rotation injected at round 20 into 30% of 100 clients. For each seed, the
# same federation runs twice, with the aggregator's reaction
# (policy.reaction=extra-round) and without it (none); prints the markdown
# tables of docs/drift.md: per detector, the share of drifted clients found
# within one round of the injection, delays and false alarms on the clients
# without drift (from the runs without reaction, so no reaction shapes the
# streams), and rounds until accuracy on rotated test images recovers.
# About 1 minute per run on 2 cores.
#   bench/drift_scenario.sh [build dir] [seeds...]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/release}"
shift || true
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(42 43 44)
out="${FEDGE_DRIFT_OUT:-runs/drift-bench}"
mkdir -p "$out"
cmake --build "$build" --target fedge-sim > /dev/null
for seed in "${seeds[@]}"; do
  for reaction in none extra-round; do
    dir="$out/seed$seed-$reaction"
    "$build/simulations/fedge-sim" --config configs/drift.yaml --set run.seed="$seed" \
        --set policy.reaction="$reaction" --set run.progress=off --out "$dir" > "$dir.log" 2>&1 \
      || { cat "$dir.log"; exit 1; }
    echo "seed $seed, reaction $reaction: $(grep -E 'pre-drift' "$dir.log" | sed 's/^ *//')" >&2
  done
done
python3 - "$out" "${seeds[@]}" <<'PY'
import json, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
runs = {(s, r): json.load(open(f"{out}/seed{s}-{r}/drift.json")) for s in seeds for r in ("none", "extra-round")}
first = runs[(seeds[0], "none")]
print(f"drift: {first['type']} at round {first['injection_round']} in {first['drifted_clients']} of "
      f"{first['clients']} clients; seeds {', '.join(seeds)}\n")
print("| detector | drifted clients found within 1 round | mean delay (rounds) | mean delay (samples) | false alarms on clients without drift (whole run) |")
print("|---|---|---|---|---|")
for k, d0 in enumerate(first["detectors"]):
    found = drifted = clean = alarms = 0
    rounds, samples = [], []
    for s in seeds:
        d = runs[(s, "none")]["detectors"][k]
        found += d["detected_within_one_round"]; drifted += d["drifted_clients"]
        clean += d["clean_clients"]; alarms += d["clean_with_alarm"]
        if d["detected"]:
            rounds.append(d["mean_delay_rounds"]); samples.append(d["mean_delay_samples"])
    mean = lambda v: f"{statistics.mean(v):.2f}" if v else "-"
    print(f"| {d0['detector']} | {found}/{drifted} ({100*found/drifted:.1f}%) | {mean(rounds)} | "
          f"{mean(samples)} | {alarms}/{clean} ({100*alarms/clean:.1f}%) |")
print()
print("| seed | pre-drift accuracy | recovery target | rounds to recover, no reaction | rounds to recover, extra-round reaction | extra rounds | final clean accuracy (none / reaction) |")
print("|---|---|---|---|---|---|---|")
for s in seeds:
    a, b = runs[(s, "none")], runs[(s, "extra-round")]
    fmt = lambda r: str(r["recovery_rounds"]) if r["recovery_rounds"] > 0 else "not within the run"
    print(f"| {s} | {100*a['pre_drift_accuracy']:.2f}% | {100*a['recovery_target']:.2f}% | {fmt(a)} | {fmt(b)} | "
          f"{b['extra_rounds']} | {100*a['rounds'][-1]['clean_accuracy']:.2f}% / {100*b['rounds'][-1]['clean_accuracy']:.2f}% |")
print()
print("| seed | local fine-tunes after a report (no reaction) | stream accuracy of the global model | of the fine-tuned model |")
print("|---|---|---|---|")
for s in seeds:
    a = runs[(s, "none")]
    print(f"| {s} | {a['fine_tunes']} | {100*a['fine_tune_accuracy_before']:.2f}% | {100*a['fine_tune_accuracy_after']:.2f}% |")
print()
print("Accuracy on rotated test images after each round from the injection (none / extra-round, seed " + seeds[0] + "):\n")
a, b = runs[(seeds[0], "none")], runs[(seeds[0], "extra-round")]
inj = a["injection_round"]
print("| round | " + " | ".join(str(r["round"]) for r in a["rounds"][inj - 2: inj + 10]) + " |")
print("|---|" + "---|" * len(a["rounds"][inj - 2: inj + 10]))
print("| none | " + " | ".join(f"{100*r['drifted_accuracy']:.1f}" for r in a["rounds"][inj - 2: inj + 10]) + " |")
print("| extra-round | " + " | ".join(f"{100*r['drifted_accuracy']:.1f}{'*' if r['extra_round'] else ''}" for r in b["rounds"][inj - 2: inj + 10]) + " |")
PY
