// Executor: runs a graph's plan with named feeds and returns the fetches.
//
//   ParameterStore params;
//   RETURN_IF_ERROR(params.Initialize(graph, /*seed=*/1));
//   ASSIGN_OR_RETURN(auto exec, Executor::Create(graph, {"loss"}, &params));
//   ASSIGN_OR_RETURN(std::vector<Tensor> out,
//                    exec->Run({{"tokens", tokens.view()}}));
//
// The arena is allocated once and kept between runs (no page-fault storm per
// step). Feeds are checked against the graph's input nodes by name, dtype and
// shape; parameters are read from the ParameterStore at each run, so updates
// between runs are seen.
#ifndef SUBQUAD_RUNTIME_EXECUTOR_H_
#define SUBQUAD_RUNTIME_EXECUTOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/graph.h"
#include "core/op_schema.h"
#include "core/parallel.h"
#include "core/tensor.h"
#include "runtime/parameter_store.h"
#include "runtime/plan.h"
#include "runtime/profile.h"

namespace subquad {

struct ExecutorOptions {
  // Threads for kernels when no pool is given; <= 0: all cores.
  int num_threads = 0;
  // A pool shared with other executors; the executor owns one otherwise.
  ParallelRunner* pool = nullptr;
  // Record per-node time, flops and bytes at each run.
  bool profile = false;
  PlanOptions plan;
};

using FeedMap = absl::flat_hash_map<std::string, TensorView>;

// ResolveValue (core/graph.h) with errors prefixed "fetch ".
absl::StatusOr<Value> ResolveFetch(const Graph& graph, absl::string_view name);

class Executor {
 public:
  // The graph and the store must outlive the executor.
  static absl::StatusOr<std::unique_ptr<Executor>> Create(
      const Graph& graph, const std::vector<std::string>& fetches,
      ParameterStore* params, ExecutorOptions options = {});

  ~Executor();

  // Runs one step. Every input node the fetches depend on must be fed;
  // errors name the input, the expected and the given type. Returns the
  // fetches in order (copies; the arena is reused by the next run).
  absl::StatusOr<std::vector<Tensor>> Run(const FeedMap& feeds);

  const Plan& plan() const { return plan_; }
  const Graph& graph() const { return graph_; }
  // The profile of the last run (empty unless options.profile).
  const Profile& profile() const { return profile_; }
  ParallelRunner* pool() const { return pool_; }

 private:
  Executor(const Graph& graph, ParameterStore* params, Plan plan);

  const Graph& graph_;
  ParameterStore* params_;
  Plan plan_;
  std::unique_ptr<ParallelRunner> owned_pool_;
  ParallelRunner* pool_ = nullptr;
  bool profile_enabled_ = false;
  Profile profile_;
  void* arena_ = nullptr;
  // Per scheduled node: the views its kernel gets; arena views are fixed at
  // Create, external ones are patched at each Run.
  struct Step {
    const Node* node = nullptr;
    const KernelFn* kernel = nullptr;
    std::vector<TensorView> inputs;
    std::vector<TensorView> outputs;
    int64_t flops = 0;
    int64_t bytes = 0;
  };
  std::vector<Step> steps_;
  // (step, input index, source node) for inputs stored outside the arena.
  struct ExternalInput {
    int step;
    int input;
    NodeId source;
  };
  std::vector<ExternalInput> externals_;
  std::vector<const Node*> needed_inputs_;
  std::vector<const Node*> needed_params_;
};

}  // namespace subquad

#endif  // SUBQUAD_RUNTIME_EXECUTOR_H_
