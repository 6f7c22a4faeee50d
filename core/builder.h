// GraphBuilder: the C++ API models are written with.
//
//   Graph g;
//   GraphBuilder b(&g);
//   Value x = b.Input("x", DType::kF32, {4, 16});
//   Value w = b.Parameter("w", DType::kF32, {16, 8}, Init::Xavier());
//   Value y = ops::MatMul(b, x, w);          // ops/ops.h
//   b.Output("y", y);
//   RETURN_IF_ERROR(b.status());
//
// Every node is type- and shape-checked as it is added. AddNode returns the
// error directly; the typed helpers in ops/ops.h (and Input, Parameter, ...)
// return a Value and record the first error in the builder, as XlaBuilder
// does, so model code reads straight; status() reports it, naming the op, the
// node being built and the offending shapes. Once an error is recorded, later
// calls add nothing and return invalid Values.
//
// The builder can append to a graph that already has nodes (passes and the
// autodiff pass use it that way) with a role and an origin for new nodes.
#ifndef SUBQUAD_CORE_BUILDER_H_
#define SUBQUAD_CORE_BUILDER_H_

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/attribute.h"
#include "core/graph.h"
#include "core/tensor.h"

namespace subquad {

// How a parameter is initialised by the runtime's ParameterStore.
struct Init {
  std::string kind = "normal";  // normal | xavier | zeros | ones
  double stddev = 0.02;         // for normal
  static Init Normal(double stddev) { return {"normal", stddev}; }
  static Init Xavier() { return {"xavier", 0.0}; }
  static Init Zeros() { return {"zeros", 0.0}; }
  static Init Ones() { return {"ones", 0.0}; }
};

class GraphBuilder {
 public:
  explicit GraphBuilder(Graph* graph) : graph_(graph) {}
  GraphBuilder(const GraphBuilder&) = delete;
  GraphBuilder& operator=(const GraphBuilder&) = delete;

  Graph& graph() { return *graph_; }
  const Graph& graph() const { return *graph_; }

  // Appends a node of `op`: checks the op exists, input count and dtypes,
  // attribute names and kinds, then runs the shape rule. `name` defaults to
  // the op name; the scope is prefixed and a suffix makes it unique. Errors
  // read like: "matmul: building node 'block0/attn/matmul': inner dimensions
  // differ: f32[4,8] x f32[6,8]".
  absl::StatusOr<std::vector<Value>> AddNode(absl::string_view op,
                                             std::vector<Value> inputs,
                                             AttrMap attrs = {},
                                             absl::string_view name = {});

  // As AddNode, returning output 0; errors are recorded (see class comment).
  Value Add(absl::string_view op, std::vector<Value> inputs, AttrMap attrs = {},
            absl::string_view name = {});
  // As AddNode, returning all outputs; on error, `num_outputs` invalid values.
  std::vector<Value> AddMulti(absl::string_view op, std::vector<Value> inputs,
                              AttrMap attrs, int num_outputs,
                              absl::string_view name = {});

  // Source nodes. Names are used as given (under the current scope) and must
  // be unique: feeds and parameters are looked up by them.
  Value Input(absl::string_view name, DType dtype, Shape shape);
  // `trainable` false marks state (optimizer moments) that autodiff leaves
  // alone by default.
  Value Parameter(absl::string_view name, DType dtype, Shape shape,
                  Init init = Init::Normal(0.02), bool trainable = true);
  Value Constant(Tensor value, absl::string_view name = {});
  template <typename T>
  Value ScalarConstant(T value, absl::string_view name = {}) {
    return Constant(Tensor::Scalar<T>(value), name);
  }
  // Marks `v` as the graph output called `name`.
  void Output(std::string name, Value v);

  // The first recorded error, or OK.
  const absl::Status& status() const { return status_; }
  bool ok() const { return status_.ok(); }
  // Records `s` if no error was recorded yet (for helpers built on Add).
  void RecordError(absl::Status s);

  // The type of a value of this graph.
  const TensorType& type(Value v) const { return graph_->type(v); }
  const Shape& shape(Value v) const { return graph_->type(v).shape; }
  DType dtype(Value v) const { return graph_->type(v).dtype; }

  // Scopes nest: {auto s = b.Scope("block0"); {auto a = b.Scope("attn"); ...}}
  // names nodes "block0/attn/<op>". The guard pops the scope when destroyed.
  class ScopeGuard {
   public:
    ScopeGuard(ScopeGuard&& o) noexcept : b_(o.b_), prev_(std::move(o.prev_)) {
      o.b_ = nullptr;
    }
    ScopeGuard(const ScopeGuard&) = delete;
    ~ScopeGuard() {
      if (b_ != nullptr) b_->scope_ = std::move(prev_);
    }

   private:
    friend class GraphBuilder;
    ScopeGuard(GraphBuilder* b, std::string prev) : b_(b), prev_(std::move(prev)) {}
    GraphBuilder* b_;
    std::string prev_;
  };
  [[nodiscard]] ScopeGuard Scope(absl::string_view name);
  const std::string& current_scope() const { return scope_; }

  // Replaces the scope (not nested) until the guard is destroyed.
  [[nodiscard]] ScopeGuard SetScope(absl::string_view absolute);
  // When non-empty, new nodes are named "<prefix>/<op or name>" instead of
  // "<scope>/<op or name>" (their scope field is unchanged). Gradient rules
  // use it: backward nodes are named after their forward node.
  void set_name_prefix(std::string prefix) { name_prefix_ = std::move(prefix); }
  const std::string& name_prefix() const { return name_prefix_; }

  // Role and origin stamped on every node added from now on.
  void set_role(Role r) { role_ = r; }
  Role role() const { return role_; }
  void set_origin(NodeId n) { origin_ = n; }
  NodeId origin() const { return origin_; }

 private:
  std::string ScopedName(absl::string_view base) const;
  Value AddSource(absl::string_view op, absl::string_view name, AttrMap attrs);

  Graph* graph_;
  absl::Status status_;
  std::string scope_;
  std::string name_prefix_;
  Role role_ = Role::kForward;
  NodeId origin_ = kNoNode;
};

}  // namespace subquad

#endif  // SUBQUAD_CORE_BUILDER_H_
