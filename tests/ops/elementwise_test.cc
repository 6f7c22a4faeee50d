// Tests of the elementwise ops (ops/elementwise.cc) against scalar-loop
// references computed in double.

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
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

// The flat index, in an input of shape `in`, of element `flat` of the
// broadcast shape `out` (NumPy rules).
int64_t BroadcastIndex(const Shape& out, const Shape& in, int64_t flat) {
  int64_t idx = 0, stride = 1;
  for (int d = out.rank() - 1; d >= 0; --d) {
    const int64_t i = flat % out.dim(d);
    flat /= out.dim(d);
    const int sd = d - (out.rank() - in.rank());
    if (sd < 0) continue;
    if (in.dim(sd) != 1) idx += i * stride;
    stride *= in.dim(sd);
  }
  return idx;
}

// out[i] = f(inputs at i, broadcast), evaluated in double.
Tensor RefBroadcast(
    const std::vector<const Tensor*>& in, const Shape& out, DType dtype,
    const std::function<double(const std::vector<double>&)>& f) {
  Tensor r(dtype, out);
  std::vector<double> args(in.size());
  for (int64_t i = 0; i < r.num_elements(); ++i) {
    for (size_t k = 0; k < in.size(); ++k) {
      args[k] = ElementAsDouble(*in[k], BroadcastIndex(out, in[k]->shape(), i));
    }
    SetElement(r, i, f(args));
  }
  return r;
}

Tensor RefUnary(const Tensor& x, const std::function<double(double)>& f) {
  return RefBroadcast({&x}, x.shape(), x.dtype(),
                      [&](const std::vector<double>& a) { return f(a[0]); });
}

double RefGelu(double x) {
  const double k = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}

// d/dx of RefGelu, from the tanh form (the kernel uses another form).
double RefGeluGrad(double x) {
  const double k = std::sqrt(2.0 / M_PI);
  const double t = std::tanh(k * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + t) +
         0.5 * x * (1.0 - t * t) * k * (1.0 + 3 * 0.044715 * x * x);
}

// Runs the op's kernel with output 0 written into the buffer of the input
// its schema names (inplace_input).
absl::StatusOr<Tensor> RunInPlace(absl::string_view op,
                                  std::vector<Tensor> inputs,
                                  AttrMap attrs = {},
                                  ParallelRunner* pool = nullptr) {
  Graph g;
  GraphBuilder b(&g);
  std::vector<Value> in;
  for (size_t i = 0; i < inputs.size(); ++i) {
    in.push_back(
        b.Input(absl::StrCat("in", i), inputs[i].dtype(), inputs[i].shape()));
  }
  RETURN_IF_ERROR(b.status());
  ASSIGN_OR_RETURN(std::vector<Value> outs,
                   b.AddNode(op, in, std::move(attrs)));
  const Node& node = *g.node(outs[0].node);
  const OpSchema& schema = *node.schema();
  const int k = schema.inplace_input;
  if (k < 0 || node.output_type(0).byte_size() != inputs[k].byte_size()) {
    return absl::FailedPreconditionError("op cannot run in place");
  }
  std::vector<TensorView> in_views;
  for (const Tensor& t : inputs) in_views.push_back(t.view());
  std::vector<TensorView> out_views = {
      TensorView(node.output_type(0), inputs[k].raw_data())};
  KernelContext ctx{node, in_views, out_views,
                    pool != nullptr ? pool : SerialRunner::Get()};
  RETURN_IF_ERROR((*schema.FindKernel(node.output_type(0).dtype))(ctx));
  return std::move(inputs[k]);
}

struct Tol {
  double rtol, atol;
};
Tol Tolerance(DType t) {
  return t == DType::kF64 ? Tol{1e-12, 1e-14} : Tol{1e-5, 1e-6};
}

class ElementwiseTest : public ::testing::TestWithParam<DType> {
 protected:
  DType dt() const { return GetParam(); }
};

// ---- Binary ops -------------------------------------------------------------

struct BinaryCase {
  Shape x, y, out;
};

