// Fused neural-network ops: layer_norm and cross_entropy, and their fused
// backward ops layer_norm_grad and cross_entropy_grad. Semantics are in
// ops/ops.h. All work row by row over the last axis (vectorised within a
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
#include "ops/internal/eigen.h"
#include "ops/internal/parallel_range.h"
#include "ops/ops.h"

namespace subquad {
namespace {

using ops_internal::ConstVecMap;
using ops_internal::Vec;
using ops_internal::VecMap;

using ops_internal::kSerialWork;
using ops_internal::ParallelRange;

TensorType F32(const Shape& shape) { return TensorType{DType::kF32, shape}; }

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

// ---- layer_norm_grad --------------------------------------------------------

// Per row, with xhat = (x - mean)·rstd and g = dy·gamma:
//   dx = rstd·(g - mean(g) - xhat·mean(g·xhat)),
// and over all rows dgamma = Σ dy·xhat, dbeta = Σ dy. Rows are split into
// at most kMaxRowBlocks fixed blocks (a function of the shape only), each
// block sums its own dgamma/dbeta partials, and the partials are added in
// block order: the result does not depend on the thread count. A row's
// sums are taken before its dx is written, so dx may share dy's buffer
// (inplace_input = 4).
// Flops per element: xhat 2, g 1, the two means 3, dgamma 2, dbeta 1,
// dx 4 = 13.
constexpr int64_t kMaxRowBlocks = 64;

template <typename T>
absl::Status LayerNormGradKernel(const KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const int64_t d = x.shape().dim(x.shape().rank() - 1);
  const int64_t rows = ctx.inputs[2].num_elements();
  VecMap<T> dgamma(ctx.outputs[1].data<T>(), d);
  VecMap<T> dbeta(ctx.outputs[2].data<T>(), d);
  dgamma.setZero();
  dbeta.setZero();
  if (d == 0 || rows == 0) return absl::OkStatus();
  const T* px = x.data<T>();
  ConstVecMap<T> gamma(ctx.inputs[1].data<T>(), d);
  const T* pmean = ctx.inputs[2].data<T>();
  const T* prstd = ctx.inputs[3].data<T>();
  const T* pdy = ctx.inputs[4].data<T>();
  T* pdx = ctx.outputs[0].data<T>();
  constexpr int64_t kCost = 6;
  int64_t per_block = std::max<int64_t>(1, kSerialWork / (kCost * d));
  per_block = std::max(per_block, (rows + kMaxRowBlocks - 1) / kMaxRowBlocks);
  const int64_t blocks = (rows + per_block - 1) / per_block;
  // partial[k] holds block k's dgamma then its dbeta (2·d values).
  Vec<T> partial(blocks * 2 * d);
  const T inv_d = T(1) / static_cast<T>(d);
  ParallelRange(ctx.pool, blocks, 1, [&](int64_t b, int64_t e) {
    Vec<T> xhat(d);
    for (int64_t k = b; k < e; ++k) {
      VecMap<T> pg(partial.data() + k * 2 * d, d);
      VecMap<T> pb(partial.data() + k * 2 * d + d, d);
      pg.setZero();
      pb.setZero();
      const int64_t r1 = std::min(rows, (k + 1) * per_block);
      for (int64_t r = k * per_block; r < r1; ++r) {
        ConstVecMap<T> xr(px + r * d, d);
        ConstVecMap<T> dyr(pdy + r * d, d);
        const T rstd = prstd[r];
        xhat = (xr - pmean[r]) * rstd;
        const T a = (dyr * gamma).sum() * inv_d;
        const T c = (dyr * gamma * xhat).sum() * inv_d;
        pg += dyr * xhat;
        pb += dyr;
        VecMap<T>(pdx + r * d, d) = rstd * (dyr * gamma - a - xhat * c);
      }
    }
  });
  for (int64_t k = 0; k < blocks; ++k) {
    dgamma += ConstVecMap<T>(partial.data() + k * 2 * d, d);
    dbeta += ConstVecMap<T>(partial.data() + k * 2 * d + d, d);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TensorType>> LayerNormGradShape(
    const ShapeContext& c) {
  const TensorType& x = c.input(0);
  if (x.shape.rank() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("x must have rank >= 1, got ", x.ToString()));
  }
  const TensorType param{x.dtype, Shape{x.shape.dim(x.shape.rank() - 1)}};
  const TensorType stats{x.dtype, DropLastDim(x.shape)};
  const TensorType* want[] = {&x, &param, &stats, &stats, &x};
  for (int i = 1; i < 5; ++i) {
    if (c.input(i) != *want[i]) {
      return absl::InvalidArgumentError(absl::StrCat(
          c.schema().inputs[i].name, " must be ", want[i]->ToString(),
          " for x ", x.ToString(), ", got ", c.input(i).ToString()));
    }
  }
  return std::vector<TensorType>{x, param, param};
}

OpSchema MakeLayerNormGradSchema() {
  OpSchema s;
  s.name = "layer_norm_grad";
  s.doc =
      "Backward of layer_norm from its saved mean and rstd: the gradients of "
      "x, gamma and beta.";
  s.inputs = {ArgDef{"x", DTypeSet::Floating(), true, "input [..., D]"},
              ArgDef{"gamma", DTypeSet::Floating(), true, "scale [D]"},
              ArgDef{"mean", DTypeSet::Floating(), true,
                     "layer_norm's mean output [...]"},
              ArgDef{"rstd", DTypeSet::Floating(), true,
                     "layer_norm's rstd output [...]"},
              ArgDef{"dy", DTypeSet::Floating(), true,
                     "gradient of layer_norm's y [..., D]"}};
  s.outputs = {"dx", "dgamma", "dbeta"};
  s.shape_fn = LayerNormGradShape;
  s.kernels[DType::kF32] = LayerNormGradKernel<float>;
  s.kernels[DType::kF64] = LayerNormGradKernel<double>;
  s.flops = [](const Node& node, absl::Span<const TensorType>) -> int64_t {
    return 13 * node.output_type(0).num_elements();
  };
  s.inplace_input = 4;
  s.differentiable = false;  // no second-order gradients
  // mean and rstd need not be x's statistics for the kernel's arithmetic.
  for (Shape x : {Shape{4, 16}, Shape{2, 3, 7}, Shape{5}, Shape{9, 33}}) {
    const Shape stats = DropLastDim(x);
    s.examples.push_back(OpExample{
        {F32(x), F32({x.dim(x.rank() - 1)}), F32(stats), F32(stats), F32(x)},
        {},
        {{-1, 1}, {0.5, 1.5}, {-0.5, 0.5}, {0.5, 2}, {-1, 1}}});
  }
  return s;
}

SUBQUAD_REGISTER_OP(MakeLayerNormGradSchema());

// layer_norm's rule: layer_norm_grad for y's gradient, plus, when the mean
// or rstd outputs carry gradient too, their (simple) contributions to dx:
//   d mean / dx_j = 1/D,  d rstd / dx_j = -rstd³·(x_j - mean)/D.
absl::Status LayerNormGrad(GradContext& ctx) {
  GraphBuilder& b = ctx.builder();
  const TensorType& xt = ctx.input_type(0);
  const int64_t d = xt.shape.dim(xt.shape.rank() - 1);
  Value dx, dgamma, dbeta;
  if (ctx.has_grad_output(0)) {
    std::vector<Value> g = b.AddMulti(
        "layer_norm_grad",
        {ctx.input(0), ctx.input(1), ctx.output(1), ctx.output(2),
         ctx.grad_output(0)},
        {}, 3);
    dx = g[0];
    dgamma = g[1];
    dbeta = g[2];
  } else {
    const TensorType& pt = ctx.input_type(1);
    if (ctx.needs_grad(1)) dgamma = ops::Fill(b, pt.dtype, pt.shape, 0.0);
    if (ctx.needs_grad(2)) dbeta = ops::Fill(b, pt.dtype, pt.shape, 0.0);
  }
  if (ctx.needs_grad(0) && (ctx.has_grad_output(1) || ctx.has_grad_output(2))) {
    // Row statistics as [..., 1], to broadcast over the last axis.
    std::vector<int64_t> keep = xt.shape.ToVector();
    keep.back() = 1;
    const double inv_d = 1.0 / static_cast<double>(d);
    auto accumulate = [&](Value t) { dx = dx.valid() ? ops::Add(b, dx, t) : t; };
    if (ctx.has_grad_output(1)) {
      accumulate(ops::Scale(b, ops::Reshape(b, ctx.grad_output(1), keep), inv_d));
    }
    if (ctx.has_grad_output(2)) {
      const Value rstd = ctx.output(2);
      const Value c = ops::Scale(
          b, ops::Mul(b, ctx.grad_output(2), ops::Pow(b, rstd, 3.0)), -inv_d);
      const Value centered =
          ops::Sub(b, ctx.input(0), ops::Reshape(b, ctx.output(1), keep));
      accumulate(ops::Mul(b, centered, ops::Reshape(b, c, keep)));
    }
    if (b.ok() && b.shape(dx) != xt.shape) dx = ops::BroadcastTo(b, dx, xt.shape);
  }
  if (ctx.needs_grad(0)) ctx.set_grad_input(0, dx);
  if (ctx.needs_grad(1)) ctx.set_grad_input(1, dgamma);
  if (ctx.needs_grad(2)) ctx.set_grad_input(2, dbeta);
  return absl::OkStatus();
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
  s.grad = LayerNormGrad;
  // The registry's check weighs all three outputs, so the mean and rstd
  // contributions are checked too.
  const std::vector<std::pair<double, double>> ranges = {
      {-1, 1}, {0.5, 1.5}, {-1, 1}};
  for (Shape x : {Shape{4, 16}, Shape{2, 3, 7}, Shape{5}}) {
    const Shape p{x.dim(x.rank() - 1)};
    s.examples.push_back(OpExample{{F32(x), F32(p), F32(p)}, {}, ranges});
  }
  s.examples.push_back(OpExample{
      {F32({3, 6}), F32({6}), F32({6})}, {{"epsilon", 0.1}}, ranges});
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

// Targets in [0, V) of both integer types; rank-1 logits (one position).
std::vector<OpExample> CrossEntropyExamples(bool with_dloss) {
  const std::pair<Shape, DType> cases[] = {
      {{4, 5}, DType::kI32}, {{2, 3, 7}, DType::kI64}, {{6}, DType::kI32}};
  std::vector<OpExample> out;
  for (const auto& [logits, tdtype] : cases) {
    const int64_t v = logits.dim(logits.rank() - 1);
    OpExample ex{{F32(logits), TensorType{tdtype, DropLastDim(logits)}},
                 {},
                 {{-2, 2}, {0, static_cast<double>(v)}}};
    if (with_dloss) {
      ex.inputs.push_back(F32({}));
      ex.ranges.push_back({-2, 2});
    }
    out.push_back(std::move(ex));
  }
  return out;
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
  // Logits only: targets carry no gradient.
  s.grad = [](GradContext& ctx) {
    ctx.set_grad_input(0, ctx.builder().Add("cross_entropy_grad",
                                            {ctx.input(0), ctx.input(1),
                                             ctx.grad_output(0)}));
    return absl::OkStatus();
  };
  s.examples = CrossEntropyExamples(/*with_dloss=*/false);
  return s;
}

SUBQUAD_REGISTER_OP(MakeCrossEntropySchema());

// ---- cross_entropy_grad -----------------------------------------------------

// dlogits = (softmax(logits) - onehot(target))·dloss/N per row, N the row
// count. A row's exp values are written to dx, summed, then scaled, so dx
// may share the logits' buffer (inplace_input = 0).
// Flops per logit: max, subtract, exp, add, multiply = 5.
template <typename T>
absl::Status CrossEntropyGradKernel(const KernelContext& ctx) {
  const TensorView& logits = ctx.inputs[0];
  const TensorView& targets = ctx.inputs[1];
  const int64_t v = logits.shape().dim(logits.shape().rank() - 1);
  const int64_t rows = targets.num_elements();
  if (rows == 0 || v == 0) return absl::OkStatus();
  const T* px = logits.data<T>();
  T* pdx = ctx.outputs[0].data<T>();
  const T scale = *ctx.inputs[2].data<T>() / static_cast<T>(rows);
  return DispatchDType(targets.dtype(), [&](auto zero) -> absl::Status {
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
      ParallelRange(ctx.pool, rows, kSerialWork / (5 * v),
                    [&](int64_t b, int64_t e) {
                      for (int64_t r = b; r < e; ++r) {
                        const T m = ConstVecMap<T>(px + r * v, v).maxCoeff();
                        VecMap<T> dr(pdx + r * v, v);
                        dr = (ConstVecMap<T>(px + r * v, v) - m).exp();
                        dr *= scale / dr.sum();
                        dr[t[r]] -= scale;
                      }
                    });
      return absl::OkStatus();
    } else {
      return absl::InternalError(
          absl::StrCat(NodeLabel(ctx.node), ": targets must be integers, got ",
                       targets.type().ToString()));
    }
  });
}

absl::StatusOr<std::vector<TensorType>> CrossEntropyGradShape(
    const ShapeContext& c) {
  absl::StatusOr<std::vector<TensorType>> loss = CrossEntropyShape(c);
  if (!loss.ok()) return loss.status();
  if (c.input(2) != (*loss)[0]) {
    return absl::InvalidArgumentError(
        absl::StrCat("dloss must be ", (*loss)[0].ToString(),
                     " (a scalar of the logits' dtype), got ",
                     c.input(2).ToString()));
  }
  return std::vector<TensorType>{c.input(0)};
}

OpSchema MakeCrossEntropyGradSchema() {
  OpSchema s;
  s.name = "cross_entropy_grad";
  s.doc =
      "Backward of cross_entropy: (softmax(logits) - onehot(targets)) * "
      "dloss / N, N the number of positions.";
  s.inputs = {ArgDef{"logits", DTypeSet::Floating(), true, "scores [..., V]"},
              ArgDef{"targets", DTypeSet::Integer(), false,
                     "class indices [...] in [0, V)"},
              ArgDef{"dloss", DTypeSet::Floating(), true,
                     "gradient of the scalar loss"}};
  s.outputs = {"dlogits"};
  s.shape_fn = CrossEntropyGradShape;
  s.kernels[DType::kF32] = CrossEntropyGradKernel<float>;
  s.kernels[DType::kF64] = CrossEntropyGradKernel<double>;
  s.flops = [](const Node& node, absl::Span<const TensorType>) -> int64_t {
    return 5 * node.output_type(0).num_elements();
  };
  s.inplace_input = 0;
  s.differentiable = false;  // no second-order gradients
  s.examples = CrossEntropyExamples(/*with_dloss=*/true);
  return s;
}

SUBQUAD_REGISTER_OP(MakeCrossEntropyGradSchema());

}  // namespace
}  // namespace subquad
