// Tests of reduce_sum / reduce_mean / reduce_max and softmax / log_softmax
// (ops/reduce.cc) against scalar-loop references computed in double.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

constexpr double kInf = std::numeric_limits<double>::infinity();

void SetElement(Tensor& t, int64_t i, double v) {
  DispatchDType(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    t.data<T>()[i] = static_cast<T>(v);
  });
}

AttrMap ReduceAttrs(std::vector<int64_t> axes, bool keepdims) {
  return {{"axes", AttrValue(std::move(axes))},
          {"keepdims", AttrValue(keepdims)}};
}

// The reduction by brute force: every input element is folded into the
// output element its kept coordinates name. Also returns the per-output
// sum of |x| (the scale of rounding error) and the reduced count.
struct RefReduce {
  Tensor value;
  std::vector<double> magnitude;
  int64_t count = 1;
};

RefReduce Reference(const std::string& op, const Tensor& x,
                    std::vector<int64_t> axes, bool keepdims) {
  const Shape& s = x.shape();
  std::vector<bool> reduced(s.rank(), false);
  for (int64_t a : axes) reduced[a < 0 ? a + s.rank() : a] = true;
  Shape out;
  RefReduce r;
  for (int d = 0; d < s.rank(); ++d) {
    if (!reduced[d]) {
      out.push_back(s[d]);
    } else {
      r.count *= s[d];
      if (keepdims) out.push_back(1);
    }
  }
  const int64_t n_out = out.num_elements();
  std::vector<double> acc(n_out, op == "reduce_max" ? -kInf : 0.0);
  r.magnitude.assign(n_out, 0.0);
  for (int64_t i = 0; i < x.num_elements(); ++i) {
    int64_t rest = i, o = 0, ostride = 1;
    for (int d = s.rank() - 1; d >= 0; --d) {
      const int64_t c = rest % s[d];
      rest /= s[d];
      if (!reduced[d]) {
        o += c * ostride;
        ostride *= s[d];
      }
    }
    const double v = ElementAsDouble(x, i);
    acc[o] = op == "reduce_max" ? std::max(acc[o], v) : acc[o] + v;
    r.magnitude[o] += std::abs(v);
  }
  r.value = Tensor(x.dtype(), out);
  for (int64_t o = 0; o < n_out; ++o) {
    SetElement(
        r.value, o,
        op == "reduce_mean" ? acc[o] / static_cast<double>(r.count) : acc[o]);
  }
  return r;
}

