#include "passes/standard_passes.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/op_schema.h"
#include "core/status.h"
#include "passes/autodiff.h"
#include "passes/optimizer.h"
#include "passes/pass.h"

namespace subquad {

absl::StatusOr<int> EliminateDeadNodes(Graph& graph) {
  std::vector<char> live(graph.id_bound(), 0);
  std::vector<NodeId> stack;
  for (const auto& [name, v] : graph.outputs()) stack.push_back(v.node);
  for (const Node* n : graph.nodes()) {
    if (n->op() == "input" || n->op() == "parameter") stack.push_back(n->id());
  }
  while (!stack.empty()) {
    const NodeId id = stack.back();
    stack.pop_back();
    if (live[id]) continue;
    live[id] = 1;
    for (const Value& in : graph.node(id)->inputs()) stack.push_back(in.node);
  }
  ASSIGN_OR_RETURN(std::vector<NodeId> order, graph.TopologicalOrder());
  int removed = 0;
  // Users before producers, so each removed node has no remaining users.
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    if (live[*it]) continue;
    RETURN_IF_ERROR(graph.RemoveNode(*it));
    ++removed;
  }
  return removed;
}

namespace {

std::string CseKey(const Node& n, bool across_roles) {
  std::string key = absl::StrCat(n.op(), "|", across_roles ? 0 : static_cast<int>(n.role()), "|");
  for (const Value& v : n.inputs()) absl::StrAppend(&key, v.node, ":", v.output, ",");
  absl::StrAppend(&key, "|");
  for (const auto& [k, v] : n.attrs()) {
    if (v.kind() == AttrKind::kTensor) {
      absl::StrAppend(&key, k, "=", v.tensor().type().ToString(), ";");
    } else {
      absl::StrAppend(&key, k, "=", v.ToString(), ";");
    }
  }
  for (const TensorType& t : n.output_types()) absl::StrAppend(&key, t.ToString(), ";");
  return key;
}

bool Mergeable(const Node& n) {
  if (n.schema() == nullptr) return false;
  if (!n.schema()->mutates_inputs.empty()) return false;
  if (n.op() == "input" || n.op() == "parameter") return false;
  return true;
}

}  // namespace

absl::StatusOr<int> EliminateCommonSubexpressions(Graph& graph, bool across_roles) {
  ASSIGN_OR_RETURN(std::vector<NodeId> order, graph.TopologicalOrder());
  absl::flat_hash_map<std::string, std::vector<NodeId>> seen;
  std::vector<NodeId> dead;
  for (NodeId id : order) {
    const Node& n = *graph.node(id);
    if (!Mergeable(n)) continue;
    std::vector<NodeId>& candidates = seen[CseKey(n, across_roles)];
    NodeId match = kNoNode;
    for (NodeId c : candidates) {
      // The key compares tensors by type only; compare their bits here.
      if (graph.node(c)->attrs() == n.attrs()) {
        match = c;
        break;
      }
    }
    if (match == kNoNode) {
      candidates.push_back(id);
      continue;
    }
    for (int o = 0; o < n.num_outputs(); ++o) {
      graph.ReplaceAllUsesWith(n.output(o), graph.node(match)->output(o));
    }
    dead.push_back(id);
  }
  for (auto it = dead.rbegin(); it != dead.rend(); ++it) {
    RETURN_IF_ERROR(graph.RemoveNode(*it));
  }
  return static_cast<int>(dead.size());
}

