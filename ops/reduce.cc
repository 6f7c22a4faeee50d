// Reductions (reduce_sum, reduce_mean, reduce_max) and the row
// normalisations softmax and log_softmax, with their gradient rules and the
// fused backward ops reduce_max_grad, softmax_grad and log_softmax_grad.
// Semantics are in ops/ops.h.
//
// Both families see their input as (outer, reduced, inner) blocks. A set of
// reduced axes that is not one contiguous run is reduced one run at a time,
// innermost first, through a scratch buffer. Results do not depend on the
// number of threads: work is split on fixed block boundaries and partial
// results are combined in a fixed order.

#include <algorithm>
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
#include "absl/strings/str_join.h"
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

// A long row is reduced in blocks of this many elements, in parallel, and
// the block results are combined in order.
constexpr int64_t kRowBlock = 16384;
// Softmax along a non-innermost axis works on slices of at most this many
// inner elements (the max and sum accumulators stay in L1).
constexpr int64_t kInnerChunk = 1024;
// A reduction along a non-innermost axis accumulates slices of at most
// this many bytes of each row: narrower slices break the hardware
// prefetcher's streams, wider ones spill the accumulator out of L1.
constexpr int64_t kReduceChunkBytes = 16384;
// A reduction along a non-innermost axis folds blocks of this many rows
// separately (in parallel), then combines the blocks in order.
constexpr int64_t kColumnBlock = 512;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- reduce_sum / reduce_mean / reduce_max ----------------------------------

enum class ReduceKind { kSum, kMean, kMax };

// The NaN-propagating elementwise max (NumPy and PyTorch propagate NaN).
template <typename T>
using MaxOp = Eigen::internal::scalar_max_op<T, T, Eigen::PropagateNaN>;

template <typename T>
T ReduceRange(ReduceKind kind, const T* p, int64_t n) {
  ConstVecMap<T> v(p, n);
  return kind == ReduceKind::kMax ? v.template maxCoeff<Eigen::PropagateNaN>()
                                  : v.sum();
}

template <typename T>
T Combine(ReduceKind kind, T a, T b) {
  if (kind != ReduceKind::kMax) return a + b;
  return MaxOp<T>()(a, b);
}

// dst[o, i] = reduce over r of src[o, r, i] (R >= 1), divided by `divisor`
// (mean's element count on its last pass, else 1).
template <typename T>
void ReducePass(ParallelRunner* pool, ReduceKind kind, const T* src, T* dst,
                int64_t outer, int64_t reduced, int64_t inner, T divisor) {
  const bool divide = divisor != T(1);
  if (inner == 1) {
    const int64_t blocks = CeilDiv(reduced, kRowBlock);
    if (blocks == 1) {
      ParallelRange(
          pool, outer, kSerialWork / reduced, [&](int64_t b, int64_t e) {
            for (int64_t o = b; o < e; ++o) {
              const T r = ReduceRange(kind, src + o * reduced, reduced);
              dst[o] = divide ? r / divisor : r;
            }
          });
      return;
    }
    std::vector<T> partial(outer * blocks);
    ParallelRange(pool, outer * blocks, kSerialWork / kRowBlock,
                  [&](int64_t b, int64_t e) {
                    for (int64_t item = b; item < e; ++item) {
                      const int64_t o = item / blocks;
                      const int64_t k = item - o * blocks;
                      const int64_t begin = k * kRowBlock;
                      const int64_t len = std::min(kRowBlock, reduced - begin);
                      partial[item] =
                          ReduceRange(kind, src + o * reduced + begin, len);
                    }
                  });
    for (int64_t o = 0; o < outer; ++o) {
      T r = partial[o * blocks];
      for (int64_t k = 1; k < blocks; ++k) {
        r = Combine(kind, r, partial[o * blocks + k]);
      }
      dst[o] = divide ? r / divisor : r;
    }
    return;
  }
  // Columns: the reduced axis is split into fixed blocks of kColumnBlock
  // rows (the parallelism when outer is small) whose partial results are
  // combined in order, and the inner axis into L1-sized chunks.
  const int64_t chunk = kReduceChunkBytes / static_cast<int64_t>(sizeof(T));
  const int64_t chunks = CeilDiv(inner, chunk);
  const int64_t blocks = CeilDiv(reduced, kColumnBlock);
  // With one block, results go straight to dst; else to partial[o][k][i].
  std::vector<T> partial(blocks > 1 ? outer * blocks * inner : 0);
  const int64_t block_rows = std::min(reduced, kColumnBlock);
  ParallelRange(pool, outer * chunks * blocks,
                kSerialWork / (block_rows * std::min(inner, chunk)),
                [&](int64_t b, int64_t e) {
                  for (int64_t item = b; item < e; ++item) {
                    const int64_t k = item % blocks;
                    const int64_t c = (item / blocks) % chunks;
                    const int64_t o = item / (blocks * chunks);
                    const int64_t begin = c * chunk;
                    const int64_t len = std::min(chunk, inner - begin);
                    const int64_t r0 = k * kColumnBlock;
                    const int64_t r1 = std::min(reduced, r0 + kColumnBlock);
                    const T* s = src + (o * reduced + r0) * inner + begin;
                    VecMap<T> d(
                        blocks > 1
                            ? partial.data() + (o * blocks + k) * inner + begin
                            : dst + o * inner + begin,
                        len);
                    d = ConstVecMap<T>(s, len);
                    for (int64_t r = 1; r < r1 - r0; ++r) {
                      ConstVecMap<T> row(s + r * inner, len);
                      if (kind == ReduceKind::kMax) {
                        d = d.binaryExpr(row, MaxOp<T>());
                      } else {
                        d += row;
                      }
                    }
                    if (blocks == 1 && divide) d /= divisor;
                  }
                });
  if (blocks == 1) return;
  ParallelRange(pool, outer * chunks,
                kSerialWork / (blocks * std::min(inner, chunk)),
                [&](int64_t b, int64_t e) {
                  for (int64_t item = b; item < e; ++item) {
                    const int64_t o = item / chunks;
                    const int64_t begin = (item % chunks) * chunk;
                    const int64_t len = std::min(chunk, inner - begin);
                    const T* p = partial.data() + o * blocks * inner + begin;
                    VecMap<T> d(dst + o * inner + begin, len);
                    d = ConstVecMap<T>(p, len);
                    for (int64_t k = 1; k < blocks; ++k) {
                      ConstVecMap<T> part(p + k * inner, len);
                      if (kind == ReduceKind::kMax) {
                        d = d.binaryExpr(part, MaxOp<T>());
                      } else {
                        d += part;
                      }
                    }
                    if (divide) d /= divisor;
                  }
                });
}

