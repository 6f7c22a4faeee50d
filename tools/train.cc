#include "tools/train.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <deque>
#include <numeric>

#include "absl/container/btree_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/builder.h"
#include "core/status.h"
#include "passes/autodiff.h"
#include "passes/pass_manager.h"
#include "runtime/executor.h"
#include "runtime/rng.h"
#include "runtime/thread_pool.h"
#include "serialize/checkpoint.h"

namespace subquad::cli {

namespace {

// The shortest text that reads back as `v`.
std::string Exact(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

// What a resumed run must share with the run that wrote the checkpoint for
// the two to be one run: model, optimizer, schedule, seed and corpus.
absl::btree_map<std::string, std::string> RunMetadata(
    const TrainConfig& config, const nn::TransformerLMConfig& mc,
    const OptimizerOptions& opt, const TextCorpus& corpus) {
  absl::btree_map<std::string, std::string> m;
  m["model.vocab"] = absl::StrCat(mc.vocab);
  m["model.d_model"] = absl::StrCat(mc.d_model);
  m["model.heads"] = absl::StrCat(mc.heads);
  m["model.layers"] = absl::StrCat(mc.layers);
  m["model.mlp_ratio"] = absl::StrCat(mc.mlp_ratio);
  m["model.batch"] = absl::StrCat(mc.batch);
  m["model.seq_len"] = absl::StrCat(mc.seq_len);
  m["model.max_seq_len"] = absl::StrCat(mc.max_seq_len);
  m["model.causal"] = mc.causal ? "true" : "false";
  m["model.dtype"] = std::string(DTypeName(mc.dtype));
  m["optimizer.kind"] = opt.kind;
  m["optimizer.lr"] = Exact(opt.lr);
  m["optimizer.warmup_steps"] = absl::StrCat(opt.warmup_steps);
  m["optimizer.total_steps"] = absl::StrCat(opt.total_steps);
  m["optimizer.min_lr"] = Exact(opt.min_lr);
  m["optimizer.schedule"] = opt.schedule;
  m["optimizer.clip_norm"] = Exact(opt.clip_norm);
  m["optimizer.weight_decay"] = Exact(opt.weight_decay);
  m["optimizer.decay_only_matrices"] = opt.decay_only_matrices ? "true" : "false";
  m["optimizer.beta1"] = Exact(opt.beta1);
  m["optimizer.beta2"] = Exact(opt.beta2);
  m["optimizer.epsilon"] = Exact(opt.epsilon);
  m["optimizer.momentum"] = Exact(opt.momentum);
  m["optimizer.nesterov"] = opt.nesterov ? "true" : "false";
  m["steps"] = absl::StrCat(config.steps);
  m["seed"] = absl::StrCat(config.seed);
  m["corpus.train_bytes"] = absl::StrCat(corpus.train().size());
  m["corpus.train_hash"] = absl::StrCat(StableHash(corpus.train()));
  m["corpus.valid_bytes"] = absl::StrCat(corpus.valid().size());
  return m;
}

// Loads the newest checkpoint of `dir` into `params`, after checking that
// it belongs to this run. Returns its step; -1 when there is none.
absl::StatusOr<int64_t> Resume(
    const std::string& dir, const absl::btree_map<std::string, std::string>& metadata,
    ParameterStore& params, std::string* path) {
  absl::StatusOr<std::vector<CheckpointFile>> files = ListCheckpoints(dir);
  if (absl::IsNotFound(files.status()) || (files.ok() && files->empty())) return -1;
  RETURN_IF_ERROR(files.status());
  *path = files->back().path;
  ASSIGN_OR_RETURN(Checkpoint c, LoadCheckpoint(*path));
  auto mismatch = [&](absl::string_view what) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot resume from ", *path, ": ", what));
  };
  for (const auto& [key, value] : metadata) {
    auto it = c.metadata.find(key);
    const std::string theirs = it == c.metadata.end() ? "(unset)" : it->second;
    if (theirs != value) {
      return mismatch(absl::StrCat("it was written by a run with ", key, "=",
                                   theirs, "; this run has ", key, "=", value));
    }
  }
  if (c.data_position != c.step || c.rng_counter != static_cast<uint64_t>(c.step)) {
    return mismatch(absl::StrCat("step ", c.step, " but data position ",
                                 c.data_position, " and RNG counter ",
                                 c.rng_counter));
  }
  for (const std::string& name : params.Names()) {
    auto it = c.tensors.find(name);
    if (it == c.tensors.end()) {
      return mismatch(absl::StrCat("it has no tensor '", name, "'"));
    }
    if (it->second.type() != params.Find(name)->type()) {
      return mismatch(absl::StrCat("tensor '", name, "' is ",
                                   it->second.type().ToString(), "; the model has ",
                                   params.Find(name)->type().ToString()));
    }
  }
  if (c.tensors.size() != static_cast<size_t>(params.size())) {
    for (const auto& [name, t] : c.tensors) {
      if (!params.Contains(name)) {
        return mismatch(absl::StrCat("the model has no tensor '", name, "'"));
      }
    }
  }
  for (auto& [name, t] : c.tensors) params.Set(name, std::move(t));
  return c.step;
}

}  // namespace

absl::StatusOr<TrainSummary> Train(const TrainConfig& config,
                                   const TextCorpus& corpus, FILE* log) {
  nn::TransformerLMConfig mc = config.model;
  mc.vocab = 256;
  // One graph trains (forward, backward, updates); another evaluates. Both
  // name their parameters alike, so they share one ParameterStore.
  Graph train_graph, eval_graph;
  {
    GraphBuilder b(&train_graph);
    nn::BuildTransformerLM(b, mc);
    RETURN_IF_ERROR(b.status());
  }
  {
    GraphBuilder b(&eval_graph);
    nn::BuildTransformerLM(b, mc);
    RETURN_IF_ERROR(b.status());
  }
  ASSIGN_OR_RETURN(AutodiffResult ad, Autodiff(train_graph, {"loss", {}}));
  int attention_sites = 0;
  if (config.backward == "exact") {
    PassContext ctx;
    ASSIGN_OR_RETURN(PassManager train_pm,
                     PassManager::Create("fuse-attention,fuse-attention-backward,dce"));
    RETURN_IF_ERROR(train_pm.Run(train_graph, ctx).status());
    ASSIGN_OR_RETURN(PassManager eval_pm, PassManager::Create("fuse-attention,dce"));
    RETURN_IF_ERROR(eval_pm.Run(eval_graph, ctx).status());
    for (const Node* n : train_graph.nodes()) attention_sites += n->op() == "attention_backward";
  }
  OptimizerOptions opt = config.optimizer;
  if (opt.total_steps == 0) opt.total_steps = config.steps;
  RETURN_IF_ERROR(AddOptimizer(train_graph, opt).status());
  int nodes_by_role[3] = {0, 0, 0};
  for (const Node* n : train_graph.nodes()) ++nodes_by_role[static_cast<int>(n->role())];

  ParameterStore params;
  RETURN_IF_ERROR(params.Initialize(train_graph, config.seed));
  const absl::btree_map<std::string, std::string> metadata =
      RunMetadata(config, mc, opt, corpus);
  int64_t start_step = 0;
  std::string resumed_from;
  if (config.resume) {
    if (config.checkpoint_dir.empty()) {
      return absl::InvalidArgumentError("resuming needs a checkpoint directory");
    }
    ASSIGN_OR_RETURN(int64_t step, Resume(config.checkpoint_dir, metadata, params,
                                          &resumed_from));
    start_step = std::max<int64_t>(0, step);
  }
  const int64_t end_step =
      config.stop_after > 0 ? std::min(config.stop_after, config.steps) : config.steps;
  ThreadPool pool(config.threads);
  ExecutorOptions eo;
  eo.pool = &pool;
  ASSIGN_OR_RETURN(auto train_exec,
                   Executor::Create(train_graph, {"loss", "grad_norm", "lr", "update_norm"},
                                    &params, eo));
  ASSIGN_OR_RETURN(auto eval_exec, Executor::Create(eval_graph, {"loss"}, &params, eo));

  ASSIGN_OR_RETURN(WindowSampler train_data,
                   WindowSampler::Create(corpus.train(), mc.batch, mc.seq_len, config.seed));
  ASSIGN_OR_RETURN(WindowSampler valid_data,
                   WindowSampler::Create(corpus.valid(), mc.batch, mc.seq_len,
                                         config.seed ^ 0x5eed));
  Tensor tokens(DType::kI32, {mc.batch, mc.seq_len});
  Tensor targets(DType::kI32, {mc.batch, mc.seq_len});

  auto evaluate = [&]() -> absl::StatusOr<double> {
    double sum = 0;
    for (int64_t k = 0; k < config.eval_batches; ++k) {
      valid_data.Sample(k, &tokens, &targets);  // the same batches every time
      ASSIGN_OR_RETURN(auto out, eval_exec->Run({{"tokens", tokens.view()},
                                                 {"targets", targets.view()}}));
      sum += out[0].data<float>()[0];
    }
    return sum / static_cast<double>(std::max<int64_t>(1, config.eval_batches));
  };

  if (log != nullptr) {
    std::fprintf(log,
                 "subquad train: %lld layers, d_model %lld, %lld heads, seq_len %lld, "
                 "batch %lld; %lld parameters; %s, lr %g\n"
                 "  graph: %d forward + %d backward + %d optimizer nodes; attention "
                 "backward %s (%d fused sites); planned peak %.1f MiB; corpus %lld bytes "
                 "(%zu validation)\n",
                 (long long)mc.layers, (long long)mc.d_model, (long long)mc.heads,
                 (long long)mc.seq_len, (long long)mc.batch,
                 (long long)std::accumulate(
                     ad.gradients.begin(), ad.gradients.end(), int64_t{0},
                     [&](int64_t n, const auto& g) {
                       return n + params.Find(g.first)->num_elements();
                     }),
                 opt.kind.c_str(), opt.lr, nodes_by_role[static_cast<int>(Role::kForward)],
                 nodes_by_role[static_cast<int>(Role::kBackward)],
                 nodes_by_role[static_cast<int>(Role::kOptimizer)], config.backward.c_str(),
                 attention_sites, train_exec->plan().peak_bytes() / 1048576.0,
                 (long long)corpus.size(), corpus.valid().size());
  }

  if (log != nullptr && config.resume) {
    if (resumed_from.empty()) {
      std::fprintf(log, "  no checkpoint in %s: starting at step 0\n",
                   config.checkpoint_dir.c_str());
    } else {
      std::fprintf(log, "  resuming from %s at step %lld\n", resumed_from.c_str(),
                   (long long)start_step);
    }
  }
  auto save_checkpoint = [&](int64_t steps_done) -> absl::Status {
    Checkpoint c;
    c.step = steps_done;
    c.seed = config.seed;
    // The RNG is counter-based, keyed by (seed, step); the sampler draws
    // batch k at step k.
    c.rng_counter = static_cast<uint64_t>(steps_done);
    c.data_position = steps_done;
    for (const std::string& name : params.Names()) c.tensors[name] = *params.Find(name);
    c.metadata = metadata;
    ASSIGN_OR_RETURN(std::string path,
                     SaveCheckpointToDir(c, config.checkpoint_dir, config.keep));
    if (log != nullptr) std::fprintf(log, "  checkpoint %s\n", path.c_str());
    return absl::OkStatus();
  };

  TrainSummary summary;
  summary.start_step = start_step;
  std::deque<double> recent;
  const auto start = std::chrono::steady_clock::now();
  auto window_start = start;
  int64_t window_tokens = 0;
  const int64_t tokens_per_step = mc.batch * mc.seq_len;
  const int64_t print_every = std::max<int64_t>(1, std::min<int64_t>(config.eval_every, 50));
  for (int64_t step = start_step; step < end_step; ++step) {
    train_data.Sample(step, &tokens, &targets);
    Tensor step_t = Tensor::Scalar<int64_t>(step);
    ASSIGN_OR_RETURN(auto out, train_exec->Run({{"tokens", tokens.view()},
                                                {"targets", targets.view()},
                                                {"step", step_t.view()}}));
    const double loss = out[0].data<float>()[0];
    if (step == start_step) summary.first_train_loss = loss;
    summary.losses.push_back(loss);
    recent.push_back(loss);
    if (recent.size() > 20) recent.pop_front();
    window_tokens += tokens_per_step;
    const bool last = step + 1 == end_step;
    const bool eval_now = (config.eval_every > 0 && (step + 1) % config.eval_every == 0) || last;
    if (log != nullptr && ((step + 1) % print_every == 0 || eval_now || step == start_step)) {
      const auto now = std::chrono::steady_clock::now();
      const double secs = std::chrono::duration<double>(now - window_start).count();
      std::string valid;
      if (eval_now) {
        ASSIGN_OR_RETURN(double v, evaluate());
        summary.final_valid_loss = v;
        valid = absl::StrCat(" | valid ", absl::StrFormat("%.4f", v));
      }
      std::fprintf(log, "step %6lld | train %.4f%s | lr %.2e | grad norm %.3f | %.0f tok/s\n",
                   (long long)(step + 1), loss, valid.c_str(), out[2].data<float>()[0],
                   out[1].data<float>()[0], secs > 0 ? window_tokens / secs : 0.0);
      std::fflush(log);
      window_start = std::chrono::steady_clock::now();
      window_tokens = 0;
    } else if (eval_now) {
      ASSIGN_OR_RETURN(summary.final_valid_loss, evaluate());
    }
    const int64_t done = step + 1;
    if (!config.checkpoint_dir.empty() &&
        ((config.checkpoint_every > 0 && done % config.checkpoint_every == 0) ||
         done == end_step)) {
      RETURN_IF_ERROR(save_checkpoint(done));
      summary.last_checkpoint =
          absl::StrCat(config.checkpoint_dir, "/", CheckpointFileName(done));
    }
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  summary.final_train_loss =
      recent.empty() ? 0 : std::accumulate(recent.begin(), recent.end(), 0.0) / recent.size();
  summary.tokens_per_second =
      total > 0 ? (end_step - start_step) * tokens_per_step / total : 0;
  if (log != nullptr) {
    std::fprintf(log, "final validation loss %.4f nats/byte (train %.4f, %.0f tok/s overall)\n",
                 summary.final_valid_loss, summary.final_train_loss,
                 summary.tokens_per_second);
  }
  return summary;
}

}  // namespace subquad::cli
