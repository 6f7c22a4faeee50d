#include "runtime/text_data.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace subquad {
namespace {

using ::subquad::testing::StatusIs;
using ::testing::Eq;
using ::testing::HasSubstr;

TEST(TextCorpusTest, SplitsOffValidationTail) {
  TextCorpus c = TextCorpus::FromText(std::string(100, 'a') + std::string(10, 'b'), 0.1);
  EXPECT_EQ(c.size(), 110);
  EXPECT_EQ(c.valid(), "a" + std::string(10, 'b'));  // the last 11 bytes
  EXPECT_EQ(c.train().size() + c.valid().size(), 110u);
}

TEST(TextCorpusTest, FortunesDropsSeparatorsAndIndexFiles) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "fortunes_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "b") << "second\n%\nthird\n";
  std::ofstream(dir / "a") << "first\n%\n";
  std::ofstream(dir / "a.dat") << "binary index";
  ASSERT_OK_AND_ASSIGN(TextCorpus c, TextCorpus::FromFortunes(dir.string(), 0.0));
  EXPECT_EQ(c.train(), "first\nsecond\nthird\n");
  EXPECT_THAT(TextCorpus::FromFortunes((dir / "missing").string()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no fortunes corpus in")));
  EXPECT_THAT(TextCorpus::FromFile((dir / "missing").string()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("cannot open")));
}

TEST(WindowSamplerTest, WindowsAreShiftedBytesAndReproducible) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text.push_back(static_cast<char>('a' + i % 26));
  ASSERT_OK_AND_ASSIGN(WindowSampler s, WindowSampler::Create(text, 4, 16, 9));
  Tensor tok(DType::kI32, {4, 16}), tgt(DType::kI32, {4, 16});
  s.Sample(3, &tok, &tgt);
  for (int64_t i = 0; i < 64; ++i) {
    const int32_t t = tok.data<int32_t>()[i];
    EXPECT_EQ(tgt.data<int32_t>()[i], 'a' + (t - 'a' + 1) % 26);
  }
  Tensor tok2(DType::kI32, {4, 16}), tgt2(DType::kI32, {4, 16});
  s.Sample(3, &tok2, &tgt2);
  EXPECT_TRUE(tok.BitwiseEquals(tok2));
  s.Sample(4, &tok2, &tgt2);
  EXPECT_FALSE(tok.BitwiseEquals(tok2));
  EXPECT_THAT(WindowSampler::Create("short", 1, 16, 1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("text of 5 bytes is shorter than one window of 17")));
}

}  // namespace
}  // namespace subquad
