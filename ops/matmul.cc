// `matmul`: batched matrix products with NumPy-broadcast batch dims.
//
// Each product is one Eigen GEMM on row-major maps of the operands (the
// transposes are storage-order flips, never copies). Eigen's own threading is
// off; the kernel parallelises through the ParallelRunner: over batch entries
// when there are enough of them, otherwise by splitting each product's output
// into per-thread blocks along its larger dimension. With
// SUBQUAD_USE_OPENBLAS the products go to cblas_?gemm instead (single-threaded
// inside each block, so the split is the same) when OpenBLAS runs its AVX-512
// kernels or the CPU has none.

// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsics when
// inlined into Eigen's GEMM packing routines (a false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "Eigen/Core"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/grad.h"
#include "core/graph.h"
#include "core/op_schema.h"
#include "core/shape.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/internal/broadcast.h"
#include "ops/ops.h"

#ifdef SUBQUAD_USE_OPENBLAS
#include <cblas.h>
#endif

namespace subquad {
namespace {

// Products below this many flops run on the calling thread.
constexpr int64_t kSerialFlops = int64_t{1} << 16;

// The geometry of one matmul node, from its operand shapes and flags.
struct MatMulDims {
  int64_t m = 0, n = 0, k = 0;
  Shape a_batch, b_batch, out_batch;
  int64_t batch = 1;  // elements of out_batch
};

Shape Prefix(const Shape& s, int len) {
  return Shape(s.dims().subspan(0, static_cast<size_t>(len)));
}

std::string FlagsString(bool ta, bool tb) {
  return absl::StrCat("(transpose_a=", ta ? "true" : "false",
                      ", transpose_b=", tb ? "true" : "false", ")");
}

absl::StatusOr<MatMulDims> ComputeDims(const TensorType& a, const TensorType& b,
                                       bool ta, bool tb) {
  if (a.dtype != b.dtype) {
    return absl::InvalidArgumentError(
        absl::StrCat("operands have different dtypes: ", a.ToString(), " x ",
                     b.ToString()));
  }
  if (a.shape.rank() < 2 || b.shape.rank() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("operands must have rank >= 2: ", a.ToString(), " x ",
                     b.ToString()));
  }
  const int ra = a.shape.rank(), rb = b.shape.rank();
  MatMulDims d;
  d.m = ta ? a.shape[ra - 1] : a.shape[ra - 2];
  const int64_t ka = ta ? a.shape[ra - 2] : a.shape[ra - 1];
  const int64_t kb = tb ? b.shape[rb - 1] : b.shape[rb - 2];
  d.n = tb ? b.shape[rb - 2] : b.shape[rb - 1];
  if (ka != kb) {
    return absl::InvalidArgumentError(
        absl::StrCat("inner dimensions differ: ", a.ToString(), " x ",
                     b.ToString(), " ", FlagsString(ta, tb)));
  }
  d.k = ka;
  d.a_batch = Prefix(a.shape, ra - 2);
  d.b_batch = Prefix(b.shape, rb - 2);
  absl::StatusOr<Shape> out_batch = BroadcastShapes(d.a_batch, d.b_batch);
  if (!out_batch.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch dimensions do not broadcast: ", a.ToString(),
                     " x ", b.ToString()));
  }
  d.out_batch = *std::move(out_batch);
  d.batch = d.out_batch.num_elements();
  return d;
}

absl::StatusOr<std::vector<TensorType>> MatMulShape(const ShapeContext& ctx) {
  const bool ta = ctx.GetBool("transpose_a"), tb = ctx.GetBool("transpose_b");
  ASSIGN_OR_RETURN(MatMulDims d,
                   ComputeDims(ctx.input(0), ctx.input(1), ta, tb));
  Shape out = d.out_batch;
  out.push_back(d.m);
  out.push_back(d.n);
  RETURN_IF_ERROR(ValidateShape(out));
  return std::vector<TensorType>{TensorType{ctx.input(0).dtype, out}};
}

int64_t MatMulFlops(const Node& node, absl::Span<const TensorType> in) {
  absl::StatusOr<MatMulDims> d =
      ComputeDims(in[0], in[1], node.GetBool("transpose_a"),
                  node.GetBool("transpose_b"));
  if (!d.ok()) return 0;
  return 2 * d->m * d->n * d->k * d->batch;
}

