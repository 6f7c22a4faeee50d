#!/usr/bin/env bash
# Installs the build in build/ into a temporary prefix, then builds and runs
# the out-of-tree example (examples/custom_pass) against it through
# find_package(subquad): a plugin with a pass and an op, a program using the
# C++ builder API that loads it, and the installed CLI running its pass.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install build --prefix "$prefix" >/dev/null
cmake -S examples/custom_pass -B "$prefix/example" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/example"
"$prefix/example/swish_mlp" "$prefix/example/libsilu_plugin.so" "$prefix/swish.sqg"
# The installed CLI loads the same plugin and runs its pass.
"$prefix/bin/subquad" opt "$prefix/swish.sqg" -o "$prefix/fused.sqg" \
  --load-plugin "$prefix/example/libsilu_plugin.so" --pipeline "fuse-silu,dce" --stats
"$prefix/bin/subquad" opt "$prefix/swish.sqg" \
  --load-plugin "$prefix/example/libsilu_plugin.so" --pipeline "fuse-silu,dce" |
  grep -q "= silu("
echo "out-of-tree example: OK"
