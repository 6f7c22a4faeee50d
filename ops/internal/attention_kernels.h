// Exact fused attention kernels (ATTENTION.md, variant 0) for ops/attention.cc:
// private to ops/ (and to the op's own tests), never included from a public
// header.
//
// Per head, with s the scale and key j visible to query i unless causal and
// j > i + (Tk − Tq) (the alignment of the causal_mask op):
//   forward   O = softmax(s·Q·Kᵀ)·V and lse_i = log Σ_j exp(s·q_i·k_j),
//   backward  δ = rowsum(dO∘O), P = exp(s·Q·Kᵀ − lse), dV = Pᵀ·dO,
//             dS = P⊙(dO·Vᵀ − δ), dQ = s·dS·K, dK = s·dSᵀ·Q.
// Neither ever holds an n×n matrix: the forward is an online softmax over
// key tiles (FlashAttention-2), the backward recomputes P tile by tile from
// Q, K and lse. Tiles wholly above the causal diagonal are never visited. A
// query with no visible key (causal with Tq > Tk) gets O = 0, lse = −inf and
// no gradient.
//
// Two implementations:
// - AVX-512 (f32, D and Dv multiples of 16): tiles of kBr = 64 queries by
//   kBc = 64 keys. Score tiles are stored key-major with the 64 queries in
//   the vector lanes (four zmm per key row), so the row max, the exp, the
//   rescaling of the running sums and the masks are all vertical. The
//   products are register-blocked micro-kernels: TileA (scores K·Qᵀ and
//   V·dOᵀ from a packed, pre-scaled Qᵀ / dOᵀ panel; 6 keys × 4 query vectors
//   of accumulators) and TileB (rank updates X += Mᵀ·Y in column slices of
//   64, 24 accumulators). The softmax runs in base 2: s·log2(e) is folded
//   into the packed Q, and Exp2 is a degree-6 polynomial with exponent
//   scaling (≤ 1 ulp; see Exp2). Cache blocking: a forward item walks the
//   keys once for two query tiles; a backward item packs its head's Qᵀ and
//   s·dOᵀ panels once (O(n·d)), then sweeps the query tiles once per group
//   of up to 8 key tiles, whose dK, dV accumulators stay in L2. Single
//   thread at n = 2048, d = 64 this runs at about 85% (forward) and 80%
//   (backward, counting the recomputed S) of the FMA peak; the exp costs
//   about 5% of the forward.
// - Portable (f64, and f32 for other D or without AVX-512): the same
//   algorithm row by row with std::exp.
//
// Scratch memory is per thread and kept for the thread's lifetime
// (ThreadScratch), so calls pay no page faults: O(n·d) for the backward's
// panels, O(d) tiles otherwise.
//
// Work is split into items that do not depend on the thread count, so
// results are bitwise identical for any pool: forward items are (head,
// query block); backward items are (head, key chunk), where heads are cut
// into several key chunks only when there are fewer than kTargetItems heads,
// and chunk c > 0 accumulates dQ in its own buffer, added in chunk order.
// Threads take items one at a time (ForEachItem), costliest first under a
// causal mask.
#ifndef SUBQUAD_OPS_INTERNAL_ATTENTION_KERNELS_H_
#define SUBQUAD_OPS_INTERNAL_ATTENTION_KERNELS_H_

// GCC 12 reports (maybe-)uninitialized warnings inside its AVX-512
// intrinsics (a false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <type_traits>
#include <vector>

#include "core/parallel.h"
#include "core/tensor.h"
#include "ops/internal/parallel_range.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace subquad::ops_internal::attention {

// The geometry of one attention call: `batch` independent heads (the product
// of the leading dims), q [Tq, D], k [Tk, D], v [Tk, Dv] per head.
struct Dims {
  int64_t batch = 1;
  int64_t tq = 0, tk = 0, d = 0, dv = 0;
  double scale = 1.0;
  bool causal = false;

  int64_t offset() const { return tk - tq; }
  // Keys [0, KeyEnd(i)) are visible to query i.
  int64_t KeyEnd(int64_t i) const {
    return causal ? std::clamp<int64_t>(i + offset() + 1, 0, tk) : tk;
  }
  // Queries [QueryBegin(j), Tq) see key j.
  int64_t QueryBegin(int64_t j) const {
    return causal ? std::clamp<int64_t>(j - offset(), 0, tq) : 0;
  }
  // Visible (query, key) pairs of one head.
  int64_t VisiblePairs() const {
    if (!causal) return tq * tk;
    int64_t pairs = 0;
    for (int64_t i = 0; i < tq; ++i) pairs += KeyEnd(i);
    return pairs;
  }
};

// Heads are split into key chunks for the backward until there are at least
// this many items (independent of the thread count, for determinism).
inline constexpr int64_t kTargetItems = 16;
// Keys per backward chunk unit (the AVX-512 kernel's key tile is a divisor).
inline constexpr int64_t kKeyUnit = 64;

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Calls fn(item) for every item in [0, n), handed out one at a time, in
// order, to whichever of the pool's threads is free (a dynamic schedule:
// causal items differ in cost, and a thread the OS preempts on a shared
// machine does not hold up the rest). Items write disjoint outputs, so the
// results do not depend on which thread runs which item.
template <typename Fn>
void ForEachItem(ParallelRunner* pool, int64_t n, const Fn& fn) {
  const int64_t workers = std::min<int64_t>(pool->num_threads(), n);
  if (workers <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<int64_t> next{0};
  pool->ParallelFor(workers, 1, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) {
      for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
    }
  });
}

