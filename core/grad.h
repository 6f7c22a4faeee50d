// GradContext: what an op's gradient rule sees and produces.
//
// A rule (OpSchema::grad) reads the forward node, its input and output
// values and the gradients flowing into its outputs, and emits backward
// nodes through builder() — already set up so that new nodes are named
// "<forward node>/grad/<op>", have role backward, origin = the forward node,
// and the forward node's scope. It then calls set_grad_input(i, g) for each
// input i with needs_grad(i); g must have input i's exact type (rules reduce
// broadcast dimensions themselves, e.g. with ops::ReduceToShape).
#ifndef SUBQUAD_CORE_GRAD_H_
#define SUBQUAD_CORE_GRAD_H_

#include <vector>

#include "core/builder.h"
#include "core/graph.h"

namespace subquad {

class GradContext {
 public:
  GradContext(GraphBuilder& builder, const Node& node,
              std::vector<Value> grad_outputs, std::vector<bool> needs_grad)
      : builder_(builder),
        node_(node),
        grad_outputs_(std::move(grad_outputs)),
        needs_grad_(std::move(needs_grad)),
        grad_inputs_(node.num_inputs()) {}

  GraphBuilder& builder() { return builder_; }
  const Node& node() const { return node_; }

  Value input(int i) const { return node_.input(i); }
  Value output(int i = 0) const { return node_.output(i); }
  const TensorType& input_type(int i) const { return builder_.type(node_.input(i)); }
  const TensorType& output_type(int i = 0) const { return node_.output_type(i); }

  // The gradient of the loss w.r.t. output i; invalid (!valid()) when no
  // path from that output reaches the loss (layer_norm's mean, say).
  Value grad_output(int i = 0) const { return grad_outputs_[i]; }
  bool has_grad_output(int i = 0) const { return grad_outputs_[i].valid(); }

  // Whether the walker wants input i's gradient: the input is floating, its
  // schema entry is differentiable, and a requested parameter reaches it.
  bool needs_grad(int i) const { return needs_grad_[i]; }

  void set_grad_input(int i, Value g) { grad_inputs_[i] = g; }
  Value grad_input(int i) const { return grad_inputs_[i]; }

 private:
  GraphBuilder& builder_;
  const Node& node_;
  std::vector<Value> grad_outputs_;
  std::vector<bool> needs_grad_;
  std::vector<Value> grad_inputs_;
};

}  // namespace subquad

#endif  // SUBQUAD_CORE_GRAD_H_
