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

// ---- Fused backward ops -----------------------------------------------------

// Runs the op's kernel with output 0 written into the buffer of the input
// its schema names (inplace_input); returns all outputs.
absl::StatusOr<std::vector<Tensor>> RunInPlace(const std::string& op,
                                               std::vector<Tensor> inputs,
                                               ParallelRunner* pool) {
  Graph g;
  GraphBuilder b(&g);
  std::vector<Value> in;
  for (size_t i = 0; i < inputs.size(); ++i) {
    in.push_back(
        b.Input(absl::StrCat("in", i), inputs[i].dtype(), inputs[i].shape()));
  }
  RETURN_IF_ERROR(b.status());
  ASSIGN_OR_RETURN(std::vector<Value> outs, b.AddNode(op, in));
  const Node& node = *g.node(outs[0].node);
  const OpSchema& schema = *node.schema();
  const int k = schema.inplace_input;
  if (k < 0) return absl::FailedPreconditionError("op cannot run in place");
  std::vector<Tensor> results;
  std::vector<TensorView> in_views, out_views;
  for (const Tensor& t : inputs) in_views.push_back(t.view());
  for (size_t o = 1; o < node.output_types().size(); ++o) {
    results.emplace_back(node.output_type(o));
  }
  out_views.push_back(TensorView(node.output_type(0), inputs[k].raw_data()));
  for (Tensor& t : results) out_views.push_back(t.view());
  KernelContext ctx{node, in_views, out_views, pool};
  RETURN_IF_ERROR((*schema.FindKernel(node.output_type(0).dtype))(ctx));
  results.insert(results.begin(), std::move(inputs[k]));
  return results;
}

struct LayerNormGradRef {
  Tensor dx, dgamma, dbeta;
};

// The textbook backward in double, from x's own mean and rstd.
LayerNormGradRef RefLayerNormGrad(const Tensor& x, const Tensor& gamma,
                                  const Tensor& mean, const Tensor& rstd,
                                  const Tensor& dy) {
  const int64_t d = x.shape()[x.shape().rank() - 1];
  const int64_t rows = mean.num_elements();
  LayerNormGradRef r{Tensor(x.dtype(), x.shape()), Tensor(x.dtype(), {d}),
                     Tensor(x.dtype(), {d})};
  std::vector<double> dgamma(d, 0.0), dbeta(d, 0.0), xhat(d);
  for (int64_t row = 0; row < rows; ++row) {
    const double m = ElementAsDouble(mean, row);
    const double rs = ElementAsDouble(rstd, row);
    double a = 0, c = 0;
    for (int64_t j = 0; j < d; ++j) {
      xhat[j] = (ElementAsDouble(x, row * d + j) - m) * rs;
      const double g = ElementAsDouble(dy, row * d + j) * ElementAsDouble(gamma, j);
      a += g;
      c += g * xhat[j];
      dgamma[j] += ElementAsDouble(dy, row * d + j) * xhat[j];
      dbeta[j] += ElementAsDouble(dy, row * d + j);
    }
    a /= d;
    c /= d;
    for (int64_t j = 0; j < d; ++j) {
      const double g = ElementAsDouble(dy, row * d + j) * ElementAsDouble(gamma, j);
      SetElement(r.dx, row * d + j, rs * (g - a - xhat[j] * c));
    }
  }
  for (int64_t j = 0; j < d; ++j) {
    SetElement(r.dgamma, j, dgamma[j]);
    SetElement(r.dbeta, j, dbeta[j]);
  }
  return r;
}