// The input's dims with size-1 dims dropped and neighbours of the same kind
// (reduced or kept) merged.
struct DimRun {
  int64_t extent;
  bool reduced;
};

std::vector<bool> ReducedMask(const Node& node, int rank) {
  std::vector<bool> mask(rank, false);
  for (int64_t a : node.GetInts("axes")) {
    mask[a < 0 ? a + rank : a] = true;  // validated by the shape rule
  }
  return mask;
}

// y[n_out] = x reduced over the axes where mask is set. Runs of reduced
// axes are reduced one at a time, innermost first, through scratch buffers.
template <typename T>
void ReduceAxes(ParallelRunner* pool, ReduceKind kind, const T* x,
                const Shape& shape, const std::vector<bool>& mask, T* y,
                int64_t n_out) {
  if (n_out == 0) return;
  int64_t count = 1;
  std::vector<DimRun> runs;
  for (int d = 0; d < shape.rank(); ++d) {
    if (mask[d]) count *= shape.dim(d);
    if (shape.dim(d) == 1) continue;
    if (!runs.empty() && runs.back().reduced == mask[d]) {
      runs.back().extent *= shape.dim(d);
    } else {
      runs.push_back({shape.dim(d), static_cast<bool>(mask[d])});
    }
  }
  if (count == 0) {
    // Reducing nothing: the identity (mean: 0/0).
    const T v = kind == ReduceKind::kSum    ? T(0)
                : kind == ReduceKind::kMean ? std::numeric_limits<T>::quiet_NaN()
                                            : -std::numeric_limits<T>::infinity();
    std::fill(y, y + n_out, v);
    return;
  }
  const T* src = x;
  std::vector<T> scratch[2];
  int next_scratch = 0;
  bool reduced_any = false;
  const ReduceKind pass_kind =
      kind == ReduceKind::kMax ? ReduceKind::kMax : ReduceKind::kSum;
  while (true) {
    int idx = -1;
    for (int i = static_cast<int>(runs.size()) - 1; i >= 0; --i) {
      if (runs[i].reduced) {
        idx = i;
        break;
      }
    }
    if (idx < 0) break;
    bool last = true;
    for (int i = 0; i < idx; ++i) last = last && !runs[i].reduced;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < idx; ++i) outer *= runs[i].extent;
    for (int i = idx + 1; i < static_cast<int>(runs.size()); ++i) {
      inner *= runs[i].extent;
    }
    T* dst = y;
    if (!last) {
      std::vector<T>& buf = scratch[next_scratch];
      next_scratch ^= 1;
      buf.resize(outer * inner);
      dst = buf.data();
    }
    const T divisor =
        last && kind == ReduceKind::kMean ? static_cast<T>(count) : T(1);
    ReducePass<T>(pool, pass_kind, src, dst, outer, runs[idx].extent, inner,
                  divisor);
    src = dst;
    reduced_any = true;
    runs.erase(runs.begin() + idx);
  }
  // Every reduced axis had size 1: the values are unchanged.
  if (!reduced_any && src != y) {
    std::memcpy(y, src, n_out * sizeof(T));
  }
}