// Key chunks have at least this many units, so that each chunk's prologue
// (packing the query panels) stays small against its tiles.
inline constexpr int64_t kMinChunkUnits = 4;

inline int64_t BackwardKeyChunks(const Dims& dm) {
  if (dm.batch >= kTargetItems) return 1;
  const int64_t units = CeilDiv(dm.tk, kKeyUnit);
  return std::max<int64_t>(
      1, std::min(units / kMinChunkUnits, CeilDiv(kTargetItems, dm.batch)));
}

// Key units [first, last) of chunk c of `chunks`.
inline void ChunkUnits(const Dims& dm, int64_t chunks, int64_t c,
                       int64_t* first, int64_t* last) {
  const int64_t units = CeilDiv(dm.tk, kKeyUnit);
  *first = units * c / chunks;
  *last = units * (c + 1) / chunks;
}

// A grow-only 64-byte aligned buffer per thread and slot, kept for the
// thread's lifetime: a kernel call then pays no page faults for its O(n·d)
// scratch (BENCHMARKING.md: first touch costs ~10 µs per 4 KiB page).
template <int kSlot>
float* ThreadScratch(int64_t floats) {
  struct Buffer {
    float* data = nullptr;
    int64_t size = 0;
    ~Buffer() { FreeAligned(data); }
  };
  thread_local Buffer buffer;
  if (buffer.size < floats) {
    FreeAligned(buffer.data);
    buffer.size = std::max<int64_t>(floats, 2 * buffer.size);
    buffer.data = static_cast<float*>(
        AllocateAligned(static_cast<size_t>(buffer.size) * sizeof(float)));
  }
  return buffer.data;
}

// A 64-byte aligned buffer shared by one call's threads (the backward's dQ
// partial sums), taken from a process-wide free list and returned to it, so
// that repeated calls pay no page faults either. The list keeps what the
// largest concurrent use needed.
class PooledBuffer {
 public:
  explicit PooledBuffer(size_t bytes) {
    std::lock_guard<std::mutex> lock(Mutex());
    std::vector<Entry>& free = Free();
    auto best = free.end();
    for (auto it = free.begin(); it != free.end(); ++it) {
      if (it->bytes >= bytes &&
          (best == free.end() || it->bytes < best->bytes)) {
        best = it;
      }
    }
    if (best != free.end()) {
      entry_ = *best;
      free.erase(best);
    } else {
      entry_ = Entry{AllocateAligned(bytes), bytes};
    }
  }
  ~PooledBuffer() {
    std::lock_guard<std::mutex> lock(Mutex());
    Free().push_back(entry_);
  }
  PooledBuffer(const PooledBuffer&) = delete;
  PooledBuffer& operator=(const PooledBuffer&) = delete;

  template <typename T>
  T* data() const {
    return static_cast<T*>(entry_.data);
  }

 private:
  struct Entry {
    void* data = nullptr;
    size_t bytes = 0;
  };
  static std::mutex& Mutex() {
    static std::mutex* mu = new std::mutex;
    return *mu;
  }
  static std::vector<Entry>& Free() {
    static std::vector<Entry>* free = new std::vector<Entry>;
    return *free;
  }
  Entry entry_;
};

// ---- portable kernels -------------------------------------------------------

template <typename T>
T Dot(const T* a, const T* b, int64_t n) {
  T s = 0;
  for (int64_t t = 0; t < n; ++t) s += a[t] * b[t];
  return s;
}

// Forward for queries [i0, i1) of one head (pointers at the head's start).
template <typename T>
void ForwardRowsPortable(const Dims& dm, const T* q, const T* k, const T* v,
                         T* o, T* lse, int64_t i0, int64_t i1) {
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const int64_t d = dm.d, dv = dm.dv;
  const T scale = static_cast<T>(dm.scale);
  std::vector<T> s(kKeyUnit);
  for (int64_t i = i0; i < i1; ++i) {
    const T* qi = q + i * d;
    T* oi = o + i * dv;
    std::fill(oi, oi + dv, T(0));
    T m = -kInf, l = 0;
    const int64_t kend = dm.KeyEnd(i);
    for (int64_t j0 = 0; j0 < kend; j0 += kKeyUnit) {
      const int64_t nk = std::min(kKeyUnit, kend - j0);
      T mx = -kInf;
      for (int64_t r = 0; r < nk; ++r) {
        s[r] = scale * Dot(qi, k + (j0 + r) * d, d);
        mx = std::max(mx, s[r]);
      }
      const T m_new = std::max(m, mx);
      const T alpha = std::exp(m - m_new);  // 0 on the first block
      T sum = 0;
      for (int64_t t = 0; t < dv; ++t) oi[t] *= alpha;
      for (int64_t r = 0; r < nk; ++r) {
        const T p = std::exp(s[r] - m_new);
        sum += p;
        const T* vr = v + (j0 + r) * dv;
        for (int64_t t = 0; t < dv; ++t) oi[t] += p * vr[t];
      }
      l = l * alpha + sum;
      m = m_new;
    }
    if (l > 0) {
      const T inv = T(1) / l;
      for (int64_t t = 0; t < dv; ++t) oi[t] *= inv;
      lse[i] = m + std::log(l);
    } else {
      lse[i] = -kInf;
    }
  }
}

