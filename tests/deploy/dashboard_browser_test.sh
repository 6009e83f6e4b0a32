#!/usr/bin/env bash
# The dashboard in a real browser: one fedge-aggregator (TLS, ops endpoint on
# loopback) and a few fedge-client processes training Fashion-MNIST shards;
# headless Chromium loads the dashboard twice and the test checks that the
# round counter advanced and the accuracy chart has points. Then one device
# is stopped (SIGTERM): within 10 s the dashboard must show it gone and the
# others active, exactly one live version, and the events that exist
# (joins, the leave). Screenshots at a wide and a narrow window are saved in
# the work directory (test artifacts: dashboard-wide.png,
# dashboard-narrow.png), and the screenshot command of docs/operations.md
# runs as written (docs-screenshot.png).
#
#   dashboard_browser_test.sh AGGREGATOR CLIENT CTL CERT_SCRIPT DATA_DIR WORK_DIR
#       [--clients N] [--rounds N] [--screenshot FILE] [--window WxH]
#
# --rounds N: before the screenshot, wait until N rounds closed (default 3).
# --demo: what docs/images/dashboard.png shows: 5 devices, goal 4 (one
# straggler dropped per round), longer local training, and an operator who
# pauses, rolls back, resumes and revokes a device (through fedge-ctl).
# Exits 0 on success, 77 (skipped) without chromium or the dataset.
set -euo pipefail
aggregator=$1 client=$2 ctl=$3 certs_script=$4 data=$5 work=$6
shift 6
clients=2 rounds=3 window=1400,1900 demo=0
screenshot="$work/dashboard-wide.png"
while [ $# -gt 0 ]; do
  case $1 in
    --clients) clients=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --screenshot) screenshot=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --demo) demo=1; clients=5; shift ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then echo "SKIP: no chromium (scripts/setup.sh installs it)"; exit 77; fi
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then echo "SKIP: no dataset in $data"; exit 77; fi

rm -rf "$work"
mkdir -p "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  echo "--- aggregator log (tail)" >&2
  tail -n 20 "$work/aggregator.log" >&2 || true
  exit 1
}

bash "$certs_script" "$work/certs" > "$work/certs.log" 2>&1
for i in $(seq 1 "$clients"); do
  "$aggregator" enroll --state "$work/state" "device-$i" --token "token-of-device-$i-0123456789" > /dev/null
done
goal=$clients over=0 steps=15
if [ "$demo" = 1 ]; then goal=$((clients - 1)) over=0.25 steps=60; fi
"$aggregator" --state "$work/state" \
  --set signing_key="$work/certs/signing.key" --set tls.cert="$work/certs/server.pem" \
  --set tls.key="$work/certs/server.key" --set listen=127.0.0.1:0 \
  --set port_file="$work/grpc.port" --set ops.listen=127.0.0.1:0 \
  --set ops.port_file="$work/ops.port" --set model.architecture=mlp --set rounds.count=0 \
  --set rounds.goal="$goal" --set rounds.min_clients="$goal" --set rounds.over_selection="$over" \
  --set rounds.deadline_s=30 --set train.max_steps="$steps" --set train.batch_size=32 --set train.learning_rate=0.05 \
  --set train.momentum=0.9 > "$work/aggregator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do [ -s "$work/ops.port" ] && break; sleep 0.1; done
[ -s "$work/ops.port" ] || fail "the aggregator did not start"
grpc_port=$(cat "$work/grpc.port")
ops_port=$(cat "$work/ops.port")
token=$(cat "$work/state/ops.token")
for i in $(seq 1 "$clients"); do
  "$client" --aggregator "localhost:$grpc_port" --id "device-$i" --token "token-of-device-$i-0123456789" \
    --ca "$work/certs/ca.pem" --pinned-key "$work/certs/signing.pub" --data "$data" \
    --shard $((i - 1)) --num-shards "$clients" --state "$work/device-$i" --threads 1 \
    --poll-wait-ms 2000 > "$work/device-$i.log" 2>&1 &
  pids+=($!)
done

ctl() { "$ctl" --server "localhost:$ops_port" --ca "$work/certs/ca.pem" --token-file "$work/state/ops.token" "$@"; }
closed_rounds() { ctl --json round | sed -n 's/.*"closed_rounds": \([0-9]*\).*/\1/p'; }
wait_rounds() {  # until at least $1 rounds closed (at most 90 s)
  for _ in $(seq 1 450); do
    [ "$(closed_rounds)" -ge "$1" ] 2>/dev/null && return 0
    sleep 0.2
  done
  fail "fewer than $1 rounds closed in 90 s"
}
# Chromium trusts the aggregator's own key (its SPKI hash), not every
# certificate: as docs/operations.md tells operators to.
spki=$(openssl x509 -in "$work/certs/server.pem" -noout -pubkey | openssl pkey -pubin -outform der |
  openssl dgst -sha256 -binary | base64)
browse() {  # browse OUT [extra chromium flags]: the DOM after the page has polled
  local out=$1
  shift
  timeout 60 "$chromium" --headless --no-sandbox --disable-gpu \
    --ignore-certificate-errors-spki-list="$spki" \
    --user-data-dir="$work/chromium" --virtual-time-budget=5000 "$@" \
    "https://localhost:$ops_port/#token=$token" > "$out" 2> "$work/chromium.log" || fail "chromium failed"
}
attr() {  # attr FILE ELEMENT-ID ATTRIBUTE
  grep -o "id=\"$2\"[^>]*" "$1" | sed -n "s/.*$3=\"\([0-9]*\)\".*/\1/p" | head -n 1
}