namespace {

// ---- Registered passes --------------------------------------------------------

class FunctionPass : public Pass {
 public:
  using Fn = std::function<absl::StatusOr<bool>(Graph&, PassContext&)>;
  FunctionPass(std::string name, Fn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  absl::string_view name() const override { return name_; }
  absl::StatusOr<bool> Run(Graph& graph, PassContext& ctx) override { return fn_(graph, ctx); }

 private:
  std::string name_;
  Fn fn_;
};

PassInfo DcePass() {
  PassInfo p;
  p.name = "dce";
  p.help = "Removes nodes that no graph output needs.";
  p.create = [](const PassOptions&) -> absl::StatusOr<std::unique_ptr<Pass>> {
    return std::make_unique<FunctionPass>("dce", [](Graph& g, PassContext& ctx) -> absl::StatusOr<bool> {
      ASSIGN_OR_RETURN(int removed, EliminateDeadNodes(g));
      ctx.Count("dce", "nodes removed", removed);
      return removed > 0;
    });
  };
  return p;
}

PassInfo CsePass() {
  PassInfo p;
  p.name = "cse";
  p.help = "Merges nodes that compute the same value.";
  p.options = {{"across-roles", AttrKind::kBool, AttrValue(false),
                "also merge a backward node into an identical forward node"}};
  p.create = [](const PassOptions& o) -> absl::StatusOr<std::unique_ptr<Pass>> {
    const bool across = o.GetBool("across-roles");
    return std::make_unique<FunctionPass>("cse", [across](Graph& g, PassContext& ctx) -> absl::StatusOr<bool> {
      ASSIGN_OR_RETURN(int merged, EliminateCommonSubexpressions(g, across));
      ctx.Count("cse", "nodes merged", merged);
      return merged > 0;
    });
  };
  return p;
}

PassInfo AutodiffPass() {
  PassInfo p;
  p.name = "autodiff";
  p.help = "Appends the backward graph of a scalar loss (outputs grad/<parameter>).";
  p.stage = PassStage::kForward;
  p.options = {{"loss", AttrKind::kString, AttrValue("loss"), "the loss value's name"},
               {"wrt", AttrKind::kString, AttrValue(""),
                "parameters, as [a,b]; empty: every trainable parameter"}};
  p.create = [](const PassOptions& o) -> absl::StatusOr<std::unique_ptr<Pass>> {
    AutodiffOptions ad;
    ad.loss = o.GetString("loss");
    absl::string_view wrt = o.GetString("wrt");
    absl::ConsumePrefix(&wrt, "[");
    absl::ConsumeSuffix(&wrt, "]");
    for (absl::string_view w : absl::StrSplit(wrt, ',', absl::SkipWhitespace())) {
      ad.wrt.emplace_back(absl::StripAsciiWhitespace(w));
    }
    return std::make_unique<FunctionPass>("autodiff", [ad](Graph& g, PassContext& ctx) -> absl::StatusOr<bool> {
      ASSIGN_OR_RETURN(AutodiffResult r, Autodiff(g, ad));
      ctx.Count("autodiff", "backward nodes added", r.nodes_added);
      ctx.Count("autodiff", "parameters differentiated", static_cast<int64_t>(r.gradients.size()));
      return true;
    });
  };
  return p;
}

PassInfo OptimizerPass() {
  PassInfo p;
  p.name = "optimizer";
  p.help = "Appends in-place parameter updates (AdamW or SGD) for every grad/<parameter>.";
  p.stage = PassStage::kJoint;
  const OptimizerOptions d;
  p.options = {
      {"kind", AttrKind::kString, AttrValue(d.kind), "adamw | sgd"},
      {"lr", AttrKind::kFloat, AttrValue(d.lr), "peak learning rate", 0.0},
      {"warmup", AttrKind::kInt, AttrValue(d.warmup_steps), "linear warm-up steps", 0.0},
      {"total-steps", AttrKind::kInt, AttrValue(d.total_steps), "end of the decay (0: none)", 0.0},
      {"min-lr", AttrKind::kFloat, AttrValue(d.min_lr), "learning rate at the end of the decay", 0.0},
      {"schedule", AttrKind::kString, AttrValue(d.schedule), "cosine | linear | constant"},
      {"clip", AttrKind::kFloat, AttrValue(d.clip_norm), "global gradient-norm clip (<= 0: off)"},
      {"weight-decay", AttrKind::kFloat, AttrValue(d.weight_decay), "decoupled weight decay", 0.0},
      {"beta1", AttrKind::kFloat, AttrValue(d.beta1), "AdamW β₁", 0.0, 1.0},
      {"beta2", AttrKind::kFloat, AttrValue(d.beta2), "AdamW β₂", 0.0, 1.0},
      {"epsilon", AttrKind::kFloat, AttrValue(d.epsilon), "AdamW ε", 0.0},
      {"momentum", AttrKind::kFloat, AttrValue(d.momentum), "SGD momentum", 0.0, 1.0},
      {"nesterov", AttrKind::kBool, AttrValue(d.nesterov), "SGD Nesterov momentum"}};
  p.create = [](const PassOptions& o) -> absl::StatusOr<std::unique_ptr<Pass>> {
    OptimizerOptions opt;
    opt.kind = o.GetString("kind");
    opt.lr = o.GetFloat("lr");
    opt.warmup_steps = o.GetInt("warmup");
    opt.total_steps = o.GetInt("total-steps");
    opt.min_lr = o.GetFloat("min-lr");
    opt.schedule = o.GetString("schedule");
    opt.clip_norm = o.GetFloat("clip");
    opt.weight_decay = o.GetFloat("weight-decay");
    opt.beta1 = o.GetFloat("beta1");
    opt.beta2 = o.GetFloat("beta2");
    opt.epsilon = o.GetFloat("epsilon");
    opt.momentum = o.GetFloat("momentum");
    opt.nesterov = o.GetBool("nesterov");
    return std::make_unique<FunctionPass>("optimizer", [opt](Graph& g, PassContext& ctx) -> absl::StatusOr<bool> {
      ASSIGN_OR_RETURN(OptimizerResult r, AddOptimizer(g, opt));
      ctx.Count("optimizer", "parameters updated", r.parameters_updated);
      return true;
    });
  };
  return p;
}

SUBQUAD_REGISTER_PASS(DcePass());
SUBQUAD_REGISTER_PASS(CsePass());
SUBQUAD_REGISTER_PASS(AutodiffPass());
SUBQUAD_REGISTER_PASS(OptimizerPass());

}  // namespace
}  // namespace subquad
