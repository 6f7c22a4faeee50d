// Training a byte-level TransformerLM on text: the `subquad train` command's
// engine, usable from tests and programs.
#ifndef SUBQUAD_TOOLS_TRAIN_H_
#define SUBQUAD_TOOLS_TRAIN_H_

#include <cstdint>
#include <cstdio>
#include <string>

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
};

struct TrainSummary {
  double first_train_loss = 0;
  double final_train_loss = 0;  // mean of the last 20 steps
  double final_valid_loss = 0;
  double tokens_per_second = 0;
};

// Trains on `corpus`, printing progress lines to `log` (nullptr: silent).
absl::StatusOr<TrainSummary> Train(const TrainConfig& config,
                                   const TextCorpus& corpus, FILE* log);

}  // namespace subquad::cli

#endif  // SUBQUAD_TOOLS_TRAIN_H_
