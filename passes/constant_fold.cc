#include "passes/constant_fold.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/op_schema.h"
#include "core/parallel.h"
#include "core/status.h"
#include "passes/pass.h"

namespace subquad {
namespace {

using pattern::AnyOp;
using pattern::CheckContext;
using pattern::Match;
using pattern::Rewriter;

bool IsConstantSource(const Node& n) { return n.op() == "constant" || n.op() == "fill"; }

// Runs `node`'s kernel on `inputs`.
absl::StatusOr<std::vector<Tensor>> RunKernel(const Node& node,
                                              const std::vector<TensorView>& inputs) {
  const KernelFn* kernel =
      node.schema() == nullptr ? nullptr : node.schema()->FindKernel(node.output_type(0).dtype);
  if (kernel == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        NodeLabel(node), ": no kernel for ", DTypeName(node.output_type(0).dtype)));
  }
  std::vector<Tensor> outputs;
  std::vector<TensorView> output_views;
  for (const TensorType& t : node.output_types()) outputs.emplace_back(t);
  for (const Tensor& t : outputs) output_views.push_back(t.view());
  KernelContext ctx{node, inputs, output_views, SerialRunner::Get()};
  absl::Status s = (*kernel)(ctx);
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat(NodeLabel(node), ": ", s.message()));
  }
  return outputs;
}

// The element value when every element of `t` is the same (NaN counting as
// equal to NaN) and the value survives the round trip through a double (a
// fill's value attribute).
std::optional<double> SplatValue(const Tensor& t) {
  if (t.num_elements() == 0) return std::nullopt;
  std::optional<double> out;
  DispatchDType(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    absl::Span<const T> s = t.span<T>();
    const T first = s[0];
    for (const T& x : s) {
      const bool same = x == first || (x != x && first != first);
      if (!same) return;
    }
    const double d = static_cast<double>(first);
    if (first == first && static_cast<T>(d) != first) return;
    out = d;
  });
  return out;
}

}  // namespace

absl::StatusOr<std::vector<Tensor>> EvaluateConstantNode(const Graph& graph, const Node& node) {
  std::vector<Tensor> storage;  // fill operands, evaluated
  storage.reserve(node.num_inputs());
  std::vector<TensorView> inputs;
  for (int i = 0; i < node.num_inputs(); ++i) {
    const Value v = node.input(i);
    const Node& p = *graph.node(v.node);
    if (p.op() == "constant") {
      inputs.push_back(p.GetTensor("value").view());
    } else if (p.op() == "fill") {
      ASSIGN_OR_RETURN(std::vector<Tensor> filled, RunKernel(p, {}));
      storage.push_back(std::move(filled[0]));
      inputs.push_back(storage.back().view());
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          NodeLabel(node), ": operand ", i, " (", v.ToString(), ") is ", NodeLabel(p),
          ", not a constant or fill"));
    }
  }
  return RunKernel(node, inputs);
}

pattern::RewritePattern ConstantFoldPattern(int64_t max_elements) {
  pattern::Pattern root =
      AnyOp()
          .Check([](const CheckContext& c) -> std::optional<std::string> {
            if (c.node.num_inputs() == 0) return std::string("has no operands to fold");
            for (int i = 0; i < c.node.num_inputs(); ++i) {
              const Value v = c.node.input(i);
              const Node& p = *c.graph.node(v.node);
              if (!IsConstantSource(p)) {
                return absl::StrCat("operand ", i, " (", v.ToString(), ") is ", p.op(),
                                    ", expected constant or fill");
              }
            }
            return std::nullopt;
          })
          .CheckMatched([max_elements](const CheckContext& c) -> std::optional<std::string> {
            const OpSchema* s = c.node.schema();
            if (s == nullptr) return std::string("op is not registered");
            if (!s->mutates_inputs.empty()) {
              return std::string("updates its inputs in place, expected a pure op");
            }
            const DType t = c.node.output_type(0).dtype;
            if (s->FindKernel(t) == nullptr) {
              return absl::StrCat("op has no kernel for ", DTypeName(t));
            }
            int64_t elements = 0;
            for (const TensorType& o : c.node.output_types()) elements += o.num_elements();
            if (elements > max_elements) {
              return absl::StrCat("result has ", elements, " elements, expected at most ",
                                  max_elements, " (max-elements)");
            }
            return std::nullopt;
          });
  return pattern::RewritePattern(
             "fold", std::move(root),
             [](Rewriter& rw, const Match& m) -> absl::Status {
               const Node& n = rw.anchor();
               absl::StatusOr<std::vector<Tensor>> evaluated = EvaluateConstantNode(rw.graph(), n);
               // A kernel error (an index out of range) is the runtime's to
               // report, where the graph runs.
               if (!evaluated.ok()) return rw.Decline(std::string(evaluated.status().message()));
               std::vector<Tensor>& values = *evaluated;
               for (int o = 0; o < n.num_outputs(); ++o) {
                 Value folded;
                 if (std::optional<double> splat = SplatValue(values[o])) {
                   folded = rw.builder().Add("fill", {},
                                             {{"dtype", values[o].dtype()},
                                              {"shape", values[o].shape()},
                                              {"value", *splat}});
                 } else {
                   folded = rw.builder().Constant(std::move(values[o]));
                 }
                 RETURN_IF_ERROR(rw.Replace(n.output(o), folded));
               }
               return absl::OkStatus();
             })
      .set_min_explain_depth(1);
}

namespace {

SUBQUAD_REGISTER_PASS(pattern::PatternPassInfo(
    "constant-fold",
    "Evaluates nodes whose operands are all constants and whose result is small; "
    "puts a fill or a constant in their place.",
    [](const PassOptions& o) -> absl::StatusOr<std::vector<pattern::RewritePattern>> {
      return std::vector<pattern::RewritePattern>{ConstantFoldPattern(o.GetInt("max-elements"))};
    },
    {{"max-elements", AttrKind::kInt, AttrValue(kDefaultFoldMaxElements),
      "largest result (elements over all outputs) to fold", 0.0, std::nullopt}}));

}  // namespace
}  // namespace subquad
