#include "passes/optimizer.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/status.h"
#include "ops/ops.h"

namespace subquad {
namespace {

absl::Status Error(absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat("optimizer: ", msg));
}

}  // namespace

absl::StatusOr<OptimizerResult> AddOptimizer(Graph& graph,
                                             const OptimizerOptions& o) {
  if (o.kind != "adamw" && o.kind != "sgd") {
    return Error(absl::StrCat("kind \"", o.kind, "\" is not one of adamw, sgd"));
  }
  if (!(o.lr > 0)) return Error(absl::StrCat("lr must be > 0, got ", o.lr));
  if (o.weight_decay < 0) return Error("weight_decay must be >= 0");
  std::vector<std::pair<const Node*, Value>> grads;
  for (const auto& [name, v] : graph.outputs()) {
    if (!absl::StartsWith(name, "grad/")) continue;
    const std::string pname = name.substr(5);
    const Node* p = graph.FindNode(pname);
    if (p == nullptr || p->op() != "parameter") {
      return Error(absl::StrCat("gradient output '", name, "' names no parameter"));
    }
    grads.emplace_back(p, v);
  }
  if (grads.empty()) {
    return Error("the graph has no gradient outputs (grad/<parameter>); run autodiff first");
  }
  const int before = graph.num_nodes();
  GraphBuilder b(&graph);
  b.set_role(Role::kOptimizer);
  Value step = b.Input("step", DType::kI64, Shape{});
  auto scope = b.SetScope("optimizer");
  b.set_name_prefix("optimizer");
  const DType dt = graph.type(grads[0].second).dtype;
  Value lr = b.Add("learning_rate", {step},
                   {{"base_lr", o.lr},
                    {"warmup_steps", o.warmup_steps},
                    {"total_steps", o.total_steps},
                    {"min_lr", o.min_lr},
                    {"schedule", o.schedule},
                    {"dtype", dt}});
  std::vector<Value> all_grads;
  for (const auto& [p, g] : grads) all_grads.push_back(g);
  std::vector<Value> clip = b.AddMulti("global_norm_scale", all_grads,
                                       {{"max_norm", o.clip_norm}}, 2);
  RETURN_IF_ERROR(b.status());

  Value total_sq;
  for (const auto& [p, g] : grads) {
    b.set_origin(p->id());
    b.set_name_prefix("");
    const TensorType& t = p->output_type(0);
    const double wd =
        (o.decay_only_matrices && t.shape.rank() <= 1) ? 0.0 : o.weight_decay;
    const Value param = p->output(0);
    Value sq;
    if (o.kind == "adamw") {
      Value m = b.Parameter(absl::StrCat("adam_m/", p->name()), t.dtype, t.shape,
                            Init::Zeros(), /*trainable=*/false);
      Value v = b.Parameter(absl::StrCat("adam_v/", p->name()), t.dtype, t.shape,
                            Init::Zeros(), /*trainable=*/false);
      b.set_name_prefix(absl::StrCat("optimizer/", p->name()));
      sq = b.Add("adamw_update", {param, g, m, v, lr, step, clip[0]},
                 {{"beta1", o.beta1}, {"beta2", o.beta2}, {"epsilon", o.epsilon},
                  {"weight_decay", wd}});
    } else {
      Value vel = b.Parameter(absl::StrCat("momentum/", p->name()), t.dtype, t.shape,
                              Init::Zeros(), /*trainable=*/false);
      b.set_name_prefix(absl::StrCat("optimizer/", p->name()));
      sq = b.Add("sgd_update", {param, g, vel, lr, clip[0]},
                 {{"momentum", o.momentum}, {"weight_decay", wd}, {"nesterov", o.nesterov}});
    }
    if (b.ok() && b.dtype(sq) != dt) sq = ops::Cast(b, sq, dt);
    total_sq = total_sq.valid() ? ops::Add(b, total_sq, sq) : sq;
  }
  b.set_origin(kNoNode);
  b.set_name_prefix("optimizer");
  Value update_norm = ops::Sqrt(b, total_sq);
  RETURN_IF_ERROR(b.status());
  graph.SetOutput("lr", lr);
  graph.SetOutput("grad_norm", clip[1]);
  graph.SetOutput("update_norm", update_norm);
  OptimizerResult r;
  r.parameters_updated = static_cast<int>(grads.size());
  r.nodes_added = graph.num_nodes() - before;
  return r;
}

}  // namespace subquad