const BinaryCase kBinaryCases[] = {
    {{4, 3}, {3}, {4, 3}},
    {{4, 1}, {1, 5}, {4, 5}},
    {{}, {7}, {7}},
    {{7}, {}, {7}},
    {{}, {}, {}},
    {{2, 1, 3}, {4, 1}, {2, 4, 3}},
    {{33}, {33}, {33}},
    {{1}, {1}, {1}},
    {{3, 1}, {3, 1}, {3, 1}},
    {{5, 1, 1}, {1}, {5, 1, 1}},
    {{100000}, {100000}, {100000}},
    {{1000, 100}, {100}, {1000, 100}},
    {{100, 1000}, {100, 1}, {100, 1000}},
    {{1, 100000}, {7, 1}, {7, 100000}},
    {{0, 3}, {3}, {0, 3}},
};

struct BinaryOp {
  const char* name;
  std::function<double(double, double)> f;
};

const BinaryOp kBinaryOps[] = {
    {"add", [](double a, double b) { return a + b; }},
    {"sub", [](double a, double b) { return a - b; }},
    {"mul", [](double a, double b) { return a * b; }},
    {"div", [](double a, double b) { return a / b; }},
};

TEST_P(ElementwiseTest, BinaryOpsMatchReference) {
  SpawningRunner two(2);
  uint64_t seed = 1;
  for (const BinaryOp& op : kBinaryOps) {
    for (const BinaryCase& c : kBinaryCases) {
      SCOPED_TRACE(
          absl::StrCat(op.name, " ", c.x.ToString(), " ", c.y.ToString()));
      const Tensor x = RandomTensor(dt(), c.x, seed++, -2, 2);
      // Keep divisors away from zero.
      const Tensor y = RandomTensor(dt(), c.y, seed++, 0.5, 2);
      ASSERT_OK_AND_ASSIGN(auto got, RunOp(op.name, {x, y}));
      ASSERT_EQ(got[0].shape(), c.out);
      const Tensor want = RefBroadcast(
          {&x, &y}, c.out, dt(),
          [&](const std::vector<double>& a) { return op.f(a[0], a[1]); });
      const Tol tol = Tolerance(dt());
      EXPECT_TRUE(TensorsNear(got[0], want, tol.rtol, tol.atol));
      ASSERT_OK_AND_ASSIGN(auto par, RunOp(op.name, {x, y}, {}, &two));
      EXPECT_TRUE(par[0].BitwiseEquals(got[0]));
    }
  }
}

TEST_P(ElementwiseTest, BinaryOpsInPlace) {
  SpawningRunner two(2);
  const std::pair<Shape, Shape> cases[] = {
      {{4, 3}, {3}},        {{4, 3}, {4, 3}},        {{7}, {}},
      {{1000, 100}, {100}}, {{100, 1000}, {100, 1}}, {{100000}, {100000}}};
  for (const char* op : {"add", "sub", "mul", "div"}) {
    for (const auto& [xs, ys] : cases) {
      SCOPED_TRACE(absl::StrCat(op, " ", xs.ToString(), " ", ys.ToString()));
      const Tensor x = RandomTensor(dt(), xs, 11, -2, 2);
      const Tensor y = RandomTensor(dt(), ys, 12, 0.5, 2);
      ASSERT_OK_AND_ASSIGN(auto want, RunOp(op, {x, y}));
      ASSERT_OK_AND_ASSIGN(Tensor serial, RunInPlace(op, {x, y}));
      EXPECT_TRUE(serial.BitwiseEquals(want[0]));
      ASSERT_OK_AND_ASSIGN(Tensor par, RunInPlace(op, {x, y}, {}, &two));
      EXPECT_TRUE(par.BitwiseEquals(want[0]));
    }
  }
}

TEST_P(ElementwiseTest, BinarySameInputTwice) {
  const Tensor x = RandomTensor(dt(), {5, 4}, 3);
  ASSERT_OK_AND_ASSIGN(auto got, RunOp("mul", {x, x}));
  EXPECT_TRUE(TensorsNear(got[0], RefUnary(x, [](double v) { return v * v; }),
                          1e-6, 0));
}

// ---- Unary ops --------------------------------------------------------------

struct UnaryOp {
  const char* name;
  std::function<double(double)> f;
  double lo, hi;  // input range
  AttrMap attrs;
  double extra_rtol_f32 = 0;
};

