#!/usr/bin/env bash
# The embeddable client's footprint:
#   1. binary size: the installed fedge libraries, stripped (what an app
#      ships of fedge), and the system libraries they pull in (LibTorch,
#      gRPC, protobuf, OpenSSL, ...), as ldd resolves them;
#   2. peak memory (ru_maxrss) of examples/device_app fine-tuning the `cnn`
#      on Fashion-MNIST against a loopback fedge-aggregator over TLS.
#
#   bench/footprint.sh BUILD_DIR [TRAIN_EXAMPLES] [TASKS] [MAX_STEPS]
#   (defaults: 10000 examples, 3 tasks of 100 steps of batch 32)
set -euo pipefail
build_dir=$(cd "$1" && pwd)
source_dir=$(cd "$(dirname "$0")/.." && pwd)
train=${2:-10000}
tasks=${3:-3}
max_steps=${4:-100}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build_dir" --prefix "$tmp/prefix" --component client > /dev/null
mkdir -p "$tmp/stripped"
for lib in "$tmp"/prefix/lib/libfedge_*.so.*[0-9] "$tmp"/prefix/lib/libfedge_*.so; do
  [[ -L "$lib" ]] && continue
  strip --strip-unneeded -o "$tmp/stripped/$(basename "$lib")" "$lib"
done
kib() { echo $(( ($1 + 1023) / 1024 )); }
echo "== binary size (stripped) =="
total=0
for lib in "$tmp"/stripped/*; do
  size=$(stat -c %s "$lib")
  total=$((total + size))
  printf "  %-34s %8s KiB\n" "$(basename "$lib")" "$(kib "$size")"
done
printf "  %-34s %8s KiB\n" "all fedge libraries" "$(kib "$total")"

echo "== system libraries libfedge_client_c needs (as installed, not stripped) =="
sys_total=0
declare -A groups
while read -r path; do
  size=$(stat -L -c %s "$path")
  sys_total=$((sys_total + size))
  case "$(basename "$path")" in
    libtorch*|libc10*|libgomp*|libopenblas*|libblas*|liblapack*|libgfortran*|libsleef*|libdnnl*|libfmt*|libprotobuf*|libonnx*|libfbgemm*|libXNNPACK*|libpytorch*|libkineto*|libcpuinfo*|libclog*|libnnpack*|libqnnpack*|libpthreadpool*|libtensorpipe*|libgloo*|libmpi*|libopen-*|libhwloc*|libevent*|libmkl*|libibverbs*|libnuma*|libpmix*|libucx*|libuc*|libfabric*|libpsm*|librdma*|libnl-*|libzmq*|libnccl*|libcuda*|libmagma*)
      g=libtorch ;;
    libgrpc*|libgpr*|libaddress_sorting*|libupb*|libre2*|libcares*|libabsl*) g="grpc+absl" ;;
    libssl*|libcrypto*) g=openssl ;;
    libyaml*) g=yaml-cpp ;;
    libstdc++*|libc.so*|libm.so*|libgcc*|ld-linux*|libz.so*|libdl*|libpthread*|librt*) g=libc+libstdc++ ;;
    *) g=other ;;  # Debian's LibTorch links OpenCV, GDAL, FFmpeg, ICU, ...
  esac
  groups[$g]=$(( ${groups[$g]:-0} + size ))
done < <(ldd "$tmp/prefix/lib/libfedge_client_c.so" | awk '/=>/ && $3 !~ /fedge/ {print $3}' | sort -u)
for g in "${!groups[@]}"; do printf "  %-34s %8s KiB\n" "$g (+ its dependencies)" "$(kib "${groups[$g]}")"; done
printf "  %-34s %8s KiB\n" "all system libraries" "$(kib "$sys_total")"

echo "== peak memory: device_app fine-tuning cnn ($train examples, $tasks tasks x $max_steps steps) =="
TRAIN=$train TASKS=$tasks MAX_STEPS=$max_steps \
  "$source_dir/tests/install/device_app_test.sh" "$build_dir" "$source_dir" \
  "$build_dir/aggregator/fedge-aggregator" | grep -E "peak memory|held-out accuracy|test: ok"