// One row-major GEMM: c[m,n] (row stride ldc) = op(a) · op(b), where op(a) is
// a[m,k] (row stride lda) or, when ta, the transpose of a[k,m]; likewise b.
template <typename T>
void EigenGemm(const T* a, int64_t lda, bool ta, const T* b, int64_t ldb,
               bool tb, T* c, int64_t ldc, int64_t m, int64_t n, int64_t k) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using In = Eigen::Map<const Mat, Eigen::Unaligned, Eigen::OuterStride<>>;
  using Out = Eigen::Map<Mat, Eigen::Unaligned, Eigen::OuterStride<>>;
  Out cm(c, m, n, Eigen::OuterStride<>(ldc));
  const In am(a, ta ? k : m, ta ? m : k, Eigen::OuterStride<>(lda));
  const In bm(b, tb ? n : k, tb ? k : n, Eigen::OuterStride<>(ldb));
  if (!ta && !tb) {
    cm.noalias() = am * bm;
  } else if (!ta && tb) {
    cm.noalias() = am * bm.transpose();
  } else if (ta && !tb) {
    cm.noalias() = am.transpose() * bm;
  } else {
    cm.noalias() = am.transpose() * bm.transpose();
  }
}

#ifdef SUBQUAD_USE_OPENBLAS
// Whether to call OpenBLAS, decided once per process. OpenBLAS then runs
// single-threaded inside each of our blocks: the kernel's ParallelFor owns
// the threads. On an AVX-512 CPU, OpenBLAS's AVX2 kernels (forced, e.g., by
// OPENBLAS_CORETYPE=Haswell) are slower than Eigen's AVX-512 GEMM, so then
// Eigen keeps the products.
bool UseOpenBlas() {
  static const bool use = [] {
    openblas_set_num_threads(1);
    std::string core = openblas_get_corename();
    for (char& ch : core) ch = static_cast<char>(std::tolower(ch));
    const bool blas_avx512 = core.find("skylakex") != std::string::npos ||
                             core.find("cooperlake") != std::string::npos ||
                             core.find("sapphire") != std::string::npos;
    return blas_avx512 || !__builtin_cpu_supports("avx512f");
  }();
  return use;
}

template <typename T>
void BlasGemm(const T* a, int64_t lda, bool ta, const T* b, int64_t ldb,
              bool tb, T* c, int64_t ldc, int64_t m, int64_t n, int64_t k) {
  const auto op = [](bool t) { return t ? CblasTrans : CblasNoTrans; };
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, op(ta), op(tb), m, n, k, 1.0f, a, lda, b, ldb,
                0.0f, c, ldc);
  } else {
    cblas_dgemm(CblasRowMajor, op(ta), op(tb), m, n, k, 1.0, a, lda, b, ldb,
                0.0, c, ldc);
  }
}
#endif

template <typename T>
void Gemm(const T* a, int64_t lda, bool ta, const T* b, int64_t ldb, bool tb,
          T* c, int64_t ldc, int64_t m, int64_t n, int64_t k) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) std::fill_n(c + i * ldc, n, T{0});
    return;
  }
#ifdef SUBQUAD_USE_OPENBLAS
  constexpr int64_t kBlasMax = std::numeric_limits<blasint>::max();
  if (UseOpenBlas() && std::max({m, n, k, lda, ldb, ldc}) <= kBlasMax) {
    BlasGemm(a, lda, ta, b, ldb, tb, c, ldc, m, n, k);
    return;
  }
#endif
  EigenGemm(a, lda, ta, b, ldb, tb, c, ldc, m, n, k);
}

// The register tile of Eigen's GEMM kernel. Eigen computes a row-major
// product as the column-major product of the transposes, so the kernel's mr
// runs along our columns and its nr along our rows.
template <typename T>
constexpr int64_t kRowAlign = Eigen::internal::gebp_traits<T, T>::nr;
template <typename T>
constexpr int64_t kColAlign = Eigen::internal::gebp_traits<T, T>::mr;

// Block `part` of `parts` of [0, len), rounded to multiples of `align`.
std::pair<int64_t, int64_t> Block(int64_t len, int64_t parts, int64_t part,
                                  int64_t align) {
  const int64_t units = (len + align - 1) / align;
  const int64_t lo = std::min(len, units * part / parts * align);
  const int64_t hi = std::min(len, units * (part + 1) / parts * align);
  return {lo, hi};
}