std::vector<UnaryOp> UnaryOps() {
  return {
      {"neg", [](double v) { return -v; }, -3, 3, {}},
      {"exp", [](double v) { return std::exp(v); }, -20, 20, {}},
      {"log", [](double v) { return std::log(v); }, 1e-3, 50, {}},
      {"sqrt", [](double v) { return std::sqrt(v); }, 0, 50, {}},
      {"rsqrt", [](double v) { return 1 / std::sqrt(v); }, 1e-3, 50, {}},
      {"tanh", [](double v) { return std::tanh(v); }, -6, 6, {}},
      {"relu", [](double v) { return v > 0 ? v : 0.0; }, -3, 3, {}},
      {"gelu", RefGelu, -8, 8, {}, 2e-5},
      {"scale",
       [](double v) { return v * 0.375; },
       -3,
       3,
       {{"factor", AttrValue(0.375)}}},
      {"pow",
       [](double v) { return std::pow(v, 1.7); },
       0,
       4,
       {{"exponent", AttrValue(1.7)}}},
      {"pow",
       [](double v) { return v * v; },
       -4,
       4,
       {{"exponent", AttrValue(2.0)}}},
      {"pow",
       [](double v) { return v * v * v; },
       -4,
       4,
       {{"exponent", AttrValue(3.0)}}},
      {"pow",
       [](double v) { return 1 / v; },
       0.1,
       4,
       {{"exponent", AttrValue(-1.0)}}},
      {"pow",
       [](double v) { return std::pow(v, -2.5); },
       0.1,
       4,
       {{"exponent", AttrValue(-2.5)}}},
      {"pow",
       [](double v) { return std::sqrt(v); },
       0,
       4,
       {{"exponent", AttrValue(0.5)}}},
      {"pow",
       [](double v) { return v; },
       -4,
       4,
       {{"exponent", AttrValue(1.0)}}},
      {"pow",
       [](double v) { return 1.0; },
       -4,
       4,
       {{"exponent", AttrValue(0.0)}}},
  };
}

const Shape kUnaryShapes[] = {{}, {1}, {7}, {33, 3}, {2, 0}, {100000}};

TEST_P(ElementwiseTest, UnaryOpsMatchReference) {
  SpawningRunner two(2);
  uint64_t seed = 100;
  for (const UnaryOp& op : UnaryOps()) {
    for (const Shape& shape : kUnaryShapes) {
      SCOPED_TRACE(absl::StrCat(
          op.name, " ", shape.ToString(), " ",
          op.attrs.empty() ? "" : op.attrs.begin()->second.ToString()));
      const Tensor x = RandomTensor(dt(), shape, seed++, op.lo, op.hi);
      ASSERT_OK_AND_ASSIGN(auto got, RunOp(op.name, {x}, op.attrs));
      Tol tol = Tolerance(dt());
      if (dt() == DType::kF32) tol.rtol += op.extra_rtol_f32;
      EXPECT_TRUE(TensorsNear(got[0], RefUnary(x, op.f), tol.rtol, tol.atol));
      ASSERT_OK_AND_ASSIGN(auto par, RunOp(op.name, {x}, op.attrs, &two));
      EXPECT_TRUE(par[0].BitwiseEquals(got[0]));
      ASSERT_OK_AND_ASSIGN(Tensor inplace, RunInPlace(op.name, {x}, op.attrs));
      EXPECT_TRUE(inplace.BitwiseEquals(got[0]));
      ASSERT_OK_AND_ASSIGN(Tensor inplace_par,
                           RunInPlace(op.name, {x}, op.attrs, &two));
      EXPECT_TRUE(inplace_par.BitwiseEquals(got[0]));
    }
  }
}