// |got − want| <= rtol·|want| + eps·magnitude (the rounding a sum of
// `magnitude` may accumulate), divided by the count for means.
::testing::AssertionResult ReduceNear(const std::string& op, const Tensor& got,
                                      const RefReduce& want) {
  if (got.type() != want.value.type()) {
    return ::testing::AssertionFailure()
           << "types differ: " << got.type().ToString() << " vs "
           << want.value.type().ToString();
  }
  const double eps = got.dtype() == DType::kF32 ? 1e-6 : 1e-14;
  for (int64_t i = 0; i < got.num_elements(); ++i) {
    const double g = ElementAsDouble(got, i);
    const double w = ElementAsDouble(want.value, i);
    if (std::isnan(w) || std::isinf(w)) {
      if ((std::isnan(g) && std::isnan(w)) || g == w) continue;
      return ::testing::AssertionFailure()
             << "element " << i << ": " << g << " vs " << w;
    }
    double tol = op == "reduce_max" ? 0 : eps * want.magnitude[i];
    if (op == "reduce_mean") tol /= static_cast<double>(want.count);
    if (std::abs(g - w) > tol) {
      return ::testing::AssertionFailure()
             << "element " << i << ": " << g << " vs reference " << w
             << " (tolerance " << tol << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

struct ReduceCase {
  Shape shape;
  std::vector<int64_t> axes;
};

const ReduceCase kReduceCases[] = {
    {{3, 4, 5}, {0, 2}},     // non-contiguous axes
    {{3, 4, 5}, {2, 0}},     // in any order
    {{3, 4, 5}, {-1}},       // last axis
    {{3, 4, 5}, {1}},        // middle axis
    {{3, 4, 5}, {0}},        // leading axis
    {{3, 4, 5}, {0, 1}},     // leading axes
    {{3, 4, 5}, {0, 1, 2}},  // everything
    {{3, 4, 5}, {-3, -1}},   // negatives, non-contiguous
    {{2, 3, 4, 5, 6}, {0, 2, 4}},
    {{2, 3, 4, 5, 6}, {1, 3}},
    {{7}, {0}},
    {{1, 1}, {0}},
    {{4, 1, 3}, {1}},  // a size-1 reduced axis: a copy
    {{33, 1, 7}, {0, 1}},
    {{100000}, {0}},     // long row: blocked, parallel
    {{50, 40000}, {1}},  // rows of several blocks
    {{40000, 3}, {0}},   // reduce the leading axis, narrow inner
    {{300, 2500}, {0}},  // inner chunked (f64)
    {{600, 5000}, {0}},  // inner chunked, reduced axis blocked
    {{2, 3000, 40}, {1}},
    {{4, 250, 100}, {0, 2}},
    {{0, 3}, {0}},  // empty reduction: identity
    {{3, 0}, {0}},  // empty output
};

class ReduceTest : public ::testing::TestWithParam<DType> {
 protected:
  DType dt() const { return GetParam(); }
};

TEST_P(ReduceTest, MatchesReference) {
  SpawningRunner two(2);
  uint64_t seed = 1;
  for (const char* op : {"reduce_sum", "reduce_mean", "reduce_max"}) {
    for (const ReduceCase& c : kReduceCases) {
      for (bool keepdims : {false, true}) {
        SCOPED_TRACE(absl::StrCat(op, " ", c.shape.ToString(), " axes [",
                                  absl::StrJoin(c.axes, ","), "] keepdims ",
                                  keepdims));
        const Tensor x = RandomTensor(dt(), c.shape, seed++, -1, 1);
        const AttrMap attrs = ReduceAttrs(c.axes, keepdims);
        ASSERT_OK_AND_ASSIGN(auto got, RunOp(op, {x}, attrs));
        EXPECT_TRUE(ReduceNear(op, got[0], Reference(op, x, c.axes, keepdims)));
        // Results do not depend on the thread count.
        ASSERT_OK_AND_ASSIGN(auto par, RunOp(op, {x}, attrs, &two));
        EXPECT_TRUE(par[0].BitwiseEquals(got[0]));
      }
    }
  }
}

TEST_P(ReduceTest, EmptyReductionGivesIdentity) {
  const Tensor x(dt(), {0, 3});
  const AttrMap attrs = ReduceAttrs({0}, false);
  ASSERT_OK_AND_ASSIGN(auto sum, RunOp("reduce_sum", {x}, attrs));
  ASSERT_OK_AND_ASSIGN(auto mean, RunOp("reduce_mean", {x}, attrs));
  ASSERT_OK_AND_ASSIGN(auto max, RunOp("reduce_max", {x}, attrs));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ElementAsDouble(sum[0], i), 0.0);
    EXPECT_TRUE(std::isnan(ElementAsDouble(mean[0], i)));
    EXPECT_EQ(ElementAsDouble(max[0], i), -kInf);
  }
}

TEST_P(ReduceTest, MaxPropagatesNaNAndInf) {
  Tensor x(dt(), {2, 3});
  const double v[] = {1, std::nan(""), 3, -kInf, -kInf, -kInf};
  for (int i = 0; i < 6; ++i) SetElement(x, i, v[i]);
  ASSERT_OK_AND_ASSIGN(auto got,
                       RunOp("reduce_max", {x}, ReduceAttrs({1}, false)));
  EXPECT_TRUE(std::isnan(ElementAsDouble(got[0], 0)));
  EXPECT_EQ(ElementAsDouble(got[0], 1), -kInf);
  ASSERT_OK_AND_ASSIGN(auto cols,
                       RunOp("reduce_max", {x}, ReduceAttrs({0}, false)));
  EXPECT_EQ(ElementAsDouble(cols[0], 0), 1.0);
  EXPECT_TRUE(std::isnan(ElementAsDouble(cols[0], 1)));
  EXPECT_EQ(ElementAsDouble(cols[0], 2), 3.0);
}

TEST_P(ReduceTest, KeepdimsShapes) {
  Graph g;
  GraphBuilder b(&g);
  const Value x = b.Input("x", dt(), {3, 4, 5});
  ASSERT_OK_AND_ASSIGN(
      auto k, b.AddNode("reduce_sum", {x}, ReduceAttrs({0, -1}, true)));
  EXPECT_EQ(g.type(k[0]), (TensorType{dt(), {1, 4, 1}}));
  ASSERT_OK_AND_ASSIGN(
      auto d, b.AddNode("reduce_mean", {x}, ReduceAttrs({0, -1}, false)));
  EXPECT_EQ(g.type(d[0]), (TensorType{dt(), {4}}));
  ASSERT_OK_AND_ASSIGN(
      auto all, b.AddNode("reduce_max", {x}, ReduceAttrs({2, 1, 0}, false)));
  EXPECT_EQ(g.type(all[0]), (TensorType{dt(), {}}));
  // keepdims defaults to false.
  ASSERT_OK_AND_ASSIGN(
      auto def, b.AddNode("reduce_sum", {x},
                          {{"axes", AttrValue(std::vector<int64_t>{1})}}));
  EXPECT_EQ(g.type(def[0]), (TensorType{dt(), {3, 5}}));
}

// ---- softmax / log_softmax --------------------------------------------------

// Softmax (or log-softmax) along `axis`, in double, by the textbook formula.
Tensor RefSoftmax(const Tensor& x, int axis, bool log) {
  const Shape& s = x.shape();
  if (axis < 0) axis += s.rank();
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[d];
  for (int d = axis + 1; d < s.rank(); ++d) inner *= s[d];
  const int64_t n = s[axis];
  Tensor y(x.dtype(), s);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t k) { return (o * n + k) * inner + i; };
      double m = -kInf;
      for (int64_t k = 0; k < n; ++k)
        m = std::max(m, ElementAsDouble(x, at(k)));
      double sum = 0;
      for (int64_t k = 0; k < n; ++k)
        sum += std::exp(ElementAsDouble(x, at(k)) - m);
      for (int64_t k = 0; k < n; ++k) {
        const double d = ElementAsDouble(x, at(k)) - m;
        SetElement(y, at(k), log ? d - std::log(sum) : std::exp(d) / sum);
      }
    }
  }
  return y;
}

