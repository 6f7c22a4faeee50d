// Appends the optimizer update to a graph that autodiff has differentiated,
// so that one executor run of the graph is one training step.
//
// For every gradient output "grad/<p>" the pass adds the update of parameter
// p (sgd_update or adamw_update, in place, role optimizer) with its state
// as parameters "opt/<state>/<p>" (zeros, held by the ParameterStore beside
// the parameters). It adds the scalar input "step" (i64, 0-based, drives the
// learning-rate schedule and Adam's bias correction), global-norm clipping
// of all gradients, and the graph outputs "lr", "grad_norm" and
// "update_norm"; fetching "update_norm" runs the updates.
#ifndef SUBQUAD_PASSES_OPTIMIZER_H_
#define SUBQUAD_PASSES_OPTIMIZER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/graph.h"

namespace subquad {

struct OptimizerOptions {
  std::string kind = "adamw";  // adamw | sgd
  // Learning-rate schedule (learning_rate op).
  double lr = 1e-3;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;  // 0: no decay
  double min_lr = 0.0;
  std::string schedule = "cosine";  // cosine | linear | constant
  // Global-norm clipping; <= 0 disables it.
  double clip_norm = 1.0;
  double weight_decay = 0.01;
  // Skip weight decay for parameters of rank <= 1 (biases, norm gains).
  bool decay_only_matrices = true;
  // AdamW.
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
  // SGD.
  double momentum = 0.9;
  bool nesterov = false;
};

struct OptimizerResult {
  int parameters_updated = 0;
  int nodes_added = 0;
};

// InvalidArgument when the graph has no "grad/..." outputs (run autodiff
// first), an option is out of range, or a gradient names no parameter.
absl::StatusOr<OptimizerResult> AddOptimizer(Graph& graph,
                                             const OptimizerOptions& options);

}  // namespace subquad

#endif  // SUBQUAD_PASSES_OPTIMIZER_H_
