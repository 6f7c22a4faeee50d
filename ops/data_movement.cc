// Data-movement ops: reshape, transpose, slice, pad, concat, broadcast_to
// and gather. None computes anything; each kernel moves bytes, so one kernel
// serves every dtype (dispatching on the element size where it must touch
// single elements) and the work is memcpy of the longest contiguous runs the
// shapes allow, split across the pool when there is enough of it. Each op's
// gradient rule sits next to it; gather's backward is its own op,
// gather_grad, the one kernel here that adds.
// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsics (a
// false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/builder.h"
#include "core/grad.h"
#include "core/graph.h"
#include "core/op_schema.h"
#include "core/shape.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/internal/broadcast.h"
#include "ops/ops.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace subquad {
namespace {

using Dims = absl::InlinedVector<int64_t, 8>;

// Below this many bytes of work a kernel stays on the calling thread.
constexpr int64_t kParallelBytes = int64_t{256} << 10;

// Runs fn over [0, units), in parallel when the units carry enough bytes.
template <typename F>
void ForUnits(ParallelRunner* pool, int64_t units, int64_t bytes_per_unit,
              const F& fn) {
  if (units <= 0) return;
  const int64_t grain =
      std::max<int64_t>(1, kParallelBytes / std::max<int64_t>(1, bytes_per_unit));
  if (pool->num_threads() <= 1 || units < 2 * grain) {
    fn(int64_t{0}, units);
    return;
  }
  pool->ParallelFor(units, grain, fn);
}

// memcpy, split across the pool for big blocks.
void CopyBytes(ParallelRunner* pool, char* dst, const char* src,
               int64_t bytes) {
  if (bytes <= 0) return;
  constexpr int64_t kChunk = 64 << 10;
  const int64_t chunks = (bytes + kChunk - 1) / kChunk;
  ForUnits(pool, chunks, kChunk, [&](int64_t lo, int64_t hi) {
    const int64_t b = lo * kChunk, e = std::min(bytes, hi * kChunk);
    std::memcpy(dst + b, src + b, static_cast<size_t>(e - b));
  });
}

// Dispatches on an element size: f(W{}) with W an unsigned word of that size.
template <typename F>
void DispatchWord(size_t size, F&& f) {
  if (size == 8) {
    f(uint64_t{});
  } else {
    f(uint32_t{});
  }
}

std::string IntsString(absl::Span<const int64_t> v) {
  return absl::StrCat("[", absl::StrJoin(v, ","), "]");
}

// Registers `fn` for every dtype.
void AllDTypeKernels(OpSchema& s, KernelFn fn) {
  for (DType t : kAllDTypes) s.kernels[t] = fn;
}

TensorType F32(Shape s) { return TensorType{DType::kF32, std::move(s)}; }
TensorType I32(Shape s) { return TensorType{DType::kI32, std::move(s)}; }
TensorType I64(Shape s) { return TensorType{DType::kI64, std::move(s)}; }

// ---- reshape -----------------------------------------------------------------

absl::StatusOr<std::vector<TensorType>> ReshapeShape(const ShapeContext& ctx) {
  const TensorType& in = ctx.input(0);
  const Shape& target = ctx.GetShape("shape");
  for (int i = 0; i < target.rank(); ++i) {
    if (target[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "reshape of ", in.ToString(), " to ", target.ToString(),
          ": dim ", i, " is negative (the node stores the resolved shape)"));
    }
  }
  RETURN_IF_ERROR(ValidateShape(target));
  if (target.num_elements() != in.num_elements()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reshape of ", in.ToString(), " to ", target.ToString(),
        " changes the element count (", in.num_elements(), " vs ",
        target.num_elements(), ")"));
  }
  return std::vector<TensorType>{TensorType{in.dtype, target}};
}

absl::Status ReshapeKernel(const KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  if (out.raw_data() == in.raw_data()) return absl::OkStatus();  // aliased
  CopyBytes(ctx.pool, static_cast<char*>(out.raw_data()),
            static_cast<const char*>(in.raw_data()), out.byte_size());
  return absl::OkStatus();
}

OpSchema MakeReshapeSchema() {
  OpSchema s;
  s.name = "reshape";
  s.doc = "The same elements, in row-major order, under a new shape.";
  s.inputs = {ArgDef{"x", DTypeSet::All(), true, "tensor to reshape"}};
  s.outputs = {"out"};
  s.attrs = {AttrDef{"shape", AttrKind::kShape, std::nullopt,
                     "the new shape; same element count as x"}};
  s.shape_fn = ReshapeShape;
  AllDTypeKernels(s, ReshapeKernel);
  s.alias_input = 0;
  // The gradient is reshaped back.
  s.grad = [](GradContext& ctx) {
    ctx.set_grad_input(0, ops::Reshape(ctx.builder(), ctx.grad_output(0),
                                       ctx.input_type(0).shape.ToVector()));
    return absl::OkStatus();
  };
  const auto ex = [](TensorType t, Shape to) {
    return OpExample{{std::move(t)}, {{"shape", AttrValue(std::move(to))}}};
  };
  s.examples = {ex(F32({4, 6}), {2, 3, 4}), ex(F32({2, 3, 4}), {24}),
                ex(F32({1, 5}), {5, 1}), ex(F32({1}), {}),
                ex(I64({2, 3}), {3, 2})};
  return s;
}

// ---- transpose -----------------------------------------------------------------

absl::StatusOr<std::vector<TensorType>> TransposeShape(
    const ShapeContext& ctx) {
  const TensorType& in = ctx.input(0);
  const std::vector<int64_t>& perm = ctx.GetInts("perm");
  const int r = in.shape.rank();
  if (static_cast<int>(perm.size()) != r) {
    return absl::InvalidArgumentError(absl::StrCat(
        "perm ", IntsString(perm), " has ", perm.size(), " entries for ",
        in.ToString(), " of rank ", r));
  }
  std::vector<bool> seen(r, false);
  Shape out;
  for (int64_t p : perm) {
    if (p < 0 || p >= r || seen[p]) {
      return absl::InvalidArgumentError(
          absl::StrCat("perm ", IntsString(perm), " is not a permutation of 0..",
                       r - 1, " for ", in.ToString()));
    }
    seen[p] = true;
    out.push_back(in.shape[static_cast<int>(p)]);
  }
  return std::vector<TensorType>{TensorType{in.dtype, out}};
}

// A transpose with size-1 dims dropped and runs of input dims that stay
// adjacent in the output merged: `dims` are the input's, output dim i is
// input dim perm[i].
struct TransposePlan {
  Dims dims;
  Dims perm;
};

