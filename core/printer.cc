#include "core/printer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace subquad {

std::string PrintNode(const Graph& graph, const Node& n) {
  std::string out = absl::StrCat("%", n.id(), " ");
  if (n.num_outputs() == 1) {
    absl::StrAppend(&out, n.output_type(0).ToString());
  } else {
    absl::StrAppend(&out, "(",
                    absl::StrJoin(n.output_types(), ", ",
                                  [](std::string* s, const TensorType& t) {
                                    s->append(t.ToString());
                                  }),
                    ")");
  }
  absl::StrAppend(&out, " = ", n.op(), "(",
                  absl::StrJoin(n.inputs(), ", ",
                                [](std::string* s, const Value& v) {
                                  s->append(v.ToString());
                                }),
                  ")");
  const bool is_source = n.op() == "input" || n.op() == "parameter" ||
                         (n.op() == "constant");
  // Source nodes restate dtype and shape in their type; don't repeat them.
  std::vector<std::string> attrs;
  for (const auto& [k, v] : n.attrs()) {
    if (is_source && (k == "dtype" || k == "shape")) continue;
    attrs.push_back(absl::StrCat(k, "=", v.ToString()));
  }
  if (!attrs.empty()) absl::StrAppend(&out, " {", absl::StrJoin(attrs, ", "), "}");
  if (is_source) absl::StrAppend(&out, " \"", n.name(), "\"");
  if (n.role() != Role::kForward) absl::StrAppend(&out, " !", RoleName(n.role()));
  if (n.origin() != kNoNode) absl::StrAppend(&out, " <%", n.origin());
  if (!n.scope().empty()) absl::StrAppend(&out, " @", n.scope());
  return out;
}

std::string PrintGraph(const Graph& graph) {
  std::string out;
  auto order = graph.TopologicalOrder();
  std::vector<NodeId> ids;
  if (order.ok()) {
    ids = *std::move(order);
  } else {
    for (const Node* n : graph.nodes()) ids.push_back(n->id());
  }
  for (NodeId id : ids) {
    absl::StrAppend(&out, PrintNode(graph, *graph.node(id)), "\n");
  }
  for (const auto& [name, v] : graph.outputs()) {
    absl::StrAppend(&out, "output ", name, " = ", v.ToString(), "\n");
  }
  return out;
}

}  // namespace subquad