template <ReduceKind kKind>
struct ReduceKernel {
  template <typename T>
  struct Impl {
    static absl::Status Run(const KernelContext& ctx) {
      const TensorView& in = ctx.inputs[0];
      const Shape& shape = in.shape();
      ReduceAxes<T>(ctx.pool, kKind, in.data<T>(), shape,
                    ReducedMask(ctx.node, shape.rank()),
                    ctx.outputs[0].data<T>(), ctx.outputs[0].num_elements());
      return absl::OkStatus();
    }
  };
};

absl::StatusOr<std::vector<TensorType>> ReduceShape(const ShapeContext& c) {
  const TensorType& x = c.input(0);
  const std::vector<int64_t>& axes = c.GetInts("axes");
  const int rank = x.shape.rank();
  if (axes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "axes is empty; name at least one axis of ", x.ToString()));
  }
  std::vector<bool> mask(rank, false);
  for (int64_t a : axes) {
    absl::StatusOr<int> axis = NormalizeAxis(a, rank);
    if (!axis.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("axis ", a, " is out of range for ", x.ToString()));
    }
    if (mask[*axis]) {
      return absl::InvalidArgumentError(
          absl::StrCat("axes [", absl::StrJoin(axes, ","), "] name axis ",
                       *axis, " twice for ", x.ToString()));
    }
    mask[*axis] = true;
  }
  const bool keepdims = c.GetBool("keepdims");
  Shape out;
  for (int d = 0; d < rank; ++d) {
    if (!mask[d]) {
      out.push_back(x.shape.dim(d));
    } else if (keepdims) {
      out.push_back(1);
    }
  }
  return std::vector<TensorType>{TensorType{x.dtype, std::move(out)}};
}

// x's shape with the reduced axes kept as size 1.
Shape KeepDimsShape(const Shape& x, const std::vector<bool>& mask) {
  Shape keep = x;
  for (int d = 0; d < x.rank(); ++d) {
    if (mask[d]) keep.set_dim(d, 1);
  }
  return keep;
}

// reduce_sum and reduce_mean: g (scaled by 1/count for the mean, on the
// small side) reshaped to the keepdims shape and broadcast to x's shape.
absl::Status ReduceSumOrMeanGrad(GradContext& ctx, bool mean) {
  GraphBuilder& b = ctx.builder();
  const Shape& x = ctx.input_type(0).shape;
  const std::vector<bool> mask = ReducedMask(ctx.node(), x.rank());
  const Shape keep = KeepDimsShape(x, mask);
  Value g = ctx.grad_output(0);
  if (mean) {
    const int64_t count = x.num_elements() / std::max<int64_t>(
                                                 keep.num_elements(), 1);
    if (count > 0) g = ops::Scale(b, g, 1.0 / static_cast<double>(count));
  }
  if (b.ok() && b.shape(g) != keep) g = ops::Reshape(b, g, keep.ToVector());
  if (keep != x) g = ops::BroadcastTo(b, g, x);
  ctx.set_grad_input(0, g);
  return absl::OkStatus();
}

// reduce_max: reduce_max_grad(x, y, g), the gradient to the argmax
// positions (split evenly among ties).
absl::Status ReduceMaxGrad(GradContext& ctx) {
  const Node& n = ctx.node();
  ctx.set_grad_input(
      0, ctx.builder().Add("reduce_max_grad",
                           {ctx.input(0), ctx.output(0), ctx.grad_output(0)},
                           {{"axes", n.GetInts("axes")},
                            {"keepdims", n.GetBool("keepdims")}}));
  return absl::OkStatus();
}

AttrMap ReduceAttrs(std::vector<int64_t> axes, bool keepdims) {
  return {{"axes", AttrValue(std::move(axes))},
          {"keepdims", AttrValue(keepdims)}};
}

TensorType F32(const Shape& shape) { return TensorType{DType::kF32, shape}; }

// One axis, the last by a negative index with keepdims, two non-adjacent
// axes, all axes, a size-1 axis, a vector to [1].
std::vector<OpExample> ReduceExamples() {
  return {OpExample{{F32({3, 4, 5})}, ReduceAttrs({1}, false)},
          OpExample{{F32({3, 4, 5})}, ReduceAttrs({-1}, true)},
          OpExample{{F32({2, 3, 4, 5})}, ReduceAttrs({0, 2}, false)},
          OpExample{{F32({2, 3, 4, 5})}, ReduceAttrs({-1, 1}, true)},
          OpExample{{F32({6, 7})}, ReduceAttrs({0, 1}, false)},
          OpExample{{F32({3, 1, 4})}, ReduceAttrs({1}, false)},
          OpExample{{F32({5})}, ReduceAttrs({0}, true)}};
}