TransposePlan SimplifyTranspose(const Shape& shape,
                                absl::Span<const int64_t> perm) {
  const int r = shape.rank();
  // Drop size-1 dims.
  Dims new_index(r, -1);
  Dims kept_dims;
  for (int d = 0; d < r; ++d) {
    if (shape[d] != 1) {
      new_index[d] = static_cast<int64_t>(kept_dims.size());
      kept_dims.push_back(shape[d]);
    }
  }
  Dims p;
  for (int64_t d : perm) {
    if (shape[static_cast<int>(d)] != 1) p.push_back(new_index[d]);
  }
  // Group output positions whose input dims are consecutive.
  Dims group_first;  // per group: its first input dim
  Dims group_size;   // per group: product of its dims
  for (size_t i = 0; i < p.size(); ++i) {
    if (i > 0 && p[i] == p[i - 1] + 1) {
      group_size.back() *= kept_dims[p[i]];
    } else {
      group_first.push_back(p[i]);
      group_size.push_back(kept_dims[p[i]]);
    }
  }
  // Groups in input order give the merged input dims.
  const int g = static_cast<int>(group_first.size());
  Dims order(g);
  for (int i = 0; i < g; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
    return group_first[x] < group_first[y];
  });
  TransposePlan plan;
  plan.dims.resize(g);
  plan.perm.resize(g);
  Dims rank_of(g);
  for (int i = 0; i < g; ++i) {
    rank_of[order[i]] = i;
    plan.dims[i] = group_size[order[i]];
  }
  for (int i = 0; i < g; ++i) plan.perm[i] = rank_of[i];
  return plan;
}

Dims Strides(absl::Span<const int64_t> dims) {
  Dims st(dims.size());
  int64_t acc = 1;
  for (int i = static_cast<int>(dims.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= dims[i];
  }
  return st;
}

// Walks the index space `ext` in row-major order, tracking an offset into
// each of two arrays with per-dim strides sa and sb.
class Odometer {
 public:
  Odometer(absl::Span<const int64_t> ext, absl::Span<const int64_t> sa,
           absl::Span<const int64_t> sb, int64_t start)
      : ext_(ext.begin(), ext.end()),
        sa_(sa.begin(), sa.end()),
        sb_(sb.begin(), sb.end()),
        idx_(ext.size(), 0) {
    for (int d = static_cast<int>(ext_.size()) - 1; d >= 0; --d) {
      idx_[d] = start % ext_[d];
      start /= ext_[d];
      a_ += idx_[d] * sa_[d];
      b_ += idx_[d] * sb_[d];
    }
  }
  int64_t a() const { return a_; }
  int64_t b() const { return b_; }
  void Next() {
    for (int d = static_cast<int>(ext_.size()) - 1; d >= 0; --d) {
      a_ += sa_[d];
      b_ += sb_[d];
      if (++idx_[d] < ext_[d]) return;
      a_ -= ext_[d] * sa_[d];
      b_ -= ext_[d] * sb_[d];
      idx_[d] = 0;
    }
  }

 private:
  Dims ext_, sa_, sb_, idx_;
  int64_t a_ = 0, b_ = 0;
};

struct Word128 {
  uint64_t lo, hi;
};

constexpr int64_t kTile = 64;

#if defined(__AVX512F__)
// In-register transposes of one 64-byte line per row: every cache line is
// read and written whole, so power-of-two strides cost no extra misses.

// d[j * ds + i] = s[i * ss + j] for a 16x16 block of 4-byte words.
inline void Transpose16x16(const uint32_t* s, int64_t ss, uint32_t* d,
                           int64_t ds) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) {
    r[i] = _mm512_loadu_ps(reinterpret_cast<const float*>(s + i * ss));
  }
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // u[4g + j], lane L: column 4L + j of rows 4g..4g+3.
  for (int g = 0; g < 4; ++g) {
    const __m512d a = _mm512_castps_pd(t[4 * g]);
    const __m512d b = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * g + 2]);
    const __m512d e = _mm512_castps_pd(t[4 * g + 3]);
    r[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
    r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
  }
  for (int j = 0; j < 4; ++j) {
    const __m512 a = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44);
    const __m512 b = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);
    const __m512 c = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44);
    const __m512 e = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
    float* out = reinterpret_cast<float*>(d);
    _mm512_storeu_ps(out + (0 + j) * ds, _mm512_shuffle_f32x4(a, c, 0x88));
    _mm512_storeu_ps(out + (4 + j) * ds, _mm512_shuffle_f32x4(a, c, 0xDD));
    _mm512_storeu_ps(out + (8 + j) * ds, _mm512_shuffle_f32x4(b, e, 0x88));
    _mm512_storeu_ps(out + (12 + j) * ds, _mm512_shuffle_f32x4(b, e, 0xDD));
  }
}

// The same for an 8x8 block of 8-byte words.
inline void Transpose8x8(const uint64_t* s, int64_t ss, uint64_t* d,
                         int64_t ds) {
  __m512d r[8], t[8];
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_loadu_pd(reinterpret_cast<const double*>(s + i * ss));
  }
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
  }
  // u: lanes of columns {0,4} / {2,6} / {1,5} / {3,7} for rows 0-3 and 4-7.
  for (int g = 0; g < 2; ++g) {
    r[4 * g + 0] = _mm512_shuffle_f64x2(t[4 * g], t[4 * g + 2], 0x88);
    r[4 * g + 1] = _mm512_shuffle_f64x2(t[4 * g], t[4 * g + 2], 0xDD);
    r[4 * g + 2] = _mm512_shuffle_f64x2(t[4 * g + 1], t[4 * g + 3], 0x88);
    r[4 * g + 3] = _mm512_shuffle_f64x2(t[4 * g + 1], t[4 * g + 3], 0xDD);
  }
  double* out = reinterpret_cast<double*>(d);
  _mm512_storeu_pd(out + 0 * ds, _mm512_shuffle_f64x2(r[0], r[4], 0x88));
  _mm512_storeu_pd(out + 4 * ds, _mm512_shuffle_f64x2(r[0], r[4], 0xDD));
  _mm512_storeu_pd(out + 2 * ds, _mm512_shuffle_f64x2(r[1], r[5], 0x88));
  _mm512_storeu_pd(out + 6 * ds, _mm512_shuffle_f64x2(r[1], r[5], 0xDD));
  _mm512_storeu_pd(out + 1 * ds, _mm512_shuffle_f64x2(r[2], r[6], 0x88));
  _mm512_storeu_pd(out + 5 * ds, _mm512_shuffle_f64x2(r[2], r[6], 0xDD));
  _mm512_storeu_pd(out + 3 * ds, _mm512_shuffle_f64x2(r[3], r[7], 0x88));
  _mm512_storeu_pd(out + 7 * ds, _mm512_shuffle_f64x2(r[3], r[7], 0xDD));
}

// The same for a 4x4 block of 16-byte words.
inline void Transpose4x4(const Word128* s, int64_t ss, Word128* d,
                         int64_t ds) {
  const __m512i r0 = _mm512_loadu_si512(s + 0 * ss);
  const __m512i r1 = _mm512_loadu_si512(s + 1 * ss);
  const __m512i r2 = _mm512_loadu_si512(s + 2 * ss);
  const __m512i r3 = _mm512_loadu_si512(s + 3 * ss);
  const __m512i a = _mm512_shuffle_i64x2(r0, r1, 0x44);
  const __m512i b = _mm512_shuffle_i64x2(r0, r1, 0xEE);
  const __m512i c = _mm512_shuffle_i64x2(r2, r3, 0x44);
  const __m512i e = _mm512_shuffle_i64x2(r2, r3, 0xEE);
  _mm512_storeu_si512(d + 0 * ds, _mm512_shuffle_i64x2(a, c, 0x88));
  _mm512_storeu_si512(d + 1 * ds, _mm512_shuffle_i64x2(a, c, 0xDD));
  _mm512_storeu_si512(d + 2 * ds, _mm512_shuffle_i64x2(b, e, 0x88));
  _mm512_storeu_si512(d + 3 * ds, _mm512_shuffle_i64x2(b, e, 0xDD));
}

