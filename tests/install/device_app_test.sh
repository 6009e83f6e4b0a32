#!/usr/bin/env bash
# examples/device_app end to end: install fedge's client package into a
# temporary prefix, build the example against it, start fedge-aggregator on
# loopback (TLS, dev certificates), and run the app on a Fashion-MNIST shard.
#
#   tests/install/device_app_test.sh BUILD_DIR SOURCE_DIR FEDGE_AGGREGATOR
#
# TRAIN, TASKS and MAX_STEPS (environment) size the run (bench/footprint.sh
# uses them); the defaults keep the test short.
set -euo pipefail
train=${TRAIN:-2000}
tasks=${TASKS:-3}
max_steps=${MAX_STEPS:-40}
build_dir=$1
source_dir=$2
aggregator=$3
data=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d)
agg_pid=""
cleanup() {
  if [[ -n "$agg_pid" ]]; then
    kill "$agg_pid" 2> /dev/null || true
    wait "$agg_pid" 2> /dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

cmake --install "$build_dir" --prefix "$tmp/prefix" --component client > /dev/null
cmake -S "$source_dir/examples/device_app" -B "$tmp/app" -G Ninja \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$tmp/app" > /dev/null

bash "$source_dir/scripts/make-dev-certs.sh" "$tmp/certs" dev-1 > /dev/null 2>&1
if (( train + 1000 > 60000 )); then echo "TRAIN must be <= 59000" >&2; exit 2; fi
gzip -dc "$data/train-images-idx3-ubyte.gz" > "$tmp/images"
gzip -dc "$data/train-labels-idx1-ubyte.gz" > "$tmp/labels"

# The aggregator: the cnn, rounds of one device, serving until killed.
"$aggregator" enroll --state "$tmp/agg" dev-1 > /dev/null
"$aggregator" serve --state "$tmp/agg" \
  --set signing_key="$tmp/certs/signing.key" \
  --set tls.cert="$tmp/certs/server.pem" --set tls.key="$tmp/certs/server.key" \
  --set tls.client_ca="$tmp/certs/ca.pem" \
  --set listen=127.0.0.1:0 --set port_file="$tmp/port" \
  --set model.architecture=cnn --set rounds.count=0 \
  --set rounds.goal=1 --set rounds.min_clients=1 \
  --set train.batch_size=32 --set train.learning_rate=0.05 --set train.momentum=0.9 \
  --set train.max_steps="$max_steps" 2> "$tmp/aggregator.log" &
agg_pid=$!
for _ in $(seq 1 300); do
  [[ -s "$tmp/port" ]] && break
  if ! kill -0 "$agg_pid" 2> /dev/null; then
    echo "fedge-aggregator exited:" >&2
    cat "$tmp/aggregator.log" >&2
    exit 1
  fi
  sleep 0.1
done
port=$(cat "$tmp/port")
sed -e "s|@PORT@|$port|" -e "s|@CERTS@|$tmp/certs|g" -e "s|@STATE@|$tmp/device|" \
  "$source_dir/examples/device_app/device.yaml.in" > "$tmp/device.yaml"

timeout 300 "$tmp/app/device_app" --config "$tmp/device.yaml" \
  --images "$tmp/images" --labels "$tmp/labels" --train "$train" --test 1000 --tasks "$tasks" \
  2> "$tmp/device.log" | tee "$tmp/app.out" || {
  echo "device_app failed; its log:" >&2
  tail -20 "$tmp/device.log" >&2
  exit 1
}

grep -q "policy: paused training 1 time" "$tmp/app.out"
[[ $(grep -c "event: update sent" "$tmp/app.out") -eq "$tasks" ]]
# The federation's model must have learned: accuracy on held-out examples.
after=$(sed -n 's/^held-out accuracy: .*, \([0-9.]*\) with model v.*/\1/p' "$tmp/app.out")
awk -v a="$after" 'BEGIN { exit !(a > 0.5) }' || {
  echo "held-out accuracy $after is not above 0.5" >&2
  exit 1
}
echo "device app test: ok (held-out accuracy $after)"