// Backward for keys [ja, jb) of one head: writes those rows of dk and dv and
// adds their contribution to all rows of dq (which the caller zeroed).
template <typename T>
void BackwardKeysPortable(const Dims& dm, const T* q, const T* k, const T* v,
                          const T* o, const T* lse, const T* dout, T* dq, T* dk,
                          T* dv, int64_t ja, int64_t jb) {
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const int64_t d = dm.d, dvd = dm.dv;
  const T scale = static_cast<T>(dm.scale);
  const int64_t i_first = dm.QueryBegin(ja);
  std::vector<T> delta(dm.tq);
  for (int64_t i = i_first; i < dm.tq; ++i) {
    delta[i] = Dot(dout + i * dvd, o + i * dvd, dvd);
  }
  for (int64_t j = ja; j < jb; ++j) {
    const T* kj = k + j * d;
    const T* vj = v + j * dvd;
    T* dkj = dk + j * d;
    T* dvj = dv + j * dvd;
    std::fill(dkj, dkj + d, T(0));
    std::fill(dvj, dvj + dvd, T(0));
    for (int64_t i = dm.QueryBegin(j); i < dm.tq; ++i) {
      if (lse[i] == -kInf) continue;  // a row without visible keys
      const T* qi = q + i * d;
      const T* doi = dout + i * dvd;
      const T p = std::exp(scale * Dot(qi, kj, d) - lse[i]);
      const T ds = p * (Dot(doi, vj, dvd) - delta[i]) * scale;
      for (int64_t t = 0; t < dvd; ++t) dvj[t] += p * doi[t];
      for (int64_t t = 0; t < d; ++t) dkj[t] += ds * qi[t];
      T* dqi = dq + i * d;
      for (int64_t t = 0; t < d; ++t) dqi[t] += ds * kj[t];
    }
  }
}

// ---- AVX-512 kernels --------------------------------------------------------

#if defined(__AVX512F__)
namespace avx512 {

inline constexpr int kLanes = 16;
inline constexpr int kNv = 4;             // query vectors per tile row
inline constexpr int kBr = kNv * kLanes;  // queries per tile
inline constexpr int kBc = 64;            // keys per tile (backward)
inline constexpr int kFwdBc = 64;         // keys per tile (forward)
inline constexpr int kQueryGroup = 2;     // query tiles per forward item
// Key tiles per backward sweep: their dK and dV accumulators take at most
// 256 KiB (of the 1 MiB L2).
inline int64_t KeyTileGroup(int64_t d, int64_t dv) {
  return std::clamp<int64_t>(1024 / (d + dv), 1, 8);
}
static_assert(kKeyUnit % kBc == 0);
inline constexpr float kLog2e = 1.44269504088896340736f;
inline constexpr float kLn2 = 0.69314718055994530942f;

// 2^x for x ≤ 0 (larger x work up to 127). x is clamped at −150 (2^x is then
// 0, so exp2(−inf) = 0 and masked entries vanish; NaN propagates), split as
// n + f with n = round(x), f ∈ [−½, ½]; 2^f is a degree-6 polynomial (a
// near-minimax fit of relative error 1.9e-9) evaluated by Horner's rule in
// FMAs, and vscalefps multiplies by 2^n. Measured against exp2 in double
// (tests/ops/attention_test.cc, Exp2Accuracy, 5·10^6 points over
// [−126, 2]): at most 0.93 ulp for results ≥ 2^-126 (about 1e-7 relative,
// the f32 rounding itself being 0.5 ulp); smaller results are denormal or 0,
// which a softmax weight 2^-126 below the row maximum may be.
// Cost: 10 vector instructions for 16 values.
inline __m512 Exp2(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-150.0f), x);  // NaN in x passes through
  const __m512 n =
      _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.534580515e-04f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339993207e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618489072e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550328642e-02f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402264625e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471825e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Lanes [0, 16) of vector `vec` of a tile row whose query index is below
// `threshold` (local query index): the causally masked lanes of that row.
inline __mmask16 LanesBelow(int64_t threshold, int vec) {
  const int64_t t = threshold - vec * kLanes;
  if (t <= 0) return 0;
  if (t >= kLanes) return 0xFFFF;
  return static_cast<__mmask16>((1u << t) - 1);
}

// Transposes the 16×16 block held in r[0..16) (row i in r[i]) in place.
inline void Transpose16x16(__m512 r[kLanes]) {
  __m512 t[kLanes];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i] =
        _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 1] =
        _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[4 * i + 2] =
        _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 3] =
        _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 4; ++j) {
      t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
      t[8 * i + 4 + j] =
          _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0xdd);
    }
  }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
  }
}

// Packs rows [i0, i0 + nq) of x [*, cols] (row stride cols, a multiple of
// 16) transposed and multiplied by `factor` into panel[c][lane] (kBr lanes,
// zeros past nq), in 16×16 blocks.
inline void PackTransposed(const float* x, int64_t cols, int64_t i0, int64_t nq,
                           float factor, float* panel) {
  const __m512 f = _mm512_set1_ps(factor);
  for (int64_t lb = 0; lb < kBr; lb += kLanes) {
    const int64_t rows = std::clamp<int64_t>(nq - lb, 0, kLanes);
    for (int64_t cb = 0; cb < cols; cb += kLanes) {
      __m512 r[kLanes];
      for (int l = 0; l < kLanes; ++l) {
        r[l] = l < rows ? _mm512_mul_ps(
                              _mm512_loadu_ps(x + (i0 + lb + l) * cols + cb), f)
                        : _mm512_setzero_ps();
      }
      Transpose16x16(r);
      for (int c = 0; c < kLanes; ++c) {
        _mm512_store_ps(panel + (cb + c) * kBr + lb, r[c]);
      }
    }
  }
}

