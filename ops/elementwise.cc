// Elementwise ops: binary arithmetic with NumPy broadcasting, unary math,
// scale, pow, where, causal_mask and cast, each with its gradient rule, and
// the fused backward ops tanh_grad, relu_grad and gelu_grad. Semantics are
// in ops/ops.h.
//
// Kernels map the raw buffers as Eigen arrays so that arithmetic and
// exp/log/tanh/sqrt vectorise; work above a few tens of thousands of
// elements is split across the pool. Ops with inplace_input = k only ever
// read element i of input k before writing element i of the output, so they
// are correct when the two share a buffer.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/attribute.h"
#include "core/builder.h"
#include "core/dtype.h"
#include "core/grad.h"
#include "core/graph.h"
#include "core/op_schema.h"
#include "core/parallel.h"
#include "core/shape.h"
#include "core/tensor.h"
#include "ops/internal/broadcast.h"
#include "ops/internal/eigen.h"
#include "ops/internal/parallel_range.h"
#include "ops/ops.h"

namespace subquad {
namespace {

using ops_internal::BroadcastIter;
using ops_internal::ForEachSegment;
using ops_internal::kSerialWork;
using ops_internal::ParallelRange;

using ops_internal::ConstVecMap;
using ops_internal::Vec;
using ops_internal::VecMap;

absl::StatusOr<std::vector<TensorType>> SameAsInput0(const ShapeContext& c) {
  return std::vector<TensorType>{c.input(0)};
}

FlopsFn PerOutputElement(int64_t flops_per_element) {
  return [flops_per_element](const Node& node,
                             absl::Span<const TensorType>) -> int64_t {
    return flops_per_element * node.output_type(0).num_elements();
  };
}

// Registers Kernel<T> for f32 and f64 (keyed by output 0's dtype).
template <template <typename> class Kernel>
void AddFloatKernels(OpSchema& s) {
  s.kernels[DType::kF32] = [](const KernelContext& ctx) {
    return Kernel<float>::Run(ctx);
  };
  s.kernels[DType::kF64] = [](const KernelContext& ctx) {
    return Kernel<double>::Run(ctx);
  };
}

TensorType F32(const Shape& shape) { return TensorType{DType::kF32, shape}; }

// Examples of a unary op: a vector, a matrix with odd sizes and a rank-3
// tensor, values in [lo, hi), with `attrs`.
std::vector<OpExample> UnaryExamples(double lo, double hi, AttrMap attrs = {}) {
  std::vector<OpExample> out;
  for (Shape s : {Shape{7}, Shape{3, 5}, Shape{2, 3, 4}}) {
    out.push_back(OpExample{{F32(std::move(s))}, attrs, {{lo, hi}}});
  }
  return out;
}

// Examples of a binary op: equal shapes, a trailing vector broadcast over
// a rank-3 tensor, both operands broadcast, and scalars on either side.
// x's values are in [-1, 1), y's in [ylo, yhi).
std::vector<OpExample> BinaryExamples(double ylo, double yhi) {
  const std::pair<Shape, Shape> shapes[] = {{{3, 5}, {3, 5}},
                                            {{2, 3, 4}, {4}},
                                            {{3, 1, 5}, {1, 4, 1}},
                                            {{}, {2, 3}},
                                            {{5, 1}, {}}};
  std::vector<OpExample> out;
  for (const auto& [x, y] : shapes) {
    out.push_back(OpExample{{F32(x), F32(y)}, {}, {{-1, 1}, {ylo, yhi}}});
  }
  return out;
}

// A scalar constant 0 of `dtype`.
Value ScalarZero(GraphBuilder& b, DType dtype) {
  return dtype == DType::kF32 ? b.ScalarConstant<float>(0.0f)
                              : b.ScalarConstant<double>(0.0);
}

// ---- Binary arithmetic ------------------------------------------------------

// Each functor combines two Eigen arrays, an array and a scalar, or two
// scalars.
struct AddFn {
  static constexpr const char* kName = "add";
  static constexpr const char* kDoc = "x + y, elementwise with broadcasting.";
  template <typename A, typename B>
  static auto Apply(const A& a, const B& b) {
    return a + b;
  }
  static std::vector<OpExample> Examples() { return BinaryExamples(-1, 1); }
  static absl::Status Grad(GradContext& ctx) {
    GraphBuilder& b = ctx.builder();
    const Value g = ctx.grad_output(0);
    for (int i : {0, 1}) {
      if (ctx.needs_grad(i)) {
        ctx.set_grad_input(i, ops::ReduceToShape(b, g, ctx.input_type(i).shape));
      }
    }
    return absl::OkStatus();
  }
};
struct SubFn {
  static constexpr const char* kName = "sub";
  static constexpr const char* kDoc = "x - y, elementwise with broadcasting.";
  template <typename A, typename B>
  static auto Apply(const A& a, const B& b) {
    return a - b;
  }
  static std::vector<OpExample> Examples() { return BinaryExamples(-1, 1); }
  // gy = -g, negated after reducing (fewer elements).
  static absl::Status Grad(GradContext& ctx) {
    GraphBuilder& b = ctx.builder();
    const Value g = ctx.grad_output(0);
    if (ctx.needs_grad(0)) {
      ctx.set_grad_input(0, ops::ReduceToShape(b, g, ctx.input_type(0).shape));
    }
    if (ctx.needs_grad(1)) {
      ctx.set_grad_input(
          1, ops::Neg(b, ops::ReduceToShape(b, g, ctx.input_type(1).shape)));
    }
    return absl::OkStatus();
  }
};
struct MulFn {
  static constexpr const char* kName = "mul";
  static constexpr const char* kDoc = "x * y, elementwise with broadcasting.";
  template <typename A, typename B>
  static auto Apply(const A& a, const B& b) {
    return a * b;
  }
  static std::vector<OpExample> Examples() { return BinaryExamples(-1, 1); }
  // gx = g * y, gy = g * x.
  static absl::Status Grad(GradContext& ctx) {
    GraphBuilder& b = ctx.builder();
    const Value g = ctx.grad_output(0);
    for (int i : {0, 1}) {
      if (!ctx.needs_grad(i)) continue;
      ctx.set_grad_input(
          i, ops::ReduceToShape(b, ops::Mul(b, g, ctx.input(1 - i)),
                                ctx.input_type(i).shape));
    }
    return absl::OkStatus();
  }
};
struct DivFn {
  static constexpr const char* kName = "div";
  static constexpr const char* kDoc = "x / y, elementwise with broadcasting.";
  template <typename A, typename B>
  static auto Apply(const A& a, const B& b) {
    return a / b;
  }
  // Denominators away from 0.
  static std::vector<OpExample> Examples() { return BinaryExamples(0.5, 2); }
  // With t = g / y: gx = t, gy = -t * z (z = x / y, the output).
  static absl::Status Grad(GradContext& ctx) {
    GraphBuilder& b = ctx.builder();
    const Value t = ops::Div(b, ctx.grad_output(0), ctx.input(1));
    if (ctx.needs_grad(0)) {
      ctx.set_grad_input(0, ops::ReduceToShape(b, t, ctx.input_type(0).shape));
    }
    if (ctx.needs_grad(1)) {
      ctx.set_grad_input(
          1, ops::Neg(b, ops::ReduceToShape(b, ops::Mul(b, t, ctx.output(0)),
                                            ctx.input_type(1).shape)));
    }
    return absl::OkStatus();
  }
};

template <typename Fn>
struct BinaryKernel {
  template <typename T>
  struct Impl {
    static absl::Status Run(const KernelContext& ctx) {
      const TensorView& out = ctx.outputs[0];
      const T* a = ctx.inputs[0].template data<T>();
      const T* b = ctx.inputs[1].template data<T>();
      T* o = out.template data<T>();
      const BroadcastIter<2> it(
          out.shape(), {&ctx.inputs[0].shape(), &ctx.inputs[1].shape()});
      const int64_t sa = it.row_stride(0), sb = it.row_stride(1);
      ForEachSegment<2>(
          ctx.pool, it, out.num_elements(), kSerialWork,
          [&](int64_t out_off, const std::array<int64_t, 2>& in, int64_t n) {
            VecMap<T> y(o + out_off, n);
            if (sa == 1 && sb == 1) {
              y = Fn::Apply(ConstVecMap<T>(a + in[0], n),
                            ConstVecMap<T>(b + in[1], n));
            } else if (sa == 1 && sb == 0) {
              y = Fn::Apply(ConstVecMap<T>(a + in[0], n), b[in[1]]);
            } else if (sa == 0 && sb == 1) {
              y = Fn::Apply(a[in[0]], ConstVecMap<T>(b + in[1], n));
            } else {
              for (int64_t i = 0; i < n; ++i) {
                o[out_off + i] =
                    Fn::Apply(a[in[0] + i * sa], b[in[1] + i * sb]);
              }
            }
          });
      return absl::OkStatus();
    }
  };
};

absl::StatusOr<std::vector<TensorType>> BinaryShape(const ShapeContext& c) {
  const TensorType& x = c.input(0);
  const TensorType& y = c.input(1);
  if (x.dtype != y.dtype) {
    return absl::InvalidArgumentError(
        absl::StrCat("dtypes differ: ", x.ToString(), " vs ", y.ToString()));
  }
  absl::StatusOr<Shape> shape = BroadcastShapes(x.shape, y.shape);
  if (!shape.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shapes do not broadcast: ", x.ToString(), " vs ", y.ToString()));
  }
  return std::vector<TensorType>{TensorType{x.dtype, *std::move(shape)}};
}

template <typename Fn>
OpSchema MakeBinarySchema() {
  OpSchema s;
  s.name = Fn::kName;
  s.doc = Fn::kDoc;
  s.inputs = {
      ArgDef{"x", DTypeSet::Floating(), true, "left operand"},
      ArgDef{"y", DTypeSet::Floating(), true, "right operand, same dtype"}};
  s.outputs = {"z"};
  s.shape_fn = BinaryShape;
  AddFloatKernels<BinaryKernel<Fn>::template Impl>(s);
  s.flops = PerOutputElement(1);
  s.inplace_input = 0;
  s.grad = Fn::Grad;
  s.examples = Fn::Examples();
  return s;
}

SUBQUAD_REGISTER_OP(MakeBinarySchema<AddFn>());
SUBQUAD_REGISTER_OP(MakeBinarySchema<SubFn>());
SUBQUAD_REGISTER_OP(MakeBinarySchema<MulFn>());
SUBQUAD_REGISTER_OP(MakeBinarySchema<DivFn>());

// ---- Unary math -------------------------------------------------------------

// A unary functor: constructed from the node (for attributes), it maps a
// contiguous range x to y (which may be the same memory). kCost weighs the
// parallel grain; kFlops is the flop count per element.
struct NegFn {
  static constexpr const char* kName = "neg";
  static constexpr const char* kDoc = "-x, elementwise.";
  static constexpr int kCost = 1;
  static constexpr int kFlops = 1;
  static std::vector<AttrDef> Attrs() { return {}; }
  explicit NegFn(const Node&) {}
  template <typename T>
  void operator()(ConstVecMap<T> x, VecMap<T> y) const {
    y = -x;
  }
  static std::vector<OpExample> Examples() { return UnaryExamples(-1, 1); }
  static absl::Status Grad(GradContext& ctx) {
    ctx.set_grad_input(0, ops::Neg(ctx.builder(), ctx.grad_output(0)));
    return absl::OkStatus();
  }
};

// Eigen's vectorised f64 exp returns a fixed tiny value (about 5.6e-309)
// for every x below about -709.4, exp(-inf) included. Blocks that
// hold such x take std::exp instead, so exp(-inf) is exactly 0 (masked
// entries) and subnormal results are right. f32 needs no fix: Eigen returns
// 0 for x below about -88 and exp(-inf) = 0.
constexpr int64_t kExpBlock = 1024;
constexpr double kExpF64SafeMin = -708.0;

template <typename T>
void ExpRange(ConstVecMap<T> x, VecMap<T> y) {
  if constexpr (std::is_same_v<T, double>) {
    const int64_t n = x.size();
    for (int64_t b = 0; b < n; b += kExpBlock) {
      const int64_t len = std::min(kExpBlock, n - b);
      ConstVecMap<T> xb(x.data() + b, len);
      VecMap<T> yb(y.data() + b, len);
      if (xb.template minCoeff<Eigen::PropagateNumbers>() < kExpF64SafeMin) {
        for (int64_t i = 0; i < len; ++i) yb[i] = std::exp(xb[i]);
      } else {
        yb = xb.exp();
      }
    }
  } else {
    y = x.exp();
  }
}

struct ExpFn {
  static constexpr const char* kName = "exp";
  static constexpr const char* kDoc = "e^x, elementwise.";
  static constexpr int kCost = 4;
  static constexpr int kFlops = 1;
  static std::vector<AttrDef> Attrs() { return {}; }
  explicit ExpFn(const Node&) {}
  template <typename T>
  void operator()(ConstVecMap<T> x, VecMap<T> y) const {
    ExpRange<T>(x, y);
  }
  static std::vector<OpExample> Examples() { return UnaryExamples(-2, 2); }
  // g * y, from the output.
  static absl::Status Grad(GradContext& ctx) {
    ctx.set_grad_input(
        0, ops::Mul(ctx.builder(), ctx.grad_output(0), ctx.output(0)));
    return absl::OkStatus();
  }
};

struct LogFn {
  static constexpr const char* kName = "log";
  static constexpr const char* kDoc = "Natural logarithm, elementwise.";
  static constexpr int kCost = 4;
  static constexpr int kFlops = 1;
  static std::vector<AttrDef> Attrs() { return {}; }
  explicit LogFn(const Node&) {}
  template <typename T>
  void operator()(ConstVecMap<T> x, VecMap<T> y) const {
    y = x.log();
  }
  // Away from the singularity at 0.
  static std::vector<OpExample> Examples() { return UnaryExamples(0.5, 2); }
  // g / x.
  static absl::Status Grad(GradContext& ctx) {
    ctx.set_grad_input(
        0, ops::Div(ctx.builder(), ctx.grad_output(0), ctx.input(0)));
    return absl::OkStatus();
  }
};

struct SqrtFn {
  static constexpr const char* kName = "sqrt";
  static constexpr const char* kDoc = "Square root, elementwise.";
  static constexpr int kCost = 2;
  static constexpr int kFlops = 1;
  static std::vector<AttrDef> Attrs() { return {}; }
  explicit SqrtFn(const Node&) {}
  template <typename T>
  void operator()(ConstVecMap<T> x, VecMap<T> y) const {
    y = x.sqrt();
  }
  static std::vector<OpExample> Examples() { return UnaryExamples(0.5, 2); }
  // 0.5 * g / y, from the output.
  static absl::Status Grad(GradContext& ctx) {
    GraphBuilder& b = ctx.builder();
    ctx.set_grad_input(
        0, ops::Div(b, ops::Scale(b, ctx.grad_output(0), 0.5), ctx.output(0)));
    return absl::OkStatus();
  }
};

struct RsqrtFn {
  static constexpr const char* kName = "rsqrt";
  static constexpr const char* kDoc = "1 / sqrt(x), elementwise.";
  static constexpr int kCost = 2;
  static constexpr int kFlops = 1;
  static std::vector<AttrDef> Attrs() { return {}; }
  explicit RsqrtFn(const Node&) {}
  template <typename T>
  void operator()(ConstVecMap<T> x, VecMap<T> y) const {
    y = x.rsqrt();
  }
  static std::vector<OpExample> Examples() { return UnaryExamples(0.5, 2); }
  // -0.5 * g * y^3, from the output.
  static absl::Status Grad(GradContext& ctx) {
    GraphBuilder& b = ctx.builder();
    ctx.set_grad_input(
        0, ops::Mul(b, ctx.grad_output(0),
                    ops::Scale(b, ops::Pow(b, ctx.output(0), 3.0), -0.5)));
    return absl::OkStatus();
  }
};

struct TanhFn {
  static constexpr const char* kName = "tanh";
  static constexpr const char* kDoc = "Hyperbolic tangent, elementwise.";
  static constexpr int kCost = 4;
  static constexpr int kFlops = 1;
  static std::vector<AttrDef> Attrs() { return {}; }
  explicit TanhFn(const Node&) {}
  template <typename T>
  void operator()(ConstVecMap<T> x, VecMap<T> y) const {
    y = x.tanh();
  }
  static std::vector<OpExample> Examples() { return UnaryExamples(-2, 2); }
  // tanh_grad(y, g) = g * (1 - y^2), from the output.
  static absl::Status Grad(GradContext& ctx) {
    ctx.set_grad_input(0, ctx.builder().Add("tanh_grad", {ctx.output(0),
                                                          ctx.grad_output(0)}));
    return absl::OkStatus();
  }
};

struct ReluFn {
  static constexpr const char* kName = "relu";
  static constexpr const char* kDoc = "max(x, 0), elementwise.";
  static constexpr int kCost = 1;
  static constexpr int kFlops = 1;
  static std::vector<AttrDef> Attrs() { return {}; }
  explicit ReluFn(const Node&) {}
  template <typename T>
  void operator()(ConstVecMap<T> x, VecMap<T> y) const {
    y = x.max(T(0));  // NaN stays NaN
  }
  // Both sides of the kink; with these seeds no value lies within the
  // finite-difference step of 0.
  static std::vector<OpExample> Examples() { return UnaryExamples(-1, 1); }
  // relu_grad(x, g) = x > 0 ? g : 0.
  static absl::Status Grad(GradContext& ctx) {
    ctx.set_grad_input(0, ctx.builder().Add("relu_grad", {ctx.input(0),
                                                          ctx.grad_output(0)}));
    return absl::OkStatus();
  }
};

// GELU, tanh form. 0.5·(1 + tanh(u)) = 1 / (1 + e^(−2u)), so
// gelu(x) = x / (1 + e^(x·(a + b·x²))) with a = −2·√(2/π), b = 0.044715·a:
// the same function, with no cancellation for negative x, and vectorised
// through exp for f32 and f64 alike.
// Flops per element: x², b·x², +a, ·x, exp, 1+, x/ = 7 (exp counted once).
struct GeluFn {
  static constexpr const char* kName = "gelu";
  static constexpr const char* kDoc =
      "GELU, tanh form: 0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x^3))).";
  static constexpr int kCost = 6;
  static constexpr int kFlops = 7;
  static constexpr double kA = -2.0 * 0.79788456080286535588;  // −2·√(2/π)
  static constexpr double kB = 0.044715 * kA;
  static std::vector<AttrDef> Attrs() { return {}; }
  explicit GeluFn(const Node&) {}
  template <typename T>
  void operator()(ConstVecMap<T> x, VecMap<T> y) const {
    y = x / (T(1) + (x * (T(kA) + T(kB) * x.square())).exp());
  }
  static std::vector<OpExample> Examples() { return UnaryExamples(-3, 3); }
  // gelu_grad(x, g) = g * gelu'(x).
  static absl::Status Grad(GradContext& ctx) {
    ctx.set_grad_input(0, ctx.builder().Add("gelu_grad", {ctx.input(0),
                                                          ctx.grad_output(0)}));
    return absl::OkStatus();
  }
};

struct ScaleFn {
  static constexpr const char* kName = "scale";
  static constexpr const char* kDoc = "x * factor, elementwise.";
  static constexpr int kCost = 1;
  static constexpr int kFlops = 1;
  static std::vector<AttrDef> Attrs() {
    return {AttrDef{"factor", AttrKind::kFloat, std::nullopt,
                    "the constant multiplier"}};
  }
  explicit ScaleFn(const Node& node) : factor(node.GetFloat("factor")) {}
  template <typename T>
  void operator()(ConstVecMap<T> x, VecMap<T> y) const {
    y = x * static_cast<T>(factor);
  }
  static std::vector<OpExample> Examples() {
    std::vector<OpExample> out = UnaryExamples(-1, 1, {{"factor", -1.5}});
    out.push_back(OpExample{{F32({4, 3})}, {{"factor", 0.125}}});
    return out;
  }
  static absl::Status Grad(GradContext& ctx) {
    ctx.set_grad_input(0, ops::Scale(ctx.builder(), ctx.grad_output(0),
                                     ctx.node().GetFloat("factor")));
    return absl::OkStatus();
  }
  double factor;
};

// Common exponents take exact or cheaper vectorised forms; the rest
// std::pow, with all its special cases (NaN for a negative base and a
// non-integer exponent, ...). Neither Eigen's pow (exact, but slower than
// std::pow here) nor exp(e·log x) in f64 (no faster) beats it.
struct PowFn {
  static constexpr const char* kName = "pow";
  static constexpr const char* kDoc =
      "x ^ exponent, elementwise, for a constant exponent.";
  static constexpr int kCost = 8;
  static constexpr int kFlops = 1;
  static std::vector<AttrDef> Attrs() {
    return {AttrDef{"exponent", AttrKind::kFloat, std::nullopt,
                    "the constant exponent"}};
  }
  explicit PowFn(const Node& node) : exponent(node.GetFloat("exponent")) {}
  template <typename T>
  void operator()(ConstVecMap<T> x, VecMap<T> y) const {
    const T e = static_cast<T>(exponent);
    if (e == T(0)) {
      y.setConstant(T(1));  // pow(x, 0) = 1 for every x, NaN included
    } else if (e == T(1)) {
      if (y.data() != x.data()) y = x;
    } else if (e == T(2)) {
      y = x.square();
    } else if (e == T(3)) {
      y = x.cube();
    } else if (e == T(-1)) {
      y = x.inverse();
    } else if (e == T(-2)) {
      y = x.square().inverse();
    } else {
      for (int64_t i = 0; i < x.size(); ++i) y[i] = std::pow(x[i], e);
    }
  }
  // Positive bases keep non-integer exponents smooth; the exponents cover
  // the special-cased kernels (2, 3, -1) and std::pow (2.5, -1.5, 0.5).
  static std::vector<OpExample> Examples() {
    std::vector<OpExample> out;
    const std::pair<Shape, double> cases[] = {
        {{7}, 2.5}, {{3, 5}, 3.0}, {{2, 3, 4}, -1.5}, {{4, 3}, 0.5},
        {{5}, 2.0}, {{2, 5}, -1.0}, {{3}, 0.0}, {{3}, 1.0}};
    for (const auto& [shape, e] : cases) {
      out.push_back(OpExample{{F32(shape)}, {{"exponent", e}}, {{0.5, 2}}});
    }
    return out;
  }
  // g * p * x^(p-1), with the cheap forms for p in {0, 1, 2}.
  static absl::Status Grad(GradContext& ctx) {
    GraphBuilder& b = ctx.builder();
    const double p = ctx.node().GetFloat("exponent");
    const Value g = ctx.grad_output(0);
    const Value x = ctx.input(0);
    const TensorType& t = ctx.input_type(0);
    Value gx;
    if (p == 0) {
      gx = ops::Fill(b, t.dtype, t.shape, 0.0);
    } else if (p == 1) {
      gx = g;
    } else if (p == 2) {
      gx = ops::Mul(b, g, ops::Scale(b, x, 2.0));
    } else {
      gx = ops::Mul(b, g, ops::Scale(b, ops::Pow(b, x, p - 1), p));
    }
    ctx.set_grad_input(0, gx);
    return absl::OkStatus();
  }
  double exponent;
};

template <typename Fn>
struct UnaryKernel {
  template <typename T>
  struct Impl {
    static absl::Status Run(const KernelContext& ctx) {
      const Fn fn(ctx.node);
      const T* x = ctx.inputs[0].template data<T>();
      T* y = ctx.outputs[0].template data<T>();
      ParallelRange(ctx.pool, ctx.outputs[0].num_elements(),
                    kSerialWork / Fn::kCost, [&](int64_t b, int64_t e) {
                      fn.template operator()<T>(ConstVecMap<T>(x + b, e - b),
                                                VecMap<T>(y + b, e - b));
                    });
      return absl::OkStatus();
    }
  };
};

template <typename Fn>
OpSchema MakeUnarySchema() {
  OpSchema s;
  s.name = Fn::kName;
  s.doc = Fn::kDoc;
  s.inputs = {ArgDef{"x", DTypeSet::Floating(), true, "input"}};
  s.outputs = {"y"};
  s.attrs = Fn::Attrs();
  s.shape_fn = SameAsInput0;
  AddFloatKernels<UnaryKernel<Fn>::template Impl>(s);
  s.flops = PerOutputElement(Fn::kFlops);
  s.inplace_input = 0;
  s.grad = Fn::Grad;
  s.examples = Fn::Examples();
  return s;
}

SUBQUAD_REGISTER_OP(MakeUnarySchema<NegFn>());
SUBQUAD_REGISTER_OP(MakeUnarySchema<ExpFn>());
SUBQUAD_REGISTER_OP(MakeUnarySchema<LogFn>());
SUBQUAD_REGISTER_OP(MakeUnarySchema<SqrtFn>());
SUBQUAD_REGISTER_OP(MakeUnarySchema<RsqrtFn>());
SUBQUAD_REGISTER_OP(MakeUnarySchema<TanhFn>());
SUBQUAD_REGISTER_OP(MakeUnarySchema<ReluFn>());
SUBQUAD_REGISTER_OP(MakeUnarySchema<GeluFn>());
SUBQUAD_REGISTER_OP(MakeUnarySchema<ScaleFn>());
SUBQUAD_REGISTER_OP(MakeUnarySchema<PowFn>());

// ---- Fused backward of tanh, relu and gelu ----------------------------------

// dx = dy * f'(a) for a same-shape pair (a, dy), where a is the forward
// input x or output y. Fn maps contiguous ranges (a, dy) to dx; dx may be
// dy's memory (inplace_input = 1): element i of dy is read before element i
// of dx is written.
struct TanhGradFn {
  static constexpr const char* kName = "tanh_grad";
  static constexpr const char* kDoc =
      "Backward of tanh from its output y: dy * (1 - y^2).";
  static constexpr const char* kFirst = "y";
  static constexpr const char* kFirstDoc = "tanh's output";
  static constexpr int kCost = 1;
  static constexpr int kFlops = 3;
  template <typename T>
  static void Apply(ConstVecMap<T> y, ConstVecMap<T> dy, VecMap<T> dx) {
    dx = dy * (T(1) - y.square());
  }
  static constexpr double kLo = -1, kHi = 1;  // tanh's range
};

struct ReluGradFn {
  static constexpr const char* kName = "relu_grad";
  static constexpr const char* kDoc =
      "Backward of relu: dy where x > 0, else 0 (also at 0 and NaN).";
  static constexpr const char* kFirst = "x";
  static constexpr const char* kFirstDoc = "relu's input";
  static constexpr int kCost = 1;
  static constexpr int kFlops = 1;
  template <typename T>
  static void Apply(ConstVecMap<T> x, ConstVecMap<T> dy, VecMap<T> dx) {
    dx = (x > T(0)).select(dy, T(0));
  }
  static constexpr double kLo = -1, kHi = 1;
};

// gelu(x) = x·s with s = 1 / (1 + e^z), z = x·(a + b·x²) (see GeluFn), so
// gelu'(x) = s − x·s·(1 − s)·(a + 3b·x²). For very negative x, e^z = inf
// gives s = 0 and 1 − s = 1: the derivative is 0, not NaN.
// Flops per element: x², z (3), exp, 1+, inverse, a + 3b·x² (2), 1 − s,
// products (4), subtract, ·dy = 15.
struct GeluGradFn {
  static constexpr const char* kName = "gelu_grad";
  static constexpr const char* kDoc =
      "Backward of gelu (tanh form): dy * gelu'(x), the exact derivative.";
  static constexpr const char* kFirst = "x";
  static constexpr const char* kFirstDoc = "gelu's input";
  static constexpr int kCost = 8;
  static constexpr int kFlops = 15;
  static constexpr int64_t kBlock = 256;
  template <typename T>
  static void Apply(ConstVecMap<T> x, ConstVecMap<T> dy, VecMap<T> dx) {
    constexpr T a = static_cast<T>(GeluFn::kA);
    constexpr T b = static_cast<T>(GeluFn::kB);
    // s per block in a stack buffer: dx may alias dy.
    Eigen::Array<T, Eigen::Dynamic, 1, Eigen::ColMajor, kBlock, 1> s;
    for (int64_t i = 0; i < x.size(); i += kBlock) {
      const int64_t n = std::min(kBlock, x.size() - i);
      const auto xb = x.segment(i, n);
      s = (T(1) + (xb * (a + b * xb.square())).exp()).inverse();
      dx.segment(i, n) =
          dy.segment(i, n) *
          (s - xb * s * (T(1) - s) * (a + T(3) * b * xb.square()));
    }
  }
  static constexpr double kLo = -3, kHi = 3;
};

template <typename Fn>
struct UnaryGradKernel {
  template <typename T>
  struct Impl {
    static absl::Status Run(const KernelContext& ctx) {
      const T* a = ctx.inputs[0].template data<T>();
      const T* dy = ctx.inputs[1].template data<T>();
      T* dx = ctx.outputs[0].template data<T>();
      ParallelRange(ctx.pool, ctx.outputs[0].num_elements(),
                    kSerialWork / Fn::kCost, [&](int64_t b, int64_t e) {
                      Fn::template Apply<T>(ConstVecMap<T>(a + b, e - b),
                                            ConstVecMap<T>(dy + b, e - b),
                                            VecMap<T>(dx + b, e - b));
                    });
      return absl::OkStatus();
    }
  };
};

// Both inputs have one floating type; the output has it too.
absl::StatusOr<std::vector<TensorType>> SameTypePairShape(
    const ShapeContext& c) {
  if (c.input(0) != c.input(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(c.schema().inputs[0].name, " and dy must have one type: ",
                     c.input(0).ToString(), " vs ", c.input(1).ToString()));
  }
  return std::vector<TensorType>{c.input(0)};
}

template <typename Fn>
OpSchema MakeUnaryGradSchema() {
  OpSchema s;
  s.name = Fn::kName;
  s.doc = Fn::kDoc;
  s.inputs = {ArgDef{Fn::kFirst, DTypeSet::Floating(), true, Fn::kFirstDoc},
              ArgDef{"dy", DTypeSet::Floating(), true,
                     "gradient of the forward output"}};
  s.outputs = {"dx"};
  s.shape_fn = SameTypePairShape;
  AddFloatKernels<UnaryGradKernel<Fn>::template Impl>(s);
  s.flops = PerOutputElement(Fn::kFlops);
  s.inplace_input = 1;
  s.differentiable = false;  // no second-order gradients
  for (Shape shape : {Shape{7}, Shape{3, 5}, Shape{2, 3, 33}}) {
    s.examples.push_back(OpExample{
        {F32(shape), F32(shape)}, {}, {{Fn::kLo, Fn::kHi}, {-1, 1}}});
  }
  return s;
}

SUBQUAD_REGISTER_OP(MakeUnaryGradSchema<TanhGradFn>());
SUBQUAD_REGISTER_OP(MakeUnaryGradSchema<ReluGradFn>());
SUBQUAD_REGISTER_OP(MakeUnaryGradSchema<GeluGradFn>());

// ---- where ------------------------------------------------------------------

template <typename T>
struct WhereKernel {
  static absl::Status Run(const KernelContext& ctx) {
    const TensorView& out = ctx.outputs[0];
    const TensorView& cond = ctx.inputs[0];
    const T* x = ctx.inputs[1].data<T>();
    const T* y = ctx.inputs[2].data<T>();
    T* o = out.data<T>();
    const BroadcastIter<3> it(
        out.shape(),
        {&cond.shape(), &ctx.inputs[1].shape(), &ctx.inputs[2].shape()});
    const int64_t sc = it.row_stride(0), sx = it.row_stride(1),
                  sy = it.row_stride(2);
    DispatchDType(cond.dtype(), [&](auto zero) {
      using C = decltype(zero);
      const C* c = cond.data<C>();
      ForEachSegment<3>(
          ctx.pool, it, out.num_elements(), kSerialWork,
          [&](int64_t out_off, const std::array<int64_t, 3>& in, int64_t n) {
            const C* cr = c + in[0];
            const T* xr = x + in[1];
            const T* yr = y + in[2];
            T* orow = o + out_off;
            if (sc == 1 && sx == 1 && sy == 1) {
              for (int64_t i = 0; i < n; ++i) {
                orow[i] = cr[i] != C(0) ? xr[i] : yr[i];
              }
            } else {
              for (int64_t i = 0; i < n; ++i) {
                orow[i] = cr[i * sc] != C(0) ? xr[i * sx] : yr[i * sy];
              }
            }
          });
    });
    return absl::OkStatus();
  }
};

// gx = where(cond, g, 0), gy = where(cond, 0, g), each reduced to its
// operand's shape; cond carries no gradient.
absl::Status WhereGrad(GradContext& ctx) {
  GraphBuilder& b = ctx.builder();
  const Value g = ctx.grad_output(0);
  const Value cond = ctx.input(0);
  const Value zero = ScalarZero(b, b.dtype(g));
  if (ctx.needs_grad(1)) {
    ctx.set_grad_input(1, ops::ReduceToShape(b, ops::Where(b, cond, g, zero),
                                             ctx.input_type(1).shape));
  }
  if (ctx.needs_grad(2)) {
    ctx.set_grad_input(2, ops::ReduceToShape(b, ops::Where(b, cond, zero, g),
                                             ctx.input_type(2).shape));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TensorType>> WhereShape(const ShapeContext& c) {
  const TensorType& cond = c.input(0);
  const TensorType& x = c.input(1);
  const TensorType& y = c.input(2);
  if (x.dtype != y.dtype) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dtypes of x and y differ: ", x.ToString(), " vs ", y.ToString()));
  }
  absl::StatusOr<Shape> xy = BroadcastShapes(x.shape, y.shape);
  absl::StatusOr<Shape> shape = xy.ok() ? BroadcastShapes(cond.shape, *xy) : xy;
  if (!shape.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("shapes do not broadcast: ", cond.ToString(), " vs ",
                     x.ToString(), " vs ", y.ToString()));
  }
  return std::vector<TensorType>{TensorType{x.dtype, *std::move(shape)}};
}

OpSchema MakeWhereSchema() {
  OpSchema s;
  s.name = "where";
  s.doc = "cond ? x : y, elementwise with broadcasting of all three inputs.";
  s.inputs = {
      ArgDef{"cond", DTypeSet::All(), false, "selects x where non-zero"},
      ArgDef{"x", DTypeSet::Floating(), true, "taken where cond is non-zero"},
      ArgDef{"y", DTypeSet::Floating(), true, "taken where cond is zero"}};
  s.outputs = {"z"};
  s.shape_fn = WhereShape;
  AddFloatKernels<WhereKernel>(s);
  s.flops = PerOutputElement(1);
  s.grad = WhereGrad;
  // cond in {0, 1}; shapes equal, each operand broadcast, and cond larger
  // than x and y.
  const TensorType i32_34{DType::kI32, {3, 4}};
  const std::vector<std::pair<double, double>> ranges = {
      {0, 2}, {-1, 1}, {-1, 1}};
  s.examples = {
      OpExample{{i32_34, F32({3, 4}), F32({3, 4})}, {}, ranges},
      OpExample{{TensorType{DType::kI32, {4}}, F32({3, 1}), F32({3, 4})},
                {},
                ranges},
      OpExample{{TensorType{DType::kI64, {2, 3, 5}}, F32({}), F32({3, 1})},
                {},
                ranges},
      OpExample{{TensorType{DType::kI32, {2, 1, 3}}, F32({5, 1}), F32({3})},
                {},
                ranges}};
  return s;
}

SUBQUAD_REGISTER_OP(MakeWhereSchema());

// ---- causal_mask ------------------------------------------------------------

template <typename T>
struct CausalMaskKernel {
  static absl::Status Run(const KernelContext& ctx) {
    const TensorView& in = ctx.inputs[0];
    const TensorView& out = ctx.outputs[0];
    const int r = in.shape().rank();
    const int64_t tq = in.shape().dim(r - 2);
    const int64_t tk = in.shape().dim(r - 1);
    if (tk == 0 || out.num_elements() == 0) return absl::OkStatus();
    const T fill = static_cast<T>(ctx.node.GetFloat("fill"));
    const T* x = in.data<T>();
    T* y = out.data<T>();
    const bool inplace = x == y;
    const int64_t rows = out.num_elements() / tk;
    ParallelRange(ctx.pool, rows, std::max<int64_t>(1, kSerialWork / tk),
                  [&](int64_t begin, int64_t end) {
                    for (int64_t row = begin; row < end; ++row) {
                      // Key j is masked when j > i + (tk - tq).
                      const int64_t i = row % tq;
                      const int64_t keep =
                          std::clamp<int64_t>(i + tk - tq + 1, 0, tk);
                      T* yr = y + row * tk;
                      if (!inplace && keep > 0) {
                        std::memcpy(yr, x + row * tk, keep * sizeof(T));
                      }
                      std::fill(yr + keep, yr + tk, fill);
                    }
                  });
    return absl::OkStatus();
  }
};

absl::StatusOr<std::vector<TensorType>> CausalMaskShape(const ShapeContext& c) {
  if (c.input(0).shape.rank() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("scores must have rank >= 2 ([..., Tq, Tk]), got ",
                     c.input(0).ToString()));
  }
  return std::vector<TensorType>{c.input(0)};
}

OpSchema MakeCausalMaskSchema() {
  OpSchema s;
  s.name = "causal_mask";
  s.doc =
      "Replaces scores[..., i, j] by fill where j > i + (Tk - Tq), the "
      "key being in the query's future.";
  s.inputs = {ArgDef{"scores", DTypeSet::Floating(), true,
                     "attention scores [..., Tq, Tk]"}};
  s.outputs = {"masked"};
  s.attrs = {AttrDef{"fill", AttrKind::kFloat,
                     AttrValue(-std::numeric_limits<double>::infinity()),
                     "value written at masked positions"}};
  s.shape_fn = CausalMaskShape;
  AddFloatKernels<CausalMaskKernel>(s);
  s.flops = PerOutputElement(1);
  s.inplace_input = 0;
  // The gradient is masked the same way, with 0.
  s.grad = [](GradContext& ctx) {
    ctx.set_grad_input(0, ops::CausalMask(ctx.builder(), ctx.grad_output(0),
                                          /*fill=*/0.0));
    return absl::OkStatus();
  };
  // Finite fills (an infinite one makes the finite-difference loss
  // infinite); square, Tq < Tk (cached keys), Tq > Tk, and batch dims.
  s.examples = {OpExample{{F32({4, 4})}, {{"fill", 0.0}}},
                OpExample{{F32({2, 3, 5})}, {{"fill", -3.0}}},
                OpExample{{F32({5, 3})}, {{"fill", 1.5}}},
                OpExample{{F32({2, 1, 3, 3})}, {{"fill", -2.0}}}};
  return s;
}

SUBQUAD_REGISTER_OP(MakeCausalMaskSchema());

// ---- cast -------------------------------------------------------------------

// Float -> int truncates toward zero; NaN becomes 0 and values beyond the
// integer range saturate (a plain static_cast is undefined there). Other
// conversions are static_cast (int -> narrower int wraps).
template <typename To, typename From>
To Convert(From v) {
  if constexpr (std::is_integral_v<To> && std::is_floating_point_v<From>) {
    // ±2^(bits-1) are exactly representable in every float type.
    constexpr From kLimit =
        static_cast<From>(std::numeric_limits<To>::max() / 2 + 1) * From(2);
    if (v != v) return To(0);
    if (v >= kLimit) return std::numeric_limits<To>::max();
    if (v < -kLimit) return std::numeric_limits<To>::min();
    return static_cast<To>(v);
  } else {
    return static_cast<To>(v);
  }
}

template <typename To>
absl::Status CastKernel(const KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  To* y = ctx.outputs[0].data<To>();
  const int64_t n = in.num_elements();
  DispatchDType(in.dtype(), [&](auto zero) {
    using From = decltype(zero);
    const From* x = in.data<From>();
    ParallelRange(ctx.pool, n, kSerialWork, [&](int64_t b, int64_t e) {
      if constexpr (std::is_same_v<From, To>) {
        if (x != y) std::memcpy(y + b, x + b, (e - b) * sizeof(To));
      } else {
        for (int64_t i = b; i < e; ++i) y[i] = Convert<To, From>(x[i]);
      }
    });
  });
  return absl::OkStatus();
}

// The gradient cast back to the input's floating type (the walker never
// asks for an integer input's gradient).
absl::Status CastGrad(GradContext& ctx) {
  const DType in = ctx.input_type(0).dtype;
  const Value g = ctx.grad_output(0);
  if (!IsFloating(in) || !IsFloating(ctx.output_type(0).dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cast from ", DTypeName(in), " to ",
        DTypeName(ctx.output_type(0).dtype), " carries no gradient"));
  }
  ctx.set_grad_input(
      0, in == ctx.builder().dtype(g) ? g : ops::Cast(ctx.builder(), g, in));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TensorType>> CastShape(const ShapeContext& c) {
  return std::vector<TensorType>{
      TensorType{c.GetDType("dtype"), c.input(0).shape}};
}

OpSchema MakeCastSchema() {
  OpSchema s;
  s.name = "cast";
  s.doc =
      "Converts x to dtype (float to int truncates toward zero, saturating; "
      "NaN becomes 0).";
  s.inputs = {ArgDef{"x", DTypeSet::All(), true, "input of any dtype"}};
  s.outputs = {"y"};
  s.attrs = {AttrDef{"dtype", AttrKind::kDType, std::nullopt,
                     "the dtype to convert to"}};
  s.shape_fn = CastShape;
  s.kernels[DType::kF32] = CastKernel<float>;
  s.kernels[DType::kF64] = CastKernel<double>;
  s.kernels[DType::kI32] = CastKernel<int32_t>;
  s.kernels[DType::kI64] = CastKernel<int64_t>;
  s.flops = PerOutputElement(1);
  s.grad = CastGrad;
  // Outputs are f64 so the registry's gradient check sees them; integer
  // inputs carry no gradient.
  s.examples = {
      OpExample{{F32({3, 4})}, {{"dtype", DType::kF64}}},
      OpExample{{TensorType{DType::kI32, {5}}}, {{"dtype", DType::kF64}},
                {{-5, 5}}},
      OpExample{{TensorType{DType::kI64, {2, 3}}}, {{"dtype", DType::kF64}},
                {{-100, 100}}}};
  return s;
}

SUBQUAD_REGISTER_OP(MakeCastSchema());

}  // namespace
}  // namespace subquad
