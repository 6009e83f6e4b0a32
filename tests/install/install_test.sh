#!/usr/bin/env bash
# Installs fedge's client package into a temporary prefix and builds two
# consumers against it: a CMake project (find_package(fedge)) and a plain
# compile with pkg-config.
#
#   tests/install/install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build_dir=$1
source_dir=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

cmake --install "$build_dir" --prefix "$prefix" --component client > "$tmp/install.log"

# Only the public header is installed.
headers=$(cd "$prefix/include" && find . -type f | sort)
if [[ "$headers" != "./fedge/client/c_api.h" ]]; then
  echo "installed headers are not just the C API:" $headers >&2
  exit 1
fi
# Every installed library finds its fedge dependencies by itself.
for lib in "$prefix"/lib/libfedge_*.so; do
  if ldd "$lib" | grep -q "not found"; then
    echo "$lib has unresolved dependencies:" >&2
    ldd "$lib" | grep "not found" >&2
    exit 1
  fi
done

# 1. CMake: find_package(fedge).
cmake -S "$source_dir/tests/install/consumer" -B "$tmp/cmake-consumer" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release > "$tmp/configure.log"
cmake --build "$tmp/cmake-consumer" > "$tmp/build.log"
"$tmp/cmake-consumer/fedge_consumer"

# 2. pkg-config, exactly as docs/embedding.md writes it (no extra rpath or
# LD_LIBRARY_PATH): the program must start.
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
pkg-config --exists fedge-client
cp "$source_dir/tests/install/consumer/consumer.c" "$tmp/app.c"
# shellcheck disable=SC2046
(cd "$tmp" && cc app.c $(pkg-config --cflags --libs fedge-client) -o pc-consumer)
env -u LD_LIBRARY_PATH "$tmp/pc-consumer"
# And warning-free as C99.
# shellcheck disable=SC2046
cc -std=c99 -Wall -Werror "$tmp/app.c" $(pkg-config --cflags --libs fedge-client) \
  -o "$tmp/pc-consumer-strict"
echo "install test: ok"