// TileA: c[r][lanes] = epilogue(row0 + r, vector, Σ_t a[r·lda + t] ·
// bt[t][lanes]) for r < MR — one key row of a scores tile per r, the kBr
// queries of a packed panel in lanes. The epilogue maps each finished
// accumulator vector while it is in a register (the backward turns scores
// into P and dP into dS there, without another pass over the tile).
struct StoreAsIs {
  __m512 operator()(int64_t /*row*/, int /*vec*/, __m512 acc) const {
    return acc;
  }
};

template <int MR, typename Epilogue>
inline void TileAKernel(const float* a, int64_t lda, const float* bt,
                        int64_t depth, float* c, int64_t row0,
                        const Epilogue& epilogue) {
  __m512 acc[MR][kNv];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) acc[r][v] = _mm512_setzero_ps();
  }
  for (int64_t t = 0; t < depth; ++t) {
    __m512 b[kNv];
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v)
      b[v] = _mm512_load_ps(bt + t * kBr + v * kLanes);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 x = _mm512_set1_ps(a[r * lda + t]);
#pragma GCC unroll 4
      for (int v = 0; v < kNv; ++v)
        acc[r][v] = _mm512_fmadd_ps(x, b[v], acc[r][v]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) {
      _mm512_store_ps(c + r * kBr + v * kLanes,
                      epilogue(row0 + r, v, acc[r][v]));
    }
  }
}

inline constexpr int kTileARows = 6;

template <int MR, typename Epilogue>
inline void TileARemainder(int64_t rows, const float* a, int64_t lda,
                           const float* bt, int64_t depth, float* c,
                           int64_t row0, const Epilogue& epilogue) {
  if constexpr (MR > 0) {
    if (rows == MR) {
      TileAKernel<MR>(a, lda, bt, depth, c, row0, epilogue);
    } else {
      TileARemainder<MR - 1>(rows, a, lda, bt, depth, c, row0, epilogue);
    }
  }
}

// Groups of 6 rows; a remainder of 4 runs as 5 + 5 instead of 6 + 4, as
// micro-kernels of 2 to 4 rows run about 25% slower (64 = 9·6 + 2·5).
inline int64_t GroupsOfSix(int64_t rows) {
  return rows % 6 == 4 && rows >= 10 ? rows / 6 - 1 : rows / 6;
}

// c[r][0..kBr) for r < rows (tile row stride kBr).
template <typename Epilogue = StoreAsIs>
inline void TileA(const float* a, int64_t lda, int64_t rows, const float* bt,
                  int64_t depth, float* c, const Epilogue& epilogue = {}) {
  static_assert(kTileARows == 6);
  int64_t r = 0;
  for (int64_t g = GroupsOfSix(rows); g > 0; --g, r += kTileARows) {
    TileAKernel<kTileARows>(a + r * lda, lda, bt, depth, c + r * kBr, r,
                            epilogue);
  }
  for (; rows - r >= kTileARows - 1; r += kTileARows - 1) {
    TileAKernel<kTileARows - 1>(a + r * lda, lda, bt, depth, c + r * kBr, r,
                                epilogue);
  }
  TileARemainder<kTileARows - 2>(rows - r, a + r * lda, lda, bt, depth,
                                 c + r * kBr, r, epilogue);
}

// TileB: for r < MR, x[r·ldx + 0..16·ND) = x·(rescale[r] when kRescale)
//   + Σ_{c < count} m[c·mc + r·mr] · y[c·ldy + 0..16·ND).
template <int MR, int ND, bool kRescale>
inline void TileBKernel(const float* m, int64_t mc, int64_t mr, const float* y,
                        int64_t ldy, int64_t count, float* x, int64_t ldx,
                        const float* rescale) {
  __m512 acc[MR][ND];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    __m512 f = _mm512_set1_ps(1.0f);
    if constexpr (kRescale) f = _mm512_set1_ps(rescale[r]);
#pragma GCC unroll 4
    for (int v = 0; v < ND; ++v) {
      acc[r][v] = _mm512_loadu_ps(x + r * ldx + v * kLanes);
      if constexpr (kRescale) acc[r][v] = _mm512_mul_ps(acc[r][v], f);
    }
  }
  for (int64_t c = 0; c < count; ++c) {
    __m512 yv[ND];
#pragma GCC unroll 4
    for (int v = 0; v < ND; ++v)
      yv[v] = _mm512_loadu_ps(y + c * ldy + v * kLanes);
    const float* mrow = m + c * mc;
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 s = _mm512_set1_ps(mrow[r * mr]);
#pragma GCC unroll 4
      for (int v = 0; v < ND; ++v)
        acc[r][v] = _mm512_fmadd_ps(s, yv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < ND; ++v)
      _mm512_storeu_ps(x + r * ldx + v * kLanes, acc[r][v]);
  }
}

