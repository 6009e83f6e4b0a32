#!/usr/bin/env bash
# Test of the custom-mechanism example: fedge-sim loads the plug-in, runs the
# config that selects "polar-gaussian", and must report the epsilon the
# privacy calculator gives for the same sampling rate, noise and rounds.
#   run_example.sh FEDGE_SIM FEDGE_PRIVACY PLUGIN
set -euo pipefail
sim="$1" calculator="$2" plugin="$3"
here="$(cd "$(dirname "$0")" && pwd)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$sim" --plugin "$plugin" --config "$here/polar_gaussian.yaml" --set run.progress=off \
    --out "$out" > "$out/stdout" 2> "$out/stderr" || { cat "$out/stderr"; exit 1; }
cat "$out/stdout"
reported=$(sed -n 's/^privacy: central DP, epsilon \([^ ]*\) at delta.*/\1/p' "$out/stdout")
expected=$("$calculator" epsilon --sampling-rate 0.25 --noise-multiplier 1.0 --steps 5 \
    --delta 1e-5 | tail -n 1)
expected=$(printf '%.4g' "$expected")
echo "reported epsilon $reported, calculator $expected"
[ -n "$reported" ] && [ "$reported" = "$expected" ]
# Without the plug-in the mechanism is unknown, and fedge-sim says so.
if "$sim" --config "$here/polar_gaussian.yaml" --out "$out/none" 2> "$out/err2"; then
  echo "fedge-sim accepted polar-gaussian without the plug-in"; exit 1
fi
grep -q "unknown value 'polar-gaussian'" "$out/err2"