TEST_P(ElementwiseTest, UnarySpecialValues) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor x = [&] {
    Tensor t(dt(), {8});
    const double v[] = {-kInf, -1000, -745.5, -720, 0, 1, kInf, nan};
    for (int i = 0; i < 8; ++i) SetElement(t, i, v[i]);
    return t;
  }();
  ASSERT_OK_AND_ASSIGN(auto e, RunOp("exp", {x}));
  EXPECT_EQ(ElementAsDouble(e[0], 0), 0.0);  // exp(-inf) is exactly 0
  EXPECT_EQ(ElementAsDouble(e[0], 1), 0.0);
  EXPECT_EQ(ElementAsDouble(e[0], 2), 0.0);
  if (dt() == DType::kF64) {
    EXPECT_EQ(ElementAsDouble(e[0], 3), std::exp(-720.0));  // subnormal
  }
  EXPECT_EQ(ElementAsDouble(e[0], 4), 1.0);
  EXPECT_EQ(ElementAsDouble(e[0], 6), kInf);
  EXPECT_TRUE(std::isnan(ElementAsDouble(e[0], 7)));

  ASSERT_OK_AND_ASSIGN(auto g, RunOp("gelu", {x}));
  EXPECT_EQ(ElementAsDouble(g[0], 1), 0.0);
  EXPECT_EQ(ElementAsDouble(g[0], 4), 0.0);
  EXPECT_EQ(ElementAsDouble(g[0], 6), kInf);
  EXPECT_TRUE(std::isnan(ElementAsDouble(g[0], 7)));

  ASSERT_OK_AND_ASSIGN(auto r, RunOp("relu", {x}));
  EXPECT_EQ(ElementAsDouble(r[0], 0), 0.0);
  EXPECT_EQ(ElementAsDouble(r[0], 6), kInf);
  EXPECT_TRUE(std::isnan(ElementAsDouble(r[0], 7)));

  ASSERT_OK_AND_ASSIGN(auto rs, RunOp("rsqrt", {x}));
  EXPECT_EQ(ElementAsDouble(rs[0], 4), kInf);
  EXPECT_EQ(ElementAsDouble(rs[0], 6), 0.0);
  EXPECT_TRUE(std::isnan(ElementAsDouble(rs[0], 1)));

  ASSERT_OK_AND_ASSIGN(auto l, RunOp("log", {x}));
  EXPECT_EQ(ElementAsDouble(l[0], 4), -kInf);
  EXPECT_EQ(ElementAsDouble(l[0], 6), kInf);
  EXPECT_TRUE(std::isnan(ElementAsDouble(l[0], 1)));

  // A negative base with a non-integer exponent is NaN, as std::pow.
  ASSERT_OK_AND_ASSIGN(auto p,
                       RunOp("pow", {x}, {{"exponent", AttrValue(1.5)}}));
  EXPECT_TRUE(std::isnan(ElementAsDouble(p[0], 1)));
  EXPECT_EQ(ElementAsDouble(p[0], 5), 1.0);
}

// ---- where ------------------------------------------------------------------

struct WhereCase {
  Shape cond, x, y, out;
};

TEST_P(ElementwiseTest, WhereMatchesReference) {
  const WhereCase cases[] = {
      {{4, 3}, {4, 3}, {4, 3}, {4, 3}},
      {{4, 1, 5}, {3, 1}, {5}, {4, 3, 5}},
      {{}, {7}, {7}, {7}},
      {{7}, {}, {}, {7}},
      {{2, 1, 3}, {4, 1}, {1}, {2, 4, 3}},
      {{1}, {1}, {1}, {1}},
      {{100000}, {100000}, {100000}, {100000}},
      {{1000, 100}, {100}, {1000, 1}, {1000, 100}},
      {{33, 1}, {1, 33}, {33, 33}, {33, 33}},
  };
  SpawningRunner two(2);
  uint64_t seed = 7;
  for (DType cond_dtype : kAllDTypes) {
    for (const WhereCase& c : cases) {
      SCOPED_TRACE(absl::StrCat(DTypeName(cond_dtype), " ", c.cond.ToString(),
                                " ", c.x.ToString(), " ", c.y.ToString()));
      // Integer conds are 0/1/2; float conds are rounded so about a third
      // are exactly zero.
      Tensor cond = RandomTensor(cond_dtype, c.cond, seed++, 0, 3);
      if (IsFloating(cond_dtype)) {
        for (int64_t i = 0; i < cond.num_elements(); ++i) {
          SetElement(cond, i, std::floor(ElementAsDouble(cond, i)) - 1);
        }
      }
      const Tensor x = RandomTensor(dt(), c.x, seed++);
      const Tensor y = RandomTensor(dt(), c.y, seed++);
      ASSERT_OK_AND_ASSIGN(auto got, RunOp("where", {cond, x, y}));
      ASSERT_EQ(got[0].shape(), c.out);
      const Tensor want = RefBroadcast(
          {&cond, &x, &y}, c.out, dt(),
          [](const std::vector<double>& a) { return a[0] != 0 ? a[1] : a[2]; });
      EXPECT_TRUE(TensorsNear(got[0], want, 0, 0));
      ASSERT_OK_AND_ASSIGN(auto par, RunOp("where", {cond, x, y}, {}, &two));
      EXPECT_TRUE(par[0].BitwiseEquals(got[0]));
    }
  }
}

// ---- causal_mask ------------------------------------------------------------

