#include "passes/autodiff.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/grad.h"
#include "core/op_schema.h"
#include "core/status.h"
#include "ops/ops.h"

namespace subquad {
namespace {

absl::Status Error(absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat("autodiff: ", msg));
}

}  // namespace

absl::StatusOr<AutodiffResult> Autodiff(Graph& graph,
                                        const AutodiffOptions& options) {
  AutodiffResult result;
  auto loss_or = ResolveValue(graph, options.loss);
  if (!loss_or.ok()) return Error(absl::StrCat("loss ", loss_or.status().message()));
  const Value loss = *loss_or;
  const Node& loss_node = *graph.node(loss.node);
  const TensorType loss_type = graph.type(loss);
  if (!IsFloating(loss_type.dtype) || loss_type.num_elements() != 1) {
    return Error(absl::StrCat("loss '", options.loss, "' (", NodeLabel(loss_node),
                              ") must be a floating scalar, got ",
                              loss_type.ToString()));
  }
  result.loss = loss;

  // Parameters to differentiate.
  std::vector<const Node*> params;
  if (options.wrt.empty()) {
    for (const Node* p : graph.ParameterNodes()) {
      if (p->GetBool("trainable")) params.push_back(p);
    }
    if (params.empty()) return Error("the graph has no trainable parameters");
  } else {
    for (const std::string& name : options.wrt) {
      const Node* n = graph.FindNode(name);
      if (n == nullptr || n->op() != "parameter") {
        return Error(absl::StrCat("wrt '", name, "' is not a parameter of the graph"));
      }
      params.push_back(n);
    }
  }

  ASSIGN_OR_RETURN(std::vector<NodeId> order, graph.TopologicalOrder());
  const NodeId bound = graph.id_bound();
  // reached_from[n]: a requested parameter that reaches n (kNoNode if none).
  std::vector<NodeId> reached_from(bound, kNoNode);
  for (const Node* p : params) reached_from[p->id()] = p->id();
  for (NodeId id : order) {
    const Node& n = *graph.node(id);
    if (reached_from[id] != kNoNode) continue;
    for (int i = 0; i < n.num_inputs(); ++i) {
      const NodeId src = n.input(i).node;
      if (reached_from[src] != kNoNode && IsFloating(graph.type(n.input(i)).dtype) &&
          n.schema() != nullptr && n.schema()->input_def(i).differentiable) {
        reached_from[id] = reached_from[src];
        break;
      }
    }
  }
  // reaches_loss[n]: the loss depends on n.
  std::vector<char> reaches_loss(bound, 0);
  reaches_loss[loss.node] = 1;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    if (!reaches_loss[*it]) continue;
    for (const Value& in : graph.node(*it)->inputs()) reaches_loss[in.node] = 1;
  }
  auto relevant = [&](NodeId id) {
    return reached_from[id] != kNoNode && reaches_loss[id];
  };
  if (!relevant(loss.node)) {
    return Error(absl::StrCat("loss '", options.loss,
                              "' does not depend on any requested parameter"));
  }

  GraphBuilder b(&graph);
  b.set_role(Role::kBackward);
  const int nodes_before = graph.num_nodes();
  absl::flat_hash_map<Value, std::vector<Value>> contributions;
  // Sums the gradient contributions of `v` into one value (named after v's
  // producer), or an invalid Value when there are none.
  auto total = [&](Value v) -> Value {
    auto it = contributions.find(v);
    if (it == contributions.end() || it->second.empty()) return Value{};
    std::vector<Value>& parts = it->second;
    if (parts.size() > 1) {
      const Node& producer = *graph.node(v.node);
      auto scope = b.SetScope(producer.scope());
      b.set_origin(producer.id());
      b.set_name_prefix(absl::StrCat(producer.name(), "/grad"));
      Value sum = parts[0];
      for (size_t k = 1; k < parts.size(); ++k) sum = ops::Add(b, sum, parts[k]);
      parts = {sum};
    }
    return parts[0];
  };

  {
    auto scope = b.SetScope(loss_node.scope());
    b.set_origin(loss_node.id());
    b.set_name_prefix(absl::StrCat(loss_node.name(), "/grad"));
    contributions[loss].push_back(
        ops::Fill(b, loss_type.dtype, loss_type.shape, 1.0));
  }

  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const NodeId id = *it;
    if (!relevant(id)) continue;
    const Node& n = *graph.node(id);
    const OpSchema& schema = *n.schema();
    if (schema.is_source) continue;
    std::vector<Value> grad_outputs;
    bool any_grad = false;
    for (int o = 0; o < n.num_outputs(); ++o) {
      grad_outputs.push_back(total(n.output(o)));
      any_grad |= grad_outputs.back().valid();
    }
    RETURN_IF_ERROR(b.status());
    if (!any_grad) continue;
    std::vector<bool> needs(n.num_inputs(), false);
    bool any_need = false;
    for (int i = 0; i < n.num_inputs(); ++i) {
      const Value in = n.input(i);
      needs[i] = schema.input_def(i).differentiable &&
                 IsFloating(graph.type(in).dtype) && relevant(in.node);
      any_need |= needs[i];
    }
    if (!any_need) continue;
    if (!schema.grad) {
      return Error(absl::StrCat(
          NodeLabel(n), " has no gradient rule; it lies between parameter '",
          graph.node(reached_from[id])->name(), "' and loss '", options.loss, "'"));
    }
    auto scope = b.SetScope(n.scope());
    b.set_origin(id);
    b.set_name_prefix(absl::StrCat(n.name(), "/grad"));
    GradContext ctx(b, n, std::move(grad_outputs), needs);
    absl::Status s = schema.grad(ctx);
    if (s.ok()) s = b.status();
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("autodiff: gradient rule of ",
                                                 NodeLabel(n), ": ", s.message()));
    }
    for (int i = 0; i < n.num_inputs(); ++i) {
      if (!needs[i]) continue;
      const Value g = ctx.grad_input(i);
      const TensorType& want = graph.type(n.input(i));
      if (!g.valid()) {
        return absl::InternalError(absl::StrCat(
            "autodiff: gradient rule of ", NodeLabel(n),
            " produced no gradient for input ", i, " (", want.ToString(), ")"));
      }
      if (graph.type(g) != want) {
        return absl::InternalError(absl::StrCat(
            "autodiff: gradient rule of ", NodeLabel(n), " produced ",
            graph.type(g).ToString(), " for input ", i, " of type ",
            want.ToString()));
      }
      contributions[n.input(i)].push_back(g);
    }
  }

  for (const Node* p : params) {
    Value g = total(p->output(0));
    if (!g.valid()) {
      auto scope = b.SetScope(p->scope());
      b.set_origin(p->id());
      b.set_name_prefix(absl::StrCat(p->name(), "/grad"));
      const TensorType& t = p->output_type(0);
      g = ops::Fill(b, t.dtype, t.shape, 0.0);
    }
    RETURN_IF_ERROR(b.status());
    graph.SetOutput(absl::StrCat("grad/", p->name()), g);
    result.gradients.emplace_back(p->name(), g);
  }
  result.nodes_added = graph.num_nodes() - nodes_before;
  return result;
}

}  // namespace subquad