wait_rounds 1
browse "$work/dom-1.html" --dump-dom
first=$(attr "$work/dom-1.html" tile-round data-round)
points_1=$(attr "$work/dom-1.html" chart-accuracy data-points)
[ -n "$first" ] || fail "no data-round in the dashboard's DOM (see $work/dom-1.html)"
wait_rounds $((first + 2 > rounds ? first + 2 : rounds))
browse "$work/dom-2.html" --dump-dom
second=$(attr "$work/dom-2.html" tile-round data-round)
points=$(attr "$work/dom-2.html" chart-accuracy data-points)
echo "round counter: $first -> $second; accuracy chart points: $points_1 -> $points"
[ "$second" -gt "$first" ] || fail "the round counter did not advance ($first -> $second)"
[ "$points" -ge 1 ] || fail "the accuracy chart has no points"
grep -q 'data-loaded="true"' "$work/dom-2.html" || fail "the dashboard did not load its data"
if [ "$demo" = 1 ]; then
  ctl pause --reason "checking v$((second - 1))" > /dev/null
  for _ in $(seq 1 300); do ctl --json round | grep -q '"open": false' && break; sleep 0.2; done
  ctl rollback $((second - 3)) --reason "accuracy dipped; back to v$((second - 3))" > /dev/null
  ctl resume > /dev/null
  wait_rounds $(( $(closed_rounds) + 3 ))
  ctl revoke "device-$clients" --reason "lost handset" > /dev/null
  wait_rounds $(( $(closed_rounds) + 2 ))
  sleep 1
fi
if [ "$demo" = 0 ]; then
  # The last device stops: SIGTERM, it finishes its step and says it leaves.
  stopped=$(date +%s%N)
  kill -TERM "${pids[$clients]}"
  while :; do
    browse "$work/dom-3.html" --dump-dom
    gone=$(attr "$work/dom-3.html" tile-devices data-gone)
    active=$(attr "$work/dom-3.html" tile-devices data-active)
    elapsed_ms=$((($(date +%s%N) - stopped) / 1000000))
    [ "$gone" = 1 ] && [ "$active" = $((clients - 1)) ] && break
    [ "$elapsed_ms" -le 10000 ] ||
      fail "10 s after a device stopped the dashboard shows $active active, $gone gone (see $work/dom-3.html)"
  done
  echo "one device stopped: the dashboard showed $active active, $gone gone after $elapsed_ms ms"
  flat=$(tr '\n' ' ' < "$work/dom-3.html")
  lineage=$(sed 's/.*<tbody id="lineage-rows">//; s/<\/tbody>.*//' <<< "$flat")
  live=$(grep -o 'badge s-live"' <<< "$lineage" | wc -l)
  versions=$(grep -o '<tr data-version=' <<< "$lineage" | wc -l)
  echo "versions shown: $versions, live: $live"
  [ "$versions" -ge 2 ] || fail "the lineage shows $versions versions"
  [ "$live" = 1 ] || fail "$live versions show as live (exactly one is)"
  events=$(attr "$work/dom-3.html" events data-events)
  echo "events panel: $events events, $(attr "$work/dom-3.html" events data-shown) shown"
  [ "${events:-0}" -ge 1 ] || fail "the events panel holds no events"
  for kind in client_joined client_left; do
    grep -q "data-kind=\"$kind\"" "$work/dom-3.html" || fail "the events panel does not list $kind"
  done
  grep -q 'No events yet' "$work/dom-3.html" && fail "the events panel says 'No events yet' beside $events events"
  browse /dev/null --screenshot="$work/dashboard-narrow.png" --window-size=420,2600 --hide-scrollbars
  [ -s "$work/dashboard-narrow.png" ] || fail "no narrow screenshot"
  echo "screenshot: $work/dashboard-narrow.png"

  # docs/operations.md's screenshot command, as written, with this run's
  # address, certificates and state.
  docs="$(dirname "$0")/../../docs/operations.md"
  command=$(sed -n '/<!-- tested by dashboard_browser_test.sh -->/,/^```$/p' "$docs" | sed '1,2d;$d' | sed '1d')
  [ -n "$command" ] || fail "no screenshot command in $docs"
  (cd "$work" && ops="localhost:$ops_port" certs="$work/certs" state="$work/state" &&
    eval "$command") > "$work/docs-command.log" 2>&1 || fail "the docs' command failed (see $work/docs-command.log)"
  # A blank page compresses to a few kB; the dashboard to far more.
  size=$(stat -c %s "$work/dashboard.png" 2>/dev/null || echo 0)
  echo "docs' command: dashboard.png, $size bytes"
  [ "$size" -gt 40000 ] || fail "the docs' command made a blank or missing screenshot ($size bytes)"
fi
browse /dev/null --screenshot="$screenshot" --window-size="$window" --hide-scrollbars
[ -s "$screenshot" ] || fail "no screenshot"
echo "screenshot: $screenshot"
echo "PASS"