// Words per side of the in-register block.
template <typename W>
constexpr int64_t kSimdBlock = 64 / sizeof(W);
#endif

// dst[y * dst_stride + x] = src[x * src_stride + y] for x < nx, y < ny.
template <typename W>
inline void TransposeBlock(const W* src, int64_t src_stride, W* dst,
                           int64_t dst_stride, int64_t nx, int64_t ny) {
  int64_t y = 0;
#if defined(__AVX512F__)
  constexpr int64_t kB = kSimdBlock<W>;
  for (; y + kB <= ny; y += kB) {
    int64_t x = 0;
    for (; x + kB <= nx; x += kB) {
      if constexpr (sizeof(W) == 4) {
        Transpose16x16(src + x * src_stride + y, src_stride,
                       dst + y * dst_stride + x, dst_stride);
      } else if constexpr (sizeof(W) == 8) {
        Transpose8x8(src + x * src_stride + y, src_stride,
                     dst + y * dst_stride + x, dst_stride);
      } else {
        Transpose4x4(src + x * src_stride + y, src_stride,
                     dst + y * dst_stride + x, dst_stride);
      }
    }
    for (int64_t yy = y; yy < y + kB; ++yy) {
      for (int64_t xx = x; xx < nx; ++xx) {
        dst[yy * dst_stride + xx] = src[xx * src_stride + yy];
      }
    }
  }
#elif defined(__AVX2__)
  if constexpr (sizeof(W) == 4) {
    // 8x8 blocks in registers.
    for (; y + 8 <= ny; y += 8) {
      int64_t x = 0;
      for (; x + 8 <= nx; x += 8) {
        const float* s = reinterpret_cast<const float*>(src + x * src_stride + y);
        float* d = reinterpret_cast<float*>(dst + y * dst_stride + x);
        __m256 r0 = _mm256_loadu_ps(s + 0 * src_stride);
        __m256 r1 = _mm256_loadu_ps(s + 1 * src_stride);
        __m256 r2 = _mm256_loadu_ps(s + 2 * src_stride);
        __m256 r3 = _mm256_loadu_ps(s + 3 * src_stride);
        __m256 r4 = _mm256_loadu_ps(s + 4 * src_stride);
        __m256 r5 = _mm256_loadu_ps(s + 5 * src_stride);
        __m256 r6 = _mm256_loadu_ps(s + 6 * src_stride);
        __m256 r7 = _mm256_loadu_ps(s + 7 * src_stride);
        __m256 t0 = _mm256_unpacklo_ps(r0, r1);
        __m256 t1 = _mm256_unpackhi_ps(r0, r1);
        __m256 t2 = _mm256_unpacklo_ps(r2, r3);
        __m256 t3 = _mm256_unpackhi_ps(r2, r3);
        __m256 t4 = _mm256_unpacklo_ps(r4, r5);
        __m256 t5 = _mm256_unpackhi_ps(r4, r5);
        __m256 t6 = _mm256_unpacklo_ps(r6, r7);
        __m256 t7 = _mm256_unpackhi_ps(r6, r7);
        r0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
        r1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
        r2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
        r3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
        r4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
        r5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
        r6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
        r7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
        _mm256_storeu_ps(d + 0 * dst_stride, _mm256_permute2f128_ps(r0, r4, 0x20));
        _mm256_storeu_ps(d + 1 * dst_stride, _mm256_permute2f128_ps(r1, r5, 0x20));
        _mm256_storeu_ps(d + 2 * dst_stride, _mm256_permute2f128_ps(r2, r6, 0x20));
        _mm256_storeu_ps(d + 3 * dst_stride, _mm256_permute2f128_ps(r3, r7, 0x20));
        _mm256_storeu_ps(d + 4 * dst_stride, _mm256_permute2f128_ps(r0, r4, 0x31));
        _mm256_storeu_ps(d + 5 * dst_stride, _mm256_permute2f128_ps(r1, r5, 0x31));
        _mm256_storeu_ps(d + 6 * dst_stride, _mm256_permute2f128_ps(r2, r6, 0x31));
        _mm256_storeu_ps(d + 7 * dst_stride, _mm256_permute2f128_ps(r3, r7, 0x31));
      }
      for (int64_t yy = y; yy < y + 8; ++yy) {
        for (int64_t xx = x; xx < nx; ++xx) {
          dst[yy * dst_stride + xx] = src[xx * src_stride + yy];
        }
      }
    }
  } else if constexpr (sizeof(W) == 8) {
    // 4x4 blocks in registers.
    for (; y + 4 <= ny; y += 4) {
      int64_t x = 0;
      for (; x + 4 <= nx; x += 4) {
        const double* s =
            reinterpret_cast<const double*>(src + x * src_stride + y);
        double* d = reinterpret_cast<double*>(dst + y * dst_stride + x);
        const __m256d r0 = _mm256_loadu_pd(s + 0 * src_stride);
        const __m256d r1 = _mm256_loadu_pd(s + 1 * src_stride);
        const __m256d r2 = _mm256_loadu_pd(s + 2 * src_stride);
        const __m256d r3 = _mm256_loadu_pd(s + 3 * src_stride);
        const __m256d t0 = _mm256_unpacklo_pd(r0, r1);
        const __m256d t1 = _mm256_unpackhi_pd(r0, r1);
        const __m256d t2 = _mm256_unpacklo_pd(r2, r3);
        const __m256d t3 = _mm256_unpackhi_pd(r2, r3);
        _mm256_storeu_pd(d + 0 * dst_stride, _mm256_permute2f128_pd(t0, t2, 0x20));
        _mm256_storeu_pd(d + 1 * dst_stride, _mm256_permute2f128_pd(t1, t3, 0x20));
        _mm256_storeu_pd(d + 2 * dst_stride, _mm256_permute2f128_pd(t0, t2, 0x31));
        _mm256_storeu_pd(d + 3 * dst_stride, _mm256_permute2f128_pd(t1, t3, 0x31));
      }
      for (int64_t yy = y; yy < y + 4; ++yy) {
        for (int64_t xx = x; xx < nx; ++xx) {
          dst[yy * dst_stride + xx] = src[xx * src_stride + yy];
        }
      }
    }
  }
#endif
  for (; y < ny; ++y) {
    for (int64_t x = 0; x < nx; ++x) {
      dst[y * dst_stride + x] = src[x * src_stride + y];
    }
  }
}