// Rows per TileB micro-kernel for ND vectors of columns: about 24
// accumulators.
constexpr int TileBRows(int nd) { return nd <= 2 ? 12 : nd == 3 ? 8 : 6; }

template <int ND, bool kRescale, int MR>
inline void TileBRemainder(int64_t rows, const float* m, int64_t mc, int64_t mr,
                           const float* y, int64_t ldy, int64_t count, float* x,
                           int64_t ldx, const float* rescale) {
  if constexpr (MR > 0) {
    if (rows == MR) {
      TileBKernel<MR, ND, kRescale>(m, mc, mr, y, ldy, count, x, ldx, rescale);
    } else {
      TileBRemainder<ND, kRescale, MR - 1>(rows, m, mc, mr, y, ldy, count, x,
                                           ldx, rescale);
    }
  }
}

template <int ND, bool kRescale>
inline void TileBColumns(int64_t rows, const float* m, int64_t mc, int64_t mr,
                         const float* y, int64_t ldy, int64_t count, float* x,
                         int64_t ldx, const float* rescale) {
  constexpr int kMr = TileBRows(ND);
  int64_t r = 0;
  const int64_t groups = kMr == 6 ? GroupsOfSix(rows) : rows / kMr;
  for (int64_t g = groups; g > 0; --g, r += kMr) {
    TileBKernel<kMr, ND, kRescale>(m + r * mr, mc, mr, y, ldy, count,
                                   x + r * ldx, ldx, rescale + r);
  }
  if constexpr (kMr == 6) {
    for (; rows - r >= 5; r += 5) {
      TileBKernel<5, ND, kRescale>(m + r * mr, mc, mr, y, ldy, count,
                                   x + r * ldx, ldx, rescale + r);
    }
  }
  TileBRemainder<ND, kRescale, kMr - 1>(rows - r, m + r * mr, mc, mr, y, ldy,
                                        count, x + r * ldx, ldx, rescale + r);
}

// x[r][0..width) (+)= Σ_c m[c·mc + r·mr] · y[c][0..width) for r < rows;
// width a multiple of 16, done in column slices of at most 4 vectors: a
// slice of a 64-row y block (16 KiB) stays in L1 next to the 16 KiB tile m
// while every row group streams through it (whole rows of 128 columns do
// not, and then run at L2 bandwidth: half the speed at D = 128).
template <bool kRescale>
inline void TileB(int64_t rows, const float* m, int64_t mc, int64_t mr,
                  const float* y, int64_t ldy, int64_t count, float* x,
                  int64_t ldx, int64_t width, const float* rescale) {
  for (int64_t col = 0; col < width;) {
    const int64_t nd = std::min<int64_t>(4, (width - col) / kLanes);
    const float* ys = y + col;
    float* xs = x + col;
    switch (nd) {
      case 1:
        TileBColumns<1, kRescale>(rows, m, mc, mr, ys, ldy, count, xs, ldx,
                                  rescale);
        break;
      case 2:
        TileBColumns<2, kRescale>(rows, m, mc, mr, ys, ldy, count, xs, ldx,
                                  rescale);
        break;
      case 3:
        TileBColumns<3, kRescale>(rows, m, mc, mr, ys, ldy, count, xs, ldx,
                                  rescale);
        break;
      default:
        TileBColumns<4, kRescale>(rows, m, mc, mr, ys, ldy, count, xs, ldx,
                                  rescale);
        break;
    }
    col += nd * kLanes;
  }
}

