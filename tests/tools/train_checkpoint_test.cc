// Checkpointed training: a run stopped and resumed is bit for bit the run
// that never stopped.
#include <unistd.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serialize/checkpoint.h"
#include "tools/train.h"

namespace subquad::cli {
namespace {

using ::subquad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string SmallText() {
  const char* sentences[] = {
      "the cat sat on the mat. ", "a dog ran in the park. ",
      "the sun is warm today. ", "we like to read books. ",
      "she sells sea shells by the sea shore. ", "time flies like an arrow. "};
  std::string text;
  for (int i = 0; i < 120; ++i) text += sentences[(i * 7) % 6];
  return text;
}

TrainConfig TinyConfig(const std::string& dir) {
  TrainConfig c;
  c.model.layers = 1;
  c.model.d_model = 16;
  c.model.heads = 2;
  c.model.batch = 4;
  c.model.seq_len = 16;
  c.steps = 12;
  c.eval_every = 5;
  c.eval_batches = 1;
  c.optimizer.lr = 1e-2;
  c.optimizer.warmup_steps = 3;
  c.seed = 5;
  c.threads = 2;
  c.checkpoint_dir = dir;
  return c;
}

class TrainCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "train_checkpoint_test_", getpid());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

void ExpectSameTensors(const Checkpoint& a, const Checkpoint& b) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    ASSERT_TRUE(b.tensors.contains(name)) << name;
    EXPECT_TRUE(t.BitwiseEquals(b.tensors.at(name))) << name;
  }
}

TEST_F(TrainCheckpointTest, ResumedRunIsBitIdenticalToAnUninterruptedOne) {
  const TextCorpus corpus = TextCorpus::FromText(SmallText(), 0.1);
  // Straight through, one checkpoint at the end.
  TrainConfig straight = TinyConfig(dir_ + "/straight");
  ASSERT_OK_AND_ASSIGN(TrainSummary a, Train(straight, corpus, nullptr));
  ASSERT_EQ(a.losses.size(), 12u);
  EXPECT_LT(a.losses[11], a.losses[0]);  // it trains
  EXPECT_EQ(a.last_checkpoint, dir_ + "/straight/ckpt-0000000012.sqckpt");

  // Stopped after 6 steps, then resumed to the end.
  TrainConfig first = TinyConfig(dir_ + "/split");
  first.stop_after = 6;
  ASSERT_OK_AND_ASSIGN(TrainSummary b1, Train(first, corpus, nullptr));
  EXPECT_EQ(b1.start_step, 0);
  ASSERT_EQ(b1.losses.size(), 6u);
  TrainConfig second = TinyConfig(dir_ + "/split");
  second.resume = true;
  ASSERT_OK_AND_ASSIGN(TrainSummary b2, Train(second, corpus, nullptr));
  EXPECT_EQ(b2.start_step, 6);
  ASSERT_EQ(b2.losses.size(), 6u);

  for (int i = 0; i < 12; ++i) {
    const double resumed = i < 6 ? b1.losses[i] : b2.losses[i - 6];
    EXPECT_EQ(a.losses[i], resumed) << "step " << i;
  }
  EXPECT_EQ(a.final_valid_loss, b2.final_valid_loss);
  ASSERT_OK_AND_ASSIGN(Checkpoint ca, LoadLatestCheckpoint(dir_ + "/straight"));
  ASSERT_OK_AND_ASSIGN(Checkpoint cb, LoadLatestCheckpoint(dir_ + "/split"));
  EXPECT_EQ(ca.step, 12);
  EXPECT_EQ(cb.step, 12);
  EXPECT_EQ(cb.data_position, 12);
  EXPECT_EQ(cb.rng_counter, 12u);
  EXPECT_EQ(cb.seed, 5u);
  EXPECT_EQ(ca.metadata, cb.metadata);
  // Parameters and optimizer state, bit for bit.
  EXPECT_TRUE(ca.tensors.contains("optimizer/adam_m/lm_head/weight"));
  ExpectSameTensors(ca, cb);

  // Resuming a finished run does nothing.
  ASSERT_OK_AND_ASSIGN(TrainSummary done, Train(second, corpus, nullptr));
  EXPECT_EQ(done.start_step, 12);
  EXPECT_TRUE(done.losses.empty());
}

TEST_F(TrainCheckpointTest, EveryKAndKeep) {
  const TextCorpus corpus = TextCorpus::FromText(SmallText(), 0.1);
  TrainConfig c = TinyConfig(dir_);
  c.steps = 10;
  c.checkpoint_every = 3;
  c.keep = 2;
  ASSERT_OK(Train(c, corpus, nullptr).status());
  ASSERT_OK_AND_ASSIGN(std::vector<CheckpointFile> files, ListCheckpoints(dir_));
  std::vector<int64_t> steps;
  for (const CheckpointFile& f : files) steps.push_back(f.step);
  EXPECT_THAT(steps, ElementsAre(9, 10));
}

TEST_F(TrainCheckpointTest, ResumeRefusesAnotherRunsCheckpoint) {
  const TextCorpus corpus = TextCorpus::FromText(SmallText(), 0.1);
  TrainConfig c = TinyConfig(dir_);
  c.stop_after = 2;
  ASSERT_OK(Train(c, corpus, nullptr).status());
  TrainConfig other = TinyConfig(dir_);
  other.resume = true;
  other.optimizer.lr = 2e-2;
  EXPECT_THAT(Train(other, corpus, nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("cannot resume from ", dir_,
                                    "/ckpt-0000000002.sqckpt: it was written by a "
                                    "run with optimizer.lr=0.01; this run has "
                                    "optimizer.lr=0.02")));
  other = TinyConfig(dir_);
  other.resume = true;
  EXPECT_THAT(Train(other, TextCorpus::FromText(SmallText() + "!", 0.1), nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("it was written by a run with corpus.train_bytes=")));
  // Without a checkpoint, a resume starts at step 0.
  TrainConfig fresh = TinyConfig(dir_ + "/empty");
  fresh.resume = true;
  fresh.stop_after = 1;
  ASSERT_OK_AND_ASSIGN(TrainSummary s, Train(fresh, corpus, nullptr));
  EXPECT_EQ(s.start_step, 0);
}

}  // namespace
}  // namespace subquad::cli
