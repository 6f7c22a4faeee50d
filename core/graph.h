// The subquad IR: a static dataflow graph of nodes in SSA form.
//
// A Value names one output of one node. A Node has a stable id, a readable
// unique name, an op, input Values, typed attributes, output types, a role
// (forward / backward / optimizer), an origin (for generated nodes, the node
// whose rule produced them) and a scope path ("block0/attn") for grouping.
// Inputs, parameters and constants are nodes too (ops "input", "parameter",
// "constant"). Graphs are values: copying one copies every node.
//
// Graph does no validation of its own; GraphBuilder type-checks each node as
// it is added, and Verify() (core/verifier.h) checks a whole graph.
#ifndef SUBQUAD_CORE_GRAPH_H_
#define SUBQUAD_CORE_GRAPH_H_

#include <cstdint>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/attribute.h"
#include "core/tensor.h"

namespace subquad {

using NodeId = int32_t;
inline constexpr NodeId kNoNode = -1;

struct Value {
  NodeId node = kNoNode;
  int32_t output = 0;

  bool valid() const { return node >= 0; }
  // "%7" or "%7:1".
  std::string ToString() const;
  friend bool operator==(const Value& a, const Value& b) {
    return a.node == b.node && a.output == b.output;
  }
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }
  friend bool operator<(const Value& a, const Value& b) {
    return a.node != b.node ? a.node < b.node : a.output < b.output;
  }
  template <typename H>
  friend H AbslHashValue(H h, const Value& v) {
    return H::combine(std::move(h), v.node, v.output);
  }
};

enum class Role : uint8_t { kForward, kBackward, kOptimizer };
absl::string_view RoleName(Role r);  // "forward", "backward", "optimizer"

class OpSchema;

class Node {
 public:
  NodeId id() const { return id_; }
  const std::string& name() const { return name_; }
  const std::string& op() const { return op_; }
  // The registered schema of op(), or nullptr for an unknown op.
  const OpSchema* schema() const { return schema_; }

  absl::Span<const Value> inputs() const { return inputs_; }
  const Value& input(int i) const { return inputs_[i]; }
  int num_inputs() const { return static_cast<int>(inputs_.size()); }

  const AttrMap& attrs() const { return attrs_; }
  // The attribute, or nullptr when the node does not set it.
  const AttrValue* FindAttr(absl::string_view name) const;
  // The node's attribute, else the schema default. The attribute must be
  // present or defaulted with the expected kind (guaranteed for nodes that
  // passed the builder or the verifier).
  int64_t GetInt(absl::string_view name) const;
  double GetFloat(absl::string_view name) const;
  bool GetBool(absl::string_view name) const;
  const std::string& GetString(absl::string_view name) const;
  const std::vector<int64_t>& GetInts(absl::string_view name) const;
  const std::vector<double>& GetFloats(absl::string_view name) const;
  const Shape& GetShape(absl::string_view name) const;
  DType GetDType(absl::string_view name) const;
  const Tensor& GetTensor(absl::string_view name) const;
  const AttrValue& GetAttr(absl::string_view name) const;

  absl::Span<const TensorType> output_types() const { return output_types_; }
  const TensorType& output_type(int i = 0) const { return output_types_[i]; }
  int num_outputs() const { return static_cast<int>(output_types_.size()); }
  Value output(int i = 0) const { return Value{id_, i}; }

  Role role() const { return role_; }
  NodeId origin() const { return origin_; }
  const std::string& scope() const { return scope_; }

  // Mutators for passes. Changing inputs or attributes does not re-infer
  // types; run the verifier after a pass that does.
  void set_input(int i, Value v) { inputs_[i] = v; }
  void set_attr(std::string name, AttrValue v) {
    attrs_[std::move(name)] = std::move(v);
  }
  void set_role(Role r) { role_ = r; }
  void set_origin(NodeId o) { origin_ = o; }
  void set_scope(std::string s) { scope_ = std::move(s); }

