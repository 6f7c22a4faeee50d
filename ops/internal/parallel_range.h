// Splitting a kernel's work across the pool, shared by the elementwise,
// reduction and nn kernels. No Eigen here.
//
// ParallelRange runs small work in one call on the calling thread (the
// pool's hand-off costs more than it saves) and larger work across the pool
// in ranges of at least `grain` items. ForEachSegment walks the output of a
// broadcast op (see broadcast.h) in contiguous segments, across the pool.
#ifndef SUBQUAD_OPS_INTERNAL_PARALLEL_RANGE_H_
#define SUBQUAD_OPS_INTERNAL_PARALLEL_RANGE_H_

#include <algorithm>
#include <array>
#include <cstdint>

#include "absl/functional/function_ref.h"
#include "core/parallel.h"
#include "ops/internal/broadcast.h"

namespace subquad::ops_internal {

// Work (elements x relative cost) below which a kernel runs in one call on
// the calling thread.
inline constexpr int64_t kSerialWork = 32768;

// Calls fn over [0, n) in one call when n <= grain (or the pool has one
// thread), else across the pool in ranges of at least `grain`.
inline void ParallelRange(ParallelRunner* pool, int64_t n, int64_t grain,
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

}  // namespace subquad::ops_internal

#endif  // SUBQUAD_OPS_INTERNAL_PARALLEL_RANGE_H_
