#include "runtime/parameter_store.h"

#include <cmath>

#include "core/builder.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace subquad {
namespace {

using ::subquad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Eq;

TEST(ParameterStoreTest, InitialisersAndDeterminism) {
  Graph g;
  GraphBuilder b(&g);
  b.Parameter("n", DType::kF32, {200, 100}, Init::Normal(0.5));
  b.Parameter("x", DType::kF64, {300, 100}, Init::Xavier());
  b.Parameter("z", DType::kF32, {3}, Init::Zeros());
  b.Parameter("o", DType::kF64, {3}, Init::Ones());
  ASSERT_OK(b.status());
  ParameterStore s;
  ASSERT_OK(s.Initialize(g, 42));
  EXPECT_THAT(s.Names(), ElementsAre("n", "o", "x", "z"));
  EXPECT_EQ(s.total_elements(), 20000 + 30000 + 6);

  const Tensor& n = *s.Find("n");
  double m = 0, m2 = 0;
  for (float v : n.span<float>()) {
    m += v;
    m2 += v * v;
  }
  m /= n.num_elements();
  EXPECT_NEAR(m, 0.0, 0.01);
  EXPECT_NEAR(std::sqrt(m2 / n.num_elements()), 0.5, 0.01);

  const double a = std::sqrt(6.0 / 400.0);
  double xmax = 0;
  for (double v : s.Find("x")->span<double>()) xmax = std::max(xmax, std::abs(v));
  EXPECT_LE(xmax, a);
  EXPECT_GT(xmax, 0.99 * a);
  EXPECT_THAT(s.Find("z")->span<float>(), ElementsAre(0, 0, 0));
  EXPECT_THAT(s.Find("o")->span<double>(), ElementsAre(1, 1, 1));

  // Values depend on (seed, name) only: another graph order, same values.
  Graph g2;
  GraphBuilder b2(&g2);
  b2.Parameter("z", DType::kF32, {3}, Init::Zeros());
  b2.Parameter("n", DType::kF32, {200, 100}, Init::Normal(0.5));
  ParameterStore s2;
  ASSERT_OK(s2.Initialize(g2, 42));
  EXPECT_TRUE(s2.Find("n")->BitwiseEquals(n));
  ParameterStore s3;
  ASSERT_OK(s3.Initialize(g2, 43));
  EXPECT_FALSE(s3.Find("n")->BitwiseEquals(n));
}

TEST(ParameterStoreTest, KeepsExistingValuesAndChecksTypes) {
  Graph g;
  GraphBuilder b(&g);
  b.Parameter("w", DType::kF32, {2, 2});
  ParameterStore s;
  s.Set("w", Tensor::FromVector<float>({2, 2}, {1, 2, 3, 4}));
  ASSERT_OK(s.Initialize(g, 1));
  EXPECT_THAT(s.Find("w")->span<float>(), ElementsAre(1, 2, 3, 4));
  s.Set("w", Tensor(DType::kF32, {3}));
  EXPECT_THAT(s.Initialize(g, 1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("parameter 'w': the store holds f32[3] but the graph "
                          "declares f32[2,2]")));
}

}  // namespace
}  // namespace subquad
