#!/usr/bin/env bash
# Fuzzes the loaders of untrusted files with clang, ASan and UBSan: graph
# files (graph_loader_fuzzer, binary and text) for FUZZ_SECONDS (default
# 60), then .npy files and checkpoints (decoders_fuzzer) for
# DECODERS_FUZZ_SECONDS (default 15). Builds in build-fuzz/ (FUZZ_BUILD);
# seed corpora are made now by the main build's subquad (MAIN_BUILD, default
# build/), not committed. Any crash, sanitizer report, leak or timeout fails
# the script; the input that caused it is left in the fuzz build directory
# (crash-*, leak-*, timeout-*).
set -euo pipefail
cd "$(dirname "$0")/.."
main=${MAIN_BUILD:-build}
out=${FUZZ_BUILD:-build-fuzz}

SECONDS=0
cmake -S . -B "$out" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=Debug -DSUBQUAD_FUZZ=ON \
  -DSUBQUAD_BUILD_TESTS=OFF -DSUBQUAD_BUILD_BENCHMARKS=OFF > /dev/null
cmake --build "$out" -j2 --target graph_loader_fuzzer decoders_fuzzer
echo "fuzz: built in ${SECONDS} s"

subquad="$main/bin/subquad"
seeds="$out/seeds"
work="$out/work"
rm -rf "$seeds" "$work"
mkdir -p "$seeds/graph" "$seeds/decoders" "$work"
for layers in 0 1; do
  for train in "" --train; do
    name="lm${layers}${train:+_train}"
    "$subquad" export-example -o "$seeds/graph/$name.sqg" --layers "$layers" \
      --d-model 4 --heads 1 --seq-len 2 --vocab 4 --batch 1 $train > /dev/null
    "$subquad" convert "$seeds/graph/$name.sqg" "$seeds/graph/$name.sqtxt" > /dev/null
  done
done
"$subquad" run "$seeds/graph/lm0.sqg" --fetch embed/wte --fetch embed/wpe \
  --out "$seeds/decoders" > /dev/null
for _ in $(seq 50); do echo "the cat sat on the mat."; done > "$work/corpus.txt"
"$subquad" train --corpus "$work/corpus.txt" --layers 0 --d-model 4 --heads 1 \
  --seq-len 4 --batch 1 --steps 1 --threads 1 --checkpoint-dir "$work/ckpt" > /dev/null
cp "$work"/ckpt/*.sqckpt "$seeds/decoders/"
cp serialize/fuzz/graph.dict "$work/graph.dict"
"$subquad" ops --names | sed 's/.*/"&"/' >> "$work/graph.dict"

# fuzz TARGET SECONDS DICTIONARY SEED_DIR
fuzz() {
  local corpus="$out/corpus/$1" log="$out/$1.log" runs
  mkdir -p "$corpus"
  SECONDS=0
  if ! "$out/bin/$1" -max_total_time="$2" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -dict="$3" -artifact_prefix="$out/" -print_final_stats=1 \
      "$corpus" "$4" 2> "$log"; then
    tail -n 60 "$log"
    echo "fuzz: $1 found a problem; the input is in $out/" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "fuzz: $1 ran ${runs} inputs in ${SECONDS} s, no findings"
}
fuzz graph_loader_fuzzer "${FUZZ_SECONDS:-60}" "$work/graph.dict" "$seeds/graph"
fuzz decoders_fuzzer "${DECODERS_FUZZ_SECONDS:-15}" serialize/fuzz/npy.dict "$seeds/decoders"