// A transpose whose last axis moves. Output dim `j` is input's last dim (Y
// long) and output's last dim is input dim q (X long): every combination of
// the other dims is an X-by-Y matrix transposed in kTile-square tiles.
template <typename W>
void TransposeTiled(ParallelRunner* pool, const W* src, W* dst,
                    absl::Span<const int64_t> dims,
                    absl::Span<const int64_t> perm) {
  const int r = static_cast<int>(dims.size());
  Dims out_dims(r);
  for (int i = 0; i < r; ++i) out_dims[i] = dims[perm[i]];
  const Dims in_st = Strides(dims), out_st = Strides(out_dims);
  const int64_t q = perm[r - 1];
  int j = 0;
  while (perm[j] != r - 1) ++j;
  const int64_t nx = dims[q], ny = dims[r - 1];
  const int64_t src_x_stride = in_st[q], dst_y_stride = out_st[j];
  Dims ext, sa, sb;  // the other dims, in output order
  for (int i = 0; i < r - 1; ++i) {
    if (i == j) continue;
    ext.push_back(out_dims[i]);
    sa.push_back(in_st[perm[i]]);
    sb.push_back(out_st[i]);
  }
  int64_t outer = 1;
  for (int64_t e : ext) outer *= e;
  const int64_t y_tiles = (ny + kTile - 1) / kTile;
  const int64_t unit_bytes =
      std::min(ny, kTile) * nx * static_cast<int64_t>(sizeof(W));
  ForUnits(pool, outer * y_tiles, unit_bytes, [&](int64_t lo, int64_t hi) {
    int64_t o = lo / y_tiles;
    Odometer od(ext, sa, sb, o);
    for (int64_t u = lo; u < hi; ++u) {
      if (u / y_tiles != o) {
        od.Next();
        o = u / y_tiles;
      }
      const int64_t y0 = (u % y_tiles) * kTile;
      const int64_t y1 = std::min(ny, y0 + kTile);
      const W* s = src + od.a() + y0;
      W* d = dst + od.b() + y0 * dst_y_stride;
      for (int64_t x0 = 0; x0 < nx; x0 += kTile) {
        TransposeBlock(s + x0 * src_x_stride, src_x_stride, d + x0,
                       dst_y_stride, std::min(kTile, nx - x0), y1 - y0);
      }
    }
  });
}

// Copies rows of `row_bytes` for a transpose that keeps the last axis.
void TransposeRows(ParallelRunner* pool, const char* src, char* dst,
                   absl::Span<const int64_t> dims,
                   absl::Span<const int64_t> perm, int64_t row_bytes) {
  const int r = static_cast<int>(dims.size()) - 1;
  Dims out_dims(r);
  for (int i = 0; i < r; ++i) out_dims[i] = dims[perm[i]];
  const Dims in_st = Strides(dims.subspan(0, r));
  Dims sa(r), sb = Strides(out_dims);
  for (int i = 0; i < r; ++i) sa[i] = in_st[perm[i]];
  int64_t rows = 1;
  for (int64_t e : out_dims) rows *= e;
  ForUnits(pool, rows, row_bytes, [&](int64_t lo, int64_t hi) {
    Odometer od(out_dims, sa, sb, lo);
    for (int64_t row = lo; row < hi; ++row, od.Next()) {
      std::memcpy(dst + od.b() * row_bytes, src + od.a() * row_bytes,
                  static_cast<size_t>(row_bytes));
    }
  });
}

absl::Status TransposeKernel(const KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  if (out.num_elements() == 0) return absl::OkStatus();
  TransposePlan plan = SimplifyTranspose(in.shape(), ctx.node.GetInts("perm"));
  const char* src = static_cast<const char*>(in.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  int64_t elem = static_cast<int64_t>(DTypeSize(in.dtype()));
  int r = static_cast<int>(plan.dims.size());
  if (r <= 1) {
    CopyBytes(ctx.pool, dst, src, out.byte_size());
    return absl::OkStatus();
  }
  if (plan.perm[r - 1] == r - 1) {
    // The last axis stays: its rows move whole. Short rows become the
    // elements of a smaller transpose, which moves them in tiles.
    const int64_t row_bytes = plan.dims[r - 1] * elem;
    if (row_bytes != 4 && row_bytes != 8 && row_bytes != 16) {
      TransposeRows(ctx.pool, src, dst, plan.dims, plan.perm, row_bytes);
      return absl::OkStatus();
    }
    elem = row_bytes;
    --r;
    plan.dims.pop_back();
    plan.perm.pop_back();
  }
  const auto run = [&](auto word) {
    using W = decltype(word);
    TransposeTiled<W>(ctx.pool, reinterpret_cast<const W*>(src),
                      reinterpret_cast<W*>(dst), plan.dims, plan.perm);
  };
  if (elem == 4) {
    run(uint32_t{});
  } else if (elem == 8) {
    run(uint64_t{});
  } else {
    run(Word128{});
  }
  return absl::OkStatus();
}

OpSchema MakeTransposeSchema() {
  OpSchema s;
  s.name = "transpose";
  s.doc = "Permutes the dims: output dim i is input dim perm[i].";
  s.inputs = {ArgDef{"x", DTypeSet::All(), true, "tensor to permute"}};
  s.outputs = {"out"};
  s.attrs = {AttrDef{"perm", AttrKind::kIntList, std::nullopt,
                     "a permutation of 0..rank-1"}};
  s.shape_fn = TransposeShape;
  AllDTypeKernels(s, TransposeKernel);
  // The gradient is transposed by the inverse permutation.
  s.grad = [](GradContext& ctx) {
    const std::vector<int64_t>& perm = ctx.node().GetInts("perm");
    std::vector<int64_t> inverse(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) {
      inverse[perm[i]] = static_cast<int64_t>(i);
    }
    ctx.set_grad_input(0, ops::Transpose(ctx.builder(), ctx.grad_output(0),
                                         std::move(inverse)));
    return absl::OkStatus();
  };
  const auto ex = [](TensorType t, std::vector<int64_t> perm) {
    return OpExample{{std::move(t)}, {{"perm", AttrValue(std::move(perm))}}};
  };
  s.examples = {ex(F32({3, 4}), {1, 0}), ex(F32({2, 3, 4}), {2, 0, 1}),
                ex(F32({2, 1, 3, 2}), {3, 1, 0, 2}), ex(F32({5}), {0}),
                ex(I32({3, 2, 2}), {1, 2, 0})};
  return s;
}

// ---- slice -----------------------------------------------------------------------

absl::StatusOr<std::vector<TensorType>> SliceShape(const ShapeContext& ctx) {
  const TensorType& in = ctx.input(0);
  const std::vector<int64_t>& starts = ctx.GetInts("starts");
  const std::vector<int64_t>& limits = ctx.GetInts("limits");
  const int r = in.shape.rank();
  if (static_cast<int>(starts.size()) != r ||
      static_cast<int>(limits.size()) != r) {
    return absl::InvalidArgumentError(absl::StrCat(
        "starts ", IntsString(starts), " and limits ", IntsString(limits),
        " need one entry per dim of ", in.ToString()));
  }
  Shape out;
  for (int d = 0; d < r; ++d) {
    if (starts[d] < 0 || starts[d] > limits[d] || limits[d] > in.shape[d]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "slice ", starts[d], ":", limits[d], " of dim ", d, " of ",
          in.ToString(), " is not within 0 <= start <= limit <= ",
          in.shape[d]));
    }
    out.push_back(limits[d] - starts[d]);
  }
  return std::vector<TensorType>{TensorType{in.dtype, out}};
}

