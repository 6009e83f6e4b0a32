#!/usr/bin/env bash
# Load benchmark of the deployed aggregator (issue 3): N = 100, 500, 1000
# token devices on loopback against one fedge-aggregator process serving
# cnn-large, each submitting a 2.3 MB fp32 update every round (see
# bench/load_bench.cc). Targets at N = 1000: zero failed rounds, zero errors,
# aggregator peak RSS <= 1 GB.
#
# Writes the table (and whether the targets hold) between the markers in
# docs/deployment.md, and prints it. The run at N = 1000 needs about 8.5 GB of
# memory for the load generator itself (1,000 device threads, each holding
# its update while it uploads).
#   bench/load.sh [build dir] [rounds] [N ...]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/release}"
rounds="${2:-3}"
shift $(( $# < 2 ? $# : 2 ))
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 500 1000)
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "rounds must be a positive integer, not '$rounds'" >&2; exit 2; }
bench="$build/bench/fedge_load_bench"
[ -x "$bench" ] || { echo "$bench is missing: cmake --build $build --target fedge_load_bench" >&2; exit 1; }
doc=docs/deployment.md
grep -q '<!-- load-table:begin -->' "$doc" || { echo "$doc lacks the table markers" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

bash scripts/make-dev-certs.sh "$out/certs" > /dev/null
status=0
for n in "${sizes[@]}"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive integer, not '$n'" >&2; exit 2; }
  # The bench exits 1 when a target is missed; the row is still wanted.
  "$bench" --clients "$n" --rounds "$rounds" --certs "$out/certs" --work "$out/n$n" \
      > "$out/n$n.txt" 2>&1 || status=$?
  cat "$out/n$n.txt" >&2
  grep -q '^| ' "$out/n$n.txt" || { echo "load: N=$n printed no result row" >&2; exit 1; }
  rm -rf "$out/n$n"
done

table="$out/table.md"
{
  echo "| devices | rounds with all updates | errors | submit p50 (s) | submit p99 (s) | aggregator peak RSS (MB) | aggregator CPU s / accepted update | median round (s) |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
  for n in "${sizes[@]}"; do grep '^| ' "$out/n$n.txt"; done
  echo
  last="$out/n${sizes[-1]}.txt"
  row=$(grep '^| ' "$last")
  awk -F'|' -v n="${sizes[-1]}" -v rounds="$rounds" '{
      split($3, r, "/"); gsub(/ /, "", $4); gsub(/ /, "", $7)
      ok = (r[1] + 0 == rounds && $4 + 0 == 0)
      printf "- %s: N = %s, every round closed with all updates and no errors\n", ok ? "met" : "NOT met", n
      printf "- %s: N = %s, aggregator peak RSS %s MB <= 1024 MB\n", ($7 + 0 <= 1024) ? "met" : "NOT met", n, $7
    }' <<< "$row"
  echo
  echo "Command: \`bench/load.sh $build $rounds ${sizes[*]}\` ($(date -u +%Y-%m-%d), $(nproc) cores)."
} > "$table"

awk -v table="$table" '
  /<!-- load-table:begin -->/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
  /<!-- load-table:end -->/ { skip = 0 }
  !skip' "$doc" > "$out/doc.md"
cp "$out/doc.md" "$doc"
cat "$table"
exit "$status"
