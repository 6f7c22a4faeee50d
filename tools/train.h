// Training a byte-level TransformerLM on text: the `subquad train` command's
// engine, usable from tests and programs.
#ifndef SUBQUAD_TOOLS_TRAIN_H_
#define SUBQUAD_TOOLS_TRAIN_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ops/nn/layers.h"
#include "passes/optimizer.h"
#include "runtime/text_data.h"

namespace subquad::cli {

struct TrainConfig {
  nn::TransformerLMConfig model;  // vocab is 256 (bytes)
  OptimizerOptions optimizer;
  int64_t steps = 1000;
  int64_t eval_every = 100;
  int64_t eval_batches = 4;
  uint64_t seed = 1;
  int threads = 0;  // 0: all cores
  // The attention backward (ATTENTION.md): "exact" rewrites attention into
  // the fused attention_forward / attention_backward kernels (O(n·d) memory);
  // "unfused" keeps the primitive graph autodiff writes (n×n matrices).
  std::string backward = "exact";
  // Checkpoints (serialize/checkpoint.h) go to `checkpoint_dir` (none when
  // empty) every `checkpoint_every` steps (0: only at the end) and when the
  // run ends; the newest `keep` are kept (0: all). With `resume` the run
  // continues from the newest checkpoint there, bit for bit as if it had
  // never stopped (the same configuration, corpus and thread count), or
  // starts at step 0 when there is none.
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;
  int keep = 3;
  bool resume = false;
  // Stop once this many steps are done (> 0) although the learning-rate
  // schedule runs to `steps`: a time-sliced run that a later `resume`
  // continues.
  int64_t stop_after = 0;
};

struct TrainSummary {
  double first_train_loss = 0;
  double final_train_loss = 0;  // mean of the last 20 steps
  double final_valid_loss = 0;
  double tokens_per_second = 0;
  // The step this call started at (0, or the resumed checkpoint's step) and
  // the training loss of each step it ran.
  int64_t start_step = 0;
  std::vector<double> losses;
  // The last checkpoint written ("" when none).
  std::string last_checkpoint;
};

// Trains on `corpus`, printing progress lines to `log` (nullptr: silent).
absl::StatusOr<TrainSummary> Train(const TrainConfig& config,
                                   const TextCorpus& corpus, FILE* log);

}  // namespace subquad::cli

#endif  // SUBQUAD_TOOLS_TRAIN_H_