absl::Status SliceKernel(const KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  if (out.num_elements() == 0) return absl::OkStatus();
  const std::vector<int64_t>& starts = ctx.node.GetInts("starts");
  const Shape& is = in.shape();
  const Shape& os = out.shape();
  const int r = is.rank();
  const int64_t elem = static_cast<int64_t>(DTypeSize(in.dtype()));
  // k: the last dim that is cut; every dim after it is whole, so a run of
  // os[k] * (product of the later dims) elements is contiguous on both sides.
  int k = r - 1;
  while (k >= 0 && os[k] == is[k]) --k;
  const char* src = static_cast<const char*>(in.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  if (k < 0) {
    CopyBytes(ctx.pool, dst, src, out.byte_size());
    return absl::OkStatus();
  }
  const auto in_st = RowMajorStrides(is);
  const int64_t run_bytes = os[k] * in_st[k] * elem;
  int64_t base = 0;
  for (int d = 0; d < r; ++d) base += starts[d] * in_st[d];
  src += base * elem;
  Dims ext, sa, sb;
  for (int d = 0; d < k; ++d) {
    ext.push_back(os[d]);
    sa.push_back(in_st[d] * elem);
  }
  sb = Strides(ext);
  for (int64_t& s : sb) s *= run_bytes;
  int64_t rows = 1;
  for (int64_t e : ext) rows *= e;
  if (rows == 1) {
    CopyBytes(ctx.pool, dst, src, run_bytes);
    return absl::OkStatus();
  }
  ForUnits(ctx.pool, rows, run_bytes, [&](int64_t lo, int64_t hi) {
    Odometer od(ext, sa, sb, lo);
    for (int64_t row = lo; row < hi; ++row, od.Next()) {
      std::memcpy(dst + od.b(), src + od.a(), static_cast<size_t>(run_bytes));
    }
  });
  return absl::OkStatus();
}

OpSchema MakeSliceSchema() {
  OpSchema s;
  s.name = "slice";
  s.doc = "The box x[starts[0]:limits[0], starts[1]:limits[1], ...].";
  s.inputs = {ArgDef{"x", DTypeSet::All(), true, "tensor to slice"}};
  s.outputs = {"out"};
  s.attrs = {
      AttrDef{"starts", AttrKind::kIntList, std::nullopt,
              "first index kept, per dim"},
      AttrDef{"limits", AttrKind::kIntList, std::nullopt,
              "one past the last index kept, per dim"},
  };
  s.shape_fn = SliceShape;
  AllDTypeKernels(s, SliceKernel);
  // The gradient is padded back with zeros.
  s.grad = [](GradContext& ctx) {
    const std::vector<int64_t>& starts = ctx.node().GetInts("starts");
    const std::vector<int64_t>& limits = ctx.node().GetInts("limits");
    const Shape& in = ctx.input_type(0).shape;
    std::vector<int64_t> high(starts.size());
    for (int d = 0; d < in.rank(); ++d) high[d] = in[d] - limits[d];
    ctx.set_grad_input(
        0, ctx.builder().Add("pad", {ctx.grad_output(0)},
                             {{"low", AttrValue(starts)},
                              {"high", AttrValue(std::move(high))}}));
    return absl::OkStatus();
  };
  const auto ex = [](TensorType t, std::vector<int64_t> starts,
                     std::vector<int64_t> limits) {
    return OpExample{{std::move(t)},
                     {{"starts", AttrValue(std::move(starts))},
                      {"limits", AttrValue(std::move(limits))}}};
  };
  s.examples = {ex(F32({5, 6}), {1, 0}, {4, 6}),
                ex(F32({3, 4, 5}), {0, 1, 2}, {3, 3, 5}),
                ex(F32({7}), {2}, {7}),
                ex(F32({2, 3}), {0, 0}, {2, 3}),
                ex(F32({4, 3}), {1, 0}, {1, 3}),  // empty
                ex(I32({4, 5}), {1, 1}, {3, 4})};
  return s;
}

// ---- pad ------------------------------------------------------------------------------

absl::StatusOr<std::vector<TensorType>> PadShape(const ShapeContext& ctx) {
  const TensorType& in = ctx.input(0);
  const std::vector<int64_t>& low = ctx.GetInts("low");
  const std::vector<int64_t>& high = ctx.GetInts("high");
  const int r = in.shape.rank();
  if (static_cast<int>(low.size()) != r ||
      static_cast<int>(high.size()) != r) {
    return absl::InvalidArgumentError(absl::StrCat(
        "low ", IntsString(low), " and high ", IntsString(high),
        " need one entry per dim of ", in.ToString()));
  }
  Shape out;
  for (int d = 0; d < r; ++d) {
    if (low[d] < 0 || high[d] < 0 || low[d] > kMaxDim || high[d] > kMaxDim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "padding ", low[d], ", ", high[d], " of dim ", d, " of ",
          in.ToString(), " is negative or too large"));
    }
    out.push_back(low[d] + in.shape[d] + high[d]);
  }
  RETURN_IF_ERROR(ValidateShape(out));
  return std::vector<TensorType>{TensorType{in.dtype, out}};
}

