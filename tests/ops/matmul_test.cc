#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/graph.h"
#include "core/op_schema.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/ops.h"
#include "passes/autodiff.h"
#include "runtime/parameter_store.h"
#include "tests/ops/op_test_util.h"
#include "tests/passes/grad_check_util.h"

namespace subquad {
namespace {

using ::subquad::testing::RandomTensor;
using ::subquad::testing::RunOp;
using ::subquad::testing::SpawningRunner;
using ::subquad::testing::StatusIs;
using ::testing::Eq;

AttrMap Flags(bool ta, bool tb) {
  return AttrMap{{"transpose_a", AttrValue(ta)},
                 {"transpose_b", AttrValue(tb)}};
}

// The product computed with scalar loops in double, and per output element
// the sum of |a_ik * b_kj| (the scale of its rounding error).
struct Reference {
  std::vector<double> value;
  std::vector<double> magnitude;
  Shape shape;
};

Reference RefMatMul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const Shape& as = a.shape();
  const Shape& bs = b.shape();
  const int ra = as.rank(), rb = bs.rank();
  const int64_t m = ta ? as[ra - 1] : as[ra - 2];
  const int64_t k = ta ? as[ra - 2] : as[ra - 1];
  const int64_t n = tb ? bs[rb - 2] : bs[rb - 1];
  const int rbatch = std::max(ra, rb) - 2;
  std::vector<int64_t> ab(rbatch, 1), bb(rbatch, 1), ob(rbatch);
  for (int i = 0; i < ra - 2; ++i) ab[rbatch - (ra - 2) + i] = as[i];
  for (int i = 0; i < rb - 2; ++i) bb[rbatch - (rb - 2) + i] = bs[i];
  Reference ref;
  int64_t batch = 1;
  for (int i = 0; i < rbatch; ++i) {
    ob[i] = std::max(ab[i], bb[i]);
    batch *= ob[i];
    ref.shape.push_back(ob[i]);
  }
  ref.shape.push_back(m);
  ref.shape.push_back(n);
  ref.value.assign(batch * m * n, 0.0);
  ref.magnitude.assign(batch * m * n, 0.0);
  for (int64_t e = 0; e < batch; ++e) {
    // Unravel e over ob; broadcast dims of size 1 read index 0.
    int64_t rest = e, ai = 0, bi = 0, astride = 1, bstride = 1;
    for (int i = rbatch - 1; i >= 0; --i) {
      const int64_t idx = rest % ob[i];
      rest /= ob[i];
      ai += (ab[i] == 1 ? 0 : idx) * astride;
      bi += (bb[i] == 1 ? 0 : idx) * bstride;
      astride *= ab[i];
      bstride *= bb[i];
    }
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0, mag = 0;
        for (int64_t p = 0; p < k; ++p) {
          const int64_t a_off = ai * m * k + (ta ? p * m + i : i * k + p);
          const int64_t b_off = bi * k * n + (tb ? j * k + p : p * n + j);
          const double prod = testing::ElementAsDouble(a, a_off) *
                              testing::ElementAsDouble(b, b_off);
          sum += prod;
          mag += std::abs(prod);
        }
        ref.value[(e * m + i) * n + j] = sum;
        ref.magnitude[(e * m + i) * n + j] = mag;
      }
    }
  }
  return ref;
}

double Tolerance(DType t) { return t == DType::kF32 ? 1e-4 : 1e-12; }