struct SoftmaxCase {
  Shape shape;
  int64_t axis;
};

TEST_P(ReduceTest, SoftmaxMatchesReference) {
  const SoftmaxCase cases[] = {
      {{4, 7}, -1},    {{3, 33}, 1},  {{5, 4, 3}, 1}, {{5, 4, 3}, 0},
      {{5, 4, 3}, -3}, {{1}, 0},      {{7}, -1},      {{2000, 100}, -1},
      {{8, 3000}, 0},  {{100000}, 0}, {{3, 1, 5}, 1}, {{64, 2, 700}, 1},
      {{0, 5}, 1},     {{5, 0}, 1},
  };
  SpawningRunner two(2);
  uint64_t seed = 50;
  for (const char* op : {"softmax", "log_softmax"}) {
    const bool log = std::string(op) == "log_softmax";
    for (const SoftmaxCase& c : cases) {
      SCOPED_TRACE(absl::StrCat(op, " ", c.shape.ToString(), " axis ", c.axis));
      const Tensor x = RandomTensor(dt(), c.shape, seed++, -8, 8);
      const AttrMap attrs = {{"axis", AttrValue(c.axis)}};
      ASSERT_OK_AND_ASSIGN(auto got, RunOp(op, {x}, attrs));
      const bool f64 = dt() == DType::kF64;
      const double rtol = f64 ? 1e-12 : 1e-5;
      const double atol = f64 ? 1e-14 : (log ? 1e-5 : 1e-7);
      EXPECT_TRUE(TensorsNear(got[0], RefSoftmax(x, c.axis, log), rtol, atol));
      ASSERT_OK_AND_ASSIGN(auto par, RunOp(op, {x}, attrs, &two));
      EXPECT_TRUE(par[0].BitwiseEquals(got[0]));
    }
  }
}

