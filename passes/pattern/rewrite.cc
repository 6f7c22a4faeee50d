#include "passes/pattern/rewrite.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "core/op_schema.h"
#include "core/status.h"

namespace subquad::pattern {

// ---- Rewriter -------------------------------------------------------------------

Rewriter::Rewriter(Graph& graph, const Node& anchor)
    : graph_(graph),
      anchor_(anchor),
      builder_(&graph),
      scope_(builder_.SetScope(anchor.scope())) {
  builder_.set_role(anchor.role());
  builder_.set_origin(anchor.origin());
}

absl::Status Rewriter::Replace(Value from, Value to) {
  const Node* f = graph_.node(from.node);
  const Node* t = graph_.node(to.node);
  if (f == nullptr || from.output < 0 || from.output >= f->num_outputs()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Replace: ", from.ToString(), " is not a value of the graph"));
  }
  if (t == nullptr || to.output < 0 || to.output >= t->num_outputs()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Replace: replacement ", to.ToString(), " for ", from.ToString(),
        " is not a value of the graph", builder_.ok() ? "" : absl::StrCat(
            " (building it failed: ", builder_.status().message(), ")")));
  }
  if (graph_.type(from) != graph_.type(to)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Replace: replacement ", DescribeValue(graph_, to), " has type ",
        graph_.type(to).ToString(), ", but ", DescribeValue(graph_, from), " has type ",
        graph_.type(from).ToString()));
  }
  if (from == to) return absl::OkStatus();
  graph_.ReplaceAllUsesWith(from, to);
  replaced_.emplace_back(from, to);
  return absl::OkStatus();
}

absl::Status Rewriter::Decline(std::string reason) {
  declined_ = true;
  decline_reason_ = std::move(reason);
  return absl::OkStatus();
}

// ---- RewritePattern -------------------------------------------------------------

RewritePattern::RewritePattern(std::string name, Pattern root, RewriteFn rewrite)
    : name_(std::move(name)),
      root_(std::move(root)),
      rewrite_(std::move(rewrite)),
      anchor_ops_(root_.RootOps()) {}

// ---- Driver ------------------------------------------------------------------------

namespace {

bool Removable(const Node& n) {
  if (n.op() == "input" || n.op() == "parameter") return false;
  if (n.schema() != nullptr && !n.schema()->mutates_inputs.empty()) return false;
  return true;
}

bool HasUses(const UseIndex& uses, const Node& n) {
  for (int o = 0; o < n.num_outputs(); ++o) {
    if (uses.count(n.output(o)) > 0) return true;
  }
  return false;
}

// Removes the nodes among `seeds` that have no uses, and then the producers
// that lose their last use that way. Returns how many it removed.
absl::StatusOr<int64_t> SweepDead(Graph& graph, UseIndex& uses, std::vector<NodeId> seeds) {
  int64_t removed = 0;
  while (!seeds.empty()) {
    const NodeId id = seeds.back();
    seeds.pop_back();
    const Node* n = graph.node(id);
    if (n == nullptr || !Removable(*n) || HasUses(uses, *n)) continue;
    uses.RemoveUsesBy(*n);
    for (const Value& in : n->inputs()) seeds.push_back(in.node);
    RETURN_IF_ERROR(graph.RemoveNode(id));
    ++removed;
  }
  return removed;
}

// Nodes whose origin is a removed node whose output 0 a new node (id >=
// `first_new`) replaced now name that node.
void ForwardOrigins(Graph& graph, const std::vector<std::pair<Value, Value>>& replaced,
                    NodeId first_new) {
  absl::flat_hash_map<NodeId, NodeId> forward;
  for (const auto& [from, to] : replaced) {
    if (from.output == 0 && to.node >= first_new && graph.node(from.node) == nullptr) {
      forward[from.node] = to.node;
    }
  }
  if (forward.empty()) return;
  for (const Node* n : graph.nodes()) {
    auto it = forward.find(n->origin());
    if (it != forward.end()) graph.mutable_node(n->id())->set_origin(it->second);
  }
}

std::string AnchorLabel(const Node& n) {
  return absl::StrCat("node %", n.id(), " (", n.op(), ")");
}

// "pattern 'p' did not match at node %5 (matmul): <reason>", without naming
// the anchor twice when the reason is about the anchor itself.
std::string MissLine(const RewritePattern& p, const Node& anchor, absl::string_view reason) {
  const std::string label = AnchorLabel(anchor);
  const std::string prefix = absl::StrCat(label, ": ");
  absl::string_view r = reason;
  absl::ConsumePrefix(&r, prefix);
  return absl::StrCat("pattern '", p.name(), "' did not match at ", label, ": ", r);
}

}  // namespace

