#!/usr/bin/env bash
# Test of the custom-mechanism example: fedge-sim loads the plug-in, runs the
# config that selects "polar-gaussian", and must report the epsilon the
# privacy calculator gives for the same sampling rate, noise and rounds.
# The other tools load it too: fedge-privacy reports the ε the mechanism
# states, fedge-aggregator accepts it in its config. Without the plug-in the
# name is unknown and the error says how to load one; --set replaces a value
# the file has.
#   run_example.sh FEDGE_SIM FEDGE_PRIVACY PLUGIN FEDGE_AGGREGATOR
set -euo pipefail
sim="$1" calculator="$2" plugin="$3" aggregator="$4"
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
# fedge-privacy, told the mechanism, accounts it as it states itself.
stated=$("$calculator" --plugin "$plugin" epsilon --sampling-rate 0.25 --noise-multiplier 1.0 \
    --steps 5 --delta 1e-5 --mechanism polar-gaussian | tail -n 1)
echo "fedge-privacy --mechanism polar-gaussian: $stated"
[ "$(printf '%.4g' "$stated")" = "$expected" ]
# Its own key: in --help once loaded, validated like a built-in key, and
# read by both the noise and the accounting (noise_scale 2 = z 2).
"$sim" --plugin "$plugin" --help > "$out/sim-help"
"$aggregator" --plugin "$plugin" --help > "$out/aggregator-help"
grep -q "privacy.polar-gaussian.noise_scale" "$out/sim-help"
grep -q "privacy.polar-gaussian.noise_scale" "$out/aggregator-help"
if "$sim" --plugin "$plugin" --config "$here/polar_gaussian.yaml" \
    --set privacy.polar-gaussian.noise_scale=0.5 --out "$out/low" 2> "$out/err5"; then
  echo "noise_scale 0.5 was accepted"; exit 1
fi
grep -q "config key 'privacy.polar-gaussian.noise_scale'" "$out/err5"
"$sim" --plugin "$plugin" --config "$here/polar_gaussian.yaml" --set run.progress=off \
    --set privacy.polar-gaussian.noise_scale=2 --out "$out/scaled" > "$out/scaled.out" 2> "$out/err6" ||
  { cat "$out/err6"; exit 1; }
scaled=$(sed -n 's/^privacy: central DP, epsilon \([^ ]*\) at delta.*/\1/p' "$out/scaled.out")
at_two=$("$calculator" epsilon --sampling-rate 0.25 --noise-multiplier 2.0 --steps 5 \
    --delta 1e-5 | tail -n 1)
echo "noise_scale 2: reported epsilon $scaled, calculator at z = 2: $(printf '%.4g' "$at_two")"
[ "$scaled" = "$(printf '%.4g' "$at_two")" ]
# With adaptive clipping (the plug-in states an RDP bound, so it composes).
"$sim" --plugin "$plugin" --config "$here/polar_gaussian.yaml" --set run.progress=off \
    --set privacy.clipping=adaptive --set privacy.polar-gaussian.noise_scale=2 \
    --out "$out/adaptive" > "$out/adaptive.out" 2> "$out/err7" || { cat "$out/err7"; exit 1; }
grep -q "^privacy: central DP, epsilon" "$out/adaptive.out"
# fedge-aggregator takes the plug-in's mechanism in its config.
"$aggregator" --plugin "$plugin" --set privacy.mode=central --set privacy.mechanism=polar-gaussian \
    --check > /dev/null
if "$aggregator" --set privacy.mechanism=polar-gaussian --check 2> "$out/err3"; then
  echo "fedge-aggregator accepted polar-gaussian without the plug-in"; exit 1
fi
grep -q -- "--plugin LIB" "$out/err3"
# --set replaces the file's value: the mechanism the file names is not read.
"$sim" --config "$here/polar_gaussian.yaml" --set privacy.mechanism=gaussian --set round.rounds=1 \
    --set run.progress=off --out "$out/set" > /dev/null 2> "$out/err4" || { cat "$out/err4"; exit 1; }
# Without the plug-in the mechanism is unknown, and fedge-sim says so.
if "$sim" --config "$here/polar_gaussian.yaml" --out "$out/none" 2> "$out/err2"; then
  echo "fedge-sim accepted polar-gaussian without the plug-in"; exit 1
fi
grep -q "unknown value 'polar-gaussian'" "$out/err2"
grep -q -- "--plugin LIB" "$out/err2"
echo PASS