TEST_P(ReduceTest, SoftmaxDefaultAxisIsLast) {
  const Tensor x = RandomTensor(dt(), {3, 4}, 3);
  ASSERT_OK_AND_ASSIGN(auto got, RunOp("softmax", {x}));
  EXPECT_TRUE(TensorsNear(got[0], RefSoftmax(x, 1, false), 1e-5, 1e-7));
}

TEST_P(ReduceTest, SoftmaxIsStableForLargeLogits) {
  Tensor x(dt(), {1, 3});
  for (int i = 0; i < 3; ++i) SetElement(x, i, 1000 + i);
  ASSERT_OK_AND_ASSIGN(auto sm, RunOp("softmax", {x}));
  ASSERT_OK_AND_ASSIGN(auto lsm, RunOp("log_softmax", {x}));
  const double z = 1 + std::exp(-1.0) + std::exp(-2.0);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(ElementAsDouble(sm[0], i), std::exp(i - 2.0) / z, 1e-6);
    EXPECT_NEAR(ElementAsDouble(lsm[0], i), (i - 2.0) - std::log(z), 1e-5);
  }
}

// Masked (-inf) entries get exactly 0 probability, as in PyTorch; a row
// that is entirely -inf gives NaN. Both along the last axis and another.
TEST_P(ReduceTest, SoftmaxWithMaskedEntries) {
  for (int axis : {1, 0}) {
    SCOPED_TRACE(absl::StrCat("axis ", axis));
    // Row (or column) r has entries k > r masked; the last is all -inf.
    const int64_t n = 40, rows = 5;
    Tensor x =
        RandomTensor(dt(), axis == 1 ? Shape{rows, n} : Shape{n, rows}, 4);
    auto index = [&](int64_t r, int64_t k) {
      return axis == 1 ? r * n + k : k * rows + r;
    };
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < n; ++k) {
        if (k > r * 8 || r == rows - 1) SetElement(x, index(r, k), -kInf);
      }
    }
    const AttrMap attrs = {{"axis", AttrValue(int64_t{axis})}};
    ASSERT_OK_AND_ASSIGN(auto sm, RunOp("softmax", {x}, attrs));
    ASSERT_OK_AND_ASSIGN(auto lsm, RunOp("log_softmax", {x}, attrs));
    EXPECT_TRUE(TensorsNear(sm[0], RefSoftmax(x, axis, false), 1e-5, 1e-7));
    EXPECT_TRUE(TensorsNear(lsm[0], RefSoftmax(x, axis, true), 1e-5, 1e-5));
    for (int64_t r = 0; r < rows; ++r) {
      double sum = 0;
      for (int64_t k = 0; k < n; ++k) {
        const double p = ElementAsDouble(sm[0], index(r, k));
        const double lp = ElementAsDouble(lsm[0], index(r, k));
        if (r == rows - 1) {
          EXPECT_TRUE(std::isnan(p)) << r << "," << k;
          EXPECT_TRUE(std::isnan(lp)) << r << "," << k;
        } else if (k > r * 8) {
          EXPECT_EQ(p, 0.0) << r << "," << k;  // exactly 0, not subnormal
          EXPECT_EQ(lp, -kInf) << r << "," << k;
        }
        sum += p;
      }
      if (r < rows - 1) {
        EXPECT_NEAR(sum, 1.0, 1e-6);
      }
    }
  }
}

TEST_P(ReduceTest, SoftmaxNaNMakesItsRowNaN) {
  for (int axis : {1, 0}) {
    Tensor x = RandomTensor(dt(), {4, 4}, 8);
    SetElement(x, 5, std::nan(""));  // row 1 / column 1
    const AttrMap attrs = {{"axis", AttrValue(int64_t{axis})}};
    for (const char* op : {"softmax", "log_softmax"}) {
      SCOPED_TRACE(absl::StrCat(op, " axis ", axis));
      ASSERT_OK_AND_ASSIGN(auto got, RunOp(op, {x}, attrs));
      for (int i = 0; i < 16; ++i) {
        const bool in_line = axis == 1 ? i / 4 == 1 : i % 4 == 1;
        EXPECT_EQ(std::isnan(ElementAsDouble(got[0], i)), in_line) << i;
      }
    }
  }
}

