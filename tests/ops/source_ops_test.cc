#include <cmath>

#include "core/builder.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/ops/op_test_util.h"
#include "ops/ops.h"

namespace subquad {
namespace {

using ::subquad::testing::RunOp;
using ::testing::Each;
using ::testing::Eq;

TEST(FillTest, EveryDtype) {
  for (DType t : kAllDTypes) {
    ASSERT_OK_AND_ASSIGN(
        auto out, RunOp("fill", {}, {{"dtype", t}, {"shape", Shape{3, 5}}, {"value", 2.75}}));
    ASSERT_EQ(out[0].type().ToString(), std::string(DTypeName(t)) + "[3,5]");
    for (int64_t i = 0; i < 15; ++i) {
      const double expected = IsFloating(t) ? 2.75 : 2.0;
      EXPECT_EQ(::subquad::testing::ElementAsDouble(out[0], i), expected);
    }
  }
}

TEST(SourceOpsTest, SchemasAreSourcesWithoutKernels) {
  for (const char* op : {"input", "parameter", "constant"}) {
    const OpSchema* s = OpRegistry::Global().Find(op);
    ASSERT_NE(s, nullptr) << op;
    EXPECT_TRUE(s->is_source) << op;
    EXPECT_TRUE(s->kernels.empty()) << op;
  }
}

TEST(SourceOpsTest, ConstantTypeComesFromItsTensor) {
  Graph g;
  GraphBuilder b(&g);
  Value c = b.Constant(Tensor::FromVector<double>({2, 2}, {1, 2, 3, 4}), "c");
  ASSERT_OK(b.status());
  EXPECT_EQ(b.type(c).ToString(), "f64[2,2]");
  EXPECT_EQ(g.node(c.node)->GetTensor("value").data<double>()[3], 4.0);
}

}  // namespace
}  // namespace subquad
