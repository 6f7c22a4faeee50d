// attention_bench: exact attention, forward and backward, 8 heads, d = 64,
// f32, 2 threads, causal and not, n = 512 … 16384 — the fused ops
// (attention_forward, and its gradient rule's attention_backward) against
// the same attention from primitives (matmul, scale, causal_mask, softmax,
// matmul, and what autodiff makes of them), both through the Executor —
// and the fused path alone at n = 32768 and 65536.
//
//   build/bin/attention_bench --benchmark_counters_tabular=true
//   build/bin/attention_bench --benchmark_filter='n:4096$'   # one n
//
// Each benchmark runs one training-style graph: q, k, v [1, 8, n, 64] are
// parameters, loss = Σ o ⊙ r with r fed, autodiff for dq, dk, dv (reduced to
// scalars for the fetch, so no n-sized copies are timed). Rows for the same
// (mask, n) run back to back: their ratio is the figure to read (the machine
// is shared; BENCHMARKING.md). Counters, medians over the iterations after
// one warm-up run:
//   fwd_ms, bwd_ms      kernel time of the forward / backward nodes (the
//                       runtime profile, by node role)
//   fwdbwd_ms           wall time of the whole step; _min and _max its spread
//   *_GFLOPs            model flops / time: per visible (query, key) pair
//                       4·d forward, 8·d backward (BENCHMARKING.md: "backward
//                       from primitives"), 12·d for the step; a causal mask
//                       leaves n(n+1)/2 of the n² pairs
//   pct_peak            fwdbwd_GFLOPs as a share of the 2-thread f32 FMA
//                       peak measured at start-up (bench_util.h)
//   exec_pct_peak       the same for the flops the kernels execute (the
//                       ops' own counts: the fused backward recomputes P,
//                       10·d per pair, so 14·d for the step)
//   fma_now_GFLOPs      2-thread FMA throughput measured just before this
//                       benchmark (lower than the peak: the machine was busy)
//   arena_MiB           the plan's arena (intermediates, planned peak)
//   rss_MiB             the process's peak RSS during this benchmark
//                       (VmHWM, reset before it starts)
// A graph whose arena exceeds 60% of MemAvailable is not run (the machine
// is shared; the primitive graph at n = 16384 needs 16 GiB of 24);
// the error says how much it needed.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "benchmark/benchmark.h"
#include "core/builder.h"
#include "core/graph.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/ops.h"
#include "passes/autodiff.h"
#include "runtime/executor.h"
#include "runtime/parameter_store.h"
#include "runtime/plan.h"
#include "runtime/profile.h"
#include "runtime/thread_pool.h"

namespace subquad {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kThreads = 2;
constexpr int64_t kHeads = 8;
constexpr int64_t kHeadDim = 64;
constexpr double kMiB = 1024.0 * 1024.0;
constexpr char kSinkScope[] = "sink";

double g_fma_peak_gflops = 0;  // 2 threads, measured in main()

enum class Impl { kFused, kPrimitive };

// KiB from a "Key:   123 kB" line of /proc/self/status or /proc/meminfo.
int64_t ProcKiB(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      return std::strtoll(line.c_str() + key.size() + 1, nullptr, 10);
    }
  }
  return 0;
}

// Resets the process's peak RSS (VmHWM) to its current RSS.
void ResetPeakRss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

// Uniform [-1, 1) from a 64-bit LCG: fast enough for 10^8 values.
void FillUniform(Tensor& t, uint64_t seed) {
  float* p = t.data<float>();
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    p[i] = static_cast<float>(static_cast<int64_t>(s >> 40) - (1 << 23)) /
           static_cast<float>(1 << 23);
  }
}

// q, k, v parameters; o from the fused op or from primitives; loss = Σ o⊙r;
// autodiff; each gradient reduced to a scalar output "sink/<param>".
absl::Status BuildGraph(Graph& g, Impl impl, bool causal, int64_t n) {
  GraphBuilder b(&g);
  const Shape shape{1, kHeads, n, kHeadDim};
  Value q = b.Parameter("q", DType::kF32, shape);
  Value k = b.Parameter("k", DType::kF32, shape);
  Value v = b.Parameter("v", DType::kF32, shape);
  Value r = b.Input("r", DType::kF32, shape);
  const double scale = 1.0 / std::sqrt(static_cast<double>(kHeadDim));
  Value o;
  if (impl == Impl::kFused) {
    o = ops::AttentionForward(b, q, k, v, scale, causal).o;
  } else {
    Value s =
        ops::Scale(b, ops::MatMul(b, q, k, false, /*transpose_y=*/true), scale);
    if (causal) s = ops::CausalMask(b, s);
    o = ops::MatMul(b, ops::Softmax(b, s, -1), v);
  }
  b.Output("loss", ops::ReduceSumAll(b, ops::Mul(b, o, r)));
  RETURN_IF_ERROR(b.status());
  ASSIGN_OR_RETURN(AutodiffResult ad, Autodiff(g, {"loss", {}}));
  GraphBuilder sink(&g);
  auto scope = sink.Scope(kSinkScope);
  for (const auto& [name, grad] : ad.gradients) {
    sink.Output(absl::StrCat(kSinkScope, "/", name),
                ops::ReduceSumAll(sink, grad));
  }
  return sink.status();
}

