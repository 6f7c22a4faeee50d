// constant-fold: evaluates, at compile time, the nodes whose operands are
// all constants (constant or fill nodes) and whose result is small, and puts
// the result in their place: a fill when every element is the same value (a
// fill is stored as one number, whatever its shape), a constant otherwise.
//
// Never folded: source ops, ops without a kernel for their dtype, and ops
// that update their inputs in place. "Small" is at most `max_elements`
// elements over all outputs (the pass option max-elements, default 65536),
// so folding never puts a large tensor into the graph.
//
// A node is evaluated by its op's kernel, as the runtime's executor would
// run it, on one thread. The pass is a pattern pass (passes/pattern/):
// folds cascade within one sweep, and --explain lists the nodes whose
// operands are all constant but that were not folded, and why.
#ifndef SUBQUAD_PASSES_CONSTANT_FOLD_H_
#define SUBQUAD_PASSES_CONSTANT_FOLD_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph.h"
#include "core/tensor.h"
#include "passes/pattern/rewrite.h"

namespace subquad {

inline constexpr int64_t kDefaultFoldMaxElements = int64_t{1} << 16;

pattern::RewritePattern ConstantFoldPattern(int64_t max_elements = kDefaultFoldMaxElements);

// The outputs of `node`, whose operands must all be constant or fill nodes,
// computed by its kernel. Errors name the node.
absl::StatusOr<std::vector<Tensor>> EvaluateConstantNode(const Graph& graph, const Node& node);

}  // namespace subquad

#endif  // SUBQUAD_PASSES_CONSTANT_FOLD_H_
