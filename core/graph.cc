#include "core/graph.h"

#include <algorithm>
#include <queue>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/check.h"
#include "core/op_schema.h"

namespace subquad {

std::string Value::ToString() const {
  return output == 0 ? absl::StrCat("%", node)
                     : absl::StrCat("%", node, ":", output);
}

absl::string_view RoleName(Role r) {
  switch (r) {
    case Role::kForward:
      return "forward";
    case Role::kBackward:
      return "backward";
    case Role::kOptimizer:
      return "optimizer";
  }
  return "?";
}

std::string NodeLabel(const Node& n) {
  return absl::StrCat("node '", n.name(), "' (", n.op(), ")");
}

// ---- Node -------------------------------------------------------------------

const AttrValue* Node::FindAttr(absl::string_view name) const {
  auto it = attrs_.find(name);
  return it == attrs_.end() ? nullptr : &it->second;
}

const AttrValue& Node::GetAttr(absl::string_view name) const {
  if (const AttrValue* v = FindAttr(name)) return *v;
  const AttrDef* def = schema_ != nullptr ? schema_->FindAttr(name) : nullptr;
  SUBQUAD_CHECK(def != nullptr && def->default_value.has_value())
      << NodeLabel(*this) << " has no attribute '" << name
      << "' and its schema gives no default";
  return *def->default_value;
}

int64_t Node::GetInt(absl::string_view name) const { return GetAttr(name).i(); }
double Node::GetFloat(absl::string_view name) const {
  return GetAttr(name).f();
}
bool Node::GetBool(absl::string_view name) const { return GetAttr(name).b(); }
const std::string& Node::GetString(absl::string_view name) const {
  return GetAttr(name).s();
}
const std::vector<int64_t>& Node::GetInts(absl::string_view name) const {
  return GetAttr(name).ints();
}
const std::vector<double>& Node::GetFloats(absl::string_view name) const {
  return GetAttr(name).floats();
}
const Shape& Node::GetShape(absl::string_view name) const {
  return GetAttr(name).shape();
}
DType Node::GetDType(absl::string_view name) const {
  return GetAttr(name).dtype();
}
const Tensor& Node::GetTensor(absl::string_view name) const {
  return GetAttr(name).tensor();
}

// ---- Graph ------------------------------------------------------------------

Graph::Graph(const Graph& other)
    : by_name_(other.by_name_),
      outputs_(other.outputs_),
      num_live_(other.num_live_) {
  nodes_.reserve(other.nodes_.size());
  for (const auto& n : other.nodes_) {
    nodes_.push_back(n == nullptr ? nullptr : std::make_unique<Node>(*n));
  }
}

Graph& Graph::operator=(const Graph& other) {
  if (this != &other) *this = Graph(other);
  return *this;
}

NodeId Graph::AddNode(NodeSpec spec) {
  auto node = std::make_unique<Node>();
  node->id_ = static_cast<NodeId>(nodes_.size());
  node->name_ = std::move(spec.name);
  node->op_ = std::move(spec.op);
  node->schema_ = OpRegistry::Global().Find(node->op_);
  node->inputs_ = std::move(spec.inputs);
  node->attrs_ = std::move(spec.attrs);
  node->output_types_ = std::move(spec.output_types);
  node->role_ = spec.role;
  node->origin_ = spec.origin;
  node->scope_ = std::move(spec.scope);
  by_name_[node->name_] = node->id_;
  nodes_.push_back(std::move(node));
  ++num_live_;
  return nodes_.back()->id_;
}

NodeId Graph::AddNodeWithId(NodeId id, NodeSpec spec) {
  SUBQUAD_CHECK(id >= id_bound())
      << "AddNodeWithId(" << id << "): ids up to " << id_bound() - 1
      << " are taken";
  nodes_.resize(static_cast<size_t>(id));
  return AddNode(std::move(spec));
}

absl::Status Graph::RemoveNode(NodeId id) {
  const Node* n = node(id);
  if (n == nullptr) {
    return absl::NotFoundError(absl::StrCat("no node %", id, " to remove"));
  }
  for (const auto& other : nodes_) {
    if (other == nullptr) continue;
    for (const Value& v : other->inputs_) {
      if (v.node == id) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cannot remove ", NodeLabel(*n), ": ", NodeLabel(*other),
            " uses ", v.ToString()));
      }
    }
  }
  for (const auto& [name, v] : outputs_) {
    if (v.node == id) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot remove ", NodeLabel(*n), ": it is graph output '", name,
          "'"));
    }
  }
  by_name_.erase(n->name());
  nodes_[id].reset();
  --num_live_;
  return absl::OkStatus();
}

int Graph::ReplaceAllUsesWith(Value from, Value to) {
  int changed = 0;
  for (auto& n : nodes_) {
    if (n == nullptr) continue;
    for (Value& v : n->inputs_) {
      if (v == from) {
        v = to;
        ++changed;
      }
    }
  }
  for (auto& [name, v] : outputs_) {
    if (v == from) {
      v = to;
      ++changed;
    }
  }
  return changed;
}

absl::Status Graph::RenameNode(NodeId id, std::string name) {
  Node* n = mutable_node(id);
  if (n == nullptr) {
    return absl::NotFoundError(absl::StrCat("no node %", id, " to rename"));
  }
  if (name == n->name_) return absl::OkStatus();
  if (by_name_.contains(name)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "cannot rename ", NodeLabel(*n), " to '", name,
        "': the name is taken by node %", by_name_.at(name)));
  }
  by_name_.erase(n->name_);
  n->name_ = std::move(name);
  by_name_[n->name_] = id;
  return absl::OkStatus();
}