absl::Status PadKernel(const KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  if (out.num_elements() == 0) return absl::OkStatus();
  const std::vector<int64_t>& low = ctx.node.GetInts("low");
  const Shape& is = in.shape();
  const Shape& os = out.shape();
  const int r = is.rank();
  const char* src = static_cast<const char*>(in.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  // k: the last padded dim. An output row (dims k.. for fixed dims ..k-1)
  // is zeros, or zeros around one contiguous run of the input.
  int k = r - 1;
  while (k >= 0 && os[k] == is[k]) --k;
  if (k < 0) {
    CopyBytes(ctx.pool, dst, src, out.byte_size());
    return absl::OkStatus();
  }
  int64_t inner = static_cast<int64_t>(DTypeSize(in.dtype()));
  for (int d = k + 1; d < r; ++d) inner *= os[d];
  const int64_t row_bytes = os[k] * inner;
  const int64_t head = low[k] * inner, run = is[k] * inner;
  const int64_t tail = row_bytes - head - run;
  // Byte strides of the input's dims before k.
  Dims in_st(k);
  int64_t acc = run;
  for (int d = k - 1; d >= 0; --d) {
    in_st[d] = acc;
    acc *= is[d];
  }
  int64_t rows = 1;
  for (int d = 0; d < k; ++d) rows *= os[d];
  const auto fill_row = [&](char* d, const char* s) {
    if (s == nullptr || run == 0) {
      std::memset(d, 0, static_cast<size_t>(row_bytes));
      return;
    }
    std::memset(d, 0, static_cast<size_t>(head));
    std::memcpy(d + head, s, static_cast<size_t>(run));
    std::memset(d + head + run, 0, static_cast<size_t>(tail));
  };
  if (rows == 1) {
    std::memset(dst, 0, static_cast<size_t>(head));
    CopyBytes(ctx.pool, dst + head, src, run);
    std::memset(dst + head + run, 0, static_cast<size_t>(tail));
    return absl::OkStatus();
  }
  ForUnits(ctx.pool, rows, row_bytes, [&](int64_t lo, int64_t hi) {
    Dims idx(k);
    int64_t rest = lo;
    for (int d = k - 1; d >= 0; --d) {
      idx[d] = rest % os[d];
      rest /= os[d];
    }
    for (int64_t row = lo; row < hi; ++row) {
      const char* s = src;
      for (int d = 0; d < k && s != nullptr; ++d) {
        const int64_t j = idx[d] - low[d];
        s = j < 0 || j >= is[d] ? nullptr : s + j * in_st[d];
      }
      fill_row(dst + row * row_bytes, s);
      for (int d = k - 1; d >= 0; --d) {
        if (++idx[d] < os[d]) break;
        idx[d] = 0;
      }
    }
  });
  return absl::OkStatus();
}

OpSchema MakePadSchema() {
  OpSchema s;
  s.name = "pad";
  s.doc =
      "Surrounds x with zeros: low[d] before and high[d] after each dim d "
      "(the adjoint of slice).";
  s.inputs = {ArgDef{"x", DTypeSet::All(), true, "tensor to pad"}};
  s.outputs = {"out"};
  s.attrs = {
      AttrDef{"low", AttrKind::kIntList, std::nullopt,
              "zeros before each dim, >= 0"},
      AttrDef{"high", AttrKind::kIntList, std::nullopt,
              "zeros after each dim, >= 0"},
  };
  s.shape_fn = PadShape;
  AllDTypeKernels(s, PadKernel);
  // The gradient is the slice that pad's input became.
  s.grad = [](GradContext& ctx) {
    const std::vector<int64_t>& low = ctx.node().GetInts("low");
    const Shape& in = ctx.input_type(0).shape;
    std::vector<int64_t> limits(low.size());
    for (int d = 0; d < in.rank(); ++d) limits[d] = low[d] + in[d];
    ctx.set_grad_input(0, ops::Slice(ctx.builder(), ctx.grad_output(0), low,
                                     std::move(limits)));
    return absl::OkStatus();
  };
  const auto ex = [](TensorType t, std::vector<int64_t> low,
                     std::vector<int64_t> high) {
    return OpExample{{std::move(t)},
                     {{"low", AttrValue(std::move(low))},
                      {"high", AttrValue(std::move(high))}}};
  };
  s.examples = {ex(F32({3, 4}), {1, 0}, {2, 3}),
                ex(F32({2, 3, 4}), {0, 2, 1}, {1, 0, 0}),
                ex(F32({5}), {3}, {0}),
                ex(F32({2, 2}), {0, 0}, {0, 0}),
                ex(F32({0, 3}), {2, 1}, {0, 0}),  // all zeros
                ex(I64({2, 3}), {1, 1}, {1, 1})};
  return s;
}

// ---- concat -------------------------------------------------------------------------

absl::StatusOr<std::vector<TensorType>> ConcatShape(const ShapeContext& ctx) {
  const TensorType& first = ctx.input(0);
  const int r = first.shape.rank();
  if (r == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot concatenate scalars: ", first.ToString()));
  }
  const int64_t axis_attr = ctx.GetInt("axis");
  absl::StatusOr<int> axis = NormalizeAxis(axis_attr, r);
  if (!axis.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(axis.status().message(), ": ", first.ToString()));
  }
  Shape out = first.shape;
  for (int i = 1; i < ctx.num_inputs(); ++i) {
    const TensorType& t = ctx.input(i);
    bool same = t.dtype == first.dtype && t.shape.rank() == r;
    for (int d = 0; same && d < r; ++d) {
      if (d != *axis && t.shape[d] != first.shape[d]) same = false;
    }
    if (!same) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input ", i, " does not match input 0 outside axis ", *axis, ": ",
          t.ToString(), " vs ", first.ToString()));
    }
    out.set_dim(*axis, out[*axis] + t.shape[*axis]);
  }
  RETURN_IF_ERROR(ValidateShape(out));
  return std::vector<TensorType>{TensorType{first.dtype, out}};
}

absl::Status ConcatKernel(const KernelContext& ctx) {
  const TensorView& out = ctx.outputs[0];
  if (out.num_elements() == 0) return absl::OkStatus();
  const Shape& os = out.shape();
  const int axis =
      *NormalizeAxis(ctx.node.GetInt("axis"), os.rank());
  const int64_t elem = static_cast<int64_t>(DTypeSize(out.dtype()));
  int64_t outer = 1, inner = elem;
  for (int d = 0; d < axis; ++d) outer *= os[d];
  for (int d = axis + 1; d < os.rank(); ++d) inner *= os[d];
  const int n = static_cast<int>(ctx.inputs.size());
  // Per input: bytes per outer row and its byte offset in an output row.
  absl::InlinedVector<int64_t, 8> chunk(n), offset(n);
  int64_t row = 0;
  for (int i = 0; i < n; ++i) {
    chunk[i] = ctx.inputs[i].shape()[axis] * inner;
    offset[i] = row;
    row += chunk[i];
  }
  char* dst = static_cast<char*>(out.raw_data());
  if (outer == 1) {
    for (int i = 0; i < n; ++i) {
      CopyBytes(ctx.pool, dst + offset[i],
                static_cast<const char*>(ctx.inputs[i].raw_data()), chunk[i]);
    }
    return absl::OkStatus();
  }
  ForUnits(ctx.pool, outer, row, [&](int64_t lo, int64_t hi) {
    for (int i = 0; i < n; ++i) {
      const char* src = static_cast<const char*>(ctx.inputs[i].raw_data());
      const int64_t c = chunk[i];
      if (c == 0) continue;
      for (int64_t o = lo; o < hi; ++o) {
        std::memcpy(dst + o * row + offset[i], src + o * c,
                    static_cast<size_t>(c));
      }
    }
  });
  return absl::OkStatus();
}

OpSchema MakeConcatSchema() {
  OpSchema s;
  s.name = "concat";
  s.doc = "Joins tensors along `axis`; the other dims must agree.";
  s.inputs = {ArgDef{"xs", DTypeSet::All(), true,
                     "one or more tensors of one dtype"}};
  s.variadic_last_input = true;
  s.outputs = {"out"};
  s.attrs = {AttrDef{"axis", AttrKind::kInt, std::nullopt,
                     "the axis to join along; negative counts from the end"}};
  s.shape_fn = ConcatShape;
  AllDTypeKernels(s, ConcatKernel);
  // Each input's gradient is its slice of the output gradient.
  s.grad = [](GradContext& ctx) {
    const int axis = *NormalizeAxis(ctx.node().GetInt("axis"),
                                    ctx.output_type(0).shape.rank());
    int64_t start = 0;
    for (int i = 0; i < ctx.node().num_inputs(); ++i) {
      const int64_t len = ctx.input_type(i).shape[axis];
      if (ctx.needs_grad(i)) {
        ctx.set_grad_input(i, ops::SliceAxis(ctx.builder(), ctx.grad_output(0),
                                             axis, start, start + len));
      }
      start += len;
    }
    return absl::OkStatus();
  };
  const auto ex = [](std::vector<TensorType> ts, int64_t axis) {
    return OpExample{std::move(ts), {{"axis", AttrValue(axis)}}};
  };
  s.examples = {ex({F32({2, 3}), F32({2, 4})}, 1),
                ex({F32({1, 3}), F32({2, 3}), F32({3, 3})}, 0),
                ex({F32({2, 3, 2}), F32({2, 1, 2})}, -2),
                ex({F32({3, 2})}, 0),
                ex({I64({2, 2}), I64({2, 1})}, -1)};
  return s;
}

