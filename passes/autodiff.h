// Reverse-mode automatic differentiation as a graph-to-graph pass.
//
// Autodiff appends to a forward graph the backward nodes that compute the
// gradient of a scalar loss with respect to parameters, by a reverse
// topological walk that calls each op's gradient rule (OpSchema::grad).
// Gradients of values used more than once are summed; nodes that do not lie
// between a requested parameter and the loss get no backward nodes; inputs
// declared non-differentiable in the op schema (indices, targets, masks) and
// integer values carry no gradient. Each parameter's gradient becomes the
// graph output "grad/<parameter name>" (zeros for a requested parameter the
// loss does not depend on).
//
// Backward nodes are named "<forward node>/grad/...", have role backward,
// their forward node as origin and its scope, so passes can find the
// backward of any forward subgraph (the attention rewrites do).
#ifndef SUBQUAD_PASSES_AUTODIFF_H_
#define SUBQUAD_PASSES_AUTODIFF_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph.h"

namespace subquad {

struct AutodiffOptions {
  // The loss: a graph output name, a node name or "node:k". Must be a
  // floating scalar (one element).
  std::string loss = "loss";
  // Parameter names to differentiate with respect to; empty means every
  // trainable parameter of the graph (not optimizer state).
  std::vector<std::string> wrt;
};

struct AutodiffResult {
  Value loss;
  // (parameter name, gradient value), in the order of `wrt` (or of the
  // graph's parameters).
  std::vector<std::pair<std::string, Value>> gradients;
  int nodes_added = 0;
};

// Errors name the node and op at fault: a loss that is not a floating
// scalar, a `wrt` name that is not a parameter, a loss that no requested
// parameter reaches, an op without gradient rule on a path from a parameter
// to the loss, or a rule that produced a gradient of the wrong type.
absl::StatusOr<AutodiffResult> Autodiff(Graph& graph,
                                        const AutodiffOptions& options);

}  // namespace subquad

#endif  // SUBQUAD_PASSES_AUTODIFF_H_
