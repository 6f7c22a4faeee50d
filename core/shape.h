// Static tensor shapes: every dimension is known when the graph is built.
#ifndef SUBQUAD_CORE_SHAPE_H_
#define SUBQUAD_CORE_SHAPE_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace subquad {

// Dimensions larger than this are rejected everywhere (2^40 elements).
inline constexpr int64_t kMaxDim = int64_t{1} << 40;
inline constexpr int kMaxRank = 8;

class Shape {
 public:
  using Dims = absl::InlinedVector<int64_t, 6>;

  Shape() = default;  // rank 0: a scalar
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  explicit Shape(absl::Span<const int64_t> dims)
      : dims_(dims.begin(), dims.end()) {}

  int rank() const { return static_cast<int>(dims_.size()); }
  int64_t dim(int i) const { return dims_[i]; }
  int64_t operator[](int i) const { return dims_[i]; }
  absl::Span<const int64_t> dims() const { return dims_; }
  std::vector<int64_t> ToVector() const { return {dims_.begin(), dims_.end()}; }
  bool IsScalar() const { return dims_.empty(); }

  // Product of the dims (1 for a scalar). Callers validated the shape.
  int64_t num_elements() const;

  void set_dim(int i, int64_t d) { dims_[i] = d; }
  void push_back(int64_t d) { dims_.push_back(d); }

  // "[4,256,128]"; "[]" for a scalar.
  std::string ToString() const;

  friend bool operator==(const Shape& a, const Shape& b) {
    return a.dims_ == b.dims_;
  }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }
  template <typename H>
  friend H AbslHashValue(H h, const Shape& s) {
    return H::combine(std::move(h), s.dims_);
  }

 private:
  Dims dims_;
};

// OK when every dim is in [0, kMaxDim], the rank is at most kMaxRank and the
// element count does not overflow int64. The message names the shape.
absl::Status ValidateShape(const Shape& s);

// NumPy broadcasting of two shapes, or an InvalidArgument naming both.
absl::StatusOr<Shape> BroadcastShapes(const Shape& a, const Shape& b);

// Normalises a possibly negative axis against `rank`, or InvalidArgument.
absl::StatusOr<int> NormalizeAxis(int64_t axis, int rank);

// Row-major strides of `s` in elements.
absl::InlinedVector<int64_t, 6> RowMajorStrides(const Shape& s);

}  // namespace subquad

#endif  // SUBQUAD_CORE_SHAPE_H_
