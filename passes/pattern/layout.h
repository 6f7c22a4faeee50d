// Layout algebra for reshape and transpose, so that patterns can tell when a
// chain of them gives back the tensor it started from (a head split undone
// by a head merge, a transpose undone by its inverse) and simplifications can
// compose permutations.
#ifndef SUBQUAD_PASSES_PATTERN_LAYOUT_H_
#define SUBQUAD_PASSES_PATTERN_LAYOUT_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "core/shape.h"

namespace subquad {

// One step of a chain of layout changes: a reshape to `dims`, or a
// transpose by `perm` (output dim i is input dim perm[i]).
struct LayoutStep {
  enum class Kind { kReshape, kTranspose };
  Kind kind = Kind::kReshape;
  std::vector<int64_t> dims_or_perm;

  static LayoutStep Reshape(const Shape& s) {
    return {Kind::kReshape, s.ToVector()};
  }
  static LayoutStep Transpose(std::vector<int64_t> perm) {
    return {Kind::kTranspose, std::move(perm)};
  }
};

// True when applying `steps` in order to a tensor of shape `in` gives back
// the same tensor: the same shape, every element at its place. Decided
// exactly by tracking dimension factors through the chain; a reshape that
// splits or merges dims in a way no factor tracking can follow (such as
// [2,3] to [3,2]) makes the answer false.
bool IsIdentityLayoutChain(const Shape& in, absl::Span<const LayoutStep> steps);

// transpose(transpose(x, first), second) == transpose(x, result):
// result[i] = first[second[i]]. Both must be permutations of one rank.
std::vector<int64_t> ComposePermutations(absl::Span<const int64_t> first,
                                         absl::Span<const int64_t> second);

bool IsIdentityPermutation(absl::Span<const int64_t> perm);

// [0, 1, ..., rank-3, rank-1, rank-2]: the transpose a matmul flag stands
// for (rank >= 2).
std::vector<int64_t> SwapLastTwoAxes(int rank);

}  // namespace subquad

#endif  // SUBQUAD_PASSES_PATTERN_LAYOUT_H_
