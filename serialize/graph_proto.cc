#include "serialize/graph_proto.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/op_schema.h"
#include "core/status.h"
#include "core/verifier.h"
#include "serialize/printable.h"
#include "serialize/tensor_proto.h"

namespace subquad {
namespace {

using ::google::protobuf::RepeatedField;

// ---- enums --------------------------------------------------------------------

proto::Role RoleToProto(Role r) {
  switch (r) {
    case Role::kForward:
      return proto::ROLE_FORWARD;
    case Role::kBackward:
      return proto::ROLE_BACKWARD;
    case Role::kOptimizer:
      return proto::ROLE_OPTIMIZER;
  }
  return proto::ROLE_FORWARD;
}

std::optional<Role> RoleFromProto(int r) {
  switch (r) {
    case proto::ROLE_FORWARD:
      return Role::kForward;
    case proto::ROLE_BACKWARD:
      return Role::kBackward;
    case proto::ROLE_OPTIMIZER:
      return Role::kOptimizer;
    default:
      return std::nullopt;
  }
}

// ---- Graph -> proto ---------------------------------------------------------------

void DimsToProto(const Shape& s, RepeatedField<int64_t>* dims) {
  for (int64_t d : s.dims()) dims->Add(d);
}

void AttrToProto(const std::string& name, const AttrValue& v,
                 proto::AttrProto* p) {
  p->set_name(name);
  switch (v.kind()) {
    case AttrKind::kInt:
      p->set_i(v.i());
      break;
    case AttrKind::kFloat:
      p->set_f(v.f());
      break;
    case AttrKind::kString:
      p->set_s(v.s());
      break;
    case AttrKind::kBool:
      p->set_b(v.b());
      break;
    case AttrKind::kIntList:
      p->mutable_ints()->mutable_values()->Add(v.ints().begin(),
                                               v.ints().end());
      break;
    case AttrKind::kFloatList:
      p->mutable_floats()->mutable_values()->Add(v.floats().begin(),
                                                 v.floats().end());
      break;
    case AttrKind::kShape:
      DimsToProto(v.shape(), p->mutable_shape()->mutable_dims());
      break;
    case AttrKind::kDType:
      p->set_dtype(DTypeToProto(v.dtype()));
      break;
    case AttrKind::kTensor:
      // Verify() guarantees the tensor is present.
      TensorToProto(v.tensor().view(), p->mutable_tensor());
      break;
  }
}

void ValueToProto(Value v, proto::ValueRef* p) {
  p->set_node(v.node);
  p->set_output(v.output);
}

// ---- proto -> Graph: checks of single fields ----------------------------------------

// Names and ops come from the file: printable ASCII stays as is.
std::string Esc(absl::string_view s) { return Printable(s); }

std::string Label(const proto::NodeProto& n) {
  return absl::StrCat("node '", Esc(n.name()), "' (", Esc(n.op()), ") %",
                      n.id());
}

absl::Status NodeError(const proto::NodeProto& n, absl::string_view field,
                       absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat(Label(n), ": ", field, ": ", message));
}

std::string RefString(const proto::ValueRef& v) {
  return v.output() == 0 ? absl::StrCat("%", v.node())
                         : absl::StrCat("%", v.node(), ":", v.output());
}

absl::StatusOr<AttrValue> AttrFromProto(const proto::AttrProto& a) {
  switch (a.value_case()) {
    case proto::AttrProto::kI:
      return AttrValue(static_cast<int64_t>(a.i()));
    case proto::AttrProto::kF:
      return AttrValue(a.f());
    case proto::AttrProto::kS:
      return AttrValue(a.s());
    case proto::AttrProto::kB:
      return AttrValue(a.b());
    case proto::AttrProto::kInts:
      return AttrValue(std::vector<int64_t>(a.ints().values().begin(),
                                            a.ints().values().end()));
    case proto::AttrProto::kFloats:
      return AttrValue(std::vector<double>(a.floats().values().begin(),
                                           a.floats().values().end()));
    case proto::AttrProto::kShape: {
      ASSIGN_OR_RETURN(Shape s, ShapeFromProto(a.shape().dims()));
      return AttrValue(std::move(s));
    }
    case proto::AttrProto::kDtype: {
      ASSIGN_OR_RETURN(DType d, CheckedDTypeFromProto(a.dtype()));
      return AttrValue(d);
    }
    case proto::AttrProto::kTensor: {
      ASSIGN_OR_RETURN(Tensor t, TensorFromProto(a.tensor()));
      return AttrValue(std::move(t));
    }
    case proto::AttrProto::VALUE_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("no value is set");
}

// Everything about one node that can be checked without looking at others.
absl::StatusOr<NodeSpec> SpecFromProto(const proto::NodeProto& n,
                                       const OpSchema** schema) {
  NodeSpec spec;
  if (n.name().empty()) return NodeError(n, "name", "empty");
  *schema = OpRegistry::Global().Find(n.op());
  if (*schema == nullptr) {
    return NodeError(n, "op",
                     absl::StrCat("'", Esc(n.op()),
                                  "' is not a registered op (see 'subquad ops')"));
  }
  std::optional<Role> role = RoleFromProto(n.role());
  if (!role.has_value()) {
    return NodeError(
        n, "role",
        absl::StrCat(n.role(),
                     " is not one of forward (0), backward (1), optimizer (2)"));
  }
  for (int j = 0; j < n.attrs_size(); ++j) {
    const proto::AttrProto& a = n.attrs(j);
    if (a.name().empty()) {
      return NodeError(n, absl::StrCat("attrs[", j, "]"), "empty name");
    }
    const std::string field = absl::StrCat("attribute '", Esc(a.name()), "'");
    if (spec.attrs.contains(a.name())) return NodeError(n, field, "set twice");
    absl::StatusOr<AttrValue> v = AttrFromProto(a);
    if (!v.ok()) return NodeError(n, field, v.status().message());
    spec.attrs.emplace(a.name(), *std::move(v));
  }
  for (int j = 0; j < n.output_types_size(); ++j) {
    const proto::TensorTypeProto& t = n.output_types(j);
    absl::StatusOr<TensorType> type = TensorTypeFromProto(t.dtype(), t.dims());
    if (!type.ok()) {
      return NodeError(n, absl::StrCat("output ", j, " type"),
                       type.status().message());
    }
    spec.output_types.push_back(*std::move(type));
  }
  spec.name = n.name();
  spec.op = n.op();
  spec.role = *role;
  spec.origin = n.has_origin() ? n.origin() : kNoNode;
  spec.scope = n.scope();
  return spec;
}

// Called when some input names a node listed after its user. Kahn's
// algorithm over file positions; if nodes remain, one of them lies on or
// behind a cycle, and walking back through remaining inputs from it must
// revisit a node, which lies on the cycle. Returns the cycle as an error,
// or OK when there is none.
absl::Status FindCycle(const proto::GraphProto& g,
                       const std::vector<std::vector<int>>& producers) {
  const int n = g.nodes_size();
  std::vector<int> pending(n, 0);
  std::vector<std::vector<int>> users(n);
  for (int i = 0; i < n; ++i) {
    for (int p : producers[i]) {
      ++pending[i];
      users[p].push_back(i);
    }
  }
  std::vector<int> ready;
  for (int i = 0; i < n; ++i) {
    if (pending[i] == 0) ready.push_back(i);
  }
  int done = 0;
  while (!ready.empty()) {
    const int i = ready.back();
    ready.pop_back();
    ++done;
    for (int u : users[i]) {
      if (--pending[u] == 0) ready.push_back(u);
    }
  }
  if (done == n) return absl::OkStatus();
  int at = 0;
  while (pending[at] == 0) ++at;
  std::vector<int> seen_at(n, -1);
  std::vector<int> path;
  while (seen_at[at] < 0) {
    seen_at[at] = static_cast<int>(path.size());
    path.push_back(at);
    for (int p : producers[at]) {
      if (pending[p] > 0) {
        at = p;
        break;
      }
    }
  }
  // path[seen_at[at]..] is the cycle, each node an input of the one before.
  std::vector<int> cycle(path.begin() + seen_at[at], path.end());
  std::reverse(cycle.begin(), cycle.end());
  cycle.push_back(cycle.front());
  constexpr size_t kShown = 8;
  std::vector<std::string> parts;
  for (size_t k = 0; k < cycle.size() && k < kShown; ++k) {
    parts.push_back(Label(g.nodes(cycle[k])));
  }
  if (cycle.size() > kShown) parts.push_back("...");
  return absl::InvalidArgumentError(absl::StrCat(
      "the graph has a cycle (each node feeds the next): ", absl::StrJoin(parts, " -> ")));
}

std::string JoinNames(const std::vector<std::string>& names) {
  return absl::StrCat(
      "[", absl::StrJoin(names, ", ", [](std::string* out, const std::string& s) {
        out->append(Esc(s));
      }),
      "]");
}

}  // namespace

// ---- Graph -> proto ---------------------------------------------------------------

absl::StatusOr<proto::GraphProto> GraphToProto(const Graph& graph) {
  if (absl::Status s = Verify(graph); !s.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot save a graph that does not verify: ", s.message()));
  }
  ASSIGN_OR_RETURN(std::vector<NodeId> order, graph.TopologicalOrder());
  proto::GraphProto g;
  g.set_producer_version(kGraphFormatVersion);
  g.set_min_consumer_version(kGraphMinConsumerVersion);
  for (NodeId id : order) {
    const Node& n = *graph.node(id);
    proto::NodeProto* p = g.add_nodes();
    p->set_id(n.id());
    p->set_name(n.name());
    p->set_op(n.op());
    for (const Value& v : n.inputs()) ValueToProto(v, p->add_inputs());
    for (const auto& [name, value] : n.attrs()) {
      AttrToProto(name, value, p->add_attrs());
    }
    for (const TensorType& t : n.output_types()) {
      proto::TensorTypeProto* tp = p->add_output_types();
      tp->set_dtype(DTypeToProto(t.dtype));
      DimsToProto(t.shape, tp->mutable_dims());
    }
    p->set_role(RoleToProto(n.role()));
    if (n.origin() != kNoNode) p->set_origin(n.origin());
    p->set_scope(n.scope());
  }
  for (const auto& [name, v] : graph.outputs()) {
    proto::GraphOutputProto* o = g.add_outputs();
    o->set_name(name);
    ValueToProto(v, o->mutable_value());
  }
  for (const Node* n : graph.InputNodes()) g.add_inputs(n->name());
  for (const Node* n : graph.ParameterNodes()) g.add_parameters(n->name());
  return g;
}

// ---- proto -> Graph ---------------------------------------------------------------

absl::StatusOr<Graph> GraphFromProto(const proto::GraphProto& g,
                                     const LoadLimits& limits) {
  // Versions.
  if (g.producer_version() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "producer_version: ", g.producer_version(),
        " is not a graph format version (they start at 1; is this a subquad "
        "graph?)"));
  }
  if (g.min_consumer_version() < 1 ||
      g.min_consumer_version() > g.producer_version()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "min_consumer_version: ", g.min_consumer_version(),
        " is outside [1, producer_version ", g.producer_version(), "]"));
  }
  if (g.min_consumer_version() > kGraphFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "min_consumer_version: the file needs a reader of graph format version ",
        g.min_consumer_version(), " or newer; this subquad reads version ",
        kGraphFormatVersion));
  }
  const int n = g.nodes_size();
  if (n > int64_t{limits.max_node_id} + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "nodes: ", n, " nodes, but ids are limited to [0, ", limits.max_node_id,
        "]"));
  }

  // Each node on its own: id, name, op, role, attributes, output types.
  absl::flat_hash_map<NodeId, int> position;  // id -> index in g.nodes()
  absl::flat_hash_map<absl::string_view, int> by_name;
  std::vector<NodeSpec> specs;
  std::vector<const OpSchema*> schemas(n, nullptr);
  specs.reserve(n);
  for (int i = 0; i < n; ++i) {
    const proto::NodeProto& p = g.nodes(i);
    if (p.id() < 0 || p.id() > limits.max_node_id) {
      return NodeError(p, "id",
                       absl::StrCat(p.id(), " is outside [0, ", limits.max_node_id,
                                    "]"));
    }
    if (auto [it, fresh] = position.emplace(p.id(), i); !fresh) {
      return NodeError(p, "id",
                       absl::StrCat("also the id of node '",
                                    Esc(g.nodes(it->second).name()), "'"));
    }
    ASSIGN_OR_RETURN(NodeSpec spec, SpecFromProto(p, &schemas[i]));
    if (auto [it, fresh] = by_name.emplace(p.name(), i); !fresh) {
      return NodeError(p, "name",
                       absl::StrCat("also the name of %", g.nodes(it->second).id()));
    }
    specs.push_back(std::move(spec));
  }

  // References: inputs name existing outputs of nodes listed earlier; origins
  // name existing nodes.
  std::vector<std::vector<int>> producers(n);
  std::optional<std::pair<int, int>> forward;  // (node, input) listed early
  for (int i = 0; i < n; ++i) {
    const proto::NodeProto& p = g.nodes(i);
    for (int j = 0; j < p.inputs_size(); ++j) {
      const proto::ValueRef& v = p.inputs(j);
      const std::string field = absl::StrCat("input ", j);
      auto it = position.find(v.node());
      if (it == position.end()) {
        return NodeError(p, field,
                         absl::StrCat(RefString(v), " names no node in the file"));
      }
      const proto::NodeProto& q = g.nodes(it->second);
      if (v.output() < 0 || v.output() >= q.output_types_size()) {
        return NodeError(p, field,
                         absl::StrCat(RefString(v), ": ", Label(q), " has ",
                                      q.output_types_size(), " output(s)"));
      }
      if (it->second >= i && !forward.has_value()) forward = {i, j};
      producers[i].push_back(it->second);
    }
    if (p.has_origin() && !position.contains(p.origin())) {
      return NodeError(p, "origin",
                       absl::StrCat("%", p.origin(), " names no node in the file"));
    }
  }
  if (forward.has_value()) {
    RETURN_IF_ERROR(FindCycle(g, producers));
    const proto::NodeProto& p = g.nodes(forward->first);
    const proto::ValueRef& v = p.inputs(forward->second);
    return NodeError(
        p, absl::StrCat("input ", forward->second),
        absl::StrCat(RefString(v), " (", Label(g.nodes(position.at(v.node()))),
                     ") is listed after it; nodes must be listed in a "
                     "topological order"));
  }

  // Types: attributes against the schema, output types against the shape
  // rule, in file (topological) order.
  for (int i = 0; i < n; ++i) {
    const proto::NodeProto& p = g.nodes(i);
    const OpSchema& schema = *schemas[i];
    if (absl::Status s = schema.ResolveAttrs(specs[i].attrs).status(); !s.ok()) {
      return NodeError(p, "attributes", s.message());
    }
    std::vector<TensorType> in;
    in.reserve(p.inputs_size());
    for (const proto::ValueRef& v : p.inputs()) {
      in.push_back(specs[position.at(v.node())].output_types[v.output()]);
    }
    absl::StatusOr<std::vector<TensorType>> inferred =
        schema.InferTypes(in, specs[i].attrs);
    if (!inferred.ok()) return NodeError(p, "op rule", inferred.status().message());
    const std::vector<TensorType>& recorded = specs[i].output_types;
    if (inferred->size() != recorded.size()) {
      return NodeError(p, "output_types",
                       absl::StrCat(recorded.size(), " recorded, the op has ",
                                    inferred->size()));
    }
    for (size_t k = 0; k < recorded.size(); ++k) {
      if (recorded[k] != (*inferred)[k]) {
        return NodeError(p, absl::StrCat("output ", k, " type"),
                         absl::StrCat("recorded ", recorded[k].ToString(),
                                      ", op rule infers ",
                                      (*inferred)[k].ToString()));
      }
    }
    for (const proto::ValueRef& v : p.inputs()) {
      specs[i].inputs.push_back(Value{v.node(), v.output()});
    }
  }

  // Graph outputs.
  absl::flat_hash_map<absl::string_view, int> output_names;
  for (int k = 0; k < g.outputs_size(); ++k) {
    const proto::GraphOutputProto& o = g.outputs(k);
    if (o.name().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("outputs[", k, "]: empty name"));
    }
    const std::string label = absl::StrCat("output '", Esc(o.name()), "'");
    if (!output_names.emplace(o.name(), k).second) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": listed twice"));
    }
    if (!o.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": value: missing"));
    }
    auto it = position.find(o.value().node());
    if (it == position.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          label, ": value: ", RefString(o.value()), " names no node in the file"));
    }
    const proto::NodeProto& q = g.nodes(it->second);
    if (o.value().output() < 0 || o.value().output() >= q.output_types_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": value: ", RefString(o.value()), ": ", Label(q),
                       " has ", q.output_types_size(), " output(s)"));
    }
  }

  // The interface lists, when present, must agree with the nodes.
  std::vector<int> by_id(n);
  for (int i = 0; i < n; ++i) by_id[i] = i;
  std::sort(by_id.begin(), by_id.end(), [&](int a, int b) {
    return g.nodes(a).id() < g.nodes(b).id();
  });
  auto check_list = [&](const char* field, const char* op,
                        const google::protobuf::RepeatedPtrField<std::string>&
                            listed) -> absl::Status {
    if (listed.empty()) return absl::OkStatus();
    std::vector<std::string> actual, given(listed.begin(), listed.end());
    for (int i : by_id) {
      if (g.nodes(i).op() == op) actual.push_back(g.nodes(i).name());
    }
    if (actual == given) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(field, ": lists ",
                                                   JoinNames(given), " but the ",
                                                   op, " nodes are ",
                                                   JoinNames(actual)));
  };
  RETURN_IF_ERROR(check_list("inputs", "input", g.inputs()));
  RETURN_IF_ERROR(check_list("parameters", "parameter", g.parameters()));

  // Everything checked: build.
  Graph graph;
  for (int i : by_id) graph.AddNodeWithId(g.nodes(i).id(), std::move(specs[i]));
  for (const proto::GraphOutputProto& o : g.outputs()) {
    graph.SetOutput(o.name(), Value{o.value().node(), o.value().output()});
  }
  if (absl::Status s = Verify(graph); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the loaded graph does not verify: ", s.message()));
  }
  return graph;
}

}  // namespace subquad
