#include "runtime/rng.h"

#include <cmath>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace subquad {
namespace {

using ::testing::ElementsAre;

// Known-answer vectors of Philox4x32-10 from the Random123 distribution
// (kat_vectors): counter/key all zeros, all ones, and the pi digits.
TEST(PhiloxTest, MatchesRandom123KnownAnswers) {
  EXPECT_THAT(Philox4x32(0, {0, 0, 0, 0}),
              ElementsAre(0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u));
  EXPECT_THAT(Philox4x32(0xffffffffffffffffull,
                         {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}),
              ElementsAre(0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu));
  EXPECT_THAT(Philox4x32(0x299f31d0a4093822ull,
                         {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}),
              ElementsAre(0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u));
}

TEST(RandomStreamTest, IsAPureFunctionOfKeyAndPosition) {
  RandomStream a(7, 3, StableHash("layer0"));
  std::vector<uint32_t> first;
  for (int i = 0; i < 10; ++i) first.push_back(a.NextU32());
  RandomStream b(7, 3, StableHash("layer0"));
  b.Seek(6);
  EXPECT_EQ(b.NextU32(), first[6]);
  EXPECT_EQ(b.NextU32(), first[7]);
  RandomStream other_step(7, 4, StableHash("layer0"));
  RandomStream other_stream(7, 3, StableHash("layer1"));
  RandomStream other_seed(8, 3, StableHash("layer0"));
  EXPECT_NE(other_step.NextU32(), first[0]);
  EXPECT_NE(other_stream.NextU32(), first[0]);
  EXPECT_NE(other_seed.NextU32(), first[0]);
}

TEST(RandomStreamTest, UniformAndNormalMoments) {
  RandomStream r(1, 0, 0);
  const int n = 200000;
  double su = 0, sn = 0, sn2 = 0;
  float umin = 1, umax = 0;
  for (int i = 0; i < n; ++i) {
    const float u = r.UniformFloat();
    umin = std::min(umin, u);
    umax = std::max(umax, u);
    su += u;
    const double z = r.Normal();
    sn += z;
    sn2 += z * z;
  }
  EXPECT_GE(umin, 0.0f);
  EXPECT_LT(umax, 1.0f);
  EXPECT_NEAR(su / n, 0.5, 0.005);
  EXPECT_NEAR(sn / n, 0.0, 0.01);
  EXPECT_NEAR(sn2 / n, 1.0, 0.02);
}

TEST(StableHashTest, IsFnv1a) {
  EXPECT_EQ(StableHash(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(StableHash("a"), 0xaf63dc4c8601ec8cull);
}

}  // namespace
}  // namespace subquad
