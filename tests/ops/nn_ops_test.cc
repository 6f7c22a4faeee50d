// Tests of layer_norm and cross_entropy (ops/nn_ops.cc) against scalar-loop
// references computed in double.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/graph.h"
#include "core/op_schema.h"
#include "core/status.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/ops/op_test_util.h"

namespace subquad {
namespace {

using ::subquad::testing::ElementAsDouble;
using ::subquad::testing::RandomTensor;
using ::subquad::testing::RunOp;
using ::subquad::testing::SpawningRunner;
using ::subquad::testing::StatusIs;
using ::subquad::testing::TensorsNear;
using ::testing::Eq;
using ::testing::HasSubstr;

void SetElement(Tensor& t, int64_t i, double v) {
  DispatchDType(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    t.data<T>()[i] = static_cast<T>(v);
  });
}

Shape WithoutLastDim(const Shape& s) {
  return Shape(s.dims().subspan(0, s.rank() - 1));
}

class NnOpsTest : public ::testing::TestWithParam<DType> {
 protected:
  DType dt() const { return GetParam(); }
};

// ---- layer_norm -------------------------------------------------------------

struct LayerNormRef {
  Tensor y, mean, rstd;
};

LayerNormRef RefLayerNorm(const Tensor& x, const Tensor& gamma,
                          const Tensor& beta, double eps) {
  const int64_t d = x.shape()[x.shape().rank() - 1];
  const Shape stats = WithoutLastDim(x.shape());
  LayerNormRef r{Tensor(x.dtype(), x.shape()), Tensor(x.dtype(), stats),
                 Tensor(x.dtype(), stats)};
  for (int64_t row = 0; row < stats.num_elements(); ++row) {
    double mean = 0, var = 0;
    for (int64_t j = 0; j < d; ++j) mean += ElementAsDouble(x, row * d + j);
    mean /= d;
    for (int64_t j = 0; j < d; ++j) {
      const double c = ElementAsDouble(x, row * d + j) - mean;
      var += c * c;
    }
    var /= d;
    const double rstd = 1 / std::sqrt(var + eps);
    for (int64_t j = 0; j < d; ++j) {
      SetElement(r.y, row * d + j,
                 (ElementAsDouble(x, row * d + j) - mean) * rstd *
                         ElementAsDouble(gamma, j) +
                     ElementAsDouble(beta, j));
    }
    SetElement(r.mean, row, mean);
    SetElement(r.rstd, row, rstd);
  }
  return r;
}

TEST_P(NnOpsTest, LayerNormMatchesReference) {
  const Shape shapes[] = {{4, 16},    {3, 5, 7},  {1, 1}, {1},   {33},
                          {2000, 64}, {64, 1024}, {3, 0}, {0, 5}};
  SpawningRunner two(2);
  uint64_t seed = 1;
  for (const Shape& shape : shapes) {
    for (double eps : {1e-5, 1e-3}) {
      SCOPED_TRACE(absl::StrCat(shape.ToString(), " eps ", eps));
      const int64_t d = shape[shape.rank() - 1];
      // An offset mean checks the variance is computed stably.
      const Tensor x = RandomTensor(dt(), shape, seed++, 2, 6);
      const Tensor gamma = RandomTensor(dt(), {d}, seed++, 0.5, 1.5);
      const Tensor beta = RandomTensor(dt(), {d}, seed++, -1, 1);
      // 1e-5 is the default: leave it unset.
      const AttrMap attrs =
          eps == 1e-5 ? AttrMap{} : AttrMap{{"epsilon", AttrValue(eps)}};
      ASSERT_OK_AND_ASSIGN(auto got,
                           RunOp("layer_norm", {x, gamma, beta}, attrs));
      ASSERT_EQ(got.size(), 3u);
      const LayerNormRef want = RefLayerNorm(x, gamma, beta, eps);
      const bool f64 = dt() == DType::kF64;
      const double rtol = f64 ? 1e-12 : 1e-5, atol = f64 ? 1e-12 : 2e-5;
      EXPECT_TRUE(TensorsNear(got[0], want.y, rtol, atol));
      EXPECT_TRUE(TensorsNear(got[1], want.mean, rtol, atol));
      EXPECT_TRUE(TensorsNear(got[2], want.rstd, f64 ? 1e-10 : 1e-4, atol));
      ASSERT_OK_AND_ASSIGN(auto par,
                           RunOp("layer_norm", {x, gamma, beta}, attrs, &two));
      for (int i = 0; i < 3; ++i) EXPECT_TRUE(par[i].BitwiseEquals(got[i]));
    }
  }
}

TEST_P(NnOpsTest, LayerNormOfConstantRowIsBeta) {
  Tensor x(dt(), {2, 4});
  for (int i = 0; i < 8; ++i) SetElement(x, i, 3.0);
  const Tensor gamma = RandomTensor(dt(), {4}, 1);
  const Tensor beta = RandomTensor(dt(), {4}, 2);
  ASSERT_OK_AND_ASSIGN(auto got, RunOp("layer_norm", {x, gamma, beta}));
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(ElementAsDouble(got[0], i), ElementAsDouble(beta, i % 4));
  }
  EXPECT_NEAR(ElementAsDouble(got[2], 0), 1 / std::sqrt(1e-5),
              1e-3);  // rstd = 1/sqrt(0 + eps)
}

