#!/usr/bin/env bash
# Memory of a real federation on one machine: runs `fedge-sim --mode
# multiprocess` (one fedge-aggregator and one fedge-client process per
# device, over TLS on loopback) and samples the RSS of its whole process tree
# every 0.25 s. Prints the peak of the sum over all processes (RSS, which
# counts shared library pages once per process, and PSS, which splits them
# among the processes sharing them: the physical memory the tree uses), and
# per process kind the largest peak (VmHWM) and the largest anonymous and
# file-backed parts seen (RssAnon: heap, tensors, buffers; RssFile: mapped
# libraries).
#
#   bench/multiprocess_rss.sh BUILD_DIR [ARCH] [CLIENTS] [ROUNDS]
#   (defaults: cnn-large, 10 IID Fashion-MNIST devices, 5 rounds of one
#   local epoch of batch 32)
set -euo pipefail
build_dir=$(cd "$1" && pwd)
arch=${2:-cnn-large}
clients=${3:-10}
rounds=${4:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$build_dir/simulations/fedge-sim" --mode multiprocess \
  --set model.architecture="$arch" --set partition.method=iid \
  --set partition.num_clients="$clients" --set round.clients_per_round="$clients" \
  --set round.rounds="$rounds" --set train.local_epochs=1 --set train.batch_size=32 \
  --set run.progress=off --out "$tmp/out" > "$tmp/sim.log" 2>&1 &
root=$!

# The tree below `root`, one "pid comm" per line.
tree() {
  local pids=$root frontier=$root next
  while [[ -n "$frontier" ]]; do
    next=$(for p in $frontier; do pgrep -P "$p" || true; done)
    pids="$pids $next"
    frontier=$next
  done
  echo "$pids"
}

declare -A hwm kind anon file
peak_sum=0
peak_pss=0
while kill -0 "$root" 2> /dev/null; do
  sum=0
  pss_sum=0
  for pid in $(tree); do
    status=/proc/$pid/status
    [[ -r $status ]] || continue
    read -r rss high name a f < <(awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} /^Name:/ {n=$2}
      /^RssAnon:/ {a=$2} /^RssFile:/ {f=$2} END {print r, h, n, a, f}' "$status" 2> /dev/null) ||
      continue
    [[ -n "$rss" && -n "$high" && -n "$f" ]] || continue
    pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2> /dev/null || echo 0)
    sum=$((sum + rss))
    pss_sum=$((pss_sum + ${pss:-0}))
    kind[$pid]=$name
    if [[ -z "${hwm[$pid]:-}" || $high -gt ${hwm[$pid]} ]]; then hwm[$pid]=$high; fi
    if [[ -z "${anon[$pid]:-}" || $a -gt ${anon[$pid]} ]]; then anon[$pid]=$a; fi
    if [[ -z "${file[$pid]:-}" || $f -gt ${file[$pid]} ]]; then file[$pid]=$f; fi
  done
  ((sum > peak_sum)) && peak_sum=$sum
  ((pss_sum > peak_pss)) && peak_pss=$pss_sum
  sleep 0.25
done
wait "$root" || { echo "fedge-sim failed:"; tail -20 "$tmp/sim.log"; exit 1; }

declare -A largest count most_anon most_file
for pid in "${!hwm[@]}"; do
  k=${kind[$pid]}
  count[$k]=$(( ${count[$k]:-0} + 1 ))
  if [[ -z "${largest[$k]:-}" || ${hwm[$pid]} -gt ${largest[$k]} ]]; then
    largest[$k]=${hwm[$pid]}
  fi
  if [[ -z "${most_anon[$k]:-}" || ${anon[$pid]} -gt ${most_anon[$k]} ]]; then
    most_anon[$k]=${anon[$pid]}
  fi
  if [[ -z "${most_file[$k]:-}" || ${file[$pid]} -gt ${most_file[$k]} ]]; then
    most_file[$k]=${file[$pid]}
  fi
done
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
echo "multiprocess_rss: $arch, $clients IID Fashion-MNIST devices, $rounds rounds"
echo "  peak RSS summed over the process tree: $(mib "$peak_sum") MiB"
echo "  peak PSS summed over the process tree: $(mib "$peak_pss") MiB"
for k in "${!largest[@]}"; do
  [[ $k == fedge-* ]] || continue
  echo "  $k: ${count[$k]} process(es), largest peak (VmHWM) $(mib "${largest[$k]}") MiB" \
    "(anonymous up to $(mib "${most_anon[$k]}"), mapped files up to $(mib "${most_file[$k]}"))"
done
grep -E "^final accuracy" "$tmp/sim.log" | sed 's/^/  /' || true
