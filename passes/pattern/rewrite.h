// Rewrite patterns and the greedy driver that applies them to a fixpoint.
//
//   using namespace subquad::pattern;
//   RewritePattern neg_neg(
//       "neg-neg", Op("neg", {Op("neg", {Any("x")})}),
//       [](Rewriter& rw, const Match& m) {
//         return rw.Replace(m.root(), m.value("x"));
//       });
//   ASSIGN_OR_RETURN(GreedyResult r,
//                    ApplyPatternsGreedily(graph, {neg_neg}, &ctx));
//
// A RewritePattern has a name, a benefit (higher is tried first on a node),
// a root Pattern whose ops are its anchors, and a rewrite callback. The
// callback builds replacement nodes through rw.builder() — new nodes take
// the anchor's scope, role and origin, so a rewritten backward node still
// points at its forward node — and redirects the matched outputs with
// rw.Replace. It may decline with rw.Decline("reason") when a condition is
// easier to test in code than in the pattern. Nodes the rewrite leaves
// without uses are removed at once (never inputs, parameters, or nodes that
// update their inputs in place). When a removed node's output 0 was replaced
// by a node the rewrite built, nodes whose origin was the removed node now
// name that node: backward nodes keep pointing at a live forward node.
//
// The driver walks the nodes in topological order, tries the patterns
// anchored on each node's op, and repeats until a whole sweep changes
// nothing. If it still changes something after `max_iterations` sweeps it
// fails with FailedPrecondition naming the patterns still firing. With
// explaining on (PassContext::set_explain), it reports each rewrite applied
// and, for the final sweep, why each pattern did not match at each anchor
// candidate:
//
//   simplify: pattern 'matmul-transpose-a' did not match at node %5
//   (matmul): node %3 (transpose): attribute perm is [1,0,2], expected a swap
//   of the last two axes ([0,2,1])
#ifndef SUBQUAD_PASSES_PATTERN_REWRITE_H_
#define SUBQUAD_PASSES_PATTERN_REWRITE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/builder.h"
#include "core/graph.h"
#include "passes/pass.h"
#include "passes/pattern/pattern.h"

namespace subquad::pattern {

// What a rewrite callback works through.
class Rewriter {
 public:
  Rewriter(Graph& graph, const Node& anchor);
  Rewriter(const Rewriter&) = delete;
  Rewriter& operator=(const Rewriter&) = delete;

  const Graph& graph() const { return graph_; }
  const Node& anchor() const { return anchor_; }
  // Adds nodes with the anchor's scope, role and origin (override with
  // builder().set_origin(...) etc.).
  GraphBuilder& builder() { return builder_; }

  // Points every use of `from` (node inputs and graph outputs) at `to`.
  // The types must be equal: InvalidArgument naming both otherwise.
  absl::Status Replace(Value from, Value to);
  // Declines the rewrite; `reason` is reported like a match failure.
  absl::Status Decline(std::string reason);

  bool changed() const { return !replaced_.empty(); }
  bool declined() const { return declined_; }
  const std::string& decline_reason() const { return decline_reason_; }
  // The (value, replacement) pairs so far.
  const std::vector<std::pair<Value, Value>>& replaced() const { return replaced_; }

 private:
  Graph& graph_;
  const Node& anchor_;
  GraphBuilder builder_;
  GraphBuilder::ScopeGuard scope_;
  std::vector<std::pair<Value, Value>> replaced_;
  bool declined_ = false;
  std::string decline_reason_;
};

using RewriteFn = std::function<absl::Status(Rewriter&, const Match&)>;

class RewritePattern {
 public:
  RewritePattern(std::string name, Pattern root, RewriteFn rewrite);

  const std::string& name() const { return name_; }
  const Pattern& root() const { return root_; }
  const RewriteFn& rewrite() const { return rewrite_; }

  // Higher first among the patterns anchored on one op (default 1).
  int benefit() const { return benefit_; }
  RewritePattern& set_benefit(int b) {
    benefit_ = b;
    return *this;
  }

  // Explanations leave out misses shallower than this (default 0: every
  // anchor candidate). Patterns anchored on every op use it to report only
  // the nodes that got past the first checks.
  int min_explain_depth() const { return min_explain_depth_; }
  RewritePattern& set_min_explain_depth(int d) {
    min_explain_depth_ = d;
    return *this;
  }

  // The ops of the root pattern (empty: every op).
  const std::vector<std::string>& anchor_ops() const { return anchor_ops_; }

 private:
  std::string name_;
  Pattern root_;
  RewriteFn rewrite_;
  int benefit_ = 1;
  int min_explain_depth_ = 0;
  std::vector<std::string> anchor_ops_;
};

struct GreedyOptions {
  // Sweeps before giving up; the last sweep must change nothing.
  int max_iterations = 10;
  // Names the pass in explanations and statistics.
  std::string pass_name = "patterns";
};

struct GreedyResult {
  int iterations = 0;       // sweeps run, the final unchanged one included
  int64_t rewrites = 0;     // rewrites applied
  int64_t nodes_removed = 0;
  absl::btree_map<std::string, int64_t> applied;  // per pattern
};

// Applies `patterns` to a fixpoint (see the file comment). `ctx` may be null;
// otherwise it receives the statistics ("<pattern> applied", "nodes
// removed") and, when explaining, the explanations. Errors from a rewrite
// name the pattern and the anchor node.
absl::StatusOr<GreedyResult> ApplyPatternsGreedily(
    Graph& graph, absl::Span<const RewritePattern> patterns, PassContext* ctx,
    GreedyOptions options = {});

// A registered pass that applies the patterns `make` returns, with an
// option max-iterations besides `options`.
PassInfo PatternPassInfo(
    std::string name, std::string help,
    std::function<absl::StatusOr<std::vector<RewritePattern>>(const PassOptions&)> make,
    std::vector<PassOptionDef> options = {}, PassStage stage = PassStage::kAny);

}  // namespace subquad::pattern

#endif  // SUBQUAD_PASSES_PATTERN_REWRITE_H_