const Node* Graph::node(NodeId id) const {
  if (id < 0 || id >= static_cast<NodeId>(nodes_.size())) return nullptr;
  return nodes_[id].get();
}

Node* Graph::mutable_node(NodeId id) {
  if (id < 0 || id >= static_cast<NodeId>(nodes_.size())) return nullptr;
  return nodes_[id].get();
}

const Node* Graph::FindNode(absl::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : node(it->second);
}

const TensorType& Graph::type(Value v) const {
  const Node* n = node(v.node);
  SUBQUAD_CHECK(n != nullptr && v.output >= 0 && v.output < n->num_outputs())
      << "no value " << v.ToString() << " in the graph";
  return n->output_types_[v.output];
}

std::vector<const Node*> Graph::nodes() const {
  std::vector<const Node*> out;
  out.reserve(num_live_);
  for (const auto& n : nodes_) {
    if (n != nullptr) out.push_back(n.get());
  }
  return out;
}

absl::StatusOr<std::vector<NodeId>> Graph::TopologicalOrder() const {
  // Kahn's algorithm with a min-heap on id: deterministic, and the identity
  // order for graphs built front to back.
  const NodeId bound = id_bound();
  std::vector<int> pending(bound, 0);
  std::vector<std::vector<NodeId>> users(bound);
  for (const auto& n : nodes_) {
    if (n == nullptr) continue;
    absl::flat_hash_map<NodeId, bool> seen;
    for (const Value& v : n->inputs_) {
      const Node* p = node(v.node);
      if (p == nullptr || v.output < 0 || v.output >= p->num_outputs()) {
        return absl::FailedPreconditionError(absl::StrCat(
            NodeLabel(*n), " uses undefined value ", v.ToString()));
      }
      if (seen.emplace(v.node, true).second) {
        ++pending[n->id_];
        users[v.node].push_back(n->id_);
      }
    }
  }
  std::priority_queue<NodeId, std::vector<NodeId>, std::greater<>> ready;
  for (const auto& n : nodes_) {
    if (n != nullptr && pending[n->id_] == 0) ready.push(n->id_);
  }
  std::vector<NodeId> order;
  order.reserve(num_live_);
  while (!ready.empty()) {
    const NodeId id = ready.top();
    ready.pop();
    order.push_back(id);
    for (NodeId u : users[id]) {
      if (--pending[u] == 0) ready.push(u);
    }
  }
  if (static_cast<int>(order.size()) != num_live_) {
    for (const auto& n : nodes_) {
      if (n != nullptr && pending[n->id_] > 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("the graph has a cycle through ", NodeLabel(*n)));
      }
    }
  }
  return order;
}

absl::flat_hash_map<NodeId, std::vector<NodeId>> Graph::ComputeUsers() const {
  absl::flat_hash_map<NodeId, std::vector<NodeId>> users;
  for (const auto& n : nodes_) {
    if (n == nullptr) continue;
    users[n->id_];
    for (const Value& v : n->inputs_) {
      auto& u = users[v.node];
      if (u.empty() || u.back() != n->id_) u.push_back(n->id_);
    }
  }
  return users;
}

std::string Graph::UniqueName(absl::string_view base) const {
  if (!by_name_.contains(base)) return std::string(base);
  for (int i = 1;; ++i) {
    std::string candidate = absl::StrCat(base, "_", i);
    if (!by_name_.contains(candidate)) return candidate;
  }
}

void Graph::SetOutput(std::string name, Value v) {
  for (auto& [n, val] : outputs_) {
    if (n == name) {
      val = v;
      return;
    }
  }
  outputs_.emplace_back(std::move(name), v);
}

absl::StatusOr<Value> Graph::GetOutput(absl::string_view name) const {
  for (const auto& [n, v] : outputs_) {
    if (n == name) return v;
  }
  std::vector<std::string> names;
  for (const auto& [n, v] : outputs_) names.push_back(n);
  return absl::NotFoundError(absl::StrCat("no graph output '", name,
                                          "'; outputs are: ",
                                          absl::StrJoin(names, ", ")));
}

std::vector<const Node*> Graph::InputNodes() const {
  std::vector<const Node*> out;
  for (const auto& n : nodes_) {
    if (n != nullptr && n->op_ == "input") out.push_back(n.get());
  }
  return out;
}

std::vector<const Node*> Graph::ParameterNodes() const {
  std::vector<const Node*> out;
  for (const auto& n : nodes_) {
    if (n != nullptr && n->op_ == "parameter") out.push_back(n.get());
  }
  return out;
}

absl::StatusOr<Value> ResolveValue(const Graph& graph, absl::string_view name) {
  for (const auto& [out_name, v] : graph.outputs()) {
    if (out_name == name) return v;
  }
  if (const Node* n = graph.FindNode(name)) return n->output(0);
  const size_t colon = name.rfind(':');
  if (colon != absl::string_view::npos) {
    int k = 0;
    if (const Node* n = graph.FindNode(name.substr(0, colon));
        n != nullptr && absl::SimpleAtoi(name.substr(colon + 1), &k)) {
      if (k < 0 || k >= n->num_outputs()) {
        return absl::NotFoundError(absl::StrCat("'", name, "': ", NodeLabel(*n),
                                                " has ", n->num_outputs(),
                                                " output(s)"));
      }
      return n->output(k);
    }
  }
  std::vector<std::string> outs;
  for (const auto& [out_name, v] : graph.outputs()) outs.push_back(out_name);
  return absl::NotFoundError(absl::StrCat(
      "'", name, "' is neither a graph output nor a node name; graph outputs: ",
      outs.empty() ? "none" : absl::StrJoin(outs, ", ")));
}

}  // namespace subquad
