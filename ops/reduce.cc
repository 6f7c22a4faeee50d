// Reductions (reduce_sum, reduce_mean, reduce_max) and the row
// normalisations softmax and log_softmax. Semantics are in ops/ops.h.
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
#include "absl/strings/str_join.h"
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

template <ReduceKind kKind>
struct ReduceKernel {
  template <typename T>
  struct Impl {
    static absl::Status Run(const KernelContext& ctx) {
      const TensorView& in = ctx.inputs[0];
      const TensorView& out = ctx.outputs[0];
      const Shape& shape = in.shape();
      const std::vector<bool> mask = ReducedMask(ctx.node, shape.rank());
      const int64_t n_out = out.num_elements();
      if (n_out == 0) return absl::OkStatus();
      T* y = out.data<T>();
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
        const T v = kKind == ReduceKind::kSum ? T(0)
                    : kKind == ReduceKind::kMean
                        ? std::numeric_limits<T>::quiet_NaN()
                        : -std::numeric_limits<T>::infinity();
        std::fill(y, y + n_out, v);
        return absl::OkStatus();
      }
      const T* src = in.data<T>();
      std::vector<T> scratch[2];
      int next_scratch = 0;
      bool reduced_any = false;
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
            last && kKind == ReduceKind::kMean ? static_cast<T>(count) : T(1);
        constexpr ReduceKind kPassKind =
            kKind == ReduceKind::kMax ? ReduceKind::kMax : ReduceKind::kSum;
        ReducePass<T>(ctx.pool, kPassKind, src, dst, outer, runs[idx].extent,
                      inner, divisor);
        src = dst;
        reduced_any = true;
        runs.erase(runs.begin() + idx);
      }
      // Every reduced axis had size 1: the values are unchanged.
      if (!reduced_any && src != y) {
        std::memcpy(y, src, n_out * sizeof(T));
      }
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
  return s;
}

SUBQUAD_REGISTER_OP(MakeReduceSchema<ReduceKind::kSum>(
    "reduce_sum", "Sums x over the given axes."));
SUBQUAD_REGISTER_OP(MakeReduceSchema<ReduceKind::kMean>(
    "reduce_mean", "Averages x over the given axes."));
SUBQUAD_REGISTER_OP(MakeReduceSchema<ReduceKind::kMax>(
    "reduce_max", "Takes the maximum of x over the given axes (NaN wins)."));

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

}  // namespace
}  // namespace subquad
