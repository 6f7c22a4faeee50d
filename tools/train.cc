#include "tools/train.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/builder.h"
#include "core/status.h"
#include "passes/autodiff.h"
#include "runtime/executor.h"
#include "runtime/thread_pool.h"

namespace subquad::cli {

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
  const int forward_nodes = train_graph.num_nodes();
  ASSIGN_OR_RETURN(AutodiffResult ad, Autodiff(train_graph, {"loss", {}}));
  OptimizerOptions opt = config.optimizer;
  if (opt.total_steps == 0) opt.total_steps = config.steps;
  ASSIGN_OR_RETURN(OptimizerResult optr, AddOptimizer(train_graph, opt));

  ParameterStore params;
  RETURN_IF_ERROR(params.Initialize(train_graph, config.seed));
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
                 "  graph: %d forward + %d backward + %d optimizer nodes; planned "
                 "peak %.1f MiB; corpus %lld bytes (%zu validation)\n",
                 (long long)mc.layers, (long long)mc.d_model, (long long)mc.heads,
                 (long long)mc.seq_len, (long long)mc.batch,
                 (long long)std::accumulate(
                     ad.gradients.begin(), ad.gradients.end(), int64_t{0},
                     [&](int64_t n, const auto& g) {
                       return n + params.Find(g.first)->num_elements();
                     }),
                 opt.kind.c_str(), opt.lr, forward_nodes, ad.nodes_added,
                 optr.nodes_added, train_exec->plan().peak_bytes() / 1048576.0,
                 (long long)corpus.size(), corpus.valid().size());
  }

  TrainSummary summary;
  std::deque<double> recent;
  const auto start = std::chrono::steady_clock::now();
  auto window_start = start;
  int64_t window_tokens = 0;
  const int64_t tokens_per_step = mc.batch * mc.seq_len;
  const int64_t print_every = std::max<int64_t>(1, std::min<int64_t>(config.eval_every, 50));
  for (int64_t step = 0; step < config.steps; ++step) {
    train_data.Sample(step, &tokens, &targets);
    Tensor step_t = Tensor::Scalar<int64_t>(step);
    ASSIGN_OR_RETURN(auto out, train_exec->Run({{"tokens", tokens.view()},
                                                {"targets", targets.view()},
                                                {"step", step_t.view()}}));
    const double loss = out[0].data<float>()[0];
    if (step == 0) summary.first_train_loss = loss;
    recent.push_back(loss);
    if (recent.size() > 20) recent.pop_front();
    window_tokens += tokens_per_step;
    const bool last = step + 1 == config.steps;
    const bool eval_now = (config.eval_every > 0 && (step + 1) % config.eval_every == 0) || last;
    if (log != nullptr && ((step + 1) % print_every == 0 || eval_now || step == 0)) {
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
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  summary.final_train_loss =
      recent.empty() ? 0 : std::accumulate(recent.begin(), recent.end(), 0.0) / recent.size();
  summary.tokens_per_second = total > 0 ? config.steps * tokens_per_step / total : 0;
  if (log != nullptr) {
    std::fprintf(log, "final validation loss %.4f nats/byte (train %.4f, %.0f tok/s overall)\n",
                 summary.final_valid_loss, summary.final_train_loss,
                 summary.tokens_per_second);
  }
  return summary;
}

}  // namespace subquad::cli
