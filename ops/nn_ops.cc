// Fused neural-network ops: layer_norm and cross_entropy. Semantics are in
// ops/ops.h. Both work row by row over the last axis (vectorised within a
// row, rows split across the pool).

#include <algorithm>
#include <cmath>
#include <cstdint>
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

namespace subquad {
namespace {

template <typename T>
using Vec = Eigen::Array<T, Eigen::Dynamic, 1>;
template <typename T>
using VecMap = Eigen::Map<Vec<T>>;
template <typename T>
using ConstVecMap = Eigen::Map<const Vec<T>>;

// Work (elements x relative cost) below which a kernel runs in one call.
constexpr int64_t kSerialWork = 32768;

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

// x.shape without its last dim.
Shape DropLastDim(const Shape& s) {
  return Shape(s.dims().subspan(0, s.rank() - 1));
}

// ---- layer_norm -------------------------------------------------------------

// Per row of D: mean, biased variance (two passes, stable), rstd, then
// y = (x - mean) * rstd * gamma + beta.
// Flops per element: sum 1, (x - mean)² summed 3, normalise and affine 4 = 8.
template <typename T>
absl::Status LayerNormKernel(const KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const int64_t d = x.shape().dim(x.shape().rank() - 1);
  const int64_t rows = ctx.outputs[1].num_elements();
  const T eps = static_cast<T>(ctx.node.GetFloat("epsilon"));
  const T* px = x.data<T>();
  ConstVecMap<T> gamma(ctx.inputs[1].data<T>(), d);
  ConstVecMap<T> beta(ctx.inputs[2].data<T>(), d);
  T* py = ctx.outputs[0].data<T>();
  T* pmean = ctx.outputs[1].data<T>();
  T* prstd = ctx.outputs[2].data<T>();
  ParallelRange(
      ctx.pool, rows, kSerialWork / (4 * std::max<int64_t>(d, 1)),
      [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          ConstVecMap<T> xr(px + r * d, d);
          const T mean = xr.sum() / static_cast<T>(d);
          const T var = (xr - mean).square().sum() / static_cast<T>(d);
          const T rstd = T(1) / std::sqrt(var + eps);
          VecMap<T>(py + r * d, d) = (xr - mean) * rstd * gamma + beta;
          pmean[r] = mean;
          prstd[r] = rstd;
        }
      });
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TensorType>> LayerNormShape(const ShapeContext& c) {
  const TensorType& x = c.input(0);
  const TensorType& gamma = c.input(1);
  const TensorType& beta = c.input(2);
  if (x.shape.rank() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("x must have rank >= 1, got ", x.ToString()));
  }
  if (gamma.dtype != x.dtype || beta.dtype != x.dtype) {
    return absl::InvalidArgumentError(
        absl::StrCat("dtypes differ: x ", x.ToString(), ", gamma ",
                     gamma.ToString(), ", beta ", beta.ToString()));
  }
  const Shape want{x.shape.dim(x.shape.rank() - 1)};
  for (const auto& [name, t] :
       {std::pair<const char*, const TensorType*>{"gamma", &gamma},
        {"beta", &beta}}) {
    if (t->shape != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " must have shape ", want.ToString(), " (the last dim of x ",
          x.ToString(), "), got ", t->ToString()));
    }
  }
  const TensorType stats{x.dtype, DropLastDim(x.shape)};
  return std::vector<TensorType>{x, stats, stats};
}

OpSchema MakeLayerNormSchema() {
  OpSchema s;
  s.name = "layer_norm";
  s.doc =
      "Normalises x over its last axis with biased variance, then scales by "
      "gamma and shifts by beta.";
  s.inputs = {ArgDef{"x", DTypeSet::Floating(), true, "input [..., D]"},
              ArgDef{"gamma", DTypeSet::Floating(), true, "scale [D]"},
              ArgDef{"beta", DTypeSet::Floating(), true, "shift [D]"}};
  s.outputs = {"y", "mean", "rstd"};
  s.attrs = {AttrDef{"epsilon", AttrKind::kFloat, AttrValue(1e-5),
                     "added to the variance before the square root"}};
  s.shape_fn = LayerNormShape;
  s.kernels[DType::kF32] = LayerNormKernel<float>;
  s.kernels[DType::kF64] = LayerNormKernel<double>;
  s.flops = [](const Node& node, absl::Span<const TensorType>) -> int64_t {
    return 8 * node.output_type(0).num_elements();
  };
  return s;
}