template <typename T>
absl::Status MatMulKernel(const KernelContext& ctx) {
  const bool ta = ctx.node.GetBool("transpose_a");
  const bool tb = ctx.node.GetBool("transpose_b");
  const TensorView& av = ctx.inputs[0];
  const TensorView& bv = ctx.inputs[1];
  ASSIGN_OR_RETURN(MatMulDims d, ComputeDims(av.type(), bv.type(), ta, tb));
  const T* a = av.data<T>();
  const T* b = bv.data<T>();
  T* c = ctx.outputs[0].data<T>();

  int64_t m = d.m, batch = d.batch;
  // Per batch entry, the index of its a and b matrices.
  std::vector<int64_t> a_index, b_index;
  if (d.b_batch.num_elements() == 1 && !ta) {
    // b is one matrix: a's rows are one tall product.
    m *= batch;
    batch = 1;
    a_index.assign(1, 0);
    b_index.assign(1, 0);
  } else {
    a_index.resize(batch);
    b_index.resize(batch);
    ops_internal::BroadcastIter<2> it(d.out_batch, {&d.a_batch, &d.b_batch});
    const int64_t len = it.row_length();
    int64_t i = 0;
    for (int64_t row = 0; row < it.num_rows(); ++row) {
      const auto off = it.InputOffsets(row);
      for (int64_t j = 0; j < len; ++j, ++i) {
        a_index[i] = off[0] + j * it.row_stride(0);
        b_index[i] = off[1] + j * it.row_stride(1);
      }
    }
  }
  const int64_t n = d.n, k = d.k;
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  const int64_t a_size = d.m * k, b_size = k * n, c_size = m * n;

  auto run_one = [&](int64_t e, int64_t r0, int64_t r1, int64_t c0,
                     int64_t c1) {
    const T* ae = a + a_index[e] * a_size;
    const T* be = b + b_index[e] * b_size;
    T* ce = c + e * c_size;
    // Rows [r0, r1) of op(a), columns [c0, c1) of op(b).
    const T* ab = ta ? ae + r0 : ae + r0 * lda;
    const T* bb = tb ? be + c0 * ldb : be + c0;
    Gemm<T>(ab, lda, ta, bb, ldb, tb, ce + r0 * n + c0, n, r1 - r0, c1 - c0,
            k);
  };

  const int threads = ctx.pool->num_threads();
  const double flops = 2.0 * m * n * k * batch;
  if (threads <= 1 || flops < kSerialFlops) {
    for (int64_t e = 0; e < batch; ++e) run_one(e, 0, m, 0, n);
    return absl::OkStatus();
  }
  if (batch >= threads && (batch % threads == 0 || batch >= 4 * threads)) {
    ctx.pool->ParallelFor(batch, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t e = lo; e < hi; ++e) run_one(e, 0, m, 0, n);
    });
    return absl::OkStatus();
  }
  // Split every product into `parts` blocks of output rows (or columns, when
  // there are more of those), so each thread gets an equal share.
  // Blocks start on multiples of the GEMM micro-kernel's tile, so every
  // output element goes through the same kernel path, and gets the same bits,
  // as in a serial run.
  const bool split_rows = m >= n;
  const int64_t extent = split_rows ? m : n;
  const int64_t parts = std::min<int64_t>(threads, extent);
  const int64_t align = split_rows ? kRowAlign<T> : kColAlign<T>;
  ctx.pool->ParallelFor(batch * parts, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t u = lo; u < hi; ++u) {
      const int64_t e = u / parts;
      const auto [x0, x1] = Block(extent, parts, u % parts, align);
      if (x0 >= x1) continue;
      if (split_rows) {
        run_one(e, x0, x1, 0, n);
      } else {
        run_one(e, 0, m, x0, x1);
      }
    }
  });
  return absl::OkStatus();
}

// ---- gradient ---------------------------------------------------------------

// With C = op(A)·op(B) and G = dC, per product:
//   flags    dA                       dB
//   (F, F)   G·Bᵀ  = mm(G, B, F, T)    Aᵀ·G  = mm(A, G, T, F)
//   (F, T)   G·B   = mm(G, B, F, F)    Gᵀ·A  = mm(G, A, T, F)
//   (T, F)   B·Gᵀ  = mm(B, G, F, T)    A·G   = mm(A, G, F, F)
//   (T, T)   Bᵀ·Gᵀ = mm(B, G, T, T)    Gᵀ·Aᵀ = mm(G, A, T, T)
// Transposes are flags of the backward matmuls, never copies. Batch dims
// that broadcasting expanded are summed by ReduceToShape, except in the
// case of every Linear layer: A [..., M, K] times one matrix B. Then A's
// products stack into one [rows, K] matrix (a free reshape) and dB is one
// GEMM over all rows, not a batched product followed by a reduction.
absl::Status MatMulGrad(GradContext& ctx) {
  GraphBuilder& b = ctx.builder();
  const bool ta = ctx.node().GetBool("transpose_a");
  const bool tb = ctx.node().GetBool("transpose_b");
  const Value a = ctx.input(0), bm = ctx.input(1), g = ctx.grad_output(0);
  const Shape& as = ctx.input_type(0).shape;
  const Shape& bs = ctx.input_type(1).shape;
  if (ctx.needs_grad(0)) {
    const Value da = ta ? ops::MatMul(b, bm, g, tb, /*transpose_y=*/true)
                        : ops::MatMul(b, g, bm, false, !tb);
    ctx.set_grad_input(0, ops::ReduceToShape(b, da, as));
  }
  if (ctx.needs_grad(1)) {
    const int ra = as.rank(), rb = bs.rank();
    const int64_t a_batch = Prefix(as, ra - 2).num_elements();
    const int64_t b_batch = Prefix(bs, rb - 2).num_elements();
    Value db;
    if (!ta && b_batch == 1 && a_batch > 1) {
      const int64_t k = as[ra - 1];
      const Shape& cs = ctx.output_type(0).shape;
      const int64_t n = cs[cs.rank() - 1];
      const int64_t rows = a_batch * as[ra - 2];
      const Value a2 = ops::Reshape(b, a, {rows, k});
      const Value g2 = ops::Reshape(b, g, {rows, n});
      db = tb ? ops::MatMul(b, g2, a2, /*transpose_x=*/true)
              : ops::MatMul(b, a2, g2, /*transpose_x=*/true);
      if (rb != 2) db = ops::Reshape(b, db, bs.ToVector());
    } else {
      db = tb ? ops::MatMul(b, g, a, /*transpose_x=*/true, ta)
              : ops::MatMul(b, a, g, !ta, false);
      db = ops::ReduceToShape(b, db, bs);
    }
    ctx.set_grad_input(1, db);
  }
  return absl::OkStatus();
}