// ---- broadcast_to -------------------------------------------------------------------

absl::StatusOr<std::vector<TensorType>> BroadcastToShape(
    const ShapeContext& ctx) {
  const TensorType& in = ctx.input(0);
  const Shape& target = ctx.GetShape("shape");
  RETURN_IF_ERROR(ValidateShape(target));
  bool ok = in.shape.rank() <= target.rank();
  for (int i = 0; ok && i < in.shape.rank(); ++i) {
    const int64_t d = in.shape[i];
    const int64_t t = target[target.rank() - in.shape.rank() + i];
    if (d != t && d != 1) ok = false;
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        in.ToString(), " does not broadcast to ", target.ToString()));
  }
  return std::vector<TensorType>{TensorType{in.dtype, target}};
}

absl::Status BroadcastToKernel(const KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  if (out.num_elements() == 0) return absl::OkStatus();
  const ops_internal::BroadcastIter<1> it(out.shape(), {&in.shape()});
  const int64_t len = it.row_length();
  const int64_t stride = it.row_stride(0);
  DispatchWord(DTypeSize(in.dtype()), [&](auto word) {
    using W = decltype(word);
    const W* src = static_cast<const W*>(in.raw_data());
    W* dst = static_cast<W*>(out.raw_data());
    ForUnits(ctx.pool, it.num_rows(), len * sizeof(W),
             [&](int64_t lo, int64_t hi) {
               for (int64_t r = lo; r < hi; ++r) {
                 const W* s = src + it.InputOffsets(r)[0];
                 W* d = dst + r * len;
                 if (stride == 1) {
                   std::memcpy(d, s, len * sizeof(W));
                 } else if (stride == 0) {
                   std::fill_n(d, len, *s);
                 } else {
                   for (int64_t i = 0; i < len; ++i) d[i] = s[i * stride];
                 }
               }
             });
  });
  return absl::OkStatus();
}

OpSchema MakeBroadcastToSchema() {
  OpSchema s;
  s.name = "broadcast_to";
  s.doc = "Repeats x along new leading dims and size-1 dims, as NumPy does.";
  s.inputs = {ArgDef{"x", DTypeSet::All(), true, "tensor to broadcast"}};
  s.outputs = {"out"};
  s.attrs = {AttrDef{"shape", AttrKind::kShape, std::nullopt,
                     "the target shape; x must broadcast to it"}};
  s.shape_fn = BroadcastToShape;
  AllDTypeKernels(s, BroadcastToKernel);
  // The gradient is summed over the broadcast dims.
  s.grad = [](GradContext& ctx) {
    ctx.set_grad_input(0, ops::ReduceToShape(ctx.builder(), ctx.grad_output(0),
                                             ctx.input_type(0).shape));
    return absl::OkStatus();
  };
  const auto ex = [](TensorType t, Shape to) {
    return OpExample{{std::move(t)}, {{"shape", AttrValue(std::move(to))}}};
  };
  s.examples = {ex(F32({3, 1}), {2, 3, 4}), ex(F32({}), {5}),
                ex(F32({4}), {3, 4}), ex(F32({1, 4}), {1, 4}),
                ex(F32({2, 1, 3}), {2, 5, 3}), ex(I32({1, 2}), {3, 2})};
  return s;
}

// ---- gather -------------------------------------------------------------------------

absl::StatusOr<std::vector<TensorType>> GatherShape(const ShapeContext& ctx) {
  const TensorType& table = ctx.input(0);
  const TensorType& indices = ctx.input(1);
  if (table.shape.rank() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "table must have rank >= 1: ", table.ToString(), " with indices ",
        indices.ToString()));
  }
  Shape out = indices.shape;
  for (int d = 1; d < table.shape.rank(); ++d) out.push_back(table.shape[d]);
  if (absl::Status s = ValidateShape(out); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gathering ", indices.ToString(), " from ", table.ToString(), ": ",
        s.message()));
  }
  return std::vector<TensorType>{TensorType{table.dtype, out}};
}

template <typename I>
absl::Status GatherWith(const KernelContext& ctx) {
  const TensorView& table = ctx.inputs[0];
  const TensorView& indices = ctx.inputs[1];
  const TensorView& out = ctx.outputs[0];
  const int64_t v = table.shape()[0];
  const int64_t n = indices.num_elements();
  const I* idx = indices.data<I>();
  for (int64_t p = 0; p < n; ++p) {
    if (idx[p] < 0 || idx[p] >= v) {
      return absl::InvalidArgumentError(absl::StrCat(
          NodeLabel(ctx.node), ": index ", idx[p], " at position ", p,
          " is outside [0, ", v, ")"));
    }
  }
  const int64_t row_bytes =
      v == 0 ? 0 : table.byte_size() / v;
  if (row_bytes == 0) return absl::OkStatus();
  const char* src = static_cast<const char*>(table.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  ForUnits(ctx.pool, n, row_bytes, [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) {
      std::memcpy(dst + p * row_bytes, src + idx[p] * row_bytes,
                  static_cast<size_t>(row_bytes));
    }
  });
  return absl::OkStatus();
}

absl::Status GatherKernel(const KernelContext& ctx) {
  if (ctx.inputs[1].dtype() == DType::kI32) return GatherWith<int32_t>(ctx);
  return GatherWith<int64_t>(ctx);
}

OpSchema MakeGatherSchema() {
  OpSchema s;
  s.name = "gather";
  s.doc =
      "Rows of table [V, ...] at integer indices [...] -> indices.shape + "
      "table.shape[1:] (embedding lookup).";
  s.inputs = {
      ArgDef{"table", DTypeSet::All(), true, "rows to pick from, [V, ...]"},
      ArgDef{"indices", DTypeSet::Integer(), false,
             "row numbers in [0, V); any shape"},
  };
  s.outputs = {"out"};
  s.shape_fn = GatherShape;
  AllDTypeKernels(s, GatherKernel);
  // The gradient adds each gathered row's gradient into its table row.
  s.grad = [](GradContext& ctx) {
    const int64_t rows = ctx.input_type(0).shape[0];
    ctx.set_grad_input(
        0, ctx.builder().Add("gather_grad", {ctx.grad_output(0), ctx.input(1)},
                             {{"rows", AttrValue(rows)}}));
    return absl::OkStatus();
  };
  // Fewer rows than indices, so rows repeat and their gradients add.
  const auto ex = [](Shape table, TensorType indices) {
    const double v = static_cast<double>(table[0]);
    return OpExample{{F32(std::move(table)), std::move(indices)},
                     {},
                     {{-1, 1}, {0, v}}};
  };
  s.examples = {ex({4, 3}, I32({10})), ex({5}, I64({2, 3})),
                ex({6, 2, 3}, I32({})), ex({3, 2}, I64({4, 2}))};
  return s;
}

// ---- gather_grad ------------------------------------------------------------------------