absl::StatusOr<GreedyResult> ApplyPatternsGreedily(Graph& graph,
                                                   absl::Span<const RewritePattern> patterns,
                                                   PassContext* ctx, GreedyOptions options) {
  // Patterns by anchor op, highest benefit first (stable among equals).
  std::vector<const RewritePattern*> sorted;
  for (const RewritePattern& p : patterns) sorted.push_back(&p);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const RewritePattern* a, const RewritePattern* b) {
                     return a->benefit() > b->benefit();
                   });
  absl::flat_hash_map<std::string, std::vector<const RewritePattern*>> by_op;
  std::vector<const RewritePattern*> any_op;
  for (const RewritePattern* p : sorted) {
    if (p->anchor_ops().empty()) {
      any_op.push_back(p);
    } else {
      for (const std::string& op : p->anchor_ops()) by_op[op].push_back(p);
    }
  }
  auto candidates = [&](const std::string& op) {
    std::vector<const RewritePattern*> out;
    auto it = by_op.find(op);
    if (it != by_op.end()) out = it->second;
    if (!any_op.empty()) {
      out.insert(out.end(), any_op.begin(), any_op.end());
      std::stable_sort(out.begin(), out.end(),
                       [](const RewritePattern* a, const RewritePattern* b) {
                         return a->benefit() > b->benefit();
                       });
    }
    return out;
  };

  const bool explaining = ctx != nullptr && ctx->explaining();
  auto explain = [&](std::string message) {
    if (explaining) ctx->Explain(options.pass_name, std::move(message));
  };

  GreedyResult result;
  absl::btree_map<std::string, int64_t> last_sweep;
  for (int iter = 0; iter < std::max(options.max_iterations, 1); ++iter) {
    ++result.iterations;
    last_sweep.clear();
    std::vector<std::string> misses;  // this sweep's, reported if it is the last
    auto uses = std::make_unique<UseIndex>(graph);
    ASSIGN_OR_RETURN(std::vector<NodeId> order, graph.TopologicalOrder());
    for (NodeId id : order) {
      const Node* node = graph.node(id);
      if (node == nullptr) continue;  // removed by an earlier rewrite
      for (const RewritePattern* p : candidates(node->op())) {
        const Value root = node->output(std::min(p->root().RootOutput(), node->num_outputs() - 1));
        MatchResult m = MatchPattern(graph, p->root(), root, nullptr, uses.get());
        if (!m.matched()) {
          if (explaining && m.depth >= p->min_explain_depth()) {
            misses.push_back(MissLine(*p, *node, m.reason));
          }
          continue;
        }
        const NodeId bound_before = graph.id_bound();
        const std::string anchor_label = AnchorLabel(*node);
        Rewriter rw(graph, *node);
        absl::Status s = p->rewrite()(rw, m.match);
        if (s.ok() && !rw.builder().ok()) s = rw.builder().status();
        if (!s.ok()) {
          return absl::Status(s.code(), absl::StrCat("pattern '", p->name(), "' at ",
                                                     anchor_label, ": ", s.message()));
        }
        // Nodes a declined or failed rewrite built are swept below as well.
        std::vector<NodeId> seeds;
        for (NodeId n = bound_before; n < graph.id_bound(); ++n) seeds.push_back(n);
        if (rw.declined() == rw.changed()) {
          return absl::InternalError(absl::StrCat(
              "pattern '", p->name(), "' matched at ", anchor_label, " but its rewrite ",
              rw.declined() ? "both replaced a value and declined"
                            : "neither replaced a value nor declined"));
        }
        if (rw.declined()) {
          if (!seeds.empty()) {
            uses = std::make_unique<UseIndex>(graph);
            ASSIGN_OR_RETURN(int64_t swept, SweepDead(graph, *uses, std::move(seeds)));
            result.nodes_removed += swept;
          }
          if (explaining) {
            misses.push_back(absl::StrCat("pattern '", p->name(), "' matched at ",
                                          anchor_label, " but was declined: ",
                                          rw.decline_reason()));
          }
          continue;
        }
        ++result.rewrites;
        ++result.applied[p->name()];
        ++last_sweep[p->name()];
        explain(absl::StrCat("pattern '", p->name(), "' applied at ", anchor_label));
        for (NodeId n : m.match.nodes()) seeds.push_back(n);
        for (const auto& [from, to] : rw.replaced()) seeds.push_back(from.node);
        uses = std::make_unique<UseIndex>(graph);
        ASSIGN_OR_RETURN(int64_t swept, SweepDead(graph, *uses, std::move(seeds)));
        result.nodes_removed += swept;
        ForwardOrigins(graph, rw.replaced(), bound_before);
        break;  // the node changed: other patterns see it next sweep
      }
    }
    if (last_sweep.empty()) {
      for (std::string& m : misses) explain(std::move(m));
      if (ctx != nullptr) {
        for (const auto& [name, n] : result.applied) {
          ctx->Count(options.pass_name, absl::StrCat(name, " applied"), n);
        }
        ctx->Count(options.pass_name, "nodes removed", result.nodes_removed);
      }
      return result;
    }
  }
  std::vector<std::string> firing;
  for (const auto& [name, n] : last_sweep) {
    firing.push_back(absl::StrCat(name, " (", n, n == 1 ? " time)" : " times)"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      options.pass_name, ": pattern rewriting did not converge in ", result.iterations,
      " iterations; still firing in the last one: ", absl::StrJoin(firing, ", ")));
}