TEST_P(ElementwiseTest, CausalMaskMatchesReference) {
  const Shape shapes[] = {{4, 4},       {2, 3, 5},     {6, 4}, {1, 1},
                          {2, 2, 1, 7}, {4, 256, 256}, {3, 0}};
  SpawningRunner two(2);
  for (const Shape& shape : shapes) {
    for (double fill : {-kInf, 0.5}) {
      SCOPED_TRACE(absl::StrCat(shape.ToString(), " fill ", fill));
      const Tensor x = RandomTensor(dt(), shape, 5);
      // -inf is the default: leave it unset.
      const AttrMap attrs =
          fill == -kInf ? AttrMap{} : AttrMap{{"fill", AttrValue(fill)}};
      ASSERT_OK_AND_ASSIGN(auto got, RunOp("causal_mask", {x}, attrs));
      Tensor want = x;
      const int r = shape.rank();
      const int64_t tq = shape[r - 2], tk = shape[r - 1];
      for (int64_t i = 0; i < want.num_elements(); ++i) {
        const int64_t q = (i / tk) % tq, k = i % tk;
        if (k > q + (tk - tq)) SetElement(want, i, fill);
      }
      EXPECT_TRUE(TensorsNear(got[0], want, 0, 0));
      ASSERT_OK_AND_ASSIGN(auto par, RunOp("causal_mask", {x}, attrs, &two));
      EXPECT_TRUE(par[0].BitwiseEquals(got[0]));
      ASSERT_OK_AND_ASSIGN(Tensor inplace,
                           RunInPlace("causal_mask", {x}, attrs));
      EXPECT_TRUE(inplace.BitwiseEquals(got[0]));
      ASSERT_OK_AND_ASSIGN(Tensor inplace_par,
                           RunInPlace("causal_mask", {x}, attrs, &two));
      EXPECT_TRUE(inplace_par.BitwiseEquals(got[0]));
    }
  }
}

TEST_P(ElementwiseTest, CausalMaskSquareIsLowerTriangular) {
  Tensor x(dt(), {3, 3});
  for (int i = 0; i < 9; ++i) SetElement(x, i, i + 1);
  ASSERT_OK_AND_ASSIGN(auto got, RunOp("causal_mask", {x}));
  const double want[] = {1, -kInf, -kInf, 4, 5, -kInf, 7, 8, 9};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(ElementAsDouble(got[0], i), want[i]);
}

// ---- tanh_grad / relu_grad / gelu_grad --------------------------------------

struct UnaryGradOp {
  const char* name;
  std::function<double(double, double)> f;  // (forward x or y, dy) -> dx
  double lo, hi;                            // range of the first input
  Tol f32_tol;
};

TEST_P(ElementwiseTest, UnaryGradOpsMatchReference) {
  const UnaryGradOp ops[] = {
      {"tanh_grad", [](double y, double dy) { return dy * (1 - y * y); }, -1,
       1, {1e-5, 1e-6}},
      {"relu_grad", [](double x, double dy) { return x > 0 ? dy : 0.0; }, -3,
       3, {0, 0}},
      // gelu' crosses 0 near x = -0.75: an absolute tolerance for f32.
      {"gelu_grad",
       [](double x, double dy) { return dy * RefGeluGrad(x); }, -8, 8,
       {1e-5, 2e-6}}};
  SpawningRunner two(2);
  uint64_t seed = 300;
  for (const UnaryGradOp& op : ops) {
    for (const Shape& shape : kUnaryShapes) {
      SCOPED_TRACE(absl::StrCat(op.name, " ", shape.ToString()));
      const Tensor a = RandomTensor(dt(), shape, seed++, op.lo, op.hi);
      const Tensor dy = RandomTensor(dt(), shape, seed++, -2, 2);
      ASSERT_OK_AND_ASSIGN(auto got, RunOp(op.name, {a, dy}));
      const Tensor want = RefBroadcast(
          {&a, &dy}, shape, dt(),
          [&](const std::vector<double>& v) { return op.f(v[0], v[1]); });
      const Tol tol =
          dt() == DType::kF64 ? Tol{1e-12, 1e-14} : op.f32_tol;
      EXPECT_TRUE(TensorsNear(got[0], want, tol.rtol, tol.atol));
      ASSERT_OK_AND_ASSIGN(auto par, RunOp(op.name, {a, dy}, {}, &two));
      EXPECT_TRUE(par[0].BitwiseEquals(got[0]));
      // In place: dx written over dy.
      ASSERT_OK_AND_ASSIGN(Tensor inplace, RunInPlace(op.name, {a, dy}));
      EXPECT_TRUE(inplace.BitwiseEquals(got[0]));
      ASSERT_OK_AND_ASSIGN(Tensor inplace_par,
                           RunInPlace(op.name, {a, dy}, {}, &two));
      EXPECT_TRUE(inplace_par.BitwiseEquals(got[0]));
    }
  }
}