 private:
  friend class Graph;
  NodeId id_ = kNoNode;
  std::string name_;
  std::string op_;
  const OpSchema* schema_ = nullptr;
  std::vector<Value> inputs_;
  AttrMap attrs_;
  std::vector<TensorType> output_types_;
  Role role_ = Role::kForward;
  NodeId origin_ = kNoNode;
  std::string scope_;
};

// Everything needed to append a node; see Graph::AddNode.
struct NodeSpec {
  std::string name;
  std::string op;
  std::vector<Value> inputs;
  AttrMap attrs;
  std::vector<TensorType> output_types;
  Role role = Role::kForward;
  NodeId origin = kNoNode;
  std::string scope;
};

class Graph {
 public:
  Graph() = default;
  Graph(const Graph& other);
  Graph& operator=(const Graph& other);
  Graph(Graph&&) noexcept = default;
  Graph& operator=(Graph&&) noexcept = default;

  // Appends a node and returns its id. The name must be unique (use
  // UniqueName); nothing else is checked here.
  NodeId AddNode(NodeSpec spec);

  // Appends a node with a chosen id, for loaders that restore a saved graph
  // with its ids exactly: `id` must be at least id_bound() (checked); ids
  // skipped over stay holes, as if their nodes had been removed. Returns id.
  NodeId AddNodeWithId(NodeId id, NodeSpec spec);

  // Removes a node that no other node and no graph output uses.
  absl::Status RemoveNode(NodeId id);

  // Points every use of `from` (node inputs and graph outputs) at `to`.
  // Returns how many uses changed.
  int ReplaceAllUsesWith(Value from, Value to);

  // Renames a node; AlreadyExists when `name` is taken.
  absl::Status RenameNode(NodeId id, std::string name);

  // nullptr when `id` was never assigned or the node was removed.
  const Node* node(NodeId id) const;
  Node* mutable_node(NodeId id);
  const Node* FindNode(absl::string_view name) const;

  // The type of `v`; `v` must name an output of a live node.
  const TensorType& type(Value v) const;

  // Live nodes, ordered by id.
  std::vector<const Node*> nodes() const;
  int num_nodes() const { return num_live_; }
  // One past the largest id ever assigned.
  NodeId id_bound() const { return static_cast<NodeId>(nodes_.size()); }

  // A topological order of the live nodes (inputs before users; ties by id),
  // or FailedPrecondition naming a node on a cycle or with an undefined input.
  absl::StatusOr<std::vector<NodeId>> TopologicalOrder() const;

  // For each live node, the ids of the nodes that use any of its outputs
  // (each user once, ascending).
  absl::flat_hash_map<NodeId, std::vector<NodeId>> ComputeUsers() const;

  // `base` when unused, else `base_1`, `base_2`, ...
  std::string UniqueName(absl::string_view base) const;

  // Named graph outputs, in the order they were set.
  const std::vector<std::pair<std::string, Value>>& outputs() const {
    return outputs_;
  }
  // Sets (or replaces) the output called `name`.
  void SetOutput(std::string name, Value v);
  // The value of output `name`, or NotFound listing the outputs.
  absl::StatusOr<Value> GetOutput(absl::string_view name) const;
  void ClearOutputs() { outputs_.clear(); }

  // Nodes whose op is "input" / "parameter", ordered by id.
  std::vector<const Node*> InputNodes() const;
  std::vector<const Node*> ParameterNodes() const;

 private:
  std::vector<std::unique_ptr<Node>> nodes_;
  absl::flat_hash_map<std::string, NodeId> by_name_;
  std::vector<std::pair<std::string, Value>> outputs_;
  int num_live_ = 0;
};

// Resolves a value name: a graph output's name, a node name (output 0), or
// "node name:k" (output k). NotFound lists the graph outputs.
absl::StatusOr<Value> ResolveValue(const Graph& graph, absl::string_view name);

// "node 'block0/attn/matmul' (matmul)": the prefix every error about a node
// starts with.
std::string NodeLabel(const Node& n);

}  // namespace subquad

#endif  // SUBQUAD_CORE_GRAPH_H_