template <ReduceKind kKind>
OpSchema MakeReduceSchema(std::string name, std::string doc) {
  OpSchema s;
  s.name = std::move(name);
  s.doc = std::move(doc);
  s.inputs = {ArgDef{"x", DTypeSet::Floating(), true, "input"}};
  s.outputs = {"y"};
  s.attrs = {
      AttrDef{"axes", AttrKind::kIntList, std::nullopt,
              "axes to reduce: non-empty, negatives count from the end, no "
              "duplicates"},
      AttrDef{"keepdims", AttrKind::kBool, AttrValue(false),
              "keep reduced axes as size 1"}};
  s.shape_fn = ReduceShape;
  using K = ReduceKernel<kKind>;
  s.kernels[DType::kF32] = [](const KernelContext& ctx) {
    return K::template Impl<float>::Run(ctx);
  };
  s.kernels[DType::kF64] = [](const KernelContext& ctx) {
    return K::template Impl<double>::Run(ctx);
  };
  // One flop per input element.
  s.flops = [](const Node&, absl::Span<const TensorType> in) -> int64_t {
    return in[0].num_elements();
  };
  if constexpr (kKind == ReduceKind::kMax) {
    s.grad = ReduceMaxGrad;
  } else {
    s.grad = [](GradContext& ctx) {
      return ReduceSumOrMeanGrad(ctx, kKind == ReduceKind::kMean);
    };
  }
  // Continuous random values: reduce_max has no ties (the kink).
  s.examples = ReduceExamples();
  return s;
}

SUBQUAD_REGISTER_OP(MakeReduceSchema<ReduceKind::kSum>(
    "reduce_sum", "Sums x over the given axes."));
SUBQUAD_REGISTER_OP(MakeReduceSchema<ReduceKind::kMean>(
    "reduce_mean", "Averages x over the given axes."));
SUBQUAD_REGISTER_OP(MakeReduceSchema<ReduceKind::kMax>(
    "reduce_max", "Takes the maximum of x over the given axes (NaN wins)."));

// ---- reduce_max_grad --------------------------------------------------------

// dx = dy / count at the positions where x equals its reduction's max y
// (NaN matching NaN), 0 elsewhere; count is the number of such positions in
// the reduction (ties share the gradient evenly). Three passes over x: the
// 0/1 mask into dx, its sum per reduction (ReduceAxes: deterministic), and dx
// times dy / count broadcast back.
// Flops per input element: compare, add, multiply = 3.
template <typename T>
absl::Status ReduceMaxGradKernel(const KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const Shape& shape = x.shape();
  const int64_t n = x.num_elements();
  const int64_t n_out = ctx.inputs[1].num_elements();
  if (n == 0) return absl::OkStatus();
  const std::vector<bool> mask = ReducedMask(ctx.node, shape.rank());
  const Shape keep = KeepDimsShape(shape, mask);
  const T* px = x.data<T>();
  const T* py = ctx.inputs[1].data<T>();
  const T* pdy = ctx.inputs[2].data<T>();
  T* dx = ctx.outputs[0].data<T>();
  const BroadcastIter<1> it(shape, {&keep});
  const int64_t stride = it.row_stride(0);
  ForEachSegment<1>(
      ctx.pool, it, n, kSerialWork / 2,
      [&](int64_t off, const std::array<int64_t, 1>& in, int64_t len) {
        ConstVecMap<T> xr(px + off, len);
        VecMap<T> d(dx + off, len);
        if (stride == 0) {
          const T y = py[in[0]];
          if (std::isnan(y)) {
            d = xr.isNaN().template cast<T>();
          } else {
            d = (xr == y).template cast<T>();
          }
        } else {
          ConstVecMap<T> yr(py + in[0], len);
          d = ((xr == yr) || (xr.isNaN() && yr.isNaN())).template cast<T>();
        }
      });
  Vec<T> scale(n_out);
  ReduceAxes<T>(ctx.pool, ReduceKind::kSum, dx, shape, mask, scale.data(),
                n_out);
  ConstVecMap<T> dy(pdy, n_out);
  scale = (scale > T(0)).select(dy / scale, T(0));
  ForEachSegment<1>(
      ctx.pool, it, n, kSerialWork,
      [&](int64_t off, const std::array<int64_t, 1>& in, int64_t len) {
        VecMap<T> d(dx + off, len);
        if (stride == 0) {
          d *= scale[in[0]];
        } else {
          d *= scale.segment(in[0], len);
        }
      });
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TensorType>> ReduceMaxGradShape(
    const ShapeContext& c) {
  absl::StatusOr<std::vector<TensorType>> reduced = ReduceShape(c);
  if (!reduced.ok()) return reduced.status();
  const TensorType& want = (*reduced)[0];
  for (int i : {1, 2}) {
    if (c.input(i) != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          c.schema().inputs[i].name, " must be ", want.ToString(),
          " (reduce_max of x ", c.input(0).ToString(), "), got ",
          c.input(i).ToString()));
    }
  }
  return std::vector<TensorType>{c.input(0)};
}