::testing::AssertionResult MatchesReference(const Tensor& got,
                                            const Reference& ref) {
  if (got.shape() != ref.shape) {
    return ::testing::AssertionFailure()
           << "shape " << got.shape().ToString() << " vs reference "
           << ref.shape.ToString();
  }
  const double rtol = Tolerance(got.dtype());
  for (int64_t i = 0; i < got.num_elements(); ++i) {
    const double x = testing::ElementAsDouble(got, i);
    const double bound = rtol * ref.magnitude[i] + 1e-300;
    if (!(std::abs(x - ref.value[i]) <= bound)) {
      return ::testing::AssertionFailure()
             << "element " << i << " of " << got.type().ToString() << ": "
             << x << " vs reference " << ref.value[i] << " (bound " << bound
             << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

void CheckCase(DType dtype, const Shape& as, const Shape& bs, bool ta,
               bool tb, uint64_t seed) {
  SCOPED_TRACE(absl::StrCat(DTypeName(dtype), as.ToString(), " x ",
                            bs.ToString(), " ta=", ta, " tb=", tb));
  const Tensor a = RandomTensor(dtype, as, seed);
  const Tensor b = RandomTensor(dtype, bs, seed + 1);
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> serial,
                       RunOp("matmul", {a, b}, Flags(ta, tb)));
  ASSERT_EQ(serial.size(), 1u);
  EXPECT_EQ(serial[0].dtype(), dtype);
  EXPECT_TRUE(MatchesReference(serial[0], RefMatMul(a, b, ta, tb)));
  SpawningRunner two(2);
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> parallel,
                       RunOp("matmul", {a, b}, Flags(ta, tb), &two));
#ifdef SUBQUAD_USE_OPENBLAS
  EXPECT_TRUE(MatchesReference(parallel[0], RefMatMul(a, b, ta, tb)));
#else
  // The Eigen path splits work on the GEMM kernel's tile boundaries, so the
  // thread count does not change a single bit.
  EXPECT_TRUE(parallel[0].BitwiseEquals(serial[0]))
      << "2 threads differ from serial";
#endif
}

// a's shape for op(a) = [..., m, k]; likewise b.
Shape AShape(std::vector<int64_t> batch, int64_t m, int64_t k, bool ta) {
  Shape s(batch);
  s.push_back(ta ? k : m);
  s.push_back(ta ? m : k);
  return s;
}
Shape BShape(std::vector<int64_t> batch, int64_t k, int64_t n, bool tb) {
  Shape s(batch);
  s.push_back(tb ? n : k);
  s.push_back(tb ? k : n);
  return s;
}

class MatMulTest : public ::testing::TestWithParam<DType> {};

TEST_P(MatMulTest, AllTransposeCombinations) {
  uint64_t seed = 1;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      CheckCase(GetParam(), AShape({}, 7, 5, ta), BShape({}, 5, 3, tb), ta,
                tb, seed += 2);
      CheckCase(GetParam(), AShape({3}, 33, 65, ta), BShape({3}, 65, 47, tb),
                ta, tb, seed += 2);
      CheckCase(GetParam(), AShape({2, 3}, 4, 5, ta), BShape({}, 5, 6, tb),
                ta, tb, seed += 2);
    }
  }
}

TEST_P(MatMulTest, BatchBroadcasting) {
  const DType t = GetParam();
  CheckCase(t, {2, 3, 4, 5}, {5, 6}, false, false, 11);
  CheckCase(t, {1, 4, 5}, {3, 5, 6}, false, false, 12);
  CheckCase(t, {3, 1, 4, 5}, {2, 5, 6}, false, false, 13);
  CheckCase(t, {4, 5}, {3, 5, 6}, false, false, 14);
  CheckCase(t, {3, 1, 5, 4}, {2, 6, 5}, true, true, 15);
  CheckCase(t, {2, 3, 4, 5}, {1, 3, 5, 6}, false, false, 16);
  CheckCase(t, {2, 1, 40, 50}, {1, 3, 60, 50}, false, true, 17);
  // b's batch dims are all 1: a's batch folds into one product.
  CheckCase(t, {2, 3, 40, 50}, {1, 1, 50, 60}, false, false, 18);
}

TEST_P(MatMulTest, UnitDimensions) {
  uint64_t seed = 100;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{
               {1, 1, 1}, {1, 9, 1}, {1, 9, 7}, {7, 9, 1}, {7, 1, 5},
               {1, 300, 300}, {300, 300, 1}, {300, 1, 300}}) {
        CheckCase(GetParam(), AShape({}, m, k, ta), BShape({}, k, n, tb), ta,
                  tb, ++seed);
      }
    }
  }
}

TEST_P(MatMulTest, OddSizes) {
  uint64_t seed = 200;
  for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{
           {3, 5, 7}, {17, 31, 13}, {97, 83, 101}, {129, 257, 63}}) {
    CheckCase(GetParam(), AShape({}, m, k, false), BShape({}, k, n, false),
              false, false, ++seed);
    CheckCase(GetParam(), AShape({3}, m, k, true), BShape({}, k, n, true),
              true, true, ++seed);
  }
}

TEST_P(MatMulTest, Large) {
  CheckCase(GetParam(), {512, 512}, {512, 512}, false, false, 300);
  CheckCase(GetParam(), {512, 512}, {512, 512}, true, true, 301);
  // Batch smaller than the thread count, and not a multiple of it.
  CheckCase(GetParam(), {3, 200, 128}, {3, 190, 128}, false, true, 302);
  // More columns than rows: the split goes along N.
  CheckCase(GetParam(), {3, 1000}, {1000, 700}, false, false, 303);
}

