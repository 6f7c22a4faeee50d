#include "tools/train.h"

#include <cmath>
#include <string>

#include "core/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace subquad::cli {
namespace {

// A few KiB of English with repeated structure a tiny model learns quickly.
std::string SmallText() {
  const char* sentences[] = {
      "the cat sat on the mat. ", "a dog ran in the park. ",
      "the sun is warm today. ", "we like to read books. ",
      "she sells sea shells by the sea shore. ", "time flies like an arrow. "};
  std::string text;
  for (int i = 0; i < 120; ++i) text += sentences[(i * 7) % 6];
  return text;
}

TEST(TrainTest, TinyModelLossFallsDeterministically) {
  TrainConfig c;
  c.model.layers = 1;
  c.model.d_model = 32;
  c.model.heads = 2;
  c.model.batch = 8;
  c.model.seq_len = 32;
  c.steps = 60;
  c.eval_every = 60;
  c.eval_batches = 2;
  c.optimizer.lr = 1e-2;
  c.optimizer.warmup_steps = 5;
  c.seed = 3;
  c.threads = 2;
  const TextCorpus corpus = TextCorpus::FromText(SmallText(), 0.1);
  ASSERT_OK_AND_ASSIGN(TrainSummary a, Train(c, corpus, nullptr));
  EXPECT_NEAR(a.first_train_loss, std::log(256.0), 0.3);
  EXPECT_LT(a.final_train_loss, a.first_train_loss - 2.0);
  EXPECT_LT(a.final_valid_loss, a.first_train_loss - 2.0);
  ASSERT_OK_AND_ASSIGN(TrainSummary b, Train(c, corpus, nullptr));
  EXPECT_EQ(a.final_train_loss, b.final_train_loss);
  EXPECT_EQ(a.final_valid_loss, b.final_valid_loss);
}

// The fused exact attention trains the same model as the primitive graph:
// the step losses agree to f32 rounding (they drift apart slowly, as two
// summation orders do).
TEST(TrainTest, ExactAndUnfusedBackwardTrainAlike) {
  TrainConfig c;
  c.model.layers = 2;
  c.model.d_model = 32;
  c.model.heads = 2;
  c.model.batch = 4;
  c.model.seq_len = 80;  // past one 64-query tile of the fused kernels
  c.steps = 10;
  c.eval_every = 10;
  c.eval_batches = 1;
  c.optimizer.lr = 1e-2;
  c.optimizer.warmup_steps = 2;
  c.threads = 2;
  const TextCorpus corpus = TextCorpus::FromText(SmallText(), 0.2);
  c.backward = "unfused";
  ASSERT_OK_AND_ASSIGN(TrainSummary unfused, Train(c, corpus, nullptr));
  c.backward = "exact";
  ASSERT_OK_AND_ASSIGN(TrainSummary exact, Train(c, corpus, nullptr));
  ASSERT_EQ(exact.losses.size(), unfused.losses.size());
  for (size_t i = 0; i < exact.losses.size(); ++i) {
    EXPECT_NEAR(exact.losses[i], unfused.losses[i], 1e-4 * unfused.losses[i]) << "step " << i;
  }
  EXPECT_NEAR(exact.final_valid_loss, unfused.final_valid_loss, 1e-4 * unfused.final_valid_loss);
}

}  // namespace
}  // namespace subquad::cli