TEST_P(ElementwiseTest, UnaryGradSpecialValues) {
  Tensor x(dt(), {6});
  const double xs[] = {0.0, -0.0, std::nan(""), -100.0, 100.0, 1e-30};
  for (int i = 0; i < 6; ++i) SetElement(x, i, xs[i]);
  Tensor dy(dt(), {6});
  for (int i = 0; i < 6; ++i) SetElement(dy, i, 2.0);
  ASSERT_OK_AND_ASSIGN(auto relu, RunOp("relu_grad", {x, dy}));
  const double relu_want[] = {0, 0, 0, 0, 2, 2};
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(ElementAsDouble(relu[0], i), relu_want[i]) << i;
  }
  // Far tails: exactly 0 and dy (no inf * 0 = NaN); 0.5 * dy at 0.
  ASSERT_OK_AND_ASSIGN(auto gelu, RunOp("gelu_grad", {x, dy}));
  EXPECT_EQ(ElementAsDouble(gelu[0], 0), 1.0);
  EXPECT_TRUE(std::isnan(ElementAsDouble(gelu[0], 2)));
  EXPECT_EQ(ElementAsDouble(gelu[0], 3), 0.0);
  EXPECT_EQ(ElementAsDouble(gelu[0], 4), 2.0);
}

INSTANTIATE_TEST_SUITE_P(Floats, ElementwiseTest,
                         ::testing::Values(DType::kF32, DType::kF64),
                         [](const auto& info) {
                           return std::string(DTypeName(info.param));
                         });

// ---- cast -------------------------------------------------------------------

TEST(CastTest, AllPairsMatchStaticCastOnInRangeValues) {
  SpawningRunner two(2);
  for (DType from : kAllDTypes) {
    for (DType to : kAllDTypes) {
      for (const Shape& shape :
           {Shape{}, Shape{7}, Shape{3, 5}, Shape{100000}}) {
        SCOPED_TRACE(absl::StrCat(DTypeName(from), " -> ", DTypeName(to), " ",
                                  shape.ToString()));
        const Tensor x = RandomTensor(from, shape, 9, -1000, 1000);
        ASSERT_OK_AND_ASSIGN(auto got,
                             RunOp("cast", {x}, {{"dtype", AttrValue(to)}}));
        ASSERT_EQ(got[0].type(), (TensorType{to, shape}));
        Tensor want(to, shape);
        for (int64_t i = 0; i < x.num_elements(); ++i) {
          const double v = ElementAsDouble(x, i);
          SetElement(want, i, IsInteger(to) ? std::trunc(v) : v);
        }
        EXPECT_TRUE(TensorsNear(got[0], want, 0, 0));
        ASSERT_OK_AND_ASSIGN(
            auto par, RunOp("cast", {x}, {{"dtype", AttrValue(to)}}, &two));
        EXPECT_TRUE(par[0].BitwiseEquals(got[0]));
      }
    }
  }
}

TEST(CastTest, FloatToIntTruncatesTowardZeroAndSaturates) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (DType from : {DType::kF32, DType::kF64}) {
    Tensor x(from, {8});
    const double v[] = {2.9, -2.9, 0.5, -0.5, nan, 1e20, -1e20, -kInf};
    for (int i = 0; i < 8; ++i) SetElement(x, i, v[i]);
    ASSERT_OK_AND_ASSIGN(
        auto i32, RunOp("cast", {x}, {{"dtype", AttrValue(DType::kI32)}}));
    const int32_t* p = i32[0].data<int32_t>();
    EXPECT_THAT(std::vector<int32_t>(p, p + 8),
                ::testing::ElementsAre(2, -2, 0, 0, 0, INT32_MAX, INT32_MIN,
                                       INT32_MIN));
    ASSERT_OK_AND_ASSIGN(
        auto i64, RunOp("cast", {x}, {{"dtype", AttrValue(DType::kI64)}}));
    const int64_t* q = i64[0].data<int64_t>();
    EXPECT_THAT(std::vector<int64_t>(q, q + 8),
                ::testing::ElementsAre(2, -2, 0, 0, 0, INT64_MAX, INT64_MIN,
                                       INT64_MIN));
  }
}