// Forward for query tiles [tile0, tile0 + tiles) of one head, tiles ≤
// kQueryGroup: each key tile, once in L1, serves all of them (halving the
// K and V traffic from L3 at long n).
inline void ForwardTiles(const Dims& dm, const float* q, const float* k,
                         const float* v, float* o, float* lse, int64_t tile0,
                         int64_t tiles) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t d = dm.d, dv = dm.dv, off = dm.offset();
  float* qt = ThreadScratch<0>(kQueryGroup * d * kBr);
  float* st = ThreadScratch<1>(kFwdBc * kBr + 2 * kBr);
  float* alpha = st + kFwdBc * kBr;
  float* stats = alpha + kBr;
  // Per query tile: running max m (log2 domain) and sum l, per lane.
  __m512 m[kQueryGroup][kNv], l[kQueryGroup][kNv];
  int64_t kend_max = 0;
  for (int64_t u = 0; u < tiles; ++u) {
    const int64_t i0 = (tile0 + u) * kBr;
    const int64_t nq = std::min<int64_t>(kBr, dm.tq - i0);
    PackTransposed(q, d, i0, nq, static_cast<float>(dm.scale) * kLog2e,
                   qt + u * d * kBr);
    std::memset(o + i0 * dv, 0, sizeof(float) * nq * dv);
    for (int w = 0; w < kNv; ++w) {
      m[u][w] = _mm512_set1_ps(kNegInf);
      l[u][w] = _mm512_setzero_ps();
    }
    kend_max = std::max(kend_max, dm.KeyEnd(i0 + nq - 1));
  }
  for (int64_t j0 = 0; j0 < kend_max; j0 += kFwdBc) {
    for (int64_t u = 0; u < tiles; ++u) {
      const int64_t i0 = (tile0 + u) * kBr;
      const int64_t nq = std::min<int64_t>(kBr, dm.tq - i0);
      const int64_t kend = dm.KeyEnd(i0 + nq - 1);
      if (j0 >= kend) continue;
      const int64_t nk = std::min<int64_t>(kFwdBc, kend - j0);
      TileA(k + j0 * d, d, nk, qt + u * d * kBr, d, st);
      if (dm.causal && j0 + nk - 1 > i0 + off) {
        // Row r: lanes of queries i with i + off < j0 + r are masked.
        const __m512 ninf = _mm512_set1_ps(kNegInf);
        for (int64_t r = 0; r < nk; ++r) {
          const int64_t threshold = j0 + r - off - i0;
          for (int w = 0; w < kNv; ++w) {
            const __mmask16 mask = LanesBelow(threshold, w);
            if (mask != 0)
              _mm512_mask_store_ps(st + r * kBr + w * kLanes, mask, ninf);
          }
        }
      }
      __m512 mx[kNv], mu[kNv], sum[kNv];
      for (int w = 0; w < kNv; ++w) {
        mx[w] = m[u][w];
        sum[w] = _mm512_setzero_ps();
      }
      for (int64_t r = 0; r < nk; ++r) {
        for (int w = 0; w < kNv; ++w) {
          mx[w] =
              _mm512_max_ps(mx[w], _mm512_load_ps(st + r * kBr + w * kLanes));
        }
      }
      __mmask16 changed = 0;  // lanes whose O must be rescaled
      for (int w = 0; w < kNv; ++w) {
        // A lane whose keys are all masked so far keeps m = −inf; use 0
        // there so that exp2(−inf − 0) = 0 rather than NaN.
        const __mmask16 none =
            _mm512_cmp_ps_mask(mx[w], _mm512_set1_ps(kNegInf), _CMP_EQ_OQ);
        mu[w] = _mm512_mask_blend_ps(none, mx[w], _mm512_setzero_ps());
        const __m512 a = Exp2(_mm512_sub_ps(m[u][w], mu[w]));
        _mm512_store_ps(alpha + w * kLanes, a);
        changed |= _mm512_cmp_ps_mask(a, _mm512_set1_ps(1.0f), _CMP_NEQ_UQ);
        l[u][w] = _mm512_mul_ps(l[u][w], a);
        m[u][w] = mx[w];
      }
      for (int64_t r = 0; r < nk; ++r) {
        for (int w = 0; w < kNv; ++w) {
          float* p = st + r * kBr + w * kLanes;
          const __m512 e = Exp2(_mm512_sub_ps(_mm512_load_ps(p), mu[w]));
          _mm512_store_ps(p, e);
          sum[w] = _mm512_add_ps(sum[w], e);
        }
      }
      for (int w = 0; w < kNv; ++w) l[u][w] = _mm512_add_ps(l[u][w], sum[w]);
      // O[i] = O[i]·alpha[i] + Σ_j P[j][i]·V[j]; once the row maxima settle,
      // every alpha is 1 and the rescaling is skipped.
      if (changed != 0) {
        TileB<true>(nq, st, kBr, 1, v + j0 * dv, dv, nk, o + i0 * dv, dv, dv,
                    alpha);
      } else {
        TileB<false>(nq, st, kBr, 1, v + j0 * dv, dv, nk, o + i0 * dv, dv, dv,
                     nullptr);
      }
    }
  }
  for (int64_t u = 0; u < tiles; ++u) {
    const int64_t i0 = (tile0 + u) * kBr;
    const int64_t nq = std::min<int64_t>(kBr, dm.tq - i0);
    for (int w = 0; w < kNv; ++w) {
      _mm512_store_ps(stats + w * kLanes, m[u][w]);
      _mm512_store_ps(alpha + w * kLanes, l[u][w]);
    }
    for (int64_t i = 0; i < nq; ++i) {
      const float li = alpha[i];
      if (li > 0) {
        const __m512 inv = _mm512_set1_ps(1.0f / li);
        float* row = o + (i0 + i) * dv;
        for (int64_t t = 0; t < dv; t += kLanes) {
          _mm512_storeu_ps(row + t,
                           _mm512_mul_ps(_mm512_loadu_ps(row + t), inv));
        }
        lse[i0 + i] = (stats[i] + std::log2(li)) * kLn2;
      } else {
        lse[i0 + i] = kNegInf;
      }
    }
  }
}

