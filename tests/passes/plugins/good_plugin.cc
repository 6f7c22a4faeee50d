// A test plugin: registers an op (`test_double`, y = 2x, with a kernel and a
// gradient rule) and a pass (`test-double-to-scale`) that rewrites it into
// the built-in `scale`.
#include <memory>

#include "core/grad.h"
#include "core/op_schema.h"
#include "ops/ops.h"
#include "passes/plugin.h"

namespace {

using namespace subquad;

OpSchema DoubleOp() {
  OpSchema s;
  s.name = "test_double";
  s.doc = "y = 2x (a plugin's op).";
  s.inputs = {{"x", DTypeSet::Floating()}};
  s.outputs = {"y"};
  s.shape_fn = [](const ShapeContext& c) -> absl::StatusOr<std::vector<TensorType>> {
    return std::vector<TensorType>{c.input(0)};
  };
  s.kernels[DType::kF64] = [](const KernelContext& ctx) {
    for (int64_t i = 0; i < ctx.inputs[0].num_elements(); ++i) {
      ctx.outputs[0].data<double>()[i] = 2 * ctx.inputs[0].data<double>()[i];
    }
    return absl::OkStatus();
  };
  s.grad = [](GradContext& g) {
    g.set_grad_input(0, ops::Scale(g.builder(), g.grad_output(), 2.0));
    return absl::OkStatus();
  };
  s.examples = {{{{DType::kF64, Shape{3}}}}};
  return s;
}

class DoubleToScale : public Pass {
 public:
  absl::string_view name() const override { return "test-double-to-scale"; }
  absl::StatusOr<bool> Run(Graph& g, PassContext& ctx) override {
    bool changed = false;
    for (const Node* n : g.nodes()) {
      if (n->op() != "test_double") continue;
      GraphBuilder b(&g);
      Value s = ops::Scale(b, n->input(0), 2.0);
      if (!b.ok()) return b.status();
      g.ReplaceAllUsesWith(n->output(0), s);
      ctx.Count("test-double-to-scale", "rewritten");
      changed = true;
    }
    return changed;
  }
};

}  // namespace

SUBQUAD_PLUGIN(registrar) {
  absl::Status s = registrar.AddOp(DoubleOp());
  if (!s.ok()) return s;
  PassInfo p;
  p.name = "test-double-to-scale";
  p.help = "Rewrites test_double into scale (a plugin's pass).";
  p.create = [](const PassOptions&) -> absl::StatusOr<std::unique_ptr<Pass>> {
    return std::make_unique<DoubleToScale>();
  };
  return registrar.AddPass(std::move(p));
}