TEST(CastTest, I64ToI32Wraps) {
  const Tensor x = Tensor::FromVector<int64_t>(
      {3}, std::vector<int64_t>{(int64_t{1} << 32) + 5, -1, int64_t{1} << 31});
  ASSERT_OK_AND_ASSIGN(auto got,
                       RunOp("cast", {x}, {{"dtype", AttrValue(DType::kI32)}}));
  const int32_t* p = got[0].data<int32_t>();
  EXPECT_THAT(std::vector<int32_t>(p, p + 3),
              ::testing::ElementsAre(5, -1, INT32_MIN));
}

// ---- Shape rules and schemas ------------------------------------------------

class ElementwiseShapeTest : public ::testing::Test {
 protected:
  Value In(DType dtype, Shape shape) {
    return b_.Input(absl::StrCat("in", n_++), dtype, std::move(shape));
  }
  Graph g_;
  GraphBuilder b_{&g_};
  int n_ = 0;
};

TEST_F(ElementwiseShapeTest, BinaryShapesMustBroadcast) {
  const Value x = In(DType::kF32, {4, 3});
  const Value y = In(DType::kF32, {5});
  EXPECT_THAT(b_.AddNode("add", {x, y}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("add: building node 'add': shapes do not broadcast: "
                          "f32[4,3] vs f32[5]")));
  auto scope = b_.Scope("blk");
  EXPECT_THAT(b_.AddNode("div", {y, x}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("div: building node 'blk/div': shapes do not "
                          "broadcast: f32[5] vs f32[4,3]")));
}

TEST_F(ElementwiseShapeTest, BinaryDtypesMustMatch) {
  const Value x = In(DType::kF32, {4});
  const Value y = In(DType::kF64, {4});
  EXPECT_THAT(b_.AddNode("mul", {x, y}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("mul: building node 'mul': dtypes differ: f32[4] vs "
                          "f64[4]")));
  const Value i = In(DType::kI32, {4});
  EXPECT_THAT(b_.AddNode("sub", {i, i}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sub: building node 'sub': input 0 ('x') is "
                                 "i32[4]")));
}

TEST_F(ElementwiseShapeTest, BinaryOutputShapes) {
  ASSERT_OK_AND_ASSIGN(auto out, b_.AddNode("add", {In(DType::kF64, {2, 1, 3}),
                                                    In(DType::kF64, {4, 1})}));
  EXPECT_EQ(g_.type(out[0]), (TensorType{DType::kF64, {2, 4, 3}}));
}

TEST_F(ElementwiseShapeTest, UnaryRejectsIntegers) {
  EXPECT_THAT(b_.AddNode("exp", {In(DType::kI64, {3})}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("exp: building node 'exp': input 0 ('x') is "
                                 "i64[3]")));
}

TEST_F(ElementwiseShapeTest, RequiredAttributes) {
  const Value x = In(DType::kF32, {3});
  EXPECT_THAT(b_.AddNode("scale", {x}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("missing required attribute 'factor'")));
  EXPECT_THAT(b_.AddNode("pow", {x}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("missing required attribute 'exponent'")));
  EXPECT_THAT(b_.AddNode("cast", {x}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("missing required attribute 'dtype'")));
}

TEST_F(ElementwiseShapeTest, WhereRules) {
  const Value c = In(DType::kI32, {4, 1});
  const Value x = In(DType::kF32, {3});
  const Value y64 = In(DType::kF64, {3});
  const Value y5 = In(DType::kF32, {5});
  EXPECT_THAT(b_.AddNode("where", {c, x, y64}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("where: building node 'where': dtypes of x and y "
                          "differ: f32[3] vs f64[3]")));
  EXPECT_THAT(b_.AddNode("where", {c, x, y5}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("where: building node 'where': shapes do not "
                          "broadcast: i32[4,1] vs f32[3] vs f32[5]")));
  const Value c3 = In(DType::kF32, {2, 1, 1});
  EXPECT_THAT(b_.AddNode("where", {In(DType::kI64, {7}), x, x}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("shapes do not broadcast: i64[7] vs f32[3] "
                                 "vs f32[3]")));
  ASSERT_OK_AND_ASSIGN(auto out,
                       b_.AddNode("where", {c3, x, In(DType::kF32, {4, 1})}));
  EXPECT_EQ(g_.type(out[0]), (TensorType{DType::kF32, {2, 4, 3}}));
}