// ---- Fused backward ops -----------------------------------------------------

// Runs the op's kernel with output 0 written into the buffer of the input
// its schema names (inplace_input).
absl::StatusOr<Tensor> RunInPlace(const std::string& op,
                                  std::vector<Tensor> inputs, AttrMap attrs,
                                  ParallelRunner* pool = nullptr) {
  Graph g;
  GraphBuilder b(&g);
  std::vector<Value> in;
  for (size_t i = 0; i < inputs.size(); ++i) {
    in.push_back(
        b.Input(absl::StrCat("in", i), inputs[i].dtype(), inputs[i].shape()));
  }
  RETURN_IF_ERROR(b.status());
  ASSIGN_OR_RETURN(std::vector<Value> outs, b.AddNode(op, in, std::move(attrs)));
  const Node& node = *g.node(outs[0].node);
  const OpSchema& schema = *node.schema();
  const int k = schema.inplace_input;
  if (k < 0) return absl::FailedPreconditionError("op cannot run in place");
  std::vector<TensorView> in_views;
  for (const Tensor& t : inputs) in_views.push_back(t.view());
  std::vector<TensorView> out_views = {
      TensorView(node.output_type(0), inputs[k].raw_data())};
  KernelContext ctx{node, in_views, out_views,
                    pool != nullptr ? pool : SerialRunner::Get()};
  RETURN_IF_ERROR((*schema.FindKernel(node.output_type(0).dtype))(ctx));
  return std::move(inputs[k]);
}

// reduce_max_grad by brute force: each output's maximum positions (NaN
// matching NaN) share its dy evenly.
Tensor RefReduceMaxGrad(const Tensor& x, const Tensor& y, const Tensor& dy,
                        const std::vector<int64_t>& axes) {
  const Shape& s = x.shape();
  std::vector<bool> reduced(s.rank(), false);
  for (int64_t a : axes) reduced[a < 0 ? a + s.rank() : a] = true;
  auto out_index = [&](int64_t i) {
    int64_t o = 0, ostride = 1;
    for (int d = s.rank() - 1; d >= 0; --d) {
      const int64_t c = i % s[d];
      i /= s[d];
      if (!reduced[d]) {
        o += c * ostride;
        ostride *= s[d];
      }
    }
    return o;
  };
  auto is_max = [&](int64_t i) {
    const double v = ElementAsDouble(x, i);
    const double m = ElementAsDouble(y, out_index(i));
    return v == m || (std::isnan(v) && std::isnan(m));
  };
  std::vector<int64_t> count(y.num_elements(), 0);
  for (int64_t i = 0; i < x.num_elements(); ++i) {
    if (is_max(i)) ++count[out_index(i)];
  }
  Tensor dx(x.dtype(), s);
  for (int64_t i = 0; i < x.num_elements(); ++i) {
    const int64_t o = out_index(i);
    SetElement(dx, i,
               is_max(i) ? ElementAsDouble(dy, o) / static_cast<double>(count[o])
                         : 0.0);
  }
  return dx;
}