// Backward for key tiles [jt0, jt1) of one head: writes those rows of dk and
// dv, adds their contribution to dq (which the caller zeroed).
inline void BackwardKeys(const Dims& dm, const float* q, const float* k,
                         const float* v, const float* o, const float* lse,
                         const float* dout, float* dq, float* dk, float* dv,
                         int64_t jt0, int64_t jt1) {
  const int64_t d = dm.d, dvd = dm.dv, tq = dm.tq, tk = dm.tk;
  const int64_t off = dm.offset();
  const int64_t j_first = jt0 * kBc;
  if (j_first >= tk || tq == 0) return;
  const int64_t nqt = CeilDiv(tq, kBr);
  const int64_t qt_first = dm.QueryBegin(j_first) / kBr;
  // Packed panels of every query tile this chunk visits, and per query the
  // log2-domain lse (+inf where there is none: P = 0) and s·δ.
  float* qt_all = ThreadScratch<0>(nqt * d * kBr);
  float* dot_all = ThreadScratch<1>(nqt * dvd * kBr);
  float* rows = ThreadScratch<2>(2 * nqt * kBr);
  float* lse2 = rows;
  float* delta = rows + nqt * kBr;
  const int64_t group = KeyTileGroup(d, dvd);
  float* tiles = ThreadScratch<3>(2 * kBc * kBr + group * kBc * (d + dvd));
  float* st = tiles;                         // S, then P: [kBc][kBr]
  float* dpt = st + kBc * kBr;               // dP, then s·dS: [kBc][kBr]
  float* dk_acc = dpt + kBc * kBr;           // [group][kBc][d]
  float* dv_acc = dk_acc + group * kBc * d;  // [group][kBc][dvd]
  const float scale = static_cast<float>(dm.scale);
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t t = qt_first; t < nqt; ++t) {
    const int64_t i0 = t * kBr;
    const int64_t nq = std::min<int64_t>(kBr, tq - i0);
    PackTransposed(q, d, i0, nq, scale * kLog2e, qt_all + t * d * kBr);
    PackTransposed(dout, dvd, i0, nq, scale, dot_all + t * dvd * kBr);
    for (int64_t lane = 0; lane < kBr; ++lane) {
      const int64_t i = i0 + lane;
      if (lane < nq) {
        lse2[i] = lse[i] == -inf ? inf : lse[i] * kLog2e;
        float dlt = 0;
        const float* a = dout + i * dvd;
        const float* b = o + i * dvd;
        for (int64_t c = 0; c < dvd; ++c) dlt += a[c] * b[c];
        delta[i] = dlt * scale;
      } else {
        lse2[i] = inf;
        delta[i] = 0;
      }
    }
  }
  // Key tiles in groups: each query tile's panels, rows and dQ
  // rows serve the whole group while they are in cache, and the group's dK,
  // dV accumulators stay in L2.
  for (int64_t jg = jt0; jg < jt1 && jg * kBc < tk; jg += group) {
    const int64_t tiles_in_group =
        std::min<int64_t>({group, jt1 - jg, CeilDiv(tk - jg * kBc, kBc)});
    const int64_t group_keys =
        std::min<int64_t>(tiles_in_group * kBc, tk - jg * kBc);
    std::memset(dk_acc, 0, sizeof(float) * group_keys * d);
    std::memset(dv_acc, 0, sizeof(float) * group_keys * dvd);
    for (int64_t t = dm.QueryBegin(jg * kBc) / kBr; t < nqt; ++t) {
      const int64_t i0 = t * kBr;
      const int64_t nq = std::min<int64_t>(kBr, tq - i0);
      __m512 l2[kNv], dl[kNv];
      for (int w = 0; w < kNv; ++w) {
        l2[w] = _mm512_load_ps(lse2 + i0 + w * kLanes);
        dl[w] = _mm512_load_ps(delta + i0 + w * kLanes);
      }
      for (int64_t g = 0; g < tiles_in_group; ++g) {
        const int64_t j0 = (jg + g) * kBc;
        if (dm.causal && j0 > i0 + nq - 1 + off) break;  // wholly masked
        const int64_t nk = std::min<int64_t>(kBc, tk - j0);
        const float* kb = k + j0 * d;
        const float* vb = v + j0 * dvd;
        float* dkg = dk_acc + g * kBc * d;
        float* dvg = dv_acc + g * kBc * dvd;
        const bool masked = dm.causal && j0 + nk - 1 > i0 + off;
        // P = exp2(S' − lse2) (0 where masked), then s·dS = P ⊙ (dP' − s·δ),
        // each as its tile is finished.
        TileA(kb, d, nk, qt_all + t * d * kBr, d, st,
              [&](int64_t r, int w, __m512 s2) {
                const __m512 p = Exp2(_mm512_sub_ps(s2, l2[w]));
                if (!masked) return p;
                return _mm512_maskz_mov_ps(~LanesBelow(j0 + r - off - i0, w),
                                           p);
              });
        TileA(vb, dvd, nk, dot_all + t * dvd * kBr, dvd, dpt,
              [&](int64_t r, int w, __m512 dp) {
                const __m512 p = _mm512_load_ps(st + r * kBr + w * kLanes);
                return _mm512_mul_ps(p, _mm512_sub_ps(dp, dl[w]));
              });
        // dV[j] += Σ_i P[j][i]·dO[i];  dK[j] += Σ_i dS'[j][i]·Q[i].
        TileB<false>(nk, st, 1, kBr, dout + i0 * dvd, dvd, nq, dvg, dvd, dvd,
                     nullptr);
        TileB<false>(nk, dpt, 1, kBr, q + i0 * d, d, nq, dkg, d, d, nullptr);
        // dQ[i] += Σ_j dS'[j][i]·K[j].
        TileB<false>(nq, dpt, kBr, 1, kb, d, nk, dq + i0 * d, d, d, nullptr);
      }
    }
    std::memcpy(dk + jg * kBc * d, dk_acc, sizeof(float) * group_keys * d);
    std::memcpy(dv + jg * kBc * dvd, dv_acc, sizeof(float) * group_keys * dvd);
  }
}

}  // namespace avx512
#endif  // __AVX512F__

// Whether the AVX-512 kernels run for these dims and T.
template <typename T>
bool UseAvx512(const Dims& dm) {
#if defined(__AVX512F__)
  return std::is_same_v<T, float> && dm.d % 16 == 0 && dm.dv % 16 == 0;
#else
  (void)dm;
  return false;
#endif
}

// ---- entry points -----------------------------------------------------------