TEST_P(MatMulTest, ZeroSizedDimensions) {
  const DType t = GetParam();
  // K = 0: the output is all zeros.
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out,
                       RunOp("matmul", {RandomTensor(t, {3, 0}, 1),
                                        RandomTensor(t, {0, 4}, 2)}));
  EXPECT_TRUE(out[0].BitwiseEquals(Tensor(t, {3, 4})));
  ASSERT_OK_AND_ASSIGN(out, RunOp("matmul", {RandomTensor(t, {0, 3, 5}, 1),
                                             RandomTensor(t, {5, 4}, 2)}));
  EXPECT_EQ(out[0].shape(), Shape({0, 3, 4}));
}

INSTANTIATE_TEST_SUITE_P(Floats, MatMulTest,
                         ::testing::Values(DType::kF32, DType::kF64),
                         [](const auto& info) {
                           return std::string(DTypeName(info.param));
                         });

TEST(MatMulSchemaTest, FlopsCountBatchedProducts) {
  Graph g;
  GraphBuilder b(&g);
  const Value x = b.Input("x", DType::kF32, {2, 3, 4, 5});
  const Value y = b.Input("y", DType::kF32, {3, 6, 5});
  ASSERT_OK_AND_ASSIGN(std::vector<Value> out,
                       b.AddNode("matmul", {x, y}, Flags(false, true)));
  const Node& node = *g.node(out[0].node);
  EXPECT_EQ(node.output_type().ToString(), "f32[2,3,4,6]");
  ASSERT_TRUE(node.schema()->flops);
  EXPECT_EQ(node.schema()->flops(node, {b.type(x), b.type(y)}),
            2 * 4 * 6 * 5 * 6);
}

absl::Status BuildMatMul(const TensorType& x, const TensorType& y, bool ta,
                         bool tb) {
  Graph g;
  GraphBuilder b(&g);
  const Value xv = b.Input("x", x.dtype, x.shape);
  const Value yv = b.Input("y", y.dtype, y.shape);
  return b.AddNode("matmul", {xv, yv}, Flags(ta, tb)).status();
}

TEST(MatMulSchemaTest, ShapeErrors) {
  using absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(
      BuildMatMul({DType::kF32, {4, 8}}, {DType::kF32, {6, 8}}, false, false),
      StatusIs(kInvalidArgument,
               Eq("matmul: building node 'matmul': inner dimensions differ: "
                  "f32[4,8] x f32[6,8] (transpose_a=false, "
                  "transpose_b=false)")));
  EXPECT_THAT(
      BuildMatMul({DType::kF32, {4, 8}}, {DType::kF32, {4, 7}}, false, true),
      StatusIs(kInvalidArgument,
               Eq("matmul: building node 'matmul': inner dimensions differ: "
                  "f32[4,8] x f32[4,7] (transpose_a=false, "
                  "transpose_b=true)")));
  EXPECT_THAT(
      BuildMatMul({DType::kF32, {8}}, {DType::kF32, {8, 4}}, false, false),
      StatusIs(kInvalidArgument,
               Eq("matmul: building node 'matmul': operands must have rank "
                  ">= 2: f32[8] x f32[8,4]")));
  EXPECT_THAT(
      BuildMatMul({DType::kF32, {4, 8}}, {DType::kF64, {8, 4}}, false, false),
      StatusIs(kInvalidArgument,
               Eq("matmul: building node 'matmul': operands have different "
                  "dtypes: f32[4,8] x f64[8,4]")));
  EXPECT_THAT(BuildMatMul({DType::kF32, {2, 4, 8}}, {DType::kF32, {3, 8, 4}},
                          false, false),
              StatusIs(kInvalidArgument,
                       Eq("matmul: building node 'matmul': batch dimensions do "
                          "not broadcast: f32[2,4,8] x f32[3,8,4]")));
  EXPECT_THAT(
      BuildMatMul({DType::kI32, {4, 8}}, {DType::kI32, {8, 4}}, false, false),
      StatusIs(kInvalidArgument));
}

// ---- gradient rule -----------------------------------------------------------
// (Its values are checked against finite differences by the registry test on
// matmul's examples; these check the backward graph it emits.)

// The backward matmul nodes autodiff emits for "loss".
std::vector<const Node*> BackwardMatMuls(Graph& g) {
  const absl::StatusOr<AutodiffResult> ad = Autodiff(g, {"loss", {}});
  EXPECT_TRUE(ad.ok()) << ad.status();
  std::vector<const Node*> out;
  for (const Node* n : g.nodes()) {
    if (n->role() != Role::kBackward) continue;
    EXPECT_NE(n->op(), "transpose") << n->name();
    if (n->op() == "matmul") out.push_back(n);
  }
  return out;
}

