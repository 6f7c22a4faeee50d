#include "passes/pattern/layout.h"

#include <algorithm>

namespace subquad {
namespace {

// The elements of a tensor, in row-major order, are indexed by a sequence of
// "atoms": factors of the dims, major to minor. A dim is a group of atoms
// (size-1 dims have none). Reshapes regroup the row-major atom sequence,
// splitting an atom when a new dim boundary falls inside it; transposes
// permute the groups. The chain is the identity when the final atom sequence
// equals the starting one, with every split also applied to the start.
class AtomTracker {
 public:
  explicit AtomTracker(const Shape& in) {
    for (int64_t d : in.dims()) {
      std::vector<int> group;
      if (d != 1) {
        group.push_back(NewAtom(d));
        start_.push_back(group.back());
      }
      groups_.push_back(std::move(group));
    }
  }

  bool Transpose(absl::Span<const int64_t> perm) {
    if (perm.size() != groups_.size()) return false;
    std::vector<std::vector<int>> out;
    out.reserve(perm.size());
    for (int64_t p : perm) {
      if (p < 0 || p >= static_cast<int64_t>(groups_.size())) return false;
      out.push_back(groups_[p]);
    }
    groups_ = std::move(out);
    return true;
  }

  bool Reshape(absl::Span<const int64_t> dims) {
    std::vector<int> flat;
    for (const auto& g : groups_) flat.insert(flat.end(), g.begin(), g.end());
    std::vector<std::vector<int>> out;
    size_t next = 0;
    for (int64_t d : dims) {
      std::vector<int> group;
      int64_t need = d;
      while (need > 1) {
        if (next >= flat.size()) return false;
        const int atom = flat[next];
        const int64_t s = sizes_[atom];
        if (s <= need) {
          if (need % s != 0) return false;
          need /= s;
          group.push_back(atom);
          ++next;
        } else {
          if (s % need != 0) return false;
          const int hi = NewAtom(need);
          const int lo = NewAtom(s / need);
          Split(atom, hi, lo);
          flat[next] = lo;
          group.push_back(hi);
          need = 1;
        }
      }
      if (need != 1) return false;  // a zero-sized dim
      out.push_back(std::move(group));
    }
    if (next != flat.size()) return false;
    groups_ = std::move(out);
    return true;
  }

  bool IsIdentity(const Shape& in) const {
    if (static_cast<int>(groups_.size()) != in.rank()) return false;
    for (int i = 0; i < in.rank(); ++i) {
      int64_t size = 1;
      for (int a : groups_[i]) size *= sizes_[a];
      if (size != in.dim(i)) return false;
    }
    std::vector<int> flat;
    for (const auto& g : groups_) flat.insert(flat.end(), g.begin(), g.end());
    return flat == start_;
  }

 private:
  int NewAtom(int64_t size) {
    sizes_.push_back(size);
    return static_cast<int>(sizes_.size()) - 1;
  }
  // Replaces `atom` by [hi, lo] in the starting sequence (the current
  // sequence is patched by the caller).
  void Split(int atom, int hi, int lo) {
    auto it = std::find(start_.begin(), start_.end(), atom);
    if (it != start_.end()) {
      it = start_.erase(it);
      start_.insert(it, {hi, lo});
    }
  }

  std::vector<int64_t> sizes_;
  std::vector<int> start_;
  std::vector<std::vector<int>> groups_;
};

}  // namespace

bool IsIdentityLayoutChain(const Shape& in, absl::Span<const LayoutStep> steps) {
  for (int64_t d : in.dims()) {
    if (d == 0) {
      // Every chain over an empty tensor ends where it started if the
      // shapes agree; nothing else can be said element-wise.
      return false;
    }
  }
  AtomTracker t(in);
  for (const LayoutStep& s : steps) {
    const bool ok = s.kind == LayoutStep::Kind::kReshape
                        ? t.Reshape(s.dims_or_perm)
                        : t.Transpose(s.dims_or_perm);
    if (!ok) return false;
  }
  return t.IsIdentity(in);
}

std::vector<int64_t> ComposePermutations(absl::Span<const int64_t> first,
                                         absl::Span<const int64_t> second) {
  std::vector<int64_t> out(second.size());
  for (size_t i = 0; i < second.size(); ++i) out[i] = first[second[i]];
  return out;
}

bool IsIdentityPermutation(absl::Span<const int64_t> perm) {
  for (size_t i = 0; i < perm.size(); ++i) {
    if (perm[i] != static_cast<int64_t>(i)) return false;
  }
  return true;
}

std::vector<int64_t> SwapLastTwoAxes(int rank) {
  std::vector<int64_t> perm(rank);
  for (int i = 0; i < rank; ++i) perm[i] = i;
  if (rank >= 2) std::swap(perm[rank - 1], perm[rank - 2]);
  return perm;
}

}  // namespace subquad
