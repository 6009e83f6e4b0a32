#!/usr/bin/env bash
# Configures and builds fedge with a CMake preset (default: release).
#   scripts/build.sh [preset] [extra cmake --build args...]
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
shift || true
if [ ! -f "build/${preset}/CMakeCache.txt" ]; then
  cmake --preset "$preset"
fi
jobs="${FEDGE_BUILD_JOBS:-$(nproc)}"
cmake --build --preset "$preset" -j "$jobs" "$@"
