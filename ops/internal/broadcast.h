// Iteration over NumPy-broadcast operands, shared by elementwise kernels,
// where, broadcast_to and batched matmul. No Eigen here.
//
// A BroadcastIter<N> walks the output of shape `out` in rows: the innermost
// (collapsed) dimension is one row; for each row it gives the output offset,
// each input's offset, and each input's stride along the row (0 when that
// input is broadcast along it, else its element stride, which is 1 after
// collapsing unless the row is a broadcast one). Adjacent dims that broadcast
// the same way for every operand are merged first, so `a[B,T,D] + b[D]`
// becomes rows of length D, and same-shape operands one row of everything.
#ifndef SUBQUAD_OPS_INTERNAL_BROADCAST_H_
#define SUBQUAD_OPS_INTERNAL_BROADCAST_H_

#include <array>
#include <cstdint>

#include "absl/container/inlined_vector.h"
#include "core/shape.h"

namespace subquad::ops_internal {

template <int N>
class BroadcastIter {
 public:
  // Each input shape must broadcast to `out` (the shape rule checked this).
  BroadcastIter(const Shape& out, const std::array<const Shape*, N>& in) {
    const int r = out.rank();
    // Per original dim: output extent and each input's stride (0 = broadcast).
    absl::InlinedVector<int64_t, 8> ext(r);
    absl::InlinedVector<std::array<int64_t, N>, 8> st(r);
    for (int k = 0; k < N; ++k) {
      int64_t stride = 1;
      const Shape& s = *in[k];
      for (int d = r - 1; d >= 0; --d) {
        const int sd = d - (r - s.rank());
        const int64_t extent = sd >= 0 ? s.dim(sd) : 1;
        st[d][k] = (extent == 1 && out.dim(d) != 1) ? 0 : stride;
        stride *= extent;
      }
    }
    for (int d = 0; d < r; ++d) ext[d] = out.dim(d);
    // Drop size-1 dims, then merge dim d into d+1 when for every operand
    // stride[d] == stride[d+1] * ext[d+1] (contiguous) or both are 0.
    for (int d = 0; d < r; ++d) {
      if (ext[d] == 1) continue;
      if (!ext_.empty()) {
        auto& pe = ext_.back();
        auto& ps = st_.back();
        bool mergeable = true;
        for (int k = 0; k < N; ++k) {
          const bool both_zero = ps[k] == 0 && st[d][k] == 0;
          const bool contiguous = ps[k] == st[d][k] * ext[d] && st[d][k] != 0;
          if (!both_zero && !contiguous) mergeable = false;
        }
        if (mergeable) {
          pe *= ext[d];
          ps = st[d];
          continue;
        }
      }
      ext_.push_back(ext[d]);
      st_.push_back(st[d]);
    }
    if (ext_.empty()) {
      ext_.push_back(1);
      std::array<int64_t, N> ones;
      ones.fill(1);
      st_.push_back(ones);
    }
    row_len_ = ext_.back();
    num_rows_ = 1;
    for (size_t d = 0; d + 1 < ext_.size(); ++d) num_rows_ *= ext_[d];
  }

  int64_t num_rows() const { return num_rows_; }
  int64_t row_length() const { return row_len_; }
  // Stride of input k along a row: 0 (broadcast scalar) or its step.
  int64_t row_stride(int k) const { return st_.back()[k]; }

  // Offsets of row `row` (output offset is row * row_length()).
  std::array<int64_t, N> InputOffsets(int64_t row) const {
    std::array<int64_t, N> off{};
    const int outer = static_cast<int>(ext_.size()) - 1;
    for (int d = outer - 1; d >= 0; --d) {
      const int64_t i = row % ext_[d];
      row /= ext_[d];
      for (int k = 0; k < N; ++k) off[k] += i * st_[d][k];
    }
    return off;
  }

 private:
  absl::InlinedVector<int64_t, 8> ext_;
  absl::InlinedVector<std::array<int64_t, N>, 8> st_;
  int64_t row_len_ = 1;
  int64_t num_rows_ = 1;
};

}  // namespace subquad::ops_internal

#endif  // SUBQUAD_OPS_INTERNAL_BROADCAST_H_
