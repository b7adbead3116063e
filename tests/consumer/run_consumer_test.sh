#!/usr/bin/env bash
# Consumer-project test: installs the main build tree into a temporary prefix, configures
# tests/consumer against it with find_package(peft CONFIG), builds it, runs it and checks it
# prints OK. Usage: run_consumer_test.sh <main build dir> [extra cmake configure args...]
set -euo pipefail

build_dir=${1:?usage: run_consumer_test.sh <main build dir> [cmake args...]}
shift
cmake=${CMAKE:-cmake}  # CTest passes the cmake that configured the main build
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/peft-consumer.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "== install $build_dir into $tmp/prefix"
"$cmake" --install "$build_dir" --prefix "$tmp/prefix"

echo "== configure the consumer"
"$cmake" -S "$here" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release "$@"

echo "== build the consumer"
"$cmake" --build "$tmp/build"

echo "== run the consumer"
out=$("$tmp/build/peft_consumer")
echo "$out"
if [[ "$(tail -n 1 <<<"$out")" != "OK" ]]; then
  echo "consumer did not print OK" >&2
  exit 1
fi
