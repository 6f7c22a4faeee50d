// gemm_bench: the matmul op's f32 GEMM against the machine's measured FMA
// peak.
//
//   build/bin/gemm_bench --benchmark_counters_tabular=true
//
// BM_FmaPeak measures the peak with a register-resident FMA loop (AVX-512
// when the build has it) on 1 and 2 threads. The machines are shared, so each
// kernel benchmark measures the peak again just before it runs; that figure
// ("peak") is the denominator of its "%peak".
// BM_MatMul runs the registered `matmul` kernel on square f32 products with
// a serial runner (1 thread) or the runtime's ThreadPool (2 threads).
// BM_MatMulAttention runs the batched products of causal attention's scores
// and outputs. When the build found OpenBLAS, BM_OpenBlasSgemm runs
// cblas_sgemm on the same sizes with OpenBLAS's own threads, for comparison
// in the same run; unset OPENBLAS_CORETYPE first (see BENCHMARKING.md).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "benchmark/benchmark.h"
#include "core/builder.h"
#include "core/graph.h"
#include "core/op_schema.h"
#include "core/parallel.h"
#include "core/tensor.h"
#include "runtime/thread_pool.h"

#ifdef SUBQUAD_BENCH_OPENBLAS
#include <cblas.h>
#endif

namespace subquad {
namespace {

using Clock = std::chrono::steady_clock;

// ---- FMA peak -------------------------------------------------------------------

using bench::FmaLoop;
using bench::MeasureFmaGflops;

constexpr int64_t kFmaIters = 20'000'000;  // ~50 ms a thread at 200 GFLOP/s

// Best of `reps` runs of the FMA loop on `threads` threads.
double MeasurePeak(int threads, int reps, int64_t iters) {
  double best = 0;
  for (int rep = 0; rep < reps; ++rep) {
    best = std::max(best, MeasureFmaGflops(threads, iters));
  }
  return best;
}

// Measured once per process, at start-up.
double PeakGflops(int threads) {
  static double peak[3] = {0, 0, 0};
  if (peak[threads] == 0) {
    MeasureFmaGflops(threads, kFmaIters / 4);  // warm up clocks
    peak[threads] = MeasurePeak(threads, 5, kFmaIters);
  }
  return peak[threads];
}

// The machine is shared: a kernel's %peak divides by the peak measured just
// before it (best of 3 short runs), so both see the same neighbours.
void ReportGflops(benchmark::State& state, double gflops,
                  double peak_before) {
  state.counters["GFLOP/s"] = gflops;
  state.counters["%peak"] = 100.0 * gflops / peak_before;
  state.counters["peak"] = peak_before;
}

void BM_FmaPeak(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  double flops = 0, secs = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const double gflops = MeasureFmaGflops(threads, kFmaIters);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    state.SetIterationTime(dt);
    flops += gflops * dt * 1e9;
    secs += dt;
  }
  state.counters["GFLOP/s"] = flops / secs * 1e-9;
  state.counters["best"] = PeakGflops(threads);
}
BENCHMARK(BM_FmaPeak)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// ---- The matmul kernel -----------------------------------------------------------

ParallelRunner* Runner(int threads) {
  static ThreadPool* pool = new ThreadPool(2);
  return threads <= 1 ? static_cast<ParallelRunner*>(SerialRunner::Get())
                      : pool;
}

Tensor Filled(Shape shape, float seed) {
  Tensor t(DType::kF32, std::move(shape));
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    p[i] = static_cast<float>((i * 7919 + static_cast<int64_t>(seed * 131)) %
                              2001) /
               1000.0f -
           1.0f;
  }
  return t;
}