TEST_P(ReduceTest, ReduceMaxGradMatchesReference) {
  SpawningRunner two(2);
  uint64_t seed = 900;
  for (const ReduceCase& c : kReduceCases) {
    for (bool keepdims : {false, true}) {
      // keepdims changes shapes only: large cases once.
      if (keepdims && c.shape.num_elements() > 100000) continue;
      for (bool ties : {false, true}) {
        SCOPED_TRACE(absl::StrCat(c.shape.ToString(), " axes [",
                                  absl::StrJoin(c.axes, ","), "] keepdims ",
                                  keepdims, " ties ", ties));
        Tensor x = RandomTensor(dt(), c.shape, seed++, -3, 3);
        if (ties) {  // few distinct values: many tied maxima
          for (int64_t i = 0; i < x.num_elements(); ++i) {
            SetElement(x, i, std::floor(ElementAsDouble(x, i)));
          }
        }
        const AttrMap attrs = ReduceAttrs(c.axes, keepdims);
        ASSERT_OK_AND_ASSIGN(auto y, RunOp("reduce_max", {x}, attrs));
        const Tensor dy = RandomTensor(dt(), y[0].shape(), seed++, -2, 2);
        ASSERT_OK_AND_ASSIGN(auto got,
                             RunOp("reduce_max_grad", {x, y[0], dy}, attrs));
        const Tensor want = RefReduceMaxGrad(x, y[0], dy, c.axes);
        const bool f64 = dt() == DType::kF64;
        EXPECT_TRUE(TensorsNear(got[0], want, f64 ? 1e-15 : 1e-6, 0));
        ASSERT_OK_AND_ASSIGN(auto par,
                             RunOp("reduce_max_grad", {x, y[0], dy}, attrs, &two));
        EXPECT_TRUE(par[0].BitwiseEquals(got[0]));
      }
    }
  }
}

TEST_P(ReduceTest, ReduceMaxGradGoesToNaN) {
  Tensor x = RandomTensor(dt(), {3, 4}, 5);
  SetElement(x, 6, std::nan(""));  // row 1
  const AttrMap attrs = ReduceAttrs({1}, false);
  ASSERT_OK_AND_ASSIGN(auto y, RunOp("reduce_max", {x}, attrs));
  Tensor dy(dt(), {3});
  for (int i = 0; i < 3; ++i) SetElement(dy, i, 1.0);
  ASSERT_OK_AND_ASSIGN(auto got, RunOp("reduce_max_grad", {x, y[0], dy}, attrs));
  for (int i = 4; i < 8; ++i) {
    EXPECT_EQ(ElementAsDouble(got[0], i), i == 6 ? 1.0 : 0.0) << i;
  }
  // A y that matches nothing (not x's max) gives zeros, not NaN.
  Tensor other = y[0];
  for (int i = 0; i < 3; ++i) SetElement(other, i, 10.0);
  ASSERT_OK_AND_ASSIGN(auto none,
                       RunOp("reduce_max_grad", {x, other, dy}, attrs));
  for (int i = 0; i < 12; ++i) EXPECT_EQ(ElementAsDouble(none[0], i), 0.0);
}

// softmax_grad / log_softmax_grad along `axis`, in double.
Tensor RefSoftmaxGrad(const Tensor& y, const Tensor& dy, int axis, bool log) {
  const Shape& s = y.shape();
  if (axis < 0) axis += s.rank();
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[d];
  for (int d = axis + 1; d < s.rank(); ++d) inner *= s[d];
  const int64_t n = s[axis];
  Tensor dx(y.dtype(), s);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t k) { return (o * n + k) * inner + i; };
      double sum = 0;
      for (int64_t k = 0; k < n; ++k) {
        sum += ElementAsDouble(dy, at(k)) *
               (log ? 1.0 : ElementAsDouble(y, at(k)));
      }
      for (int64_t k = 0; k < n; ++k) {
        const double yk = ElementAsDouble(y, at(k));
        const double dyk = ElementAsDouble(dy, at(k));
        SetElement(dx, at(k), log ? dyk - std::exp(yk) * sum : yk * (dyk - sum));
      }
    }
  }
  return dx;
}

