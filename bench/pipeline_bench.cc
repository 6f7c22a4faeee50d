// pipeline_bench: how long the pass pipeline takes on a large model graph —
// a 12-layer TransformerLM (d_model 768, 12 heads, seq_len 1024) through
// autodiff and the standard cleanups, pass by pass.
//
//   build/bin/pipeline_bench --benchmark_counters_tabular=true
#include <string>

#include "benchmark/benchmark.h"
#include "core/builder.h"
#include "ops/nn/layers.h"
#include "passes/pass_manager.h"

namespace subquad {
namespace {

Graph TwelveLayerLM() {
  nn::TransformerLMConfig c;
  c.layers = 12;
  c.d_model = 768;
  c.heads = 12;
  c.seq_len = 1024;
  c.batch = 1;
  Graph g;
  GraphBuilder b(&g);
  nn::BuildTransformerLM(b, c);
  return g;
}

void BM_Pipeline(benchmark::State& state, std::string pipeline) {
  const Graph forward = TwelveLayerLM();
  auto pm = PassManager::Create(pipeline);
  if (!pm.ok()) {
    state.SkipWithError(std::string(pm.status().message()).c_str());
    return;
  }
  int nodes_before = forward.num_nodes(), nodes_after = 0;
  for (auto _ : state) {
    state.PauseTiming();
    Graph g = forward;
    PassContext ctx;
    state.ResumeTiming();
    auto r = pm->Run(g, ctx);
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
    nodes_after = g.num_nodes();
  }
  state.counters["nodes_before"] = nodes_before;
  state.counters["nodes_after"] = nodes_after;
  for (const PassTiming& t : pm->timings()) state.counters[t.pass + "_ms"] = t.seconds * 1e3;
}

BENCHMARK_CAPTURE(BM_Pipeline, autodiff, std::string("autodiff{loss=loss}"))
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Pipeline, autodiff_cleanups,
                  std::string("autodiff{loss=loss},simplify,constant-fold,cse,dce"))
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace subquad

BENCHMARK_MAIN();
