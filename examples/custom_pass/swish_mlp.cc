// Builds an MLP whose activation is SiLU written from primitives, loads the
// silu plugin, runs "fuse-silu,dce", and checks that the rewritten graph
// computes the same outputs and gradients with fewer nodes.
//
//   swish_mlp path/to/libsilu_plugin.so [graph.sqg]
//
// With a second argument it also saves the unfused graph there, for
// `subquad opt graph.sqg --load-plugin path/to/libsilu_plugin.so
//  --pipeline fuse-silu,dce --explain`.
#include <cmath>
#include <cstdio>

#include "core/builder.h"
#include "core/printer.h"
#include "core/status.h"
#include "ops/ops.h"
#include "passes/pass_manager.h"
#include "passes/plugin.h"
#include "runtime/executor.h"
#include "serialize/graph_io.h"

namespace {

using namespace subquad;

// x · (1 / (1 + exp(−x))), the way a user might write it.
Value SwishFromPrimitives(GraphBuilder& b, Value x) {
  Value one = b.ScalarConstant(1.0f);
  return ops::Mul(b, x, ops::Div(b, one, ops::Add(b, one, ops::Exp(b, ops::Neg(b, x)))));
}

absl::Status Main(const char* plugin, const char* save_to) {
  ASSIGN_OR_RETURN(LoadedPlugin loaded, LoadPlugin(plugin));
  std::printf("loaded %s: %zu pass(es), %zu op(s)\n", plugin, loaded.passes.size(),
              loaded.ops.size());

  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {16, 32});
  Value h = SwishFromPrimitives(b, ops::MatMul(b, x, b.Parameter("w1", DType::kF32, {32, 64})));
  Value y = ops::MatMul(b, h, b.Parameter("w2", DType::kF32, {64, 8}));
  b.Output("loss", ops::ReduceMean(b, ops::Mul(b, y, y), {0, 1}));
  RETURN_IF_ERROR(b.status());
  if (save_to != nullptr) {
    RETURN_IF_ERROR(SaveGraph(g, save_to));
    std::printf("saved the unfused graph to %s\n", save_to);
  }

  Graph fused = g;
  ASSIGN_OR_RETURN(PassManager pm, PassManager::Create("fuse-silu,dce"));
  PassContext ctx;
  ASSIGN_OR_RETURN(bool changed, pm.Run(fused, ctx));
  if (!changed) return absl::InternalError("fuse-silu did not fire");
  std::printf("nodes: %d before, %d after fuse-silu,dce\n%s", g.num_nodes(),
              fused.num_nodes(), PrintGraph(fused).c_str());

  // Same loss and gradients before and after.
  ASSIGN_OR_RETURN(PassManager grad, PassManager::Create("autodiff{loss=loss}"));
  RETURN_IF_ERROR(grad.Run(g, ctx).status());
  RETURN_IF_ERROR(grad.Run(fused, ctx).status());
  ParameterStore params;
  RETURN_IF_ERROR(params.Initialize(g, 7));
  Tensor xv(DType::kF32, {16, 32});
  for (int64_t i = 0; i < xv.num_elements(); ++i) xv.data<float>()[i] = std::sin(0.1f * i);
  const std::vector<std::string> fetches = {"loss", "grad/w1", "grad/w2"};
  ASSIGN_OR_RETURN(auto e1, Executor::Create(g, fetches, &params));
  ASSIGN_OR_RETURN(auto e2, Executor::Create(fused, fetches, &params));
  ASSIGN_OR_RETURN(auto a, e1->Run({{"x", xv.view()}}));
  ASSIGN_OR_RETURN(auto c, e2->Run({{"x", xv.view()}}));
  for (size_t k = 0; k < fetches.size(); ++k) {
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < a[k].num_elements(); ++i) {
      worst = std::max(worst, std::abs(double(a[k].data<float>()[i]) - c[k].data<float>()[i]));
      scale = std::max(scale, std::abs(double(a[k].data<float>()[i])));
    }
    std::printf("%-8s max |difference| %.3g (max |value| %.3g)\n", fetches[k].c_str(), worst, scale);
    if (worst > 1e-5 * (1 + scale)) {
      return absl::InternalError(absl::StrCat(fetches[k], " differs after fuse-silu"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: swish_mlp path/to/libsilu_plugin.so [graph.sqg]\n");
    return 2;
  }
  absl::Status s = Main(argv[1], argc == 3 ? argv[2] : nullptr);
  if (!s.ok()) {
    std::fprintf(stderr, "swish_mlp: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
