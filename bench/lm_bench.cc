// lm_bench: forward-pass throughput of nn::BuildTransformerLM and the memory
// its plan needs.
//
//   build/bin/lm_bench --benchmark_counters_tabular=true
//
// One benchmark per (layers, batch, seq_len): d_model 256, 4 heads, vocab
// 256, f32, causal, an executor with 2 threads fetching logits and loss. Each
// iteration is one Executor::Run, timed on the wall clock after one warm-up
// run (the arena's first touch); big configs run a fixed small number of
// iterations. Counters:
//   tokens_per_s        batch·seq_len / median iteration time
//   ms_median, ms_min, ms_max
//   GFLOP_per_s         the ops' own flop counts (runtime profile) / median
//   pct_fma_peak        GFLOP_per_s as a share of the 2-thread f32 FMA peak
//                       measured at start-up (BENCHMARKING.md)
//   planned_peak_MiB    Plan::peak_bytes(): the arena
//   unshared_MiB        Plan::unshared_bytes(): every buffer on its own
//   peak_over_unshared  their ratio
// Once per config, the per-op time shares of the last run
// (Profile::SummaryByOp) go to stderr.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "benchmark/benchmark.h"
#include "core/builder.h"
#include "core/graph.h"
#include "core/tensor.h"
#include "ops/nn/layers.h"
#include "runtime/executor.h"
#include "runtime/parameter_store.h"
#include "runtime/plan.h"
#include "runtime/profile.h"

namespace subquad {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kThreads = 2;
constexpr double kMiB = 1024.0 * 1024.0;

using bench::FmaPeakGflops;

double g_fma_peak_gflops = 0;  // 2 threads, measured in main()

// ---- LM forward --------------------------------------------------------------------

void BM_LmForward(benchmark::State& state, int64_t layers, int64_t batch,
                  int64_t seq_len) {
  nn::TransformerLMConfig config;
  config.vocab = 256;
  config.d_model = 256;
  config.heads = 4;
  config.layers = layers;
  config.batch = batch;
  config.seq_len = seq_len;
  config.dtype = DType::kF32;

  Graph graph;
  GraphBuilder builder(&graph);
  nn::BuildTransformerLM(builder, config);
  if (!builder.ok()) {
    state.SkipWithError(std::string(builder.status().message()).c_str());
    return;
  }
  ParameterStore params;
  if (absl::Status s = params.Initialize(graph, /*seed=*/1); !s.ok()) {
    state.SkipWithError(std::string(s.message()).c_str());
    return;
  }
  ExecutorOptions options;
  options.num_threads = kThreads;
  options.profile = true;  // one clock read per node: negligible here
  auto exec = Executor::Create(graph, {"logits", "loss"}, &params, options);
  if (!exec.ok()) {
    state.SkipWithError(std::string(exec.status().message()).c_str());
    return;
  }

  // Byte tokens; targets are the next token.
  const int64_t n = batch * seq_len;
  Tensor tokens(DType::kI32, {batch, seq_len});
  Tensor targets(DType::kI32, {batch, seq_len});
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> byte(0, 255);
  for (int64_t i = 0; i < n; ++i) tokens.data<int32_t>()[i] = byte(rng);
  for (int64_t i = 0; i < n; ++i) {
    targets.data<int32_t>()[i] =
        (i + 1) % seq_len == 0 ? byte(rng) : tokens.data<int32_t>()[i + 1];
  }
  const FeedMap feeds = {{"tokens", tokens.view()}, {"targets", targets.view()}};

  // Warm-up: the arena's pages are touched for the first time here.
  if (auto out = (*exec)->Run(feeds); !out.ok()) {
    state.SkipWithError(std::string(out.status().message()).c_str());
    return;
  }

  std::vector<double> secs;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    auto out = (*exec)->Run(feeds);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!out.ok()) {
      state.SkipWithError(std::string(out.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(out->data());
    secs.push_back(dt);
  }
  if (secs.empty()) return;
  std::sort(secs.begin(), secs.end());
  const double median = secs[secs.size() / 2];

  const Profile& profile = (*exec)->profile();
  int64_t flops = 0;
  for (const NodeProfile& p : profile.nodes) flops += p.flops;
  const Plan& plan = (*exec)->plan();
  const double gflops = static_cast<double>(flops) / median * 1e-9;

  state.counters["tokens_per_s"] = static_cast<double>(n) / median;
  state.counters["ms_median"] = median * 1e3;
  state.counters["ms_min"] = secs.front() * 1e3;
  state.counters["ms_max"] = secs.back() * 1e3;
  state.counters["GFLOP_per_s"] = gflops;
  if (g_fma_peak_gflops > 0) {
    state.counters["pct_fma_peak"] = 100.0 * gflops / g_fma_peak_gflops;
  }
  state.counters["planned_peak_MiB"] = plan.peak_bytes() / kMiB;
  state.counters["unshared_MiB"] = plan.unshared_bytes() / kMiB;
  state.counters["peak_over_unshared"] =
      plan.unshared_bytes() > 0
          ? static_cast<double>(plan.peak_bytes()) / plan.unshared_bytes()
          : 0.0;

  // The per-op breakdown, once per config (benchmark may call us again for
  // repetitions).
  static absl::flat_hash_set<std::string>* printed =
      new absl::flat_hash_set<std::string>();
  const std::string key = absl::StrCat(layers, "/", batch, "/", seq_len);
  if (printed->insert(key).second) {
    std::fprintf(stderr,
                 "\n== TransformerLM layers=%lld d_model=256 heads=4 batch=%lld "
                 "seq_len=%lld, %d threads: %d nodes, %.2f GFLOP/run, planned "
                 "peak %.1f MiB of %.1f MiB unshared (%zu buffers)\n%s",
                 static_cast<long long>(layers), static_cast<long long>(batch),
                 static_cast<long long>(seq_len), kThreads, graph.num_nodes(),
                 static_cast<double>(flops) * 1e-9, plan.peak_bytes() / kMiB,
                 plan.unshared_bytes() / kMiB, plan.buffers().size(),
                 profile.SummaryByOp(12).c_str());
  }
}

struct LmConfig {
  int64_t layers, batch, seq_len;
  int iterations;
};

void RegisterLmBenchmarks() {
  static constexpr LmConfig kConfigs[] = {
      {2, 8, 256, 10}, {4, 8, 256, 10},  {2, 1, 1024, 8},
      {4, 1, 1024, 8}, {2, 1, 4096, 3},  {4, 1, 4096, 3},
  };
  for (const LmConfig& c : kConfigs) {
    benchmark::RegisterBenchmark(
        absl::StrCat("BM_LmForward/layers:", c.layers, "/batch:", c.batch,
                     "/seq_len:", c.seq_len)
            .c_str(),
        [c](benchmark::State& state) {
          BM_LmForward(state, c.layers, c.batch, c.seq_len);
        })
        ->Iterations(c.iterations)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace
}  // namespace subquad

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  subquad::g_fma_peak_gflops = subquad::FmaPeakGflops(subquad::kThreads);
  std::fprintf(stderr, "f32 FMA peak (%d threads): %.1f GFLOP/s\n",
               subquad::kThreads, subquad::g_fma_peak_gflops);
  subquad::RegisterLmBenchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