TEST_P(ReduceTest, SoftmaxGradMatchesReference) {
  const SoftmaxCase cases[] = {
      {{4, 7}, -1},    {{3, 33}, 1},  {{5, 4, 3}, 1}, {{5, 4, 3}, 0},
      {{5, 4, 3}, -3}, {{1}, 0},      {{7}, -1},      {{2000, 100}, -1},
      {{8, 3000}, 0},  {{100000}, 0}, {{3, 1, 5}, 1}, {{64, 2, 700}, 1},
      {{0, 5}, 1},     {{5, 0}, 1},
  };
  SpawningRunner two(2);
  uint64_t seed = 700;
  for (const char* fwd : {"softmax", "log_softmax"}) {
    const bool log = std::string(fwd) == "log_softmax";
    const std::string op = absl::StrCat(fwd, "_grad");
    for (const SoftmaxCase& c : cases) {
      SCOPED_TRACE(absl::StrCat(op, " ", c.shape.ToString(), " axis ", c.axis));
      const AttrMap attrs = {{"axis", AttrValue(c.axis)}};
      const Tensor x = RandomTensor(dt(), c.shape, seed++, -4, 4);
      ASSERT_OK_AND_ASSIGN(auto y, RunOp(fwd, {x}, attrs));
      const Tensor dy = RandomTensor(dt(), c.shape, seed++, -2, 2);
      ASSERT_OK_AND_ASSIGN(auto got, RunOp(op, {y[0], dy}, attrs));
      const bool f64 = dt() == DType::kF64;
      EXPECT_TRUE(TensorsNear(got[0], RefSoftmaxGrad(y[0], dy, c.axis, log),
                              f64 ? 1e-11 : 1e-4, f64 ? 1e-13 : 1e-5));
      ASSERT_OK_AND_ASSIGN(auto par, RunOp(op, {y[0], dy}, attrs, &two));
      EXPECT_TRUE(par[0].BitwiseEquals(got[0]));
      ASSERT_OK_AND_ASSIGN(Tensor inplace, RunInPlace(op, {y[0], dy}, attrs));
      EXPECT_TRUE(inplace.BitwiseEquals(got[0]));
      ASSERT_OK_AND_ASSIGN(Tensor inplace_par,
                           RunInPlace(op, {y[0], dy}, attrs, &two));
      EXPECT_TRUE(inplace_par.BitwiseEquals(got[0]));
    }
  }
}

// Masked (-inf) logits: log_softmax's y is -inf there and its gradient
// passes dy through unchanged; softmax's y is 0 there and its gradient is 0.
TEST_P(ReduceTest, SoftmaxGradWithMaskedEntries) {
  Tensor x = RandomTensor(dt(), {3, 6}, 2);
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t k = r + 2; k < 6; ++k) SetElement(x, r * 6 + k, -kInf);
  }
  const Tensor dy = RandomTensor(dt(), {3, 6}, 3);
  ASSERT_OK_AND_ASSIGN(auto sm, RunOp("softmax", {x}));
  ASSERT_OK_AND_ASSIGN(auto lsm, RunOp("log_softmax", {x}));
  ASSERT_OK_AND_ASSIGN(auto dsm, RunOp("softmax_grad", {sm[0], dy}));
  ASSERT_OK_AND_ASSIGN(auto dlsm, RunOp("log_softmax_grad", {lsm[0], dy}));
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t k = r + 2; k < 6; ++k) {
      EXPECT_EQ(ElementAsDouble(dsm[0], r * 6 + k), 0.0);
      EXPECT_EQ(ElementAsDouble(dlsm[0], r * 6 + k),
                ElementAsDouble(dy, r * 6 + k));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Floats, ReduceTest,
                         ::testing::Values(DType::kF32, DType::kF64),
                         [](const auto& info) {
                           return std::string(DTypeName(info.param));
                         });

// ---- Shape rules ------------------------------------------------------------

class ReduceShapeTest : public ::testing::Test {
 protected:
  Graph g_;
  GraphBuilder b_{&g_};
  Value x_ = b_.Input("x", DType::kF32, {2, 4});
};

TEST_F(ReduceShapeTest, AxisOutOfRange) {
  EXPECT_THAT(b_.AddNode("reduce_sum", {x_}, ReduceAttrs({3}, false)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("reduce_sum: building node 'reduce_sum': axis 3 is "
                          "out of range for f32[2,4]")));
  EXPECT_THAT(b_.AddNode("reduce_max", {x_}, ReduceAttrs({-3}, false)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("reduce_max: building node 'reduce_max': axis -3 is "
                          "out of range for f32[2,4]")));
}

TEST_F(ReduceShapeTest, DuplicateAxes) {
  EXPECT_THAT(b_.AddNode("reduce_mean", {x_}, ReduceAttrs({1, -1}, false)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("reduce_mean: building node 'reduce_mean': axes "
                          "[1,-1] name axis 1 twice for f32[2,4]")));
}