absl::StatusOr<std::vector<TensorType>> GatherGradShape(
    const ShapeContext& ctx) {
  const TensorType& dy = ctx.input(0);
  const TensorType& indices = ctx.input(1);
  const int64_t rows = ctx.GetInt("rows");
  const int ri = indices.shape.rank();
  bool ok = dy.shape.rank() >= ri;
  for (int d = 0; ok && d < ri; ++d) ok = dy.shape[d] == indices.shape[d];
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dy ", dy.ToString(), " does not start with the shape of indices ",
        indices.ToString()));
  }
  if (rows < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rows is ", rows, "; it must be >= 0"));
  }
  Shape out = {rows};
  for (int d = ri; d < dy.shape.rank(); ++d) out.push_back(dy.shape[d]);
  RETURN_IF_ERROR(ValidateShape(out));
  return std::vector<TensorType>{TensorType{dy.dtype, out}};
}

// out[v] = the sum of dy[p] over the positions p with indices[p] = v, added
// in increasing p. The pool splits the table into blocks of rows holding
// equal shares of the positions and, when one row holds more than a
// thread's share (a frequent token), into blocks of columns (whole cache
// lines) too; every block scans all indices and adds the rows it owns. So
// each element is summed in the same order on any number of threads (the
// bits never change) and no two threads write one element.
template <typename T, typename I>
absl::Status GatherGradWith(const KernelContext& ctx) {
  const TensorView& dy = ctx.inputs[0];
  const TensorView& indices = ctx.inputs[1];
  const TensorView& out = ctx.outputs[0];
  const int64_t rows = ctx.node.GetInt("rows");
  const int64_t n = indices.num_elements();
  const I* idx = indices.data<I>();
  for (int64_t p = 0; p < n; ++p) {
    if (idx[p] < 0 || idx[p] >= rows) {
      return absl::InvalidArgumentError(absl::StrCat(
          NodeLabel(ctx.node), ": index ", idx[p], " at position ", p,
          " is outside [0, ", rows, ")"));
    }
  }
  if (out.num_elements() == 0) return absl::OkStatus();
  const int64_t row_len = out.num_elements() / rows;
  const T* src = dy.data<T>();
  T* dst = out.data<T>();
  constexpr int64_t kLine = 64 / static_cast<int64_t>(sizeof(T));
  const int64_t col_units = (row_len + kLine - 1) / kLine;
  int64_t col_blocks = 1, row_blocks = 1;
  std::vector<int64_t> row_start = {0, rows};  // row block b: [b], [b + 1]
  const int64_t threads = ctx.pool->num_threads();
  const int64_t bytes =
      (n + rows) * row_len * static_cast<int64_t>(sizeof(T));
  if (threads > 1 && bytes >= kParallelBytes) {
    std::vector<int64_t> count(rows, 0);
    for (int64_t p = 0; p < n; ++p) ++count[idx[p]];
    const int64_t max_count = *std::max_element(count.begin(), count.end());
    // Enough column blocks that the heaviest row's share of one is at most
    // a thread's share of all positions.
    col_blocks = std::clamp<int64_t>(
        (threads * max_count + n - 1) / std::max<int64_t>(n, 1), 1,
        std::min(threads, col_units));
    row_blocks = std::min(rows, (threads + col_blocks - 1) / col_blocks);
    // Cut where the running cost (positions, plus one per row for its
    // zeros) passes each 1/row_blocks of the total.
    row_start.assign(row_blocks + 1, rows);
    row_start[0] = 0;
    const int64_t total = n + rows;
    int64_t acc = 0, b = 1;
    for (int64_t v = 0; v < rows && b < row_blocks; ++v) {
      acc += count[v] + 1;
      while (b < row_blocks && acc * row_blocks >= total * b) {
        row_start[b++] = v + 1;
      }
    }
  }
  const auto run_block = [&](int64_t unit) {
    const int64_t cb = unit % col_blocks, rb = unit / col_blocks;
    const int64_t c0 = std::min(row_len, col_units * cb / col_blocks * kLine);
    const int64_t c1 =
        std::min(row_len, col_units * (cb + 1) / col_blocks * kLine);
    const int64_t r0 = row_start[rb], r1 = row_start[rb + 1];
    const int64_t w = c1 - c0;
    if (w <= 0 || r0 >= r1) return;
    for (int64_t v = r0; v < r1; ++v) {
      std::fill_n(dst + v * row_len + c0, w, T{0});
    }
    for (int64_t p = 0; p < n; ++p) {
      const int64_t v = static_cast<int64_t>(idx[p]);
      if (v < r0 || v >= r1) continue;
      T* __restrict o = dst + v * row_len + c0;
      const T* __restrict s = src + p * row_len + c0;
      for (int64_t c = 0; c < w; ++c) o[c] += s[c];
    }
  };
  const int64_t units = col_blocks * row_blocks;
  if (units == 1) {
    run_block(0);
  } else {
    ctx.pool->ParallelFor(units, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t u = lo; u < hi; ++u) run_block(u);
    });
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status GatherGradKernel(const KernelContext& ctx) {
  if (ctx.inputs[1].dtype() == DType::kI32) {
    return GatherGradWith<T, int32_t>(ctx);
  }
  return GatherGradWith<T, int64_t>(ctx);
}

OpSchema MakeGatherGradSchema() {
  OpSchema s;
  s.name = "gather_grad";
  s.doc =
      "Backward of gather: a zero table [rows, ...] with each dy row added "
      "into the row its index names (deterministic scatter-add).";
  s.inputs = {
      ArgDef{"dy", DTypeSet::Floating(), true,
             "gradient of gather's output, indices.shape + [...]"},
      ArgDef{"indices", DTypeSet::Integer(), false,
             "gather's indices, in [0, rows)"},
  };
  s.outputs = {"dtable"};
  s.attrs = {AttrDef{"rows", AttrKind::kInt, std::nullopt,
                     "rows of the table (gather's V)"}};
  s.shape_fn = GatherGradShape;
  s.kernels[DType::kF32] = GatherGradKernel<float>;
  s.kernels[DType::kF64] = GatherGradKernel<double>;
  s.flops = [](const Node&, absl::Span<const TensorType> in) {
    return in[0].num_elements();  // one add per dy element
  };
  s.differentiable = false;  // no second-order gradients
  const auto ex = [](Shape dy, TensorType indices, int64_t rows) {
    return OpExample{{F32(std::move(dy)), std::move(indices)},
                     {{"rows", AttrValue(rows)}},
                     {{-1, 1}, {0, static_cast<double>(rows)}}};
  };
  s.examples = {ex({10, 3}, I32({10}), 4), ex({2, 3, 2}, I64({2, 3}), 5),
                ex({6}, I64({6}), 3), ex({4}, I32({}), 2)};
  return s;
}

SUBQUAD_REGISTER_OP(MakeReshapeSchema());
SUBQUAD_REGISTER_OP(MakeTransposeSchema());
SUBQUAD_REGISTER_OP(MakeSliceSchema());
SUBQUAD_REGISTER_OP(MakePadSchema());
SUBQUAD_REGISTER_OP(MakeConcatSchema());
SUBQUAD_REGISTER_OP(MakeBroadcastToSchema());
SUBQUAD_REGISTER_OP(MakeGatherSchema());
SUBQUAD_REGISTER_OP(MakeGatherGradSchema());

}  // namespace
}  // namespace subquad
