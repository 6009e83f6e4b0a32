#!/usr/bin/env bash
# Checks that fedge's modules depend on each other one way only (DESIGN.md):
#
#   proto, models (with fedge::data), privacy  <-  client, aggregator  <-  simulations
#
#   tests/layering/layering_test.sh sources SOURCE_DIR
#   tests/layering/layering_test.sh binaries FEDGE_CLIENT FEDGE_AGGREGATOR LIBFEDGE_DATA
#
# sources:  no C/C++ file of proto/, models/, privacy/ includes a client,
#           aggregator or simulations header; client/ and aggregator/ never
#           include each other nor a fedge/simulations/ header; fedge::data's
#           files include no LibTorch; and no CMake file under client/ or
#           aggregator/ links fedge::sim or fedge::sim_data.
# binaries: the dynamic dependencies of fedge-client and fedge-aggregator
#           (readelf -d NEEDED, followed through fedge's own libraries) hold
#           no libfedge_sim*, and those of libfedge_data no LibTorch. Exits 77
#           (skipped) when the fedge libraries are linked statically, where
#           only the CMake check of `sources` applies.
#
# Every violation is printed, with the include line or the library chain;
# the exit status is 1 when there was one.
set -uo pipefail

violations=0
violation() {
  echo "layering violation: $*" >&2
  violations=$((violations + 1))
}

# Files under $1 (C/C++ sources and headers) that include a header of one of
# the modules in the regex alternation $2.
includes_of() {
  grep -rnE --include='*.h' --include='*.hh' --include='*.hpp' --include='*.c' \
    --include='*.cc' --include='*.cpp' --include='*.cxx' --include='*.inc' \
    "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]fedge/($2)/" "$1"
}

check_sources() {
  local src=$1 module hits
  for module in proto models privacy; do
    hits=$(includes_of "$src/$module" 'client|aggregator|simulations')
    [[ -z "$hits" ]] || violation "$module/ includes a header of a module above it:"$'\n'"$hits"
  done
  hits=$(includes_of "$src/client" 'aggregator|simulations')
  [[ -z "$hits" ]] || violation "client/ includes aggregator or simulations headers:"$'\n'"$hits"
  hits=$(includes_of "$src/aggregator" 'client|simulations')
  [[ -z "$hits" ]] || violation "aggregator/ includes client or simulations headers:"$'\n'"$hits"

  # fedge::data stays LibTorch-free (it is below the LibTorch-free aggregator).
  hits=$(grep -rnE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"](torch|ATen|c10)/" \
    "$src/models/include/fedge/data" "$src/models/src/data")
  [[ -z "$hits" ]] || violation "fedge::data includes LibTorch:"$'\n'"$hits"

  # Link lines, comments stripped: no client or aggregator target links the
  # simulator's libraries.
  local file
  while IFS= read -r -d '' file; do
    hits=$(sed 's/#.*//' "$file" | grep -nE 'fedge(::|_)sim(_data)?([^A-Za-z0-9_]|$)')
    [[ -z "$hits" ]] || violation "${file#"$src"/} names fedge::sim:"$'\n'"$hits"
  done < <(find "$src/client" "$src/aggregator" \( -name CMakeLists.txt -o -name '*.cmake' \) -print0)
}

# Prints "chain<TAB>needed-library" for every NEEDED entry of $1 and,
# recursively, of the fedge libraries it needs (found through each object's
# RUNPATH/RPATH, with $ORIGIN expanded). $2 is the chain that led to $1.
declare -A visited
needed_closure() {
  local object=$1 chain=$2 dynamic origin search name dir found
  if ! dynamic=$(readelf -d "$object" 2>&1); then
    violation "readelf -d $object failed: $dynamic"
    return
  fi
  origin=$(dirname "$object")
  search=$(sed -nE 's/.*Library (runpath|rpath): \[(.*)\]/\2/p' <<<"$dynamic" | tr ':' ' ')
  search=${search//\$ORIGIN/$origin}
  search=${search//\$\{ORIGIN\}/$origin}
  while read -r name; do
    printf '%s\t%s\n' "$chain" "$name"
    [[ "$name" == libfedge_* ]] || continue
    found=""
    for dir in $search; do
      if [[ -e "$dir/$name" ]]; then
        found=$dir/$name
        break
      fi
    done
    if [[ -z "$found" ]]; then
      violation "$chain needs $name, which is not on its RUNPATH ($search)"
      continue
    fi
    [[ -n "${visited[$found]:-}" ]] && continue
    visited[$found]=1
    needed_closure "$found" "$chain -> $name"
  done < <(sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p' <<<"$dynamic")
}

check_binaries() {
  local client=$1 aggregator=$2 data=$3 binary any_fedge=0
  closure=$(mktemp)
  trap 'rm -f "$closure"' EXIT
  for binary in "$client" "$aggregator" "$data"; do
    if [[ ! -f "$binary" ]]; then
      echo "$binary does not exist: build fedge-client, fedge-aggregator and fedge_data first" >&2
      exit 1
    fi
  done
  for binary in "$client" "$aggregator"; do
    visited=()
    needed_closure "$binary" "$(basename "$binary")" >"$closure"
    grep -q $'\tlibfedge_' "$closure" && any_fedge=1
    while IFS=$'\t' read -r chain name; do
      [[ "$name" == libfedge_sim* ]] && violation "$chain needs $name"
    done <"$closure"
  done
  visited=()
  needed_closure "$data" "$(basename "$data")" >"$closure"
  while IFS=$'\t' read -r chain name; do
    [[ "$name" == libtorch* || "$name" == libc10* ]] && violation "$chain needs $name"
  done <"$closure"
  if ((violations == 0 && any_fedge == 0)); then
    echo "the fedge libraries are linked statically: no dynamic dependencies to check"
    exit 77
  fi
}

case "${1:-}" in
  sources) check_sources "$2" ;;
  binaries) check_binaries "$2" "$3" "$4" ;;
  *)
    echo "usage: $0 sources SOURCE_DIR | binaries FEDGE_CLIENT FEDGE_AGGREGATOR LIBFEDGE_DATA" >&2
    exit 2
    ;;
esac
if ((violations > 0)); then
  echo "$violations layering violation(s)" >&2
  exit 1
fi
echo "layering ($1): ok"