// Examples: every flag combination, odd sizes, batch dims broadcast on
// either side, and the Linear-layer case (a batched A times one B, with
// and without transpose_b, B with and without leading 1-dims).
std::vector<OpExample> MatMulExamples() {
  const auto f32 = [](Shape s) {
    return TensorType{DType::kF32, std::move(s)};
  };
  const auto flags = [](bool ta, bool tb) {
    return AttrMap{{"transpose_a", AttrValue(ta)},
                   {"transpose_b", AttrValue(tb)}};
  };
  std::vector<OpExample> out;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      // op(a) [3, 5], op(b) [5, 4].
      const Shape a = ta ? Shape{5, 3} : Shape{3, 5};
      const Shape b = tb ? Shape{4, 5} : Shape{5, 4};
      out.push_back(OpExample{{f32(a), f32(b)}, flags(ta, tb)});
      // Batch dims broadcast on both sides: [2, 1] x [3] -> [2, 3].
      const Shape ab = {2, 1, a[0], a[1]};
      const Shape bb = {3, b[0], b[1]};
      out.push_back(OpExample{{f32(ab), f32(bb)}, flags(ta, tb)});
    }
  }
  // Linear layers: [2, 3, 4] x [4, 5], x [5, 4] (tb), x [1, 4, 5].
  out.push_back(OpExample{{f32({2, 3, 4}), f32({4, 5})}, flags(false, false)});
  out.push_back(OpExample{{f32({2, 3, 4}), f32({5, 4})}, flags(false, true)});
  out.push_back(
      OpExample{{f32({2, 3, 4}), f32({1, 4, 5})}, flags(false, false)});
  // One A against a batch of B, and a transposed A against one B.
  out.push_back(OpExample{{f32({3, 4}), f32({2, 4, 5})}, flags(false, false)});
  out.push_back(OpExample{{f32({2, 4, 3}), f32({4, 5})}, flags(true, false)});
  // Unit dims.
  out.push_back(OpExample{{f32({1, 7}), f32({7, 1})}, flags(false, false)});
  return out;
}

OpSchema MakeMatMulSchema() {
  OpSchema s;
  s.name = "matmul";
  s.doc =
      "Batched matrix product a[..., M, K] x b[..., K, N] -> [..., M, N] with "
      "NumPy-broadcast batch dims and optional transposes of the last two "
      "dims.";
  s.inputs = {
      ArgDef{"a", DTypeSet::Floating(), true,
             "left operand [..., M, K] ([..., K, M] when transpose_a)"},
      ArgDef{"b", DTypeSet::Floating(), true,
             "right operand [..., K, N] ([..., N, K] when transpose_b)"},
  };
  s.outputs = {"out"};
  s.attrs = {
      AttrDef{"transpose_a", AttrKind::kBool, AttrValue(false),
              "swap the last two dims of a before multiplying"},
      AttrDef{"transpose_b", AttrKind::kBool, AttrValue(false),
              "swap the last two dims of b before multiplying"},
  };
  s.shape_fn = MatMulShape;
  s.kernels[DType::kF32] = MatMulKernel<float>;
  s.kernels[DType::kF64] = MatMulKernel<double>;
  s.flops = MatMulFlops;
  s.grad = MatMulGrad;
  s.examples = MatMulExamples();
  return s;
}

SUBQUAD_REGISTER_OP(MakeMatMulSchema());

}  // namespace
}  // namespace subquad