OpSchema MakeReduceMaxGradSchema() {
  OpSchema s;
  s.name = "reduce_max_grad";
  s.doc =
      "Backward of reduce_max: dy at the positions of each maximum (split "
      "evenly among ties), 0 elsewhere.";
  s.inputs = {ArgDef{"x", DTypeSet::Floating(), true, "reduce_max's input"},
              ArgDef{"y", DTypeSet::Floating(), true, "reduce_max's output"},
              ArgDef{"dy", DTypeSet::Floating(), true,
                     "gradient of reduce_max's output"}};
  s.outputs = {"dx"};
  s.attrs = {AttrDef{"axes", AttrKind::kIntList, std::nullopt,
                     "reduce_max's axes"},
             AttrDef{"keepdims", AttrKind::kBool, AttrValue(false),
                     "reduce_max's keepdims"}};
  s.shape_fn = ReduceMaxGradShape;
  s.kernels[DType::kF32] = ReduceMaxGradKernel<float>;
  s.kernels[DType::kF64] = ReduceMaxGradKernel<double>;
  s.flops = [](const Node& node, absl::Span<const TensorType>) -> int64_t {
    return 3 * node.output_type(0).num_elements();
  };
  s.differentiable = false;  // no second-order gradients
  // Unrelated random x and y hit no maximum (dx = 0); constant x and y
  // (the degenerate range [1, 1)) make every element a tied maximum.
  const std::pair<double, double> tied = {1, 1};
  const auto out_type = [](const Shape& x, const AttrMap& attrs) {
    Shape out;
    std::vector<bool> mask(x.rank(), false);
    for (int64_t a : attrs.at("axes").ints()) mask[a < 0 ? a + x.rank() : a] = true;
    for (int d = 0; d < x.rank(); ++d) {
      if (!mask[d]) {
        out.push_back(x.dim(d));
      } else if (attrs.at("keepdims").b()) {
        out.push_back(1);
      }
    }
    return F32(out);
  };
  for (const OpExample& fwd : ReduceExamples()) {
    const Shape& x = fwd.inputs[0].shape;
    const TensorType y = out_type(x, fwd.attrs);
    s.examples.push_back(OpExample{{fwd.inputs[0], y, y}, fwd.attrs});
    s.examples.push_back(
        OpExample{{fwd.inputs[0], y, y}, fwd.attrs, {tied, tied, {-1, 1}}});
  }
  return s;
}

SUBQUAD_REGISTER_OP(MakeReduceMaxGradSchema());

// ---- softmax / log_softmax --------------------------------------------------

// Eigen's vectorised f64 exp returns about 5.6e-309 instead of 0 for
// arguments below about -709.4, exp(-inf) included; entries that small are
// recomputed with std::exp so masked (-inf) entries get exactly 0.
constexpr double kTinyF64 = 1e-300;
constexpr int64_t kExpBlock = 1024;

template <typename T>
void FixTinyExp(const T* x, T m, T* y, int64_t n) {
  if constexpr (std::is_same_v<T, double>) {
    VecMap<T> yv(y, n);
    if (yv.template minCoeff<Eigen::PropagateNumbers>() < kTinyF64) {
      for (int64_t i = 0; i < n; ++i) {
        if (y[i] < kTinyF64) y[i] = std::exp(x[i] - m);
      }
    }
  }
}

// y = softmax(x) over a contiguous row: one pass for the max, one for
// exp(x - max) and its sum (in L1-sized blocks), one to scale.
// Flops per element: max, subtract, exp, add, multiply = 5.
template <typename T>
void SoftmaxRow(const T* x, T* y, int64_t n) {
  if (n == 0) return;
  // A NaN anywhere in the row makes the sum, hence every output, NaN, so
  // the max need not propagate it (the fast max is much cheaper).
  const T m = ConstVecMap<T>(x, n).maxCoeff();
  T sum = 0;
  for (int64_t b = 0; b < n; b += kExpBlock) {
    const int64_t len = std::min(kExpBlock, n - b);
    VecMap<T> yb(y + b, len);
    yb = (ConstVecMap<T>(x + b, len) - m).exp();
    FixTinyExp<T>(x + b, m, y + b, len);
    sum += yb.sum();
  }
  VecMap<T>(y, n) *= T(1) / sum;
}

