#!/usr/bin/env bash
# The first quick-start command: installs what is missing, builds, and runs
# the default simulation (Fashion-MNIST, 100 clients, Dirichlet(0.5),
# 10 clients per round, cnn, FedAvg). Extra arguments go to fedge-sim, e.g.
#   scripts/quickstart.sh --set round.rounds=10
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release --target fedge-sim
exec build/release/simulations/fedge-sim --out runs/default "$@"
