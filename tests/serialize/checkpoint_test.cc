#include "serialize/checkpoint.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serialize/checkpoint.pb.h"
#include "serialize/tensor_proto.h"

namespace subquad {
namespace {

using ::subquad::testing::StatusIs;
using ::testing::ElementsAre;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "checkpoint_test_", getpid());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::vector<std::string> Files() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      out.push_back(e.path().filename().string());
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string dir_;
};

Checkpoint Sample(int64_t step) {
  Checkpoint c;
  c.step = step;
  c.seed = 0xfeedfacecafebeefULL;
  c.rng_counter = static_cast<uint64_t>(step);
  c.data_position = step;
  c.tensors["w"] = Tensor::FromVector<float>({2, 2}, std::vector<float>{1, -0.0f, 3, 4});
  c.tensors["optimizer/adam_m/w"] = Tensor::FromVector<double>({3}, std::vector<double>{1e-300, 2, 3});
  c.tensors["count"] = Tensor::Scalar<int64_t>(step);
  c.metadata["lr"] = "0.003";
  c.metadata["layers"] = "2";
  return c;
}

void ExpectSame(const Checkpoint& a, const Checkpoint& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.rng_counter, b.rng_counter);
  EXPECT_EQ(a.data_position, b.data_position);
  EXPECT_EQ(a.metadata, b.metadata);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    auto it = b.tensors.find(name);
    ASSERT_NE(it, b.tensors.end()) << name;
    EXPECT_TRUE(t.BitwiseEquals(it->second)) << name;
  }
}

TEST_F(CheckpointTest, RoundTrips) {
  const Checkpoint c = Sample(42);
  ASSERT_OK_AND_ASSIGN(std::string bytes, EncodeCheckpoint(c));
  ASSERT_OK_AND_ASSIGN(Checkpoint back, DecodeCheckpoint(bytes));
  ExpectSame(c, back);
  std::filesystem::create_directories(dir_);
  ASSERT_OK(SaveCheckpoint(c, dir_ + "/c.sqckpt"));
  ASSERT_OK_AND_ASSIGN(back, LoadCheckpoint(dir_ + "/c.sqckpt"));
  ExpectSame(c, back);
}

TEST_F(CheckpointTest, ValidatesWhatItReads) {
  auto proto_of = [](const Checkpoint& c) {
    proto::CheckpointProto p;
    EXPECT_TRUE(p.ParseFromString(*EncodeCheckpoint(c)));
    return p;
  };
  auto expect = [](const proto::CheckpointProto& p, const std::string& message) {
    EXPECT_THAT(DecodeCheckpoint(p.SerializeAsString()),
                StatusIs(absl::StatusCode::kInvalidArgument, message));
  };
  EXPECT_THAT(DecodeCheckpoint("\xff\xff"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "checkpoint: not a subquad checkpoint: protobuf cannot parse it"));
  proto::CheckpointProto p = proto_of(Sample(3));
  p.set_format_version(2);
  expect(p, "checkpoint: format_version 2 is not one this subquad reads (1 to 1)");
  p = proto_of(Sample(3));
  p.set_step(-1);
  expect(p, "checkpoint: step -1 is negative");
  p = proto_of(Sample(3));
  p.set_data_position(-4);
  expect(p, "checkpoint: data_position -4 is negative");
  p = proto_of(Sample(3));
  *p.add_tensors() = p.tensors(0);
  expect(p, "checkpoint: tensor 'count': listed twice");
  p = proto_of(Sample(3));
  p.mutable_tensors(1)->set_name("");
  expect(p, "checkpoint: tensors[1]: empty name");
  p = proto_of(Sample(3));
  p.mutable_tensors(2)->mutable_tensor()->set_data("x");
  expect(p, "checkpoint: tensor 'w': tensor data is 1 bytes; f32[2,2] needs 16");
  p.mutable_tensors(2)->mutable_tensor()->add_dims(int64_t{1} << 40);
  expect(p,
         "checkpoint: tensor 'w': shape [2,2,1099511627776] has more than "
         "1099511627776 elements");
  p = proto_of(Sample(3));
  *p.add_metadata() = p.metadata(0);
  expect(p, "checkpoint: metadata 'layers': listed twice");
}

