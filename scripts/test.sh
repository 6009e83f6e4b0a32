#!/usr/bin/env bash
# The second quick-start command: installs what is missing, builds
# everything, and runs the whole test suite with CTest.
#   scripts/test.sh [preset]        (release by default; debug, asan)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
scripts/setup.sh
scripts/build.sh "$preset"
ctest --preset "$preset" --output-on-failure
