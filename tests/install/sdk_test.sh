#!/usr/bin/env bash
# The plug-in SDK: installs component "sdk" into a temporary prefix, builds
# examples/custom_mechanism out of fedge's tree against it and against the
# build tree (find_package(fedge COMPONENTS sdk) both ways), and runs each
# plug-in in fedge-sim: the ε it reports must be what fedge-privacy computes.
#
#   tests/install/sdk_test.sh BUILD_DIR SOURCE_DIR FEDGE_SIM FEDGE_PRIVACY
set -euo pipefail
build_dir=$1 source_dir=$2 sim=$3 calculator=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
example=$source_dir/examples/custom_mechanism

cmake --install "$build_dir" --prefix "$prefix" --component sdk > "$tmp/install.log"
for header in fedge/privacy/mechanism.h fedge/privacy/accountant.h fedge/privacy/clipper.h \
    fedge/proto/registry.h fedge/v1/secagg.pb.h; do
  [ -f "$prefix/include/$header" ] || { echo "the SDK lacks $header" >&2; exit 1; }
done

expected=$("$calculator" epsilon --sampling-rate 0.25 --noise-multiplier 1.0 --steps 5 \
  --delta 1e-5 | tail -n 1)
expected=$(printf '%.4g' "$expected")
run() {  # run NAME CMAKE_ARGS...: build the example out of tree, load it in fedge-sim
  local name=$1
  shift
  cmake -S "$example" -B "$tmp/$name" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" \
    > "$tmp/$name.configure.log" 2>&1 || { cat "$tmp/$name.configure.log" >&2; exit 1; }
  cmake --build "$tmp/$name" > "$tmp/$name.build.log" 2>&1 ||
    { cat "$tmp/$name.build.log" >&2; exit 1; }
  "$sim" --plugin "$tmp/$name/libfedge_polar_gaussian.so" --config "$example/polar_gaussian.yaml" \
    --set run.progress=off --out "$tmp/$name-run" > "$tmp/$name.out" 2> "$tmp/$name.err" ||
    { cat "$tmp/$name.err" >&2; exit 1; }
  local reported
  reported=$(sed -n 's/^privacy: central DP, epsilon \([^ ]*\) at delta.*/\1/p' "$tmp/$name.out")
  echo "$name: fedge-sim reports epsilon $reported, fedge-privacy $expected"
  [ -n "$reported" ] && [ "$reported" = "$expected" ]
}
run installed -DCMAKE_PREFIX_PATH="$prefix"
run build-tree -Dfedge_DIR="$build_dir"
echo "sdk test: ok"