TEST_F(ReduceShapeTest, EmptyAxes) {
  EXPECT_THAT(b_.AddNode("reduce_sum", {x_}, ReduceAttrs({}, false)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("reduce_sum: building node 'reduce_sum': axes is "
                          "empty; name at least one axis of f32[2,4]")));
  EXPECT_THAT(b_.AddNode("reduce_sum", {x_}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("missing required attribute 'axes'")));
}

TEST_F(ReduceShapeTest, SoftmaxAxisOutOfRange) {
  auto scope = b_.Scope("attn");
  EXPECT_THAT(b_.AddNode("softmax", {x_}, {{"axis", AttrValue(2)}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("softmax: building node 'attn/softmax': axis 2 is "
                          "out of range for f32[2,4]")));
  const Value s = b_.Input("s", DType::kF64, {});
  EXPECT_THAT(b_.AddNode("log_softmax", {s}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("log_softmax: building node 'attn/log_softmax': "
                          "axis -1 is out of range for f64[]")));
}

TEST_F(ReduceShapeTest, IntegerInputsRejected) {
  const Value i = b_.Input("i", DType::kI32, {3});
  EXPECT_THAT(b_.AddNode("reduce_sum", {i}, ReduceAttrs({0}, false)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("input 0 ('x') is i32[3]")));
}

TEST_F(ReduceShapeTest, GradOpShapes) {
  const Value y = b_.Input("y", DType::kF32, {2});
  const Value yk = b_.Input("yk", DType::kF32, {2, 1});
  ASSERT_OK_AND_ASSIGN(
      auto dx, b_.AddNode("reduce_max_grad", {x_, y, y}, ReduceAttrs({-1}, false)));
  EXPECT_EQ(g_.type(dx[0]), g_.type(x_));
  ASSERT_OK_AND_ASSIGN(
      dx, b_.AddNode("reduce_max_grad", {x_, yk, yk}, ReduceAttrs({1}, true)));
  EXPECT_EQ(g_.type(dx[0]), g_.type(x_));
  EXPECT_THAT(
      b_.AddNode("reduce_max_grad", {x_, y, y}, ReduceAttrs({1}, true)),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("y must be f32[2,1] (reduce_max of x f32[2,4]), got "
                         "f32[2]")));
  EXPECT_THAT(b_.AddNode("softmax_grad", {x_, y}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("y and dy must have one type")));
  EXPECT_THAT(b_.AddNode("log_softmax_grad", {x_, x_}, {{"axis", AttrValue(2)}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("axis 2 is out of range")));
}

TEST(ReduceSchemaTest, GradOpDeclarations) {
  for (const char* op : {"reduce_max_grad", "softmax_grad", "log_softmax_grad"}) {
    SCOPED_TRACE(op);
    const OpSchema* s = OpRegistry::Global().Find(op);
    ASSERT_NE(s, nullptr);
    EXPECT_FALSE(s->differentiable);
    EXPECT_NE(s->FindKernel(DType::kF32), nullptr);
    EXPECT_NE(s->FindKernel(DType::kF64), nullptr);
    EXPECT_TRUE(s->flops);
    EXPECT_FALSE(s->examples.empty());
  }
  EXPECT_EQ(OpRegistry::Global().Find("softmax_grad")->inplace_input, 1);
  EXPECT_EQ(OpRegistry::Global().Find("log_softmax_grad")->inplace_input, 1);
}

TEST_F(ReduceShapeTest, FlopCounts) {
  ASSERT_OK_AND_ASSIGN(auto r,
                       b_.AddNode("reduce_sum", {x_}, ReduceAttrs({1}, false)));
  const Node& n = *g_.node(r[0].node);
  const std::vector<TensorType> in = {g_.type(x_)};
  EXPECT_EQ(n.schema()->flops(n, in), 8);
  ASSERT_OK_AND_ASSIGN(auto s, b_.AddNode("softmax", {x_}));
  const Node& sn = *g_.node(s[0].node);
  EXPECT_EQ(sn.schema()->flops(sn, in), 40);
}

}  // namespace
}  // namespace subquad