SUBQUAD_REGISTER_OP(MakeLayerNormSchema());

// ---- cross_entropy ----------------------------------------------------------

// Per row of V: log-sum-exp (max pass, exp-sum pass) minus the target's
// logit; row losses are summed in double in row order (deterministic for
// any thread count), then divided by the row count.
// Flops per logit: max, subtract, exp, add = 4.
template <typename T>
absl::Status CrossEntropyKernel(const KernelContext& ctx) {
  const TensorView& logits = ctx.inputs[0];
  const TensorView& targets = ctx.inputs[1];
  const int64_t v = logits.shape().dim(logits.shape().rank() - 1);
  const int64_t rows = targets.num_elements();
  const T* px = logits.data<T>();
  std::vector<double> loss(rows);
  absl::Status status = DispatchDType(targets.dtype(), [&](auto zero) {
    using I = decltype(zero);
    if constexpr (std::is_integral_v<I>) {
      const I* t = targets.data<I>();
      for (int64_t i = 0; i < rows; ++i) {
        if (t[i] < 0 || t[i] >= v) {
          return absl::InvalidArgumentError(
              absl::StrCat(NodeLabel(ctx.node), ": target ", t[i],
                           " at position ", i, " is outside [0, ", v, ")"));
        }
      }
      ParallelRange(ctx.pool, rows, kSerialWork / (4 * std::max<int64_t>(v, 1)),
                    [&](int64_t b, int64_t e) {
                      for (int64_t r = b; r < e; ++r) {
                        ConstVecMap<T> xr(px + r * v, v);
                        // NaN propagates through the sum.
                        const T m = xr.maxCoeff();
                        const T lse = m + std::log((xr - m).exp().sum());
                        loss[r] = static_cast<double>(lse) -
                                  static_cast<double>(xr[t[r]]);
                      }
                    });
      return absl::OkStatus();
    } else {
      return absl::InternalError(
          absl::StrCat(NodeLabel(ctx.node), ": targets must be integers, got ",
                       targets.type().ToString()));
    }
  });
  if (!status.ok()) return status;
  double total = 0;
  for (double l : loss) total += l;
  *ctx.outputs[0].data<T>() =
      static_cast<T>(total / static_cast<double>(rows));  // 0/0 = NaN if empty
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TensorType>> CrossEntropyShape(
    const ShapeContext& c) {
  const TensorType& logits = c.input(0);
  const TensorType& targets = c.input(1);
  if (logits.shape.rank() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("logits must have rank >= 1, got ", logits.ToString()));
  }
  const Shape want = DropLastDim(logits.shape);
  if (targets.shape != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "targets must have shape ", want.ToString(), " (logits ",
        logits.ToString(), " without the last dim), got ", targets.ToString()));
  }
  return std::vector<TensorType>{TensorType{logits.dtype, Shape{}}};
}

OpSchema MakeCrossEntropySchema() {
  OpSchema s;
  s.name = "cross_entropy";
  s.doc = "Mean over all positions of -log_softmax(logits)[target], a scalar.";
  s.inputs = {ArgDef{"logits", DTypeSet::Floating(), true, "scores [..., V]"},
              ArgDef{"targets", DTypeSet::Integer(), false,
                     "class indices [...] in [0, V)"}};
  s.outputs = {"loss"};
  s.shape_fn = CrossEntropyShape;
  s.kernels[DType::kF32] = CrossEntropyKernel<float>;
  s.kernels[DType::kF64] = CrossEntropyKernel<double>;
  s.flops = [](const Node&, absl::Span<const TensorType> in) -> int64_t {
    return 4 * in[0].num_elements();
  };
  return s;
}

SUBQUAD_REGISTER_OP(MakeCrossEntropySchema());

}  // namespace
}  // namespace subquad