// ---- Pattern passes ---------------------------------------------------------------

namespace {

class PatternPass : public Pass {
 public:
  PatternPass(std::string name, std::vector<RewritePattern> patterns, int max_iterations)
      : name_(std::move(name)), patterns_(std::move(patterns)), max_iterations_(max_iterations) {}
  absl::string_view name() const override { return name_; }
  absl::StatusOr<bool> Run(Graph& graph, PassContext& ctx) override {
    GreedyOptions o;
    o.max_iterations = max_iterations_;
    o.pass_name = name_;
    ASSIGN_OR_RETURN(GreedyResult r, ApplyPatternsGreedily(graph, patterns_, &ctx, o));
    return r.rewrites > 0 || r.nodes_removed > 0;
  }

 private:
  std::string name_;
  std::vector<RewritePattern> patterns_;
  int max_iterations_;
};

}  // namespace

PassInfo PatternPassInfo(
    std::string name, std::string help,
    std::function<absl::StatusOr<std::vector<RewritePattern>>(const PassOptions&)> make,
    std::vector<PassOptionDef> options, PassStage stage) {
  PassInfo p;
  p.name = name;
  p.help = std::move(help);
  p.stage = stage;
  p.options = std::move(options);
  p.options.push_back({"max-iterations", AttrKind::kInt, AttrValue(int64_t{10}),
                       "sweeps over the graph before failing to converge", 1.0, std::nullopt});
  p.create = [name, make = std::move(make)](
                 const PassOptions& o) -> absl::StatusOr<std::unique_ptr<Pass>> {
    ASSIGN_OR_RETURN(std::vector<RewritePattern> patterns, make(o));
    return std::make_unique<PatternPass>(name, std::move(patterns),
                                         static_cast<int>(o.GetInt("max-iterations")));
  };
  return p;
}

}  // namespace subquad::pattern