TEST_F(ElementwiseShapeTest, CausalMaskNeedsRankTwo) {
  EXPECT_THAT(b_.AddNode("causal_mask", {In(DType::kF32, {5})}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("causal_mask: building node 'causal_mask': scores "
                          "must have rank >= 2 ([..., Tq, Tk]), got f32[5]")));
}

TEST_F(ElementwiseShapeTest, CastOutputType) {
  ASSERT_OK_AND_ASSIGN(auto out,
                       b_.AddNode("cast", {In(DType::kF32, {2, 3})},
                                  {{"dtype", AttrValue(DType::kI64)}}));
  EXPECT_EQ(g_.type(out[0]), (TensorType{DType::kI64, {2, 3}}));
}

TEST(ElementwiseSchemaTest, Declarations) {
  const OpRegistry& reg = OpRegistry::Global();
  for (const char* op :
       {"add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "rsqrt",
        "tanh", "relu", "gelu", "scale", "pow", "causal_mask"}) {
    SCOPED_TRACE(op);
    const OpSchema* s = reg.Find(op);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->inplace_input, 0);
    EXPECT_TRUE(s->differentiable);
    EXPECT_NE(s->FindKernel(DType::kF32), nullptr);
    EXPECT_NE(s->FindKernel(DType::kF64), nullptr);
    EXPECT_EQ(s->FindKernel(DType::kI32), nullptr);
    EXPECT_TRUE(s->flops);
    EXPECT_FALSE(s->doc.empty());
  }
  const OpSchema* where = reg.Find("where");
  ASSERT_NE(where, nullptr);
  EXPECT_FALSE(where->inputs[0].differentiable);
  EXPECT_TRUE(where->inputs[1].differentiable);
  EXPECT_EQ(where->inplace_input, -1);
  const OpSchema* cast = reg.Find("cast");
  ASSERT_NE(cast, nullptr);
  for (DType t : kAllDTypes) EXPECT_NE(cast->FindKernel(t), nullptr);
  EXPECT_EQ(reg.Find("causal_mask")->FindAttr("fill")->default_value->f(),
            -kInf);
}

TEST_F(ElementwiseShapeTest, UnaryGradOpsNeedOneType) {
  EXPECT_THAT(
      b_.AddNode("relu_grad", {In(DType::kF32, {2, 3}), In(DType::kF32, {3})}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("relu_grad: building node 'relu_grad': x and dy must have "
                  "one type: f32[2,3] vs f32[3]")));
  EXPECT_THAT(
      b_.AddNode("tanh_grad", {In(DType::kF32, {3}), In(DType::kF64, {3})}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("y and dy must have one type")));
}

TEST(ElementwiseSchemaTest, GradOpDeclarations) {
  for (const char* op : {"tanh_grad", "relu_grad", "gelu_grad"}) {
    SCOPED_TRACE(op);
    const OpSchema* s = OpRegistry::Global().Find(op);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->inplace_input, 1);
    EXPECT_FALSE(s->differentiable);
    EXPECT_FALSE(s->grad);
    EXPECT_NE(s->FindKernel(DType::kF32), nullptr);
    EXPECT_NE(s->FindKernel(DType::kF64), nullptr);
    EXPECT_TRUE(s->flops);
    EXPECT_FALSE(s->examples.empty());
  }
}

TEST_F(ElementwiseShapeTest, FlopCounts) {
  ASSERT_OK_AND_ASSIGN(auto add, b_.AddNode("add", {In(DType::kF32, {4, 3}),
                                                    In(DType::kF32, {3})}));
  const Node& n = *g_.node(add[0].node);
  const std::vector<TensorType> in = {{DType::kF32, {4, 3}},
                                      {DType::kF32, {3}}};
  EXPECT_EQ(n.schema()->flops(n, in), 12);
  ASSERT_OK_AND_ASSIGN(auto gelu, b_.AddNode("gelu", {In(DType::kF32, {10})}));
  const Node& gn = *g_.node(gelu[0].node);
  EXPECT_EQ(gn.schema()->flops(gn, {{DType::kF32, {10}}}), 70);
}

}  // namespace
}  // namespace subquad