// Times the matmul kernel on a [.., m, k] x b [.., k, n] (with the given
// transposes) and reports GFLOP/s and % of the measured FMA peak.
void RunMatMul(benchmark::State& state, const Shape& a_shape,
               const Shape& b_shape, bool ta, bool tb, int threads) {
  Graph g;
  GraphBuilder b(&g);
  const Value av = b.Input("a", DType::kF32, a_shape);
  const Value bv = b.Input("b", DType::kF32, b_shape);
  absl::StatusOr<std::vector<Value>> out =
      b.AddNode("matmul", {av, bv},
                {{"transpose_a", AttrValue(ta)}, {"transpose_b", AttrValue(tb)}});
  if (!out.ok()) {
    state.SkipWithError(std::string(out.status().message()).c_str());
    return;
  }
  const Node& node = *g.node((*out)[0].node);
  const KernelFn* kernel = node.schema()->FindKernel(DType::kF32);
  const double flops =
      static_cast<double>(node.schema()->flops(node, {b.type(av), b.type(bv)}));
  const Tensor a = Filled(a_shape, 1), bt = Filled(b_shape, 2);
  Tensor c(node.output_type());
  const TensorView in[2] = {a.view(), bt.view()};
  const TensorView outs[1] = {c.view()};
  KernelContext ctx{node, in, outs, Runner(threads)};
  if (absl::Status s = (*kernel)(ctx); !s.ok()) {  // warm-up, first touch
    state.SkipWithError(std::string(s.message()).c_str());
    return;
  }
  const double peak = MeasurePeak(threads, 3, kFmaIters / 5);
  double secs = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    (void)(*kernel)(ctx);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    state.SetIterationTime(dt);
    secs += dt;
  }
  ReportGflops(state, flops * state.iterations() / secs * 1e-9, peak);
}

void BM_MatMul(benchmark::State& state) {
  const int64_t n = state.range(0);
  RunMatMul(state, {n, n}, {n, n}, false, false,
            static_cast<int>(state.range(1)));
}
BENCHMARK(BM_MatMul)
    ->ArgNames({"n", "threads"})
    ->ArgsProduct({{256, 512, 1024, 2048, 4096}, {1, 2}})
    ->UseManualTime()
    ->MinTime(0.3)
    ->Unit(benchmark::kMillisecond);

// Attention at T = 1024, 16 heads of 64: scores q·kᵀ and outputs p·v.
void BM_MatMulAttention(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(1));
  if (state.range(0) == 0) {
    RunMatMul(state, {16, 1024, 64}, {16, 1024, 64}, false, true, threads);
  } else {
    RunMatMul(state, {16, 1024, 1024}, {16, 1024, 64}, false, false, threads);
  }
}
BENCHMARK(BM_MatMulAttention)
    ->ArgNames({"pv", "threads"})
    ->ArgsProduct({{0, 1}, {1, 2}})
    ->UseManualTime()
    ->MinTime(0.3)
    ->Unit(benchmark::kMillisecond);

#ifdef SUBQUAD_BENCH_OPENBLAS
// cblas_sgemm on the whole product with OpenBLAS's own threads.
void BM_OpenBlasSgemm(benchmark::State& state) {
  const int64_t n = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  openblas_set_num_threads(threads);
  const Tensor a = Filled({n, n}, 1), b = Filled({n, n}, 2);
  Tensor c(DType::kF32, {n, n});
  const auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f,
                a.data<float>(), n, b.data<float>(), n, 0.0f, c.data<float>(),
                n);
  };
  run();
  const double peak = MeasurePeak(threads, 3, kFmaIters / 5);
  double secs = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    run();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    state.SetIterationTime(dt);
    secs += dt;
  }
  ReportGflops(state, 2.0 * n * n * n * state.iterations() / secs * 1e-9,
               peak);
}
BENCHMARK(BM_OpenBlasSgemm)
    ->ArgNames({"n", "threads"})
    ->ArgsProduct({{256, 512, 1024, 2048, 4096}, {1, 2}})
    ->UseManualTime()
    ->MinTime(0.3)
    ->Unit(benchmark::kMillisecond);
#endif

}  // namespace
}  // namespace subquad

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::fprintf(stderr, "f32 FMA peak: %.1f GFLOP/s (1 thread), %.1f (2 threads)\n",
               subquad::PeakGflops(1), subquad::PeakGflops(2));
#ifdef SUBQUAD_BENCH_OPENBLAS
  std::fprintf(stderr, "OpenBLAS: %s, core %s\n", openblas_get_config(),
               openblas_get_corename());
#endif
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
