// train_bench: training-step throughput of a 4-layer TransformerLM (d_model
// 256, 4 heads, AdamW) at several sequence lengths, and how much of the step
// time and of the planned peak memory goes to attention.
//
//   build/bin/train_bench --benchmark_counters_tabular=true
//
// Each sequence length runs twice, back to back: the primitive attention
// autodiff writes (backward:0, "unfused") and the pipeline
// fuse-attention,fuse-attention-backward,dce (backward:1, "exact": the fused
// kernels); their ratio is the figure to read.
//
// Attention nodes are those whose scope is a block's "attn" scope itself
// (Q·Kᵀ, scale, mask, softmax, P·V and the head split/merge), not its
// projections (".../attn/q_proj" etc.); forward or backward by role.
// Counters:
//   tokens_per_s          batch·seq_len / median step time
//   ms_median             one step: forward, backward and optimizer update
//   attn_fwd_time_pct     share of the step's kernel time in attention forward
//   attn_bwd_time_pct     ... in attention backward
//   peak_MiB              the plan's arena
//   attn_fwd_mem_pct      share of the bytes live at the plan's peak that
//   attn_bwd_mem_pct      attention forward / backward nodes produced
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "core/builder.h"
#include "ops/nn/layers.h"
#include "passes/autodiff.h"
#include "passes/optimizer.h"
#include "passes/pass_manager.h"
#include "runtime/executor.h"
#include "runtime/thread_pool.h"

namespace subquad {
namespace {

bool IsAttention(const Node& n) {
  const std::string& s = n.scope();
  return s == "attn" || absl::EndsWith(s, "/attn");
}

// Bytes live at the plan's peak position, and the share of them produced by
// attention forward / backward nodes.
void MemoryAtPeak(const Graph& g, const Plan& plan, double* fwd_pct, double* bwd_pct) {
  const int n = static_cast<int>(plan.schedule().size());
  std::vector<int64_t> live(n + 1, 0);
  for (const PlannedBuffer& b : plan.buffers()) {
    for (int p = b.first_use; p <= std::min(b.last_use, n); ++p) live[p] += b.size;
  }
  const int peak = static_cast<int>(std::max_element(live.begin(), live.end()) - live.begin());
  int64_t fwd = 0, bwd = 0;
  for (const PlannedBuffer& b : plan.buffers()) {
    if (b.first_use > peak || b.last_use < peak) continue;
    const Node& producer = *g.node(b.values.front().node);
    if (!IsAttention(producer)) continue;
    (producer.role() == Role::kForward ? fwd : bwd) += b.size;
  }
  *fwd_pct = 100.0 * fwd / std::max<int64_t>(1, live[peak]);
  *bwd_pct = 100.0 * bwd / std::max<int64_t>(1, live[peak]);
}

void BM_TrainStep(benchmark::State& state) {
  const int64_t seq = state.range(0);
  const bool exact = state.range(1) != 0;
  nn::TransformerLMConfig c;
  c.layers = 4;
  c.d_model = 256;
  c.heads = 4;
  c.seq_len = seq;
  c.batch = std::max<int64_t>(1, 4096 / seq);
  Graph g;
  GraphBuilder b(&g);
  nn::BuildTransformerLM(b, c);
  if (!b.ok() || !Autodiff(g, {"loss", {}}).ok()) {
    state.SkipWithError("building the training graph failed");
    return;
  }
  if (exact) {
    PassContext ctx;
    auto pm = PassManager::Create("fuse-attention,fuse-attention-backward,dce");
    if (!pm.ok() || !pm->Run(g, ctx).ok()) {
      state.SkipWithError("fusing attention failed");
      return;
    }
  }
  if (!AddOptimizer(g, {}).ok()) {
    state.SkipWithError("adding the optimizer failed");
    return;
  }
  ParameterStore params;
  ThreadPool pool(2);
  ExecutorOptions eo;
  eo.pool = &pool;
  eo.profile = true;
  auto exec = Executor::Create(g, {"loss", "update_norm"}, &params, eo);
  if (!params.Initialize(g, 1).ok() || !exec.ok()) {
    state.SkipWithError("planning failed");
    return;
  }
  Tensor tokens(DType::kI32, {c.batch, seq}), targets(DType::kI32, {c.batch, seq});
  for (int64_t i = 0; i < c.batch * seq; ++i) {
    tokens.data<int32_t>()[i] = static_cast<int32_t>((i * 31) % 256);
    targets.data<int32_t>()[i] = static_cast<int32_t>((i * 17) % 256);
  }
  int64_t step = 0;
  auto run = [&] {
    Tensor s = Tensor::Scalar<int64_t>(step++);
    return (*exec)->Run({{"tokens", tokens.view()}, {"targets", targets.view()}, {"step", s.view()}});
  };
  if (!run().ok()) {  // warm-up: first touch of the arena
    state.SkipWithError("step failed");
    return;
  }
  std::vector<double> times;
  int64_t attn_fwd_ns = 0, attn_bwd_ns = 0, total_ns = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    auto out = run();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (!out.ok()) {
      state.SkipWithError("step failed");
      return;
    }
    for (const NodeProfile& p : (*exec)->profile().nodes) {
      total_ns += p.nanos;
      if (!IsAttention(*g.node(p.node))) continue;
      (p.role == Role::kForward ? attn_fwd_ns : attn_bwd_ns) += p.nanos;
    }
    state.SetIterationTime(times.back());
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  double fwd_mem = 0, bwd_mem = 0;
  MemoryAtPeak(g, (*exec)->plan(), &fwd_mem, &bwd_mem);
  state.counters["tokens_per_s"] = c.batch * seq / median;
  state.counters["ms_median"] = median * 1e3;
  state.counters["attn_fwd_time_pct"] = 100.0 * attn_fwd_ns / std::max<int64_t>(1, total_ns);
  state.counters["attn_bwd_time_pct"] = 100.0 * attn_bwd_ns / std::max<int64_t>(1, total_ns);
  state.counters["peak_MiB"] = (*exec)->plan().peak_bytes() / 1048576.0;
  state.counters["attn_fwd_mem_pct"] = fwd_mem;
  state.counters["attn_bwd_mem_pct"] = bwd_mem;
  state.SetLabel(absl::StrCat(exact ? "exact" : "unfused", ", batch ", c.batch, " x seq ", seq));
}

BENCHMARK(BM_TrainStep)
    ->ArgNames({"n", "backward"})
    ->Args({256, 0})->Args({256, 1})
    ->Args({1024, 0})->Args({1024, 1})
    ->Args({4096, 0})->Args({4096, 1})
    ->UseManualTime()
    ->Iterations(5)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace subquad

BENCHMARK_MAIN();