TEST_P(NnOpsTest, LayerNormGradMatchesReference) {
  // Row counts from one block to many (fixed blocks of rows, in parallel).
  const Shape shapes[] = {{4, 16},    {3, 5, 7},  {1, 1},    {1},
                          {33},       {2000, 64}, {64, 1024}, {5000, 3},
                          {3, 0},     {0, 5}};
  SpawningRunner two(2);
  uint64_t seed = 400;
  for (const Shape& shape : shapes) {
    SCOPED_TRACE(shape.ToString());
    const int64_t d = shape[shape.rank() - 1];
    const Tensor x = RandomTensor(dt(), shape, seed++, -2, 3);
    const Tensor gamma = RandomTensor(dt(), {d}, seed++, 0.5, 1.5);
    const Tensor beta = RandomTensor(dt(), {d}, seed++, -1, 1);
    const Tensor dy = RandomTensor(dt(), shape, seed++, -1, 1);
    ASSERT_OK_AND_ASSIGN(auto fwd, RunOp("layer_norm", {x, gamma, beta}));
    const std::vector<Tensor> in = {x, gamma, fwd[1], fwd[2], dy};
    ASSERT_OK_AND_ASSIGN(auto got, RunOp("layer_norm_grad", in));
    ASSERT_EQ(got.size(), 3u);
    const LayerNormGradRef want =
        RefLayerNormGrad(x, gamma, fwd[1], fwd[2], dy);
    const bool f64 = dt() == DType::kF64;
    const int64_t rows = fwd[1].num_elements();
    EXPECT_TRUE(TensorsNear(got[0], want.dx, f64 ? 1e-11 : 1e-4,
                            f64 ? 1e-12 : 1e-4));
    // Sums over rows: rounding grows with the row count.
    const double sum_atol = (f64 ? 1e-14 : 1e-6) * (rows + 1);
    EXPECT_TRUE(TensorsNear(got[1], want.dgamma, f64 ? 1e-11 : 1e-4, sum_atol));
    EXPECT_TRUE(TensorsNear(got[2], want.dbeta, f64 ? 1e-11 : 1e-4, sum_atol));
    ASSERT_OK_AND_ASSIGN(auto par, RunOp("layer_norm_grad", in, {}, &two));
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(par[i].BitwiseEquals(got[i])) << i;
    for (ParallelRunner* pool : {static_cast<ParallelRunner*>(SerialRunner::Get()),
                                 static_cast<ParallelRunner*>(&two)}) {
      ASSERT_OK_AND_ASSIGN(auto inplace, RunInPlace("layer_norm_grad", in, pool));
      for (int i = 0; i < 3; ++i) {
        EXPECT_TRUE(inplace[i].BitwiseEquals(got[i])) << i;
      }
    }
  }
}

// dlogits = (softmax(logits) − onehot(target))·dloss/N, in double.
Tensor RefCrossEntropyGrad(const Tensor& logits, const Tensor& targets,
                           double dloss) {
  const int64_t v = logits.shape()[logits.shape().rank() - 1];
  const int64_t rows = targets.num_elements();
  Tensor dx(logits.dtype(), logits.shape());
  for (int64_t r = 0; r < rows; ++r) {
    double m = -std::numeric_limits<double>::infinity(), sum = 0;
    for (int64_t j = 0; j < v; ++j) m = std::max(m, ElementAsDouble(logits, r * v + j));
    for (int64_t j = 0; j < v; ++j) sum += std::exp(ElementAsDouble(logits, r * v + j) - m);
    const int64_t t = static_cast<int64_t>(ElementAsDouble(targets, r));
    for (int64_t j = 0; j < v; ++j) {
      const double p = std::exp(ElementAsDouble(logits, r * v + j) - m) / sum;
      SetElement(dx, r * v + j, (p - (j == t ? 1.0 : 0.0)) * dloss / rows);
    }
  }
  return dx;
}

TEST_P(NnOpsTest, CrossEntropyGradMatchesReference) {
  const CrossEntropyCase cases[] = {
      {{4, 10}, DType::kI32, 3},    {{2, 3, 7}, DType::kI64, 3},
      {{1, 1}, DType::kI32, 1},     {{1}, DType::kI64, 1},
      {{33, 5}, DType::kI64, 30},   {{512, 256}, DType::kI32, 5},
      {{4, 40000}, DType::kI64, 5}, {{0, 5}, DType::kI32, 1},
  };
  SpawningRunner two(2);
  uint64_t seed = 500;
  for (const CrossEntropyCase& c : cases) {
    SCOPED_TRACE(
        absl::StrCat(c.logits.ToString(), " ", DTypeName(c.target_dtype)));
    const int64_t v = c.logits[c.logits.rank() - 1];
    const Tensor logits =
        RandomTensor(dt(), c.logits, seed++, -c.scale, c.scale);
    const Tensor targets =
        RandomTensor(c.target_dtype, WithoutLastDim(c.logits), seed++, 0, v);
    // A scalar of dt() (cross_entropy's output), set to 1.75.
    ASSERT_OK_AND_ASSIGN(auto loss, RunOp("cross_entropy", {logits, targets}));
    Tensor dloss = loss[0];
    SetElement(dloss, 0, 1.75);
    const std::vector<Tensor> in = {logits, targets, dloss};
    ASSERT_OK_AND_ASSIGN(auto got, RunOp("cross_entropy_grad", in));
    const bool f64 = dt() == DType::kF64;
    const double rows = std::max<double>(1, targets.num_elements());
    EXPECT_TRUE(TensorsNear(got[0], RefCrossEntropyGrad(logits, targets, 1.75),
                            f64 ? 1e-12 : 1e-5, (f64 ? 1e-15 : 1e-7) / rows));
    ASSERT_OK_AND_ASSIGN(auto par, RunOp("cross_entropy_grad", in, {}, &two));
    EXPECT_TRUE(par[0].BitwiseEquals(got[0]));
    for (ParallelRunner* pool : {static_cast<ParallelRunner*>(SerialRunner::Get()),
                                 static_cast<ParallelRunner*>(&two)}) {
      ASSERT_OK_AND_ASSIGN(auto inplace, RunInPlace("cross_entropy_grad", in, pool));
      EXPECT_TRUE(inplace[0].BitwiseEquals(got[0]));
    }
  }
}

