// simplify: algebraic and layout clean-ups, written with the pattern engine
// (passes/pattern/) so other passes can reuse them and --explain can say
// why one did not apply.
//
//   mul-by-one          x·1, 1·x → x      (when the result keeps x's type)
//   add-zero, sub-zero  x+0, 0+x, x−0 → x (same condition)
//   scale-by-one        scale(x, 1) → x
//   scale-of-scale      scale(scale(x, a), b) → scale(x, a·b) (equal up to
//                       rounding, as any reassociation)
//   neg-neg             −(−x) → x
//   transpose-identity  transpose(x, identity) → x
//   transpose-of-transpose  transpose(transpose(x, p), q) → transpose(x, p∘q),
//                       or x when that is the identity
//   reshape-same-shape  reshape(x) to x's own shape → x
//   reshape-of-reshape  reshape(reshape(x)) → reshape(x), or x
//   cancel-layout-chain a reshape/transpose chain that gives back an earlier
//                       value → that value
//   matmul-transpose-a/b  matmul(transpose(a, swap of the last two axes), b)
//                       → matmul(a, b) with transpose_a flipped (b alike);
//                       only when the transpose keeps the batch dims
//
// The constants of x·1 and x+0 are ConstScalar matches: a constant or fill,
// or a broadcast_to/reshape of one, holding one value.
#ifndef SUBQUAD_PASSES_SIMPLIFY_H_
#define SUBQUAD_PASSES_SIMPLIFY_H_

#include <vector>

#include "passes/pattern/rewrite.h"

namespace subquad {

std::vector<pattern::RewritePattern> SimplifyPatterns();

}  // namespace subquad

#endif  // SUBQUAD_PASSES_SIMPLIFY_H_