// ---- cross_entropy ----------------------------------------------------------

double RefCrossEntropy(const Tensor& logits, const Tensor& targets) {
  const int64_t v = logits.shape()[logits.shape().rank() - 1];
  const int64_t rows = targets.num_elements();
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < v; ++j)
      m = std::max(m, ElementAsDouble(logits, r * v + j));
    double sum = 0;
    for (int64_t j = 0; j < v; ++j)
      sum += std::exp(ElementAsDouble(logits, r * v + j) - m);
    const int64_t t = static_cast<int64_t>(ElementAsDouble(targets, r));
    total += m + std::log(sum) - ElementAsDouble(logits, r * v + t);
  }
  return total / rows;
}

struct CrossEntropyCase {
  Shape logits;
  DType target_dtype;
  double scale;  // logits are uniform in [-scale, scale)
};

TEST_P(NnOpsTest, CrossEntropyMatchesReference) {
  const CrossEntropyCase cases[] = {
      {{4, 10}, DType::kI32, 3},    {{2, 3, 7}, DType::kI64, 3},
      {{1, 1}, DType::kI32, 1},     {{1}, DType::kI64, 1},
      {{33, 5}, DType::kI64, 30},   {{512, 256}, DType::kI32, 5},
      {{4, 40000}, DType::kI64, 5}, {{3, 17}, DType::kI32, 2000},
  };
  SpawningRunner two(2);
  uint64_t seed = 10;
  for (const CrossEntropyCase& c : cases) {
    SCOPED_TRACE(
        absl::StrCat(c.logits.ToString(), " ", DTypeName(c.target_dtype)));
    const int64_t v = c.logits[c.logits.rank() - 1];
    const Tensor logits =
        RandomTensor(dt(), c.logits, seed++, -c.scale, c.scale);
    const Tensor targets =
        RandomTensor(c.target_dtype, WithoutLastDim(c.logits), seed++, 0, v);
    ASSERT_OK_AND_ASSIGN(auto got, RunOp("cross_entropy", {logits, targets}));
    ASSERT_EQ(got[0].type(), (TensorType{dt(), {}}));
    const double want = RefCrossEntropy(logits, targets);
    const double tol = dt() == DType::kF64 ? 1e-12 : 1e-5;
    EXPECT_NEAR(ElementAsDouble(got[0], 0), want,
                tol * std::max(1.0, std::abs(want)));
    ASSERT_OK_AND_ASSIGN(auto par,
                         RunOp("cross_entropy", {logits, targets}, {}, &two));
    EXPECT_TRUE(par[0].BitwiseEquals(got[0]));
  }
}

TEST_P(NnOpsTest, CrossEntropyOfUniformLogitsIsLogV) {
  const Tensor logits(dt(), {6, 50});  // zeros
  const Tensor targets = RandomTensor(DType::kI32, {6}, 3, 0, 50);
  ASSERT_OK_AND_ASSIGN(auto got, RunOp("cross_entropy", {logits, targets}));
  EXPECT_NEAR(ElementAsDouble(got[0], 0), std::log(50.0), 1e-6);
}

// Runs cross_entropy built under scope "loss" (node 'loss/cross_entropy').
absl::Status RunScopedCrossEntropy(const Tensor& logits, const Tensor& targets,
                                   ParallelRunner* pool) {
  Graph g;
  GraphBuilder b(&g);
  const Value l = b.Input("logits", logits.dtype(), logits.shape());
  const Value t = b.Input("targets", targets.dtype(), targets.shape());
  auto scope = b.Scope("loss");
  ASSIGN_OR_RETURN(std::vector<Value> out, b.AddNode("cross_entropy", {l, t}));
  const Node& node = *g.node(out[0].node);
  Tensor result(node.output_type(0));
  std::vector<TensorView> in = {logits.view(), targets.view()};
  std::vector<TensorView> outs = {result.view()};
  KernelContext ctx{node, in, outs, pool};
  return (*node.schema()->FindKernel(node.output_type(0).dtype))(ctx);
}

TEST_P(NnOpsTest, CrossEntropyTargetOutOfRange) {
  SpawningRunner two(2);
  for (DType td : {DType::kI32, DType::kI64}) {
    const Tensor logits = RandomTensor(dt(), {4, 8, 256}, 1);
    Tensor targets = RandomTensor(td, {4, 8}, 2, 0, 256);
    SetElement(targets, 17, 300);
    SetElement(targets, 20, -1);  // later: the first bad position is named
    EXPECT_THAT(RunScopedCrossEntropy(logits, targets, SerialRunner::Get()),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         Eq("node 'loss/cross_entropy' (cross_entropy): "
                            "target 300 at position 17 is outside [0, 256)")));
    SetElement(targets, 17, 5);
    EXPECT_THAT(RunScopedCrossEntropy(logits, targets, &two),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         Eq("node 'loss/cross_entropy' (cross_entropy): "
                            "target -1 at position 20 is outside [0, 256)")));
    SetElement(targets, 20, 256);
    EXPECT_THAT(RunScopedCrossEntropy(logits, targets, &two),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("target 256 at position 20")));
    SetElement(targets, 20, 255);
    EXPECT_OK(RunScopedCrossEntropy(logits, targets, &two));
  }
}

