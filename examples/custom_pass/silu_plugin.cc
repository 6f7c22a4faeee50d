// A subquad plugin: registers the op `silu` (y = x·σ(x), with its kernels,
// gradient rule and examples) and the pass `fuse-silu`, which finds SiLU
// written from primitives,
//
//   x · (1 / (1 + exp(−x)))     (either operand order of · and +)
//
// and replaces it with one `silu` node.
#include <cmath>
#include <memory>
#include <vector>

#include "core/builder.h"
#include "core/grad.h"
#include "core/op_schema.h"
#include "ops/ops.h"
#include "passes/pattern/rewrite.h"
#include "passes/plugin.h"

namespace {

using namespace subquad;

template <typename T>
absl::Status SiluKernel(const KernelContext& ctx) {
  const T* x = ctx.inputs[0].data<T>();
  T* y = ctx.outputs[0].data<T>();
  const int64_t n = ctx.inputs[0].num_elements();
  ctx.pool->ParallelFor(n, 1 << 15, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = x[i] / (T(1) + std::exp(-x[i]));
  });
  return absl::OkStatus();
}

OpSchema SiluSchema() {
  OpSchema s;
  s.name = "silu";
  s.doc = "x · sigmoid(x), elementwise (from the silu plugin).";
  s.inputs = {{"x", DTypeSet::Floating()}};
  s.outputs = {"y"};
  s.shape_fn = [](const ShapeContext& c) -> absl::StatusOr<std::vector<TensorType>> {
    return std::vector<TensorType>{c.input(0)};
  };
  s.kernels[DType::kF32] = SiluKernel<float>;
  s.kernels[DType::kF64] = SiluKernel<double>;
  s.flops = [](const Node& n, absl::Span<const TensorType>) {
    return 4 * n.output_type().num_elements();
  };
  s.inplace_input = 0;
  // dy/dx = σ(x)·(1 + x·(1 − σ(x))), from primitives.
  s.grad = [](GradContext& g) {
    GraphBuilder& b = g.builder();
    const Value x = g.input(0);
    const DType t = g.input_type(0).dtype;
    const Value one = t == DType::kF32 ? b.ScalarConstant(1.0f) : b.ScalarConstant(1.0);
    const Value sig = ops::Div(b, one, ops::Add(b, one, ops::Exp(b, ops::Neg(b, x))));
    const Value d = ops::Mul(b, sig, ops::Add(b, one, ops::Mul(b, x, ops::Sub(b, one, sig))));
    g.set_grad_input(0, ops::Mul(b, g.grad_output(), d));
    return absl::OkStatus();
  };
  s.examples = {{{{DType::kF32, Shape{4, 7}}}, {}, {{-3, 3}}}};
  return s;
}

// x · (1 / (1 + exp(−x))) → silu(x), written with the same pattern language
// the built-in passes use; `subquad opt --explain` shows why a near miss was
// not rewritten.
pattern::RewritePattern FuseSiluPattern() {
  using namespace pattern;
  Pattern one = ConstScalar(ScalarIs(1));
  Pattern sigmoid =
      Op("div", {one, Op("add", {one, Op("exp", {Op("neg", {Any("x")})})}).Commutative()});
  return RewritePattern(
      "fuse-silu", Op("mul", {Any("x"), sigmoid}).Commutative().SameTypeAs("x"),
      [](Rewriter& rw, const Match& m) {
        const Value y = rw.builder().Add("silu", {m.value("x")});
        if (!rw.builder().ok()) return rw.builder().status();
        return rw.Replace(m.root(), y);
      });
}

}  // namespace

SUBQUAD_PLUGIN(registrar) {
  if (absl::Status s = registrar.AddOp(SiluSchema()); !s.ok()) return s;
  return registrar.AddPass(pattern::PatternPassInfo(
      "fuse-silu", "Replaces x·(1/(1+exp(−x))) by the silu op (from the silu plugin).",
      [](const PassOptions&) -> absl::StatusOr<std::vector<pattern::RewritePattern>> {
        return std::vector<pattern::RewritePattern>{FuseSiluPattern()};
      },
      {}, PassStage::kForward));
}