// y = x - max - log(sum(exp(x - max))) over a contiguous row.
// Flops per element: max, subtract, exp, add, subtract = 5.
template <typename T>
void LogSoftmaxRow(const T* x, T* y, int64_t n) {
  if (n == 0) return;
  ConstVecMap<T> xv(x, n);
  const T m = xv.maxCoeff();  // NaN propagates through the sum
  const T lse = std::log((xv - m).exp().sum());
  VecMap<T>(y, n) = (xv - m) - lse;
}

// The same along a non-innermost axis: `n` rows of `len` elements, `stride`
// apart, vectorised across the row. m and s are scratch of `len` elements.
template <typename T, bool kLog>
void SoftmaxColumns(const T* x, T* y, int64_t n, int64_t len, int64_t stride,
                    VecMap<T> m, VecMap<T> s) {
  m = ConstVecMap<T>(x, len);
  for (int64_t r = 1; r < n; ++r) {
    m = m.max(ConstVecMap<T>(x + r * stride, len));  // NaN: via the sum
  }
  s.setZero();
  for (int64_t r = 0; r < n; ++r) {
    ConstVecMap<T> xr(x + r * stride, len);
    if constexpr (kLog) {
      s += (xr - m).exp();
    } else {
      VecMap<T> yr(y + r * stride, len);
      yr = (xr - m).exp();
      if constexpr (std::is_same_v<T, double>) {
        if (yr.template minCoeff<Eigen::PropagateNumbers>() < kTinyF64) {
          for (int64_t i = 0; i < len; ++i) {
            if (yr[i] < kTinyF64) yr[i] = std::exp(xr[i] - m[i]);
          }
        }
      }
      s += yr;
    }
  }
  if constexpr (kLog) {
    s = m + s.log();  // log-sum-exp
    for (int64_t r = 0; r < n; ++r) {
      VecMap<T>(y + r * stride, len) = ConstVecMap<T>(x + r * stride, len) - s;
    }
  } else {
    s = s.inverse();
    for (int64_t r = 0; r < n; ++r) VecMap<T>(y + r * stride, len) *= s;
  }
}

template <bool kLog>
struct SoftmaxKernel {
  template <typename T>
  struct Impl {
    static absl::Status Run(const KernelContext& ctx) {
      const TensorView& in = ctx.inputs[0];
      const Shape& shape = in.shape();
      const int axis = static_cast<int>(
          ctx.node.GetInt("axis") < 0 ? ctx.node.GetInt("axis") + shape.rank()
                                      : ctx.node.GetInt("axis"));
      int64_t outer = 1, inner = 1;
      for (int d = 0; d < axis; ++d) outer *= shape.dim(d);
      for (int d = axis + 1; d < shape.rank(); ++d) inner *= shape.dim(d);
      const int64_t n = shape.dim(axis);
      if (in.num_elements() == 0) return absl::OkStatus();
      const T* x = in.data<T>();
      T* y = ctx.outputs[0].data<T>();
      constexpr int64_t kCost = 4;
      if (inner == 1) {
        ParallelRange(ctx.pool, outer, kSerialWork / (kCost * n),
                      [&](int64_t b, int64_t e) {
                        for (int64_t o = b; o < e; ++o) {
                          if constexpr (kLog) {
                            LogSoftmaxRow<T>(x + o * n, y + o * n, n);
                          } else {
                            SoftmaxRow<T>(x + o * n, y + o * n, n);
                          }
                        }
                      });
        return absl::OkStatus();
      }
      const int64_t chunk = kInnerChunk;
      const int64_t chunks = CeilDiv(inner, chunk);
      const int64_t work = kCost * n * std::min(inner, chunk);
      ParallelRange(ctx.pool, outer * chunks, kSerialWork / work,
                    [&](int64_t b, int64_t e) {
                      Vec<T> m(std::min(inner, chunk)), s(m.size());
                      for (int64_t item = b; item < e; ++item) {
                        const int64_t o = item / chunks;
                        const int64_t begin = (item - o * chunks) * chunk;
                        const int64_t len = std::min(chunk, inner - begin);
                        const int64_t off = o * n * inner + begin;
                        SoftmaxColumns<T, kLog>(x + off, y + off, n, len, inner,
                                                VecMap<T>(m.data(), len),
                                                VecMap<T>(s.data(), len));
                      }
                    });
      return absl::OkStatus();
    }
  };
};

