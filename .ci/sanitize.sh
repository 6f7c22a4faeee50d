#!/usr/bin/env bash
# Builds the core, runtime and serialize tests with ASan and UBSan (gcc) in
# build-asan/ (ASAN_BUILD) and runs them; any sanitizer report fails.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${ASAN_BUILD:-build-asan}

SECONDS=0
cmake -S . -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" -DSUBQUAD_SANITIZE=ON \
  -DSUBQUAD_BUILD_BENCHMARKS=OFF > /dev/null
pattern='^(core|runtime|serialize)_'
targets=$(ninja -C "$out" -t targets all |
          sed -n 's|^bin/\([a-z0-9_]*_test\):.*|\1|p' | grep -E "$pattern" | sort -u)
cmake --build "$out" -j2 --target $targets
echo "sanitizers: built in ${SECONDS} s"
SECONDS=0
UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir "$out" -j2 -R "$pattern" \
  --output-on-failure
echo "sanitizers: tests ran in ${SECONDS} s"