TEST_P(NnOpsTest, CrossEntropyGradTargetOutOfRange) {
  const Tensor logits = RandomTensor(dt(), {3, 4}, 1);
  Tensor targets = RandomTensor(DType::kI32, {3}, 2, 0, 4);
  ASSERT_OK_AND_ASSIGN(auto loss, RunOp("cross_entropy", {logits, targets}));
  const Tensor& dloss = loss[0];
  SetElement(targets, 1, 4);
  EXPECT_THAT(RunOp("cross_entropy_grad", {logits, targets, dloss}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("target 4 at position 1 is outside [0, 4)")));
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

TEST_F(NnShapeTest, GradOpShapes) {
  const Value x = In(DType::kF32, {2, 3, 4});
  const Value gamma = In(DType::kF32, {4});
  const Value stats = In(DType::kF32, {2, 3});
  ASSERT_OK_AND_ASSIGN(auto ln, b_.AddNode("layer_norm_grad",
                                           {x, gamma, stats, stats, x}));
  ASSERT_EQ(ln.size(), 3u);
  EXPECT_EQ(g_.type(ln[0]), g_.type(x));
  EXPECT_EQ(g_.type(ln[1]), g_.type(gamma));
  EXPECT_EQ(g_.type(ln[2]), g_.type(gamma));
  EXPECT_THAT(b_.AddNode("layer_norm_grad", {x, gamma, stats, gamma, x}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rstd must be f32[2,3] for x f32[2,3,4], got "
                                 "f32[4]")));
  const Value logits = In(DType::kF32, {2, 5});
  const Value targets = In(DType::kI64, {2});
  ASSERT_OK_AND_ASSIGN(auto ce, b_.AddNode("cross_entropy_grad",
                                           {logits, targets, In(DType::kF32, {})}));
  EXPECT_EQ(g_.type(ce[0]), g_.type(logits));
  EXPECT_THAT(
      b_.AddNode("cross_entropy_grad", {logits, targets, In(DType::kF32, {1})}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("dloss must be f32[] (a scalar of the logits' dtype), "
                         "got f32[1]")));
}

TEST(NnSchemaTest, GradOpDeclarations) {
  const OpSchema* ln = OpRegistry::Global().Find("layer_norm_grad");
  ASSERT_NE(ln, nullptr);
  EXPECT_EQ(ln->outputs,
            (std::vector<std::string>{"dx", "dgamma", "dbeta"}));
  EXPECT_EQ(ln->inplace_input, 4);
  const OpSchema* ce = OpRegistry::Global().Find("cross_entropy_grad");
  ASSERT_NE(ce, nullptr);
  EXPECT_FALSE(ce->inputs[1].differentiable);
  EXPECT_EQ(ce->inplace_input, 0);
  for (const OpSchema* s : {ln, ce}) {
    EXPECT_FALSE(s->differentiable);
    EXPECT_NE(s->FindKernel(DType::kF32), nullptr);
    EXPECT_NE(s->FindKernel(DType::kF64), nullptr);
    EXPECT_TRUE(s->flops);
    EXPECT_FALSE(s->examples.empty());
  }
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