absl::StatusOr<std::vector<TensorType>> SoftmaxShape(const ShapeContext& c) {
  const TensorType& x = c.input(0);
  const int64_t axis = c.GetInt("axis");
  if (!NormalizeAxis(axis, x.shape.rank()).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("axis ", axis, " is out of range for ", x.ToString()));
  }
  return std::vector<TensorType>{x};
}

// The last axis (default and negative), a middle axis, the first axis, a
// long odd row, a size-1 axis.
std::vector<OpExample> SoftmaxExamples(
    std::vector<std::pair<double, double>> ranges) {
  const std::pair<Shape, int64_t> cases[] = {{{3, 5}, -1}, {{2, 3, 4}, 1},
                                             {{4, 3}, 0},  {{2, 37}, 1},
                                             {{3, 1}, -1}, {{2, 3, 4}, -3}};
  std::vector<OpExample> out;
  for (const auto& [shape, axis] : cases) {
    std::vector<TensorType> inputs(ranges.size(), F32(shape));
    out.push_back(OpExample{std::move(inputs), {{"axis", axis}}, ranges});
  }
  return out;
}

template <bool kLog>
OpSchema MakeSoftmaxSchema(std::string name, std::string doc) {
  OpSchema s;
  s.name = std::move(name);
  s.doc = std::move(doc);
  s.inputs = {ArgDef{"x", DTypeSet::Floating(), true, "input"}};
  s.outputs = {"y"};
  s.attrs = {
      AttrDef{"axis", AttrKind::kInt, AttrValue(int64_t{-1}),
              "the axis to normalise over; negatives count from the end"}};
  s.shape_fn = SoftmaxShape;
  using K = SoftmaxKernel<kLog>;
  s.kernels[DType::kF32] = [](const KernelContext& ctx) {
    return K::template Impl<float>::Run(ctx);
  };
  s.kernels[DType::kF64] = [](const KernelContext& ctx) {
    return K::template Impl<double>::Run(ctx);
  };
  // 5 flops per element (see SoftmaxRow and LogSoftmaxRow).
  s.flops = [](const Node& node, absl::Span<const TensorType>) -> int64_t {
    return 5 * node.output_type(0).num_elements();
  };
  // The fused backward from the output: (log_)softmax_grad(y, g).
  s.grad = [](GradContext& ctx) {
    ctx.set_grad_input(
        0, ctx.builder().Add(kLog ? "log_softmax_grad" : "softmax_grad",
                             {ctx.output(0), ctx.grad_output(0)},
                             {{"axis", ctx.node().GetInt("axis")}}));
    return absl::OkStatus();
  };
  s.examples = SoftmaxExamples({{-3, 3}});
  return s;
}

SUBQUAD_REGISTER_OP(MakeSoftmaxSchema<false>(
    "softmax",
    "exp(x - max) / sum(exp(x - max)) along axis; a row of only -inf gives "
    "NaN."));
SUBQUAD_REGISTER_OP(MakeSoftmaxSchema<true>(
    "log_softmax",
    "x - max - log(sum(exp(x - max))) along axis; a row of only -inf gives "
    "NaN."));

// ---- softmax_grad / log_softmax_grad ----------------------------------------

// From the forward output y and its gradient dy, along the axis:
//   softmax:     dx = y * (dy - sum(dy * y))
//   log_softmax: dx = dy - exp(y) * sum(dy)
// The sum over the row is taken first, then dx is written element by
// element, so dx may share dy's buffer (inplace_input = 1).
// Flops per element: 4 (softmax: multiply, add, subtract, multiply;
// log_softmax: add, exp, multiply, subtract).
template <typename T, bool kLog>
void SoftmaxGradRow(const T* y, const T* dy, T* dx, int64_t n) {
  ConstVecMap<T> yv(y, n), dyv(dy, n);
  if constexpr (kLog) {
    const T s = dyv.sum();
    VecMap<T>(dx, n) = dyv - yv.exp() * s;
  } else {
    const T s = (dyv * yv).sum();
    VecMap<T>(dx, n) = yv * (dyv - s);
  }
}

// The same along a non-innermost axis: `n` rows of `len` elements, `stride`
// apart, vectorised across the row; s is scratch of `len` elements.
template <typename T, bool kLog>
void SoftmaxGradColumns(const T* y, const T* dy, T* dx, int64_t n, int64_t len,
                        int64_t stride, VecMap<T> s) {
  s.setZero();
  for (int64_t r = 0; r < n; ++r) {
    ConstVecMap<T> dyr(dy + r * stride, len);
    if constexpr (kLog) {
      s += dyr;
    } else {
      s += dyr * ConstVecMap<T>(y + r * stride, len);
    }
  }
  for (int64_t r = 0; r < n; ++r) {
    ConstVecMap<T> yr(y + r * stride, len), dyr(dy + r * stride, len);
    VecMap<T> dxr(dx + r * stride, len);
    if constexpr (kLog) {
      dxr = dyr - yr.exp() * s;
    } else {
      dxr = yr * (dyr - s);
    }
  }
}

