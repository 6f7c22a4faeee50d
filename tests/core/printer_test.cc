#include "core/printer.h"

#include <cmath>

#include "core/builder.h"
#include "core/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "ops/ops.h"

namespace subquad {
namespace {

TEST(PrinterTest, OneLinePerNodeHloStyle) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("tokens", DType::kF32, {4, 8});
  Value w;
  Value y;
  {
    auto s = b.Scope("block0/attn");
    w = b.Parameter("w", DType::kF32, {16, 8}, Init::Xavier());
    y = ops::MatMul(b, x, w, false, true);
    y = ops::CausalMask(b, y);
  }
  Value gamma = b.Parameter("g", DType::kF32, {16}, Init::Ones());
  Value beta = b.Parameter("b", DType::kF32, {16}, Init::Zeros());
  auto ln = ops::LayerNorm(b, y, gamma, beta);
  b.set_role(Role::kBackward);
  b.set_origin(y.node);
  Value z = ops::Scale(b, ln.y, 0.5);
  b.Output("z", z);
  ASSERT_OK(b.status());
  EXPECT_EQ(PrintGraph(g),
            "%0 f32[4,8] = input() \"tokens\"\n"
            "%1 f32[16,8] = parameter() {init=\"xavier\", stddev=0} "
            "\"block0/attn/w\" @block0/attn\n"
            "%2 f32[4,16] = matmul(%0, %1) {transpose_b=true} @block0/attn\n"
            "%3 f32[4,16] = causal_mask(%2) {fill=-inf} @block0/attn\n"
            "%4 f32[16] = parameter() {init=\"ones\", stddev=0} \"g\"\n"
            "%5 f32[16] = parameter() {init=\"zeros\", stddev=0} \"b\"\n"
            "%6 (f32[4,16], f32[4], f32[4]) = layer_norm(%3, %4, %5) {epsilon=1e-05}\n"
            "%7 f32[4,16] = scale(%6) {factor=0.5} !backward <%3\n"
            "output z = %7\n");
}

TEST(PrinterTest, ConstantsShowScalarValues) {
  Graph g;
  GraphBuilder b(&g);
  Value c = b.ScalarConstant(2.5f, "two_and_a_half");
  ASSERT_OK(b.status());
  EXPECT_EQ(PrintNode(g, *g.node(c.node)),
            "%0 f32[] = constant() {value=tensor<f32[] {2.5}>} \"two_and_a_half\"");
}

}  // namespace
}  // namespace subquad
