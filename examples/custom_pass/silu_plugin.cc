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

#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/grad.h"
#include "core/op_schema.h"
#include "ops/ops.h"
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

// The node producing `v`, if it is `op`.
const Node* Producer(const Graph& g, Value v, absl::string_view op) {
  const Node* n = g.node(v.node);
  return n != nullptr && n->op() == op ? n : nullptr;
}

// True when `v` is a constant (or fill) whose every element is 1.
bool IsOne(const Graph& g, Value v) {
  const Node* n = g.node(v.node);
  if (n->op() == "fill") return n->GetFloat("value") == 1.0;
  if (n->op() != "constant") return false;
  const Tensor& t = n->GetTensor("value");
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    const double e = t.dtype() == DType::kF32 ? t.data<float>()[i]
                     : t.dtype() == DType::kF64 ? t.data<double>()[i] : 0.0;
    if (e != 1.0) return false;
  }
  return true;
}

// Whether `s` is 1 / (1 + exp(−x)); on a miss, `why` says where it failed.
bool IsSigmoidOf(const Graph& g, Value s, Value x, std::string* why) {
  const Node* div = Producer(g, s, "div");
  if (div == nullptr) {
    *why = absl::StrCat("%", s.node, " is ", g.node(s.node)->op(), ", not div");
    return false;
  }
  if (!IsOne(g, div->input(0))) {
    *why = absl::StrCat("node %", div->id(), " (div): numerator is not the constant 1");
    return false;
  }
  const Node* add = Producer(g, div->input(1), "add");
  if (add == nullptr) {
    *why = absl::StrCat("node %", div->id(), " (div): denominator is not an add");
    return false;
  }
  for (int k = 0; k < 2; ++k) {
    if (!IsOne(g, add->input(k))) continue;
    const Node* exp = Producer(g, add->input(1 - k), "exp");
    const Node* neg = exp != nullptr ? Producer(g, exp->input(0), "neg") : nullptr;
    if (neg != nullptr && neg->input(0) == x) return true;
  }
  *why = absl::StrCat("node %", add->id(), " (add): not 1 + exp(−x) of the same x");
  return false;
}

class FuseSilu : public Pass {
 public:
  absl::string_view name() const override { return "fuse-silu"; }
  absl::StatusOr<bool> Run(Graph& g, PassContext& ctx) override {
    int fused = 0;
    for (const Node* mul : g.nodes()) {
      if (mul->op() != "mul") continue;
      std::string why;
      for (int k = 0; k < 2; ++k) {
        const Value x = mul->input(k);
        if (g.type(x) != mul->output_type()) continue;  // no broadcasting of x
        if (!IsSigmoidOf(g, mul->input(1 - k), x, &why)) continue;
        GraphBuilder b(&g);
        auto scope = b.SetScope(mul->scope());
        b.set_role(mul->role());
        b.set_origin(mul->id());
        const Value y = b.Add("silu", {x});
        if (!b.ok()) return b.status();
        g.ReplaceAllUsesWith(mul->output(0), y);
        ++fused;
        why.clear();
        break;
      }
      if (!why.empty()) {
        ctx.Explain("fuse-silu", absl::StrCat("node %", mul->id(), " (mul): ", why));
      }
    }
    ctx.Count("fuse-silu", "silu fused", fused);
    return fused > 0;
  }
};

}  // namespace

SUBQUAD_PLUGIN(registrar) {
  if (absl::Status s = registrar.AddOp(SiluSchema()); !s.ok()) return s;
  PassInfo p;
  p.name = "fuse-silu";
  p.help = "Replaces x·(1/(1+exp(−x))) by the silu op (from the silu plugin).";
  p.stage = PassStage::kForward;
  p.create = [](const PassOptions&) -> absl::StatusOr<std::unique_ptr<Pass>> {
    return std::make_unique<FuseSilu>();
  };
  return registrar.AddPass(std::move(p));
}
