// Recognition of attention written from primitives, and of the backward
// subgraph autodiff generated for it: what the attention passes
// (fuse-attention, fuse-attention-backward, and every backward variant that
// replaces the exact one) rewrite.
//
// The forward: o = softmax(mask(s·Q·Kᵀ))·V over the last axis, in the
// spellings users write:
//   - Kᵀ as a matmul flag, a transpose of K, or K already laid out [.., D, Tk];
//     Q and V likewise may come transposed (matmul flags);
//   - the scale on the logits (before or after the mask), on Q, on K, or
//     none, as `scale`, a multiplication by a constant or a division by one;
//   - the mask by causal_mask, by where(mask, S, fill) / where(mask, fill, S)
//     with a constant causal mask and a fill of −inf or below −1e4, by adding
//     a constant causal mask of 0 and −inf (or below −1e4), or none;
//   - softmax as the op or as exp / reduce_sum / div, with or without the
//     subtraction of the row maximum;
//   - any leading (batch, head) dims, equal for Q, K and V.
// The backward: the backward-role nodes whose origin is one of the matched
// forward nodes (autodiff names each node's origin; no shapes are guessed).
// It must read exactly one gradient from outside, dO (the gradient of o),
// and hand out only gradients of Q, K and V, each recognised by who reads it:
// the backward of Q's (K's, V's) producer, or the output grad/<parameter>.
#ifndef SUBQUAD_PASSES_ATTENTION_RECOGNIZE_H_
#define SUBQUAD_PASSES_ATTENTION_RECOGNIZE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "core/builder.h"
#include "core/graph.h"
#include "passes/pattern/pattern.h"

namespace subquad::attention {

// The pattern of the forward, rooted at P·V (role forward). Its captures are
// read by AnalyzeForward; the pattern alone does not check that a mask tensor
// is causal (AnalyzeForward does, and says why not).
pattern::Pattern ForwardPattern();

// One of Q, K, V as the graph holds it: `value`, laid out [..., T, D], or
// [..., D, T] when `transposed` (attention then reads its transpose).
struct Operand {
  Value value;
  bool transposed = false;
};

// An attention found in the forward.
struct ForwardSite {
  Operand q, k, v;
  double scale = 1.0;
  bool causal = false;
  Value output;                // P·V, the value attention_forward's o replaces
  std::vector<NodeId> nodes;   // the matched forward nodes, P·V first
  // Ops of the spelling, for explanations: "causal_mask", "where-mask",
  // "additive-mask" or "no mask"; "softmax" or "exp/sum/div".
  std::string mask_spelling, softmax_spelling;
};

// Checks a match of ForwardPattern() and reads the site from it: the scale
// (a product of constant factors), the mask (a constant mask must be
// causal, or keep every key), equal leading dims, and intermediates used only
// by the attention and by its backward. The error, FailedPrecondition, names
// the node and the condition it breaks (for --explain).
// `users` is graph.ComputeUsers(), shared with FindBackward.
using UserMap = absl::flat_hash_map<NodeId, std::vector<NodeId>>;
absl::StatusOr<ForwardSite> AnalyzeForward(const Graph& graph, const pattern::Match& match,
                                           const UserMap& users);

// The backward autodiff generated for a site.
struct BackwardRegion {
  std::vector<NodeId> nodes;   // backward nodes whose origin is in site.nodes
  Value d_o;                   // the gradient of o that flows in
  // The gradients the region hands out; invalid when nothing needs one.
  Value grad_q, grad_k, grad_v;
};

// Finds the site's backward. NotFound when it has none (autodiff has not run,
// or the gradient rule of attention_forward already wrote it);
// FailedPrecondition, naming the node, when it reads or hands out anything
// but dO and the gradients of Q, K and V.
absl::StatusOr<BackwardRegion> FindBackward(const Graph& graph, const ForwardSite& site,
                                            const UserMap& users);

// Q, K, V as attention_forward takes them ([..., T, D]): the value, or a
// transpose of its last two axes built with `b`.
Value Untransposed(GraphBuilder& b, const Operand& x);
// The gradient of `x.value` from the gradient of Untransposed(x).
Value GradientFor(GraphBuilder& b, const Operand& x, Value grad);

}  // namespace subquad::attention

#endif  // SUBQUAD_PASSES_ATTENTION_RECOGNIZE_H_