template <bool kLog>
struct SoftmaxGradKernel {
  template <typename T>
  struct Impl {
    static absl::Status Run(const KernelContext& ctx) {
      const Shape& shape = ctx.inputs[0].shape();
      if (ctx.inputs[0].num_elements() == 0) return absl::OkStatus();
      const int64_t a = ctx.node.GetInt("axis");
      const int axis = static_cast<int>(a < 0 ? a + shape.rank() : a);
      int64_t outer = 1, inner = 1;
      for (int d = 0; d < axis; ++d) outer *= shape.dim(d);
      for (int d = axis + 1; d < shape.rank(); ++d) inner *= shape.dim(d);
      const int64_t n = shape.dim(axis);
      const T* y = ctx.inputs[0].data<T>();
      const T* dy = ctx.inputs[1].data<T>();
      T* dx = ctx.outputs[0].data<T>();
      constexpr int64_t kCost = kLog ? 4 : 2;
      if (inner == 1) {
        ParallelRange(ctx.pool, outer, kSerialWork / (kCost * n),
                      [&](int64_t b, int64_t e) {
                        for (int64_t o = b; o < e; ++o) {
                          SoftmaxGradRow<T, kLog>(y + o * n, dy + o * n,
                                                  dx + o * n, n);
                        }
                      });
        return absl::OkStatus();
      }
      const int64_t chunk = kInnerChunk;
      const int64_t chunks = CeilDiv(inner, chunk);
      const int64_t work = kCost * n * std::min(inner, chunk);
      ParallelRange(ctx.pool, outer * chunks, kSerialWork / work,
                    [&](int64_t b, int64_t e) {
                      Vec<T> s(std::min(inner, chunk));
                      for (int64_t item = b; item < e; ++item) {
                        const int64_t o = item / chunks;
                        const int64_t begin = (item - o * chunks) * chunk;
                        const int64_t len = std::min(chunk, inner - begin);
                        const int64_t off = o * n * inner + begin;
                        SoftmaxGradColumns<T, kLog>(y + off, dy + off, dx + off,
                                                    n, len, inner,
                                                    VecMap<T>(s.data(), len));
                      }
                    });
      return absl::OkStatus();
    }
  };
};

absl::StatusOr<std::vector<TensorType>> SoftmaxGradShape(
    const ShapeContext& c) {
  if (c.input(0) != c.input(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("y and dy must have one type: ", c.input(0).ToString(),
                     " vs ", c.input(1).ToString()));
  }
  return SoftmaxShape(c);
}

template <bool kLog>
OpSchema MakeSoftmaxGradSchema(std::string name, std::string doc,
                               std::pair<double, double> y_range) {
  OpSchema s;
  s.name = std::move(name);
  s.doc = std::move(doc);
  s.inputs = {ArgDef{"y", DTypeSet::Floating(), true, "the forward output"},
              ArgDef{"dy", DTypeSet::Floating(), true,
                     "gradient of the forward output"}};
  s.outputs = {"dx"};
  s.attrs = {AttrDef{"axis", AttrKind::kInt, AttrValue(int64_t{-1}),
                     "the forward op's axis; negatives count from the end"}};
  s.shape_fn = SoftmaxGradShape;
  using K = SoftmaxGradKernel<kLog>;
  s.kernels[DType::kF32] = [](const KernelContext& ctx) {
    return K::template Impl<float>::Run(ctx);
  };
  s.kernels[DType::kF64] = [](const KernelContext& ctx) {
    return K::template Impl<double>::Run(ctx);
  };
  s.flops = [](const Node& node, absl::Span<const TensorType>) -> int64_t {
    return 4 * node.output_type(0).num_elements();
  };
  s.inplace_input = 1;
  s.differentiable = false;  // no second-order gradients
  s.examples = SoftmaxExamples({y_range, {-1, 1}});
  return s;
}

SUBQUAD_REGISTER_OP(MakeSoftmaxGradSchema<false>(
    "softmax_grad",
    "Backward of softmax from its output: y * (dy - sum(dy * y)) along axis.",
    {0, 1}));
SUBQUAD_REGISTER_OP(MakeSoftmaxGradSchema<true>(
    "log_softmax_grad",
    "Backward of log_softmax from its output: dy - exp(y) * sum(dy) along "
    "axis.",
    {-4, 0}));

}  // namespace
}  // namespace subquad
