#include "core/shape.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace subquad {

int64_t Shape::num_elements() const {
  int64_t n = 1;
  for (int64_t d : dims_) n *= d;
  return n;
}

std::string Shape::ToString() const {
  return absl::StrCat("[", absl::StrJoin(dims_, ","), "]");
}

absl::Status ValidateShape(const Shape& s) {
  if (s.rank() > kMaxRank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shape ", s.ToString(), " has rank ", s.rank(), " > ", kMaxRank));
  }
  int64_t n = 1;
  for (int i = 0; i < s.rank(); ++i) {
    const int64_t d = s.dim(i);
    if (d < 0 || d > kMaxDim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shape ", s.ToString(), ": dim ", i, " = ", d, " is outside [0, ",
          kMaxDim, "]"));
    }
    if (d != 0 && n > kMaxDim / d) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shape ", s.ToString(), " has more than ", kMaxDim, " elements"));
    }
    n *= d;
  }
  return absl::OkStatus();
}

absl::StatusOr<Shape> BroadcastShapes(const Shape& a, const Shape& b) {
  const int r = std::max(a.rank(), b.rank());
  Shape out;
  for (int i = 0; i < r; ++i) {
    const int ia = i - (r - a.rank()), ib = i - (r - b.rank());
    const int64_t da = ia >= 0 ? a.dim(ia) : 1;
    const int64_t db = ib >= 0 ? b.dim(ib) : 1;
    if (da != db && da != 1 && db != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shapes do not broadcast: ", a.ToString(), " vs ", b.ToString()));
    }
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

absl::StatusOr<int> NormalizeAxis(int64_t axis, int rank) {
  if (axis < -rank || axis >= rank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "axis ", axis, " is out of range for rank ", rank));
  }
  return static_cast<int>(axis < 0 ? axis + rank : axis);
}

absl::InlinedVector<int64_t, 6> RowMajorStrides(const Shape& s) {
  absl::InlinedVector<int64_t, 6> st(s.rank());
  int64_t acc = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s.dim(i);
  }
  return st;
}

}  // namespace subquad
