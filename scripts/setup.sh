#!/usr/bin/env bash
# Installs every Debian package fedge needs to build, test and run.
# Idempotent: packages already installed are skipped. Works as root or via sudo.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache git
  libtorch-dev libopenblas0-pthread
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libssl-dev openssl libboost-dev libsqlite3-dev zlib1g-dev
  softhsm2 libengine-pkcs11-openssl libp11-kit-dev  # PKCS#11 keys (docs/security.md)
  libyaml-cpp-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  dataset-fashion-mnist
  chromium  # headless, for the dashboard browser test (tests/deploy/dashboard_browser_test.sh)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages already installed."
  exit 0
fi

echo "setup: installing ${#missing[@]} missing package(s): ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
elif command -v sudo >/dev/null 2>&1 && [ -t 0 ]; then
  SUDO=(sudo)
else
  cat >&2 <<MSG
setup: cannot install packages: not root and sudo is unavailable (or needs a password
without a terminal). Ask an administrator to run, as root:

  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}

then run this command again.
MSG
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done."
