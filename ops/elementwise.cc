// Elementwise ops: binary arithmetic with NumPy broadcasting, unary math,
// scale, pow, where, causal_mask and cast. Semantics are in ops/ops.h.
//
// Kernels map the raw buffers as Eigen arrays so that arithmetic and
// exp/log/tanh/sqrt vectorise; work above a few tens of thousands of
// elements is split across the pool. Ops with inplace_input = 0 only ever
// read element i of input 0 before writing element i of the output, so they
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

// GCC 12 reports spurious (maybe-)uninitialized warnings inside its AVX-512
// intrinsics when inlining Eigen's packet math.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "Eigen/Core"
#pragma GCC diagnostic pop
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/attribute.h"
#include "core/dtype.h"
#include "core/graph.h"
#include "core/op_schema.h"
#include "core/parallel.h"
#include "core/shape.h"
#include "core/tensor.h"
#include "ops/internal/broadcast.h"

namespace subquad {
namespace {

using ops_internal::BroadcastIter;

template <typename T>
using Vec = Eigen::Array<T, Eigen::Dynamic, 1>;
template <typename T>
using VecMap = Eigen::Map<Vec<T>>;
template <typename T>
using ConstVecMap = Eigen::Map<const Vec<T>>;

// Work (elements x relative cost) below which a kernel runs in one call on
// the calling thread: the pool's hand-off costs more than it saves.
constexpr int64_t kSerialWork = 32768;

// Calls fn over [0, n) in one call when n <= grain, else across the pool in
// ranges of at least `grain`.
void ParallelRange(ParallelRunner* pool, int64_t n, int64_t grain,
                   absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  if (n <= grain || pool->num_threads() <= 1) {
    fn(0, n);
    return;
  }
  pool->ParallelFor(n, grain, fn);
}

// Walks the output of a broadcast op in contiguous segments (whole or partial
// rows of `it`), across the pool: fn(out_offset, input_offsets, length), with
// the input offsets of the segment's first element.
template <int N, typename Fn>
void ForEachSegment(ParallelRunner* pool, const BroadcastIter<N>& it,
                    int64_t total, int64_t grain, const Fn& fn) {
  const int64_t len = it.row_length();
  if (len == 0) return;
  ParallelRange(pool, total, grain, [&](int64_t begin, int64_t end) {
    int64_t row = begin / len;
    int64_t col = begin - row * len;
    int64_t pos = begin;
    while (pos < end) {
      const int64_t n = std::min(len - col, end - pos);
      std::array<int64_t, N> off = it.InputOffsets(row);
      for (int k = 0; k < N; ++k) off[k] += col * it.row_stride(k);
      fn(pos, off, n);
      pos += n;
      ++row;
      col = 0;
    }
  });
}

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
};
struct SubFn {
  static constexpr const char* kName = "sub";
  static constexpr const char* kDoc = "x - y, elementwise with broadcasting.";
  template <typename A, typename B>
  static auto Apply(const A& a, const B& b) {
    return a - b;
  }
};
struct MulFn {
  static constexpr const char* kName = "mul";
  static constexpr const char* kDoc = "x * y, elementwise with broadcasting.";
  template <typename A, typename B>
  static auto Apply(const A& a, const B& b) {
    return a * b;
  }
};
struct DivFn {
  static constexpr const char* kName = "div";
  static constexpr const char* kDoc = "x / y, elementwise with broadcasting.";
  template <typename A, typename B>
  static auto Apply(const A& a, const B& b) {
    return a / b;
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
  return s;
}

SUBQUAD_REGISTER_OP(MakeCastSchema());

}  // namespace
}  // namespace subquad
