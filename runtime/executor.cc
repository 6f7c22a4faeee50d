#include "runtime/executor.h"

#include <chrono>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/op_schema.h"
#include "core/status.h"
#include "runtime/thread_pool.h"

namespace subquad {

absl::StatusOr<Value> ResolveFetch(const Graph& graph, absl::string_view name) {
  auto v = ResolveValue(graph, name);
  if (!v.ok()) {
    return absl::Status(v.status().code(),
                        absl::StrCat("fetch ", v.status().message()));
  }
  return v;
}

Executor::Executor(const Graph& graph, ParameterStore* params, Plan plan)
    : graph_(graph), params_(params), plan_(std::move(plan)) {}

Executor::~Executor() {
  if (arena_ != nullptr) FreeAligned(arena_);
}

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(
    const Graph& graph, const std::vector<std::string>& fetches,
    ParameterStore* params, ExecutorOptions options) {
  std::vector<Value> fetch_values;
  for (const std::string& f : fetches) {
    ASSIGN_OR_RETURN(Value v, ResolveFetch(graph, f));
    fetch_values.push_back(v);
  }
  ASSIGN_OR_RETURN(Plan plan, Plan::Create(graph, fetch_values, options.plan));
  std::unique_ptr<Executor> ex(new Executor(graph, params, std::move(plan)));
  if (options.pool != nullptr) {
    ex->pool_ = options.pool;
  } else {
    ex->owned_pool_ = std::make_unique<ThreadPool>(options.num_threads);
    ex->pool_ = ex->owned_pool_.get();
  }
  ex->profile_enabled_ = options.profile;
  if (ex->plan_.peak_bytes() > 0) {
    ex->arena_ = AllocateAligned(static_cast<size_t>(ex->plan_.peak_bytes()));
    if (ex->arena_ == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot allocate the ", ex->plan_.peak_bytes(), "-byte arena"));
    }
  }
  char* arena = static_cast<char*>(ex->arena_);
  auto view_of = [&](Value v) -> TensorView {
    const ValueLocation& loc = ex->plan_.location(v);
    const TensorType& t = graph.type(v);
    if (loc.storage == Storage::kArena) {
      return TensorView(t, arena + ex->plan_.buffers()[loc.buffer].offset);
    }
    if (loc.storage == Storage::kConstant) {
      const Tensor& c = graph.node(loc.source)->GetTensor("value");
      return TensorView(t, const_cast<void*>(c.raw_data()));
    }
    return TensorView(t, nullptr);  // patched per run
  };
  for (NodeId id : ex->plan_.schedule()) {
    const Node& n = *graph.node(id);
    if (n.op() == "input") ex->needed_inputs_.push_back(&n);
    if (n.op() == "parameter") ex->needed_params_.push_back(&n);
    if (n.schema()->is_source) continue;
    // A planned alias (reshape) shares its input's bytes: nothing to run.
    if (const int a = n.schema()->alias_input; a >= 0) {
      const ValueLocation& in = ex->plan_.location(n.input(a));
      const ValueLocation& out = ex->plan_.location(n.output(0));
      if (in.storage == out.storage && in.buffer == out.buffer &&
          in.source == out.source) {
        continue;
      }
    }
    Step step;
    step.node = &n;
    step.kernel = n.schema()->FindKernel(n.output_type(0).dtype);
    std::vector<TensorType> in_types;
    for (int i = 0; i < n.num_inputs(); ++i) {
      const Value in = n.input(i);
      step.inputs.push_back(view_of(in));
      in_types.push_back(graph.type(in));
      step.bytes += graph.type(in).byte_size();
      const ValueLocation& loc = ex->plan_.location(in);
      if (loc.storage == Storage::kFeed || loc.storage == Storage::kParameter) {
        ex->externals_.push_back(
            {static_cast<int>(ex->steps_.size()), i, loc.source});
      }
    }
    for (int o = 0; o < n.num_outputs(); ++o) {
      step.outputs.push_back(view_of(n.output(o)));
      step.bytes += n.output_type(o).byte_size();
    }
    if (n.schema()->flops) step.flops = n.schema()->flops(n, in_types);
    ex->steps_.push_back(std::move(step));
  }
  return ex;
}

absl::StatusOr<std::vector<Tensor>> Executor::Run(const FeedMap& feeds) {
  absl::flat_hash_map<NodeId, void*> external;
  for (const auto& [name, view] : feeds) {
    const Node* n = graph_.FindNode(name);
    if (n == nullptr || n->op() != "input") {
      std::vector<std::string> names;
      for (const Node* in : graph_.InputNodes()) names.push_back(in->name());
      return absl::InvalidArgumentError(absl::StrCat(
          "feed '", name, "' names no input of the graph; inputs are: ",
          names.empty() ? "none" : absl::StrJoin(names, ", ")));
    }
    if (view.type() != n->output_type(0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "feed '", name, "': input expects ", n->output_type(0).ToString(),
          ", got ", view.type().ToString()));
    }
    if (view.raw_data() == nullptr && view.byte_size() > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("feed '", name, "' has no data"));
    }
    external[n->id()] = view.raw_data();
  }
  for (const Node* n : needed_inputs_) {
    if (!external.contains(n->id())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", n->name(), "' (", n->output_type(0).ToString(),
          ") is needed by the fetches but was not fed"));
    }
  }
  for (const Node* n : needed_params_) {
    Tensor* t = params_ == nullptr ? nullptr : params_->Find(n->name());
    if (t == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "parameter '", n->name(),
          "' is not in the ParameterStore (initialise it from the graph first)"));
    }
    if (t->type() != n->output_type(0)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "parameter '", n->name(), "': the store holds ", t->type().ToString(),
          ", the graph declares ", n->output_type(0).ToString()));
    }
    external[n->id()] = t->raw_data();
  }
  for (const ExternalInput& e : externals_) {
    TensorView& v = steps_[e.step].inputs[e.input];
    v = TensorView(v.type(), external.at(e.source));
  }

  if (profile_enabled_) {
    profile_.nodes.clear();
    profile_.total_nanos = 0;
  }
  using Clock = std::chrono::steady_clock;
  for (Step& step : steps_) {
    KernelContext ctx{*step.node, step.inputs, step.outputs, pool_};
    if (!profile_enabled_) {
      RETURN_IF_ERROR((*step.kernel)(ctx));
      continue;
    }
    const auto t0 = Clock::now();
    RETURN_IF_ERROR((*step.kernel)(ctx));
    const int64_t ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0)
            .count();
    profile_.nodes.push_back({step.node->id(), step.node->name(),
                              step.node->op(), step.node->scope(),
                              step.node->role(), ns, step.flops, step.bytes});
    profile_.total_nanos += ns;
  }

  std::vector<Tensor> results;
  results.reserve(plan_.fetches().size());
  for (const Value& v : plan_.fetches()) {
    const ValueLocation& loc = plan_.location(v);
    const TensorType& t = graph_.type(v);
    const void* src = nullptr;
    switch (loc.storage) {
      case Storage::kArena:
        src = static_cast<char*>(arena_) + plan_.buffers()[loc.buffer].offset;
        break;
      case Storage::kConstant:
        src = graph_.node(loc.source)->GetTensor("value").raw_data();
        break;
      case Storage::kFeed:
      case Storage::kParameter:
        src = external.at(loc.source);
        break;
    }
    Tensor out(t);
    std::memcpy(out.raw_data(), src, static_cast<size_t>(t.byte_size()));
    results.push_back(std::move(out));
  }
  return results;
}

}  // namespace subquad