INSTANTIATE_TEST_SUITE_P(Floats, NnOpsTest,
                         ::testing::Values(DType::kF32, DType::kF64),
                         [](const auto& info) {
                           return std::string(DTypeName(info.param));
                         });

// ---- Shape rules and schemas ------------------------------------------------

class NnShapeTest : public ::testing::Test {
 protected:
  Value In(DType dtype, Shape shape) {
    return b_.Input(absl::StrCat("in", n_++), dtype, std::move(shape));
  }
  Graph g_;
  GraphBuilder b_{&g_};
  int n_ = 0;
};

TEST_F(NnShapeTest, LayerNormOutputs) {
  ASSERT_OK_AND_ASSIGN(
      auto out,
      b_.AddNode("layer_norm", {In(DType::kF32, {2, 3, 8}),
                                In(DType::kF32, {8}), In(DType::kF32, {8})}));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(g_.type(out[0]), (TensorType{DType::kF32, {2, 3, 8}}));
  EXPECT_EQ(g_.type(out[1]), (TensorType{DType::kF32, {2, 3}}));
  EXPECT_EQ(g_.type(out[2]), (TensorType{DType::kF32, {2, 3}}));
}

TEST_F(NnShapeTest, LayerNormErrors) {
  const Value x = In(DType::kF32, {2, 8});
  const Value g8 = In(DType::kF32, {8});
  EXPECT_THAT(b_.AddNode("layer_norm", {x, In(DType::kF32, {7}), g8}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("layer_norm: building node 'layer_norm': gamma must "
                          "have shape [8] (the last dim of x f32[2,8]), got "
                          "f32[7]")));
  EXPECT_THAT(b_.AddNode("layer_norm", {x, g8, In(DType::kF32, {1, 8})}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("layer_norm: building node 'layer_norm': beta must "
                          "have shape [8] (the last dim of x f32[2,8]), got "
                          "f32[1,8]")));
  EXPECT_THAT(b_.AddNode("layer_norm", {x, In(DType::kF64, {8}), g8}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("layer_norm: building node 'layer_norm': dtypes "
                          "differ: x f32[2,8], gamma f64[8], beta f32[8]")));
  EXPECT_THAT(b_.AddNode("layer_norm", {In(DType::kF32, {}), g8, g8}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("layer_norm: building node 'layer_norm': x must "
                          "have rank >= 1, got f32[]")));
}

TEST_F(NnShapeTest, CrossEntropyErrors) {
  const Value logits = In(DType::kF32, {2, 3, 10});
  EXPECT_THAT(b_.AddNode("cross_entropy", {logits, In(DType::kI32, {2, 4})}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("cross_entropy: building node 'cross_entropy': "
                          "targets must have shape [2,3] (logits f32[2,3,10] "
                          "without the last dim), got i32[2,4]")));
  EXPECT_THAT(b_.AddNode("cross_entropy", {logits, In(DType::kF32, {2, 3})}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("input 1 ('targets') is f32[2,3]")));
  EXPECT_THAT(
      b_.AddNode("cross_entropy", {In(DType::kF64, {}), In(DType::kI64, {})}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("cross_entropy: building node 'cross_entropy': "
                  "logits must have rank >= 1, got f64[]")));
  ASSERT_OK_AND_ASSIGN(
      auto out, b_.AddNode("cross_entropy", {logits, In(DType::kI64, {2, 3})}));
  EXPECT_EQ(g_.type(out[0]), (TensorType{DType::kF32, {}}));
}

TEST(NnSchemaTest, Declarations) {
  const OpSchema* ln = OpRegistry::Global().Find("layer_norm");
  ASSERT_NE(ln, nullptr);
  EXPECT_EQ(ln->outputs, (std::vector<std::string>{"y", "mean", "rstd"}));
  EXPECT_EQ(ln->FindAttr("epsilon")->default_value->f(), 1e-5);
  const OpSchema* ce = OpRegistry::Global().Find("cross_entropy");
  ASSERT_NE(ce, nullptr);
  EXPECT_TRUE(ce->inputs[0].differentiable);
  EXPECT_FALSE(ce->inputs[1].differentiable);
  for (const OpSchema* s : {ln, ce}) {
    EXPECT_NE(s->FindKernel(DType::kF32), nullptr);
    EXPECT_NE(s->FindKernel(DType::kF64), nullptr);
    EXPECT_TRUE(s->flops);
  }
}

}  // namespace
}  // namespace subquad
