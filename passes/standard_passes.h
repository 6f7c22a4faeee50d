// The standard cleanups, callable directly or as registered passes.
//
// dce: removes every node whose outputs no graph output needs. Nodes that
// update parameters in place (optimizer updates) count as needed when
// anything needs their outputs only; input and parameter nodes are kept even
// when unused, since they are the graph's interface and its state.
//
// cse: merges nodes that compute the same thing — same op, same inputs, equal
// attributes and types — keeping the one with the smallest id; constants
// with bit-identical tensors merge too. Nodes that update inputs in place
// never merge. By default only nodes of the same role merge, so backward
// nodes stay traceable to their forward nodes (the attention rewrites rely on
// it).
#ifndef SUBQUAD_PASSES_STANDARD_PASSES_H_
#define SUBQUAD_PASSES_STANDARD_PASSES_H_

#include "absl/status/statusor.h"
#include "core/graph.h"

namespace subquad {

// Both return the number of nodes removed.
absl::StatusOr<int> EliminateDeadNodes(Graph& graph);
absl::StatusOr<int> EliminateCommonSubexpressions(Graph& graph,
                                                  bool across_roles = false);

}  // namespace subquad

#endif  // SUBQUAD_PASSES_STANDARD_PASSES_H_
