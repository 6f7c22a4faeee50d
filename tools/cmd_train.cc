// `subquad train`: trains a byte-level TransformerLM on text.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/train.h"

namespace subquad::cli {
namespace {

absl::StatusOr<TrainConfig> ReadConfig(const Args& a) {
  TrainConfig c;
  ASSIGN_OR_RETURN(c.model.seq_len, a.GetInt("seq-len"));
  ASSIGN_OR_RETURN(c.model.batch, a.GetInt("batch"));
  ASSIGN_OR_RETURN(c.model.layers, a.GetInt("layers"));
  ASSIGN_OR_RETURN(c.model.d_model, a.GetInt("d-model"));
  ASSIGN_OR_RETURN(c.model.heads, a.GetInt("heads"));
  ASSIGN_OR_RETURN(c.steps, a.GetInt("steps"));
  ASSIGN_OR_RETURN(c.eval_every, a.GetInt("eval-every"));
  ASSIGN_OR_RETURN(int64_t seed, a.GetInt("seed"));
  c.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(int64_t threads, a.GetInt("threads"));
  c.threads = static_cast<int>(threads);
  ASSIGN_OR_RETURN(c.optimizer.lr, a.GetDouble("lr"));
  ASSIGN_OR_RETURN(c.optimizer.warmup_steps, a.GetInt("warmup"));
  ASSIGN_OR_RETURN(c.optimizer.clip_norm, a.GetDouble("clip"));
  ASSIGN_OR_RETURN(c.optimizer.weight_decay, a.GetDouble("weight-decay"));
  c.optimizer.kind = a.GetString("optimizer");
  c.backward = a.GetString("backward");
  if (c.backward != "exact" && c.backward != "unfused") {
    return absl::InvalidArgumentError(absl::StrCat(
        "train: --backward=", c.backward, " is not one of exact, unfused"));
  }
  c.checkpoint_dir = a.GetString("checkpoint-dir");
  ASSIGN_OR_RETURN(c.checkpoint_every, a.GetInt("checkpoint-every"));
  ASSIGN_OR_RETURN(int64_t keep, a.GetInt("keep"));
  c.keep = static_cast<int>(keep);
  c.resume = a.GetBool("resume");
  if (c.checkpoint_every < 0 || keep < 0) {
    return absl::InvalidArgumentError(
        "train: --checkpoint-every and --keep must not be negative");
  }
  if (c.resume && c.checkpoint_dir.empty()) {
    return absl::InvalidArgumentError("train: --resume needs --checkpoint-dir");
  }
  if (c.model.seq_len <= 0 || c.model.batch <= 0 || c.model.layers < 0 ||
      c.model.d_model <= 0 || c.model.heads <= 0 || c.steps <= 0) {
    return absl::InvalidArgumentError(
        "train: --seq-len, --batch, --d-model, --heads and --steps must be positive");
  }
  if (c.model.d_model % c.model.heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "train: --d-model=", c.model.d_model, " is not divisible by --heads=",
        c.model.heads));
  }
  return c;
}

}  // namespace

int RunTrain(const std::vector<std::string>& argv) {
  Args a("train",
         "Trains a byte-level transformer language model on text and prints the "
         "training and validation loss (nats/byte) as it goes.");
  a.Flag("corpus", "", "text file to train on (default: Debian's fortunes corpus)")
      .Flag("seq-len", "128", "tokens (bytes) per sequence")
      .Flag("batch", "16", "sequences per step")
      .Flag("layers", "2", "transformer blocks")
      .Flag("d-model", "128", "model width")
      .Flag("heads", "4", "attention heads")
      .Flag("steps", "3000", "training steps")
      .Flag("lr", "3e-3", "peak learning rate (cosine decay to 0.1x)")
      .Flag("warmup", "100", "linear warm-up steps")
      .Flag("optimizer", "adamw", "adamw | sgd")
      .Flag("backward", "exact",
            "attention backward: exact (fused kernels, O(n*d) memory) | unfused (the "
            "primitive graph autodiff writes)")
      .Flag("weight-decay", "0.01", "decoupled weight decay of matrices")
      .Flag("clip", "1.0", "global gradient-norm clip (0: off)")
      .Flag("seed", "1", "seed of the initialisation and data order")
      .Flag("eval-every", "250", "steps between validation evaluations")
      .Flag("threads", "0", "worker threads (0: all cores)")
      .Flag("checkpoint-dir", "", "write checkpoints (parameters, optimizer state, "
                                  "step, RNG and data position) to this directory")
      .Flag("checkpoint-every", "0", "steps between checkpoints (0: only at the end)")
      .Flag("keep", "3", "checkpoints to keep, newest first (0: all)")
      .BoolFlag("resume", "continue from the newest checkpoint in --checkpoint-dir "
                          "(bit for bit as if never stopped; from step 0 when "
                          "there is none)");
  if (absl::Status s = a.Parse(argv); !s.ok()) {
    std::fprintf(stderr, "%s\n\n%s", std::string(s.message()).c_str(), a.Help().c_str());
    return 2;
  }
  if (a.help_requested()) {
    std::printf("%s", a.Help().c_str());
    return 0;
  }
  auto config = ReadConfig(a);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  config->optimizer.min_lr = config->optimizer.lr * 0.1;
  const std::string path = a.GetString("corpus");
  auto corpus = path.empty() ? TextCorpus::FromFortunes() : TextCorpus::FromFile(path);
  if (!corpus.ok()) {
    std::fprintf(stderr, "train: %s\n", std::string(corpus.status().message()).c_str());
    return 1;
  }
  auto summary = Train(*config, *corpus, stdout);
  if (!summary.ok()) {
    std::fprintf(stderr, "train: %s\n", std::string(summary.status().message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace subquad::cli