// o [batch, Tq, Dv], lse [batch, Tq].
template <typename T>
void Forward(const Dims& dm, const T* q, const T* k, const T* v, T* o, T* lse,
             ParallelRunner* pool) {
  if (dm.batch == 0 || dm.tq == 0) return;
  const bool fast = UseAvx512<T>(dm);
#if defined(__AVX512F__)
  const int64_t rows_per_item = fast ? avx512::kQueryGroup * avx512::kBr : 16;
#else
  const int64_t rows_per_item = 16;
#endif
  const int64_t blocks = CeilDiv(dm.tq, rows_per_item);
  const int64_t qs = dm.tq * dm.d, ks = dm.tk * dm.d, vs = dm.tk * dm.dv;
  const int64_t os = dm.tq * dm.dv;
  // Causal: the costliest (last) query blocks of every head first.
  ForEachItem(pool, dm.batch * blocks, [&](int64_t item) {
    const int64_t h = item % dm.batch;
    const int64_t t = item / dm.batch;
    const int64_t i0 = (dm.causal ? blocks - 1 - t : t) * rows_per_item;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      if (fast) {
        avx512::ForwardTiles(
            dm, q + h * qs, k + h * ks, v + h * vs, o + h * os, lse + h * dm.tq,
            i0 / avx512::kBr,
            CeilDiv(std::min(rows_per_item, dm.tq - i0), avx512::kBr));
        return;
      }
    }
#endif
    ForwardRowsPortable<T>(dm, q + h * qs, k + h * ks, v + h * vs, o + h * os,
                           lse + h * dm.tq, i0,
                           std::min(dm.tq, i0 + rows_per_item));
  });
}

// dq [batch, Tq, D], dk [batch, Tk, D], dv [batch, Tk, Dv].
template <typename T>
void Backward(const Dims& dm, const T* q, const T* k, const T* v, const T* o,
              const T* lse, const T* dout, T* dq, T* dk, T* dv,
              ParallelRunner* pool) {
  if (dm.batch == 0) return;
  const int64_t qs = dm.tq * dm.d, ks = dm.tk * dm.d, vs = dm.tk * dm.dv;
  const int64_t os = dm.tq * dm.dv;
  if (dm.tk == 0 || dm.tq == 0) {
    std::fill(dq, dq + dm.batch * qs, T(0));
    std::fill(dk, dk + dm.batch * ks, T(0));
    std::fill(dv, dv + dm.batch * vs, T(0));
    return;
  }
  [[maybe_unused]] const bool fast = UseAvx512<T>(dm);
  const int64_t chunks = BackwardKeyChunks(dm);
  // dQ of chunk c > 0 goes to partial[(c − 1)·batch + h].
  std::optional<PooledBuffer> partial_buffer;
  T* partial = nullptr;
  if (chunks > 1) {
    partial_buffer.emplace(static_cast<size_t>((chunks - 1) * dm.batch * qs) *
                           sizeof(T));
    partial = partial_buffer->data<T>();
  }
  // Causal: the costliest (first) key chunks of every head first.
  ForEachItem(pool, dm.batch * chunks, [&](int64_t item) {
    const int64_t h = item % dm.batch;
    const int64_t c = item / dm.batch;
    T* dq_target =
        c == 0 ? dq + h * qs : partial + ((c - 1) * dm.batch + h) * qs;
    std::fill(dq_target, dq_target + qs, T(0));
    int64_t u0 = 0, u1 = 0;
    ChunkUnits(dm, chunks, c, &u0, &u1);
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      if (fast) {
        constexpr int64_t kTilesPerUnit = kKeyUnit / avx512::kBc;
        avx512::BackwardKeys(dm, q + h * qs, k + h * ks, v + h * vs, o + h * os,
                             lse + h * dm.tq, dout + h * os, dq_target,
                             dk + h * ks, dv + h * vs, u0 * kTilesPerUnit,
                             u1 * kTilesPerUnit);
        return;
      }
    }
#endif
    BackwardKeysPortable<T>(dm, q + h * qs, k + h * ks, v + h * vs, o + h * os,
                            lse + h * dm.tq, dout + h * os, dq_target,
                            dk + h * ks, dv + h * vs, u0 * kKeyUnit,
                            std::min(dm.tk, u1 * kKeyUnit));
  });
  if (chunks > 1) {
    // dq += partials, in chunk order.
    constexpr int64_t kRowsPerItem = 256;
    const int64_t row_blocks = CeilDiv(dm.tq, kRowsPerItem);
    ParallelRange(pool, dm.batch * row_blocks, 1,
                  [&](int64_t begin, int64_t end) {
                    for (int64_t item = begin; item < end; ++item) {
                      const int64_t h = item / row_blocks;
                      const int64_t r0 = (item % row_blocks) * kRowsPerItem;
                      const int64_t r1 = std::min(dm.tq, r0 + kRowsPerItem);
                      T* dst = dq + h * qs;
                      for (int64_t c = 1; c < chunks; ++c) {
                        const T* src = partial + ((c - 1) * dm.batch + h) * qs;
                        for (int64_t e = r0 * dm.d; e < r1 * dm.d; ++e)
                          dst[e] += src[e];
                      }
                    }
                  });
  }
}

}  // namespace subquad::ops_internal::attention

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // SUBQUAD_OPS_INTERNAL_ATTENTION_KERNELS_H_