void BM_Attention(benchmark::State& state, Impl impl, bool causal, int64_t n) {
  const double fma_now = bench::FmaPeakGflops(kThreads, 2, 2'000'000);
  Graph g;
  if (absl::Status s = BuildGraph(g, impl, causal, n); !s.ok()) {
    state.SkipWithError(std::string(s.message()).c_str());
    return;
  }
  const std::vector<std::string> fetches = {"loss", "sink/q", "sink/k",
                                            "sink/v"};
  {
    std::vector<Value> values;
    for (const std::string& f : fetches) values.push_back(*ResolveFetch(g, f));
    auto plan = Plan::Create(g, values);
    if (!plan.ok()) {
      state.SkipWithError(std::string(plan.status().message()).c_str());
      return;
    }
    const double need = plan->peak_bytes() / kMiB;
    const double avail = ProcKiB("/proc/meminfo", "MemAvailable") / 1024.0;
    if (need > 0.6 * avail) {
      state.SkipWithError(absl::StrCat("not run: the plan's arena needs ",
                                       static_cast<int64_t>(need), " MiB, ",
                                       static_cast<int64_t>(avail),
                                       " MiB available (60% allowed)")
                              .c_str());
      return;
    }
  }
  ResetPeakRss();
  ParameterStore params;
  if (absl::Status s = params.Initialize(g, 1); !s.ok()) {
    state.SkipWithError(std::string(s.message()).c_str());
    return;
  }
  uint64_t seed = 1;
  for (const char* name : {"q", "k", "v"})
    FillUniform(*params.Find(name), seed++);
  Tensor r(DType::kF32, {1, kHeads, n, kHeadDim});
  FillUniform(r, seed);
  static ThreadPool* pool = new ThreadPool(kThreads);
  ExecutorOptions options;
  options.pool = pool;
  options.profile = true;  // one clock read per node
  auto exec = Executor::Create(g, fetches, &params, options);
  if (!exec.ok()) {
    state.SkipWithError(std::string(exec.status().message()).c_str());
    return;
  }
  const FeedMap feeds = {{"r", r.view()}};
  if (auto out = (*exec)->Run(feeds); !out.ok()) {  // warm-up: first touch
    state.SkipWithError(std::string(out.status().message()).c_str());
    return;
  }
  std::vector<double> wall, fwd, bwd;
  int64_t exec_flops = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    auto out = (*exec)->Run(feeds);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!out.ok()) {
      state.SkipWithError(std::string(out.status().message()).c_str());
      return;
    }
    state.SetIterationTime(dt);
    wall.push_back(dt);
    int64_t f_ns = 0, b_ns = 0;
    exec_flops = 0;
    for (const NodeProfile& p : (*exec)->profile().nodes) {
      if (p.scope == kSinkScope) continue;
      (p.role == Role::kBackward ? b_ns : f_ns) += p.nanos;
      exec_flops += p.flops;
    }
    fwd.push_back(f_ns * 1e-9);
    bwd.push_back(b_ns * 1e-9);
  }
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double t_step = median(wall), t_fwd = median(fwd), t_bwd = median(bwd);
  const double pairs =
      static_cast<double>(kHeads) *
      (causal ? n * (n + 1) / 2.0 : static_cast<double>(n) * n);
  const double fwd_flops = pairs * 4 * kHeadDim,
               bwd_flops = pairs * 8 * kHeadDim;
  const double step_gflops = (fwd_flops + bwd_flops) / t_step * 1e-9;
  state.counters["fwd_ms"] = t_fwd * 1e3;
  state.counters["bwd_ms"] = t_bwd * 1e3;
  state.counters["fwdbwd_ms"] = t_step * 1e3;
  state.counters["fwdbwd_ms_min"] =
      *std::min_element(wall.begin(), wall.end()) * 1e3;
  state.counters["fwdbwd_ms_max"] =
      *std::max_element(wall.begin(), wall.end()) * 1e3;
  state.counters["fwd_GFLOPs"] = fwd_flops / t_fwd * 1e-9;
  state.counters["bwd_GFLOPs"] = bwd_flops / t_bwd * 1e-9;
  state.counters["fwdbwd_GFLOPs"] = step_gflops;
  state.counters["pct_peak"] = 100.0 * step_gflops / g_fma_peak_gflops;
  state.counters["exec_pct_peak"] =
      100.0 * exec_flops / t_step * 1e-9 / g_fma_peak_gflops;
  state.counters["fma_now_GFLOPs"] = fma_now;
  state.counters["arena_MiB"] = (*exec)->plan().peak_bytes() / kMiB;
  state.counters["rss_MiB"] = ProcKiB("/proc/self/status", "VmHWM") / 1024.0;
}

int IterationsFor(int64_t n) {
  return n <= 2048 ? 9 : n <= 8192 ? 5 : n <= 16384 ? 3 : 1;
}

void RegisterBenchmarks() {
  for (int64_t n = 512; n <= 65536; n *= 2) {
    for (bool causal : {false, true}) {
      for (Impl impl : {Impl::kFused, Impl::kPrimitive}) {
        if (impl == Impl::kPrimitive && n > 16384) continue;
        benchmark::RegisterBenchmark(
            absl::StrCat("BM_Attention/",
                         impl == Impl::kFused ? "fused" : "primitive", "/",
                         causal ? "causal" : "full", "/n:", n)
                .c_str(),
            [impl, causal, n](benchmark::State& state) {
              BM_Attention(state, impl, causal, n);
            })
            ->Iterations(IterationsFor(n))
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
}

}  // namespace
}  // namespace subquad

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  subquad::g_fma_peak_gflops = subquad::bench::FmaPeakGflops(subquad::kThreads);
  std::fprintf(stderr, "f32 FMA peak (%d threads): %.1f GFLOP/s\n",
               subquad::kThreads, subquad::g_fma_peak_gflops);
  benchmark::AddCustomContext("fma_peak_GFLOPs",
                              absl::StrCat(subquad::g_fma_peak_gflops));
  subquad::RegisterBenchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
