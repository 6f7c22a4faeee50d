// Shared by the benchmark programs: the machine's f32 FMA peak, measured in
// the same run as the kernels it is compared with (BENCHMARKING.md).
#ifndef SUBQUAD_BENCH_BENCH_UTIL_H_
#define SUBQUAD_BENCH_BENCH_UTIL_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

namespace subquad::bench {

// ---- f32 FMA peak ---------------------------------------------------------------

// `iters` rounds of 16 independent vector FMAs; returns the flops done.
inline double FmaLoop(int64_t iters) {
  constexpr int kAcc = 16;
#if defined(__AVX512F__)
  constexpr int kLanes = 16;
  __m512 acc[kAcc];
  for (int j = 0; j < kAcc; ++j) acc[j] = _mm512_set1_ps(0.001f * j);
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < kAcc; ++j) acc[j] = _mm512_fmadd_ps(acc[j], x, y);
  }
  for (int j = 1; j < kAcc; ++j) acc[0] = _mm512_add_ps(acc[0], acc[j]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, acc[0]);
  benchmark::DoNotOptimize(lanes[0]);
#elif defined(__AVX2__) && defined(__FMA__)
  constexpr int kLanes = 8;
  __m256 acc[kAcc];
  for (int j = 0; j < kAcc; ++j) acc[j] = _mm256_set1_ps(0.001f * j);
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < kAcc; ++j) acc[j] = _mm256_fmadd_ps(acc[j], x, y);
  }
  for (int j = 1; j < kAcc; ++j) acc[0] = _mm256_add_ps(acc[0], acc[j]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc[0]);
  benchmark::DoNotOptimize(lanes[0]);
#else
  constexpr int kLanes = 1;
  float acc[kAcc];
  for (int j = 0; j < kAcc; ++j) acc[j] = 0.001f * j;
  for (int64_t i = 0; i < iters; ++i) {
    for (int j = 0; j < kAcc; ++j) acc[j] = acc[j] * 0.999999f + 1e-7f;
  }
  benchmark::DoNotOptimize(acc[0]);
#endif
  return 2.0 * kLanes * kAcc * static_cast<double>(iters);
}

// GFLOP/s of `threads` threads running FmaLoop together (wall clock).
inline double MeasureFmaGflops(int threads, int64_t iters) {
  std::vector<std::thread> workers;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 1; t < threads; ++t) workers.emplace_back([iters] { FmaLoop(iters); });
  double flops = FmaLoop(iters);
  for (auto& w : workers) w.join();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return flops * threads / secs * 1e-9;
}

// Best of a few runs on `threads` threads (the first warms the clocks up).
inline double FmaPeakGflops(int threads, int reps = 4,
                            int64_t iters = 20'000'000) {
  double best = 0;
  for (int rep = 0; rep < reps; ++rep) {
    const double g = MeasureFmaGflops(threads, iters);
    if (rep > 0 || reps == 1) best = std::max(best, g);
  }
  return best;
}

}  // namespace subquad::bench

#endif  // SUBQUAD_BENCH_BENCH_UTIL_H_