TEST(MatMulGradTest, LinearLayerWeightGradientIsOneGemm) {
  for (bool tb : {false, true}) {
    for (const Shape& w_shape : {Shape{4, 5}, Shape{1, 4, 5}}) {
      SCOPED_TRACE(absl::StrCat(w_shape.ToString(), " tb=", tb));
      Graph g;
      GraphBuilder b(&g);
      const Value x = b.Input("x", DType::kF32, {2, 3, 4});
      Shape ws = w_shape;
      if (tb) ws = w_shape.rank() == 2 ? Shape{5, 4} : Shape{1, 5, 4};
      const Value w = b.Parameter("w", DType::kF32, ws);
      b.Output("loss", ops::ReduceSumAll(b, ops::MatMul(b, x, w, false, tb)));
      ASSERT_OK(b.status());
      // x is not a parameter: only dW is computed, by one [6,*]ᵀ·[6,*] GEMM
      // on reshapes (no batched product, no reduction).
      const std::vector<const Node*> mms = BackwardMatMuls(g);
      ASSERT_EQ(mms.size(), 1u);
      const Node& mm = *mms[0];
      EXPECT_EQ(g.type(mm.input(0)).shape.rank(), 2);
      EXPECT_EQ(g.type(mm.input(1)).shape.rank(), 2);
      EXPECT_EQ(g.type(mm.input(0)).shape[0], 6);
      EXPECT_TRUE(mm.GetBool("transpose_a"));
      EXPECT_FALSE(mm.GetBool("transpose_b"));
      EXPECT_EQ(mm.name(), "matmul/grad/matmul");
      for (const Node* n : g.nodes()) {
        if (n->role() == Role::kBackward) {
          EXPECT_NE(n->op(), "reduce_sum") << n->name();
        }
      }
    }
  }
}

TEST(MatMulGradTest, OnlyRequestedOperands) {
  Graph g;
  GraphBuilder b(&g);
  const Value x = b.Parameter("x", DType::kF32, {3, 4});
  const Value y = b.Input("y", DType::kF32, {2, 4, 5});
  b.Output("loss", ops::ReduceSumAll(b, ops::MatMul(b, x, y)));
  ASSERT_OK(b.status());
  const std::vector<const Node*> mms = BackwardMatMuls(g);
  ASSERT_EQ(mms.size(), 1u);
  // dX = dC·Yᵀ per batch entry, then summed over the batch.
  EXPECT_EQ(mms[0]->output_type().ToString(), "f32[2,3,4]");
  EXPECT_TRUE(mms[0]->GetBool("transpose_b"));
}

// Every flag combination with broadcast batch dims, the Linear-layer case
// included, against finite differences of a random linear functional.
TEST(MatMulGradTest, AllFlagsMatchFiniteDifferences) {
  struct Case {
    Shape a, b;
  };
  uint64_t seed = 1;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (const Case& c : std::vector<Case>{
               {AShape({2, 1}, 6, 7, ta), BShape({3}, 7, 5, tb)},
               {AShape({4, 3}, 6, 7, ta), BShape({}, 7, 5, tb)},
               {AShape({}, 6, 7, ta), BShape({2, 3}, 7, 5, tb)}}) {
        SCOPED_TRACE(absl::StrCat(c.a.ToString(), " x ", c.b.ToString(),
                                  " ta=", ta, " tb=", tb));
        Graph g;
        GraphBuilder b(&g);
        const Value x = b.Parameter("a", DType::kF64, c.a);
        const Value y = b.Parameter("b", DType::kF64, c.b);
        const Value out = ops::MatMul(b, x, y, ta, tb);
        ASSERT_OK(b.status());
        const Value r = b.Constant(
            RandomTensor(DType::kF64, b.shape(out), ++seed), "r");
        b.Output("loss", ops::ReduceSumAll(b, ops::Mul(b, out, r)));
        ASSERT_OK(b.status());
        ParameterStore params;
        params.Set("a", RandomTensor(DType::kF64, c.a, ++seed));
        params.Set("b", RandomTensor(DType::kF64, c.b, ++seed));
        ASSERT_OK_AND_ASSIGN(testing::GradCheckReport report,
                             testing::CheckGradients(g, params, {}, "loss", 3));
        EXPECT_LE(report.max_rel_error, 1e-7) << report.worst;
      }
    }
  }
}

}  // namespace
}  // namespace subquad
