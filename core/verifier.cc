#include "core/verifier.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/op_schema.h"
#include "core/status.h"

namespace subquad {
namespace {

absl::Status Fail(const Node& n, absl::string_view field, absl::string_view msg) {
  return absl::FailedPreconditionError(
      absl::StrCat(NodeLabel(n), " %", n.id(), ": ", field, ": ", msg));
}

absl::Status VerifyNode(const Graph& g, const Node& n) {
  if (n.name().empty()) return Fail(n, "name", "empty");
  const OpSchema* schema = n.schema();
  if (schema == nullptr) return Fail(n, "op", "no op with this name is registered");
  std::vector<TensorType> in_types;
  for (int i = 0; i < n.num_inputs(); ++i) {
    const Value& v = n.input(i);
    const Node* p = g.node(v.node);
    if (p == nullptr) {
      return Fail(n, absl::StrCat("input ", i),
                  absl::StrCat(v.ToString(), " names no live node"));
    }
    if (v.output < 0 || v.output >= p->num_outputs()) {
      return Fail(n, absl::StrCat("input ", i),
                  absl::StrCat(v.ToString(), ": ", NodeLabel(*p), " has ",
                               p->num_outputs(), " output(s)"));
    }
    in_types.push_back(p->output_type(v.output));
  }
  auto inferred = schema->InferTypes(in_types, n.attrs());
  if (!inferred.ok()) return Fail(n, "op rule", inferred.status().message());
  if (inferred->size() != n.output_types().size()) {
    return Fail(n, "outputs",
                absl::StrCat("has ", n.num_outputs(), ", op declares ",
                             inferred->size()));
  }
  for (int i = 0; i < n.num_outputs(); ++i) {
    if ((*inferred)[i] != n.output_type(i)) {
      return Fail(n, absl::StrCat("output ", i, " type"),
                  absl::StrCat("recorded ", n.output_type(i).ToString(),
                               ", op rule infers ", (*inferred)[i].ToString()));
    }
  }
  // An origin may name a node a rewrite has since removed (ids are never
  // reused), but not an id the graph never had.
  if (n.origin() != kNoNode && (n.origin() < 0 || n.origin() >= g.id_bound())) {
    return Fail(n, "origin",
                absl::StrCat("%", n.origin(), " was never a node of this graph"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Verify(const Graph& graph) {
  absl::flat_hash_set<absl::string_view> names;
  for (const Node* n : graph.nodes()) {
    if (!names.insert(n->name()).second) {
      return Fail(*n, "name", "not unique");
    }
    RETURN_IF_ERROR(VerifyNode(graph, *n));
  }
  RETURN_IF_ERROR(graph.TopologicalOrder().status());
  for (const auto& [name, v] : graph.outputs()) {
    const Node* n = graph.node(v.node);
    if (n == nullptr || v.output < 0 || v.output >= n->num_outputs()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "graph output '", name, "' names undefined value ", v.ToString()));
    }
  }
  return absl::OkStatus();
}

}  // namespace subquad