TEST_F(CheckpointTest, DirectoryKeepsTheNewestK) {
  EXPECT_THAT(LoadLatestCheckpoint(dir_),
              StatusIs(absl::StatusCode::kNotFound,
                       absl::StrCat("cannot list '", dir_,
                                    "': No such file or directory")));
  for (int64_t step : {5, 10, 15, 20}) {
    ASSERT_OK_AND_ASSIGN(std::string path, SaveCheckpointToDir(Sample(step), dir_, 2));
    EXPECT_EQ(path, absl::StrCat(dir_, "/", CheckpointFileName(step)));
  }
  EXPECT_EQ(CheckpointFileName(15), "ckpt-0000000015.sqckpt");
  EXPECT_THAT(Files(), ElementsAre("ckpt-0000000015.sqckpt", "ckpt-0000000020.sqckpt"));
  ASSERT_OK_AND_ASSIGN(Checkpoint latest, LoadLatestCheckpoint(dir_));
  EXPECT_EQ(latest.step, 20);
  // Other files are ignored; keep <= 0 keeps everything.
  std::FILE* f = std::fopen((dir_ + "/ckpt-notes.txt").c_str(), "w");
  std::fclose(f);
  ASSERT_OK(SaveCheckpointToDir(Sample(100), dir_, 0).status());
  ASSERT_OK(SaveCheckpointToDir(Sample(7), dir_, 0).status());
  ASSERT_OK_AND_ASSIGN(std::vector<CheckpointFile> files, ListCheckpoints(dir_));
  ASSERT_EQ(files.size(), 4u);
  EXPECT_EQ(files[0].step, 7);
  EXPECT_EQ(files[3].step, 100);
  std::filesystem::remove_all(dir_);
  std::filesystem::create_directories(dir_);
  EXPECT_THAT(LoadLatestCheckpoint(dir_),
              StatusIs(absl::StatusCode::kNotFound,
                       absl::StrCat("no checkpoint (ckpt-*.sqckpt) in '", dir_, "'")));
}

// A checkpoint whose contents say which step wrote it: a 4 MiB tensor filled
// with the step, so that a save takes long enough to be interrupted.
Checkpoint Big(int64_t step) {
  Checkpoint c;
  c.step = step;
  c.data_position = step;
  c.rng_counter = static_cast<uint64_t>(step);
  Tensor t(DType::kI32, Shape{1 << 20});
  for (int32_t& v : t.span<int32_t>()) v = static_cast<int32_t>(step);
  c.tensors["state"] = std::move(t);
  return c;
}

// Children save checkpoints in a loop and are killed with SIGKILL at random
// moments. After each kill every checkpoint under its final name must load
// and hold its own step throughout, and the newest must be at least as new
// as the last one seen: a save is either complete or invisible.
TEST_F(CheckpointTest, KillAtAnyMomentLeavesThePreviousCheckpointIntact) {
  // Kill within a few saves' time, so that some kills land mid-save and
  // some after several saves, on fast and slow disks alike.
  const std::string scratch = dir_ + "_scratch";
  const auto start = std::chrono::steady_clock::now();
  ASSERT_OK(SaveCheckpointToDir(Big(0), scratch, 1).status());
  const int save_us = static_cast<int>(std::chrono::duration_cast<std::chrono::microseconds>(
                                           std::chrono::steady_clock::now() - start)
                                           .count());
  std::filesystem::remove_all(scratch);
  std::mt19937 rng(1234);
  int64_t next = 1;
  int64_t newest_seen = 0;
  int kills_mid_run = 0, kills_mid_save = 0;
  absl::flat_hash_set<std::string> seen_temps;
  for (int round = 0; round < 25; ++round) {
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      for (int64_t step = next;; ++step) {
        if (!SaveCheckpointToDir(Big(step), dir_, 3).ok()) _exit(3);
      }
    }
    usleep(std::uniform_int_distribution<int>(0, 4 * save_us)(rng));
    ASSERT_EQ(kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the child stopped by itself: " << status;
    if (!std::filesystem::exists(dir_)) continue;  // killed before the first save
    for (const std::string& f : Files()) {
      if (absl::StartsWith(f, ".tmp-") && !seen_temps.contains(f)) {
        seen_temps.insert(f);
        ++kills_mid_save;  // a temporary file: this kill interrupted a save
      }
    }
    ASSERT_OK_AND_ASSIGN(std::vector<CheckpointFile> files, ListCheckpoints(dir_));
    for (const CheckpointFile& f : files) {
      ASSERT_OK_AND_ASSIGN(Checkpoint c, LoadCheckpoint(f.path));
      ASSERT_EQ(c.step, f.step);
      const auto values = c.tensors.at("state").span<int32_t>();
      ASSERT_EQ(values.size(), size_t{1} << 20);
      for (int32_t v : values) ASSERT_EQ(v, c.step);
    }
    if (files.empty()) continue;
    ASSERT_OK_AND_ASSIGN(Checkpoint latest, LoadLatestCheckpoint(dir_));
    EXPECT_GE(latest.step, newest_seen);
    if (latest.step > newest_seen) ++kills_mid_run;
    newest_seen = latest.step;
    next = latest.step + 1;
  }
  EXPECT_GT(newest_seen, 0);
  EXPECT_GT(kills_mid_run, 1);
  EXPECT_GT(kills_mid_save, 0);
  // A later save cleans up what the killed writers left behind.
  ASSERT_OK(SaveCheckpointToDir(Big(next), dir_, 3).status());
  for (const std::string& f : Files()) {
    EXPECT_TRUE(absl::StartsWith(f, "ckpt-")) << f;
  }
  EXPECT_EQ(Files().size(), 3u);
}

}  // namespace
}  // namespace subquad
