// The exact attention passes (ATTENTION.md, variant 0):
//
//   fuse-attention           attention written from primitives, with no
//                            backward yet, becomes attention_forward (run it
//                            before autodiff and the gradient rule writes
//                            attention_backward);
//   fuse-attention-backward  attention whose backward autodiff already wrote
//                            from primitives becomes attention_forward and
//                            attention_backward, forward and backward at once
//                            (the backward needs the forward's lse).
//
// Sites fuse-attention-backward owns (a primitive backward reads their
// intermediates) are left alone by fuse-attention, which says so under
// --explain; the pipeline "fuse-attention,fuse-attention-backward" therefore
// fuses every attention whether or not autodiff has run.
#include "passes/attention/fuse_attention.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/status.h"
#include "ops/ops.h"
#include "passes/attention/recognize.h"
#include "passes/pass.h"

namespace subquad {
namespace {

using pattern::Match;
using pattern::RewritePattern;
using pattern::Rewriter;

// Misses at depth 0 (a matmul whose left operand is no softmax or division:
// a projection) are not attention at all; --explain leaves them out.
constexpr int kExplainDepth = 1;

absl::Status FuseForward(Rewriter& rw, const Match& m) {
  absl::StatusOr<attention::ForwardSite> site = attention::AnalyzeForward(rw.graph(), m);
  if (!site.ok()) return rw.Decline(std::string(site.status().message()));
  absl::StatusOr<attention::BackwardRegion> region = attention::FindBackward(rw.graph(), *site);
  if (region.ok() || !absl::IsNotFound(region.status())) {
    return rw.Decline(
        "autodiff already wrote its backward from primitives, which reads its intermediates; "
        "fuse-attention-backward fuses forward and backward together");
  }
  GraphBuilder& b = rw.builder();
  const Value q = attention::Untransposed(b, site->q);
  const Value k = attention::Untransposed(b, site->k);
  const Value v = attention::Untransposed(b, site->v);
  const ops::AttentionOutputs out = ops::AttentionForward(b, q, k, v, site->scale, site->causal);
  RETURN_IF_ERROR(b.status());
  return rw.Replace(site->output, out.o);
}

absl::Status FuseForwardAndBackward(Rewriter& rw, const Match& m) {
  absl::StatusOr<attention::ForwardSite> site = attention::AnalyzeForward(rw.graph(), m);
  if (!site.ok()) return rw.Decline(std::string(site.status().message()));
  absl::StatusOr<attention::BackwardRegion> region = attention::FindBackward(rw.graph(), *site);
  if (absl::IsNotFound(region.status())) {
    return rw.Decline("it has no backward (autodiff has not run); fuse-attention fuses the "
                      "forward alone");
  }
  if (!region.ok()) return rw.Decline(std::string(region.status().message()));
  GraphBuilder& b = rw.builder();
  const Value q = attention::Untransposed(b, site->q);
  const Value k = attention::Untransposed(b, site->k);
  const Value v = attention::Untransposed(b, site->v);
  const ops::AttentionOutputs out = ops::AttentionForward(b, q, k, v, site->scale, site->causal);
  RETURN_IF_ERROR(b.status());
  // The backward, as the gradient rule of attention_forward would write it.
  b.set_role(Role::kBackward);
  b.set_origin(out.o.node);
  const ops::AttentionGradients g = ops::AttentionBackward(b, q, k, v, out.o, out.lse,
                                                           region->d_o, site->scale, site->causal);
  const Value dq = region->grad_q.valid() ? attention::GradientFor(b, site->q, g.dq) : Value{};
  const Value dk = region->grad_k.valid() ? attention::GradientFor(b, site->k, g.dk) : Value{};
  const Value dv = region->grad_v.valid() ? attention::GradientFor(b, site->v, g.dv) : Value{};
  RETURN_IF_ERROR(b.status());
  RETURN_IF_ERROR(rw.Replace(site->output, out.o));
  if (dq.valid()) RETURN_IF_ERROR(rw.Replace(region->grad_q, dq));
  if (dk.valid()) RETURN_IF_ERROR(rw.Replace(region->grad_k, dk));
  if (dv.valid()) RETURN_IF_ERROR(rw.Replace(region->grad_v, dv));
  return absl::OkStatus();
}

}  // namespace

pattern::RewritePattern FuseAttentionPattern() {
  return RewritePattern("fuse-attention", attention::ForwardPattern(), FuseForward)
      .set_min_explain_depth(kExplainDepth);
}

pattern::RewritePattern FuseAttentionBackwardPattern() {
  return RewritePattern("fuse-attention-backward", attention::ForwardPattern(),
                        FuseForwardAndBackward)
      .set_min_explain_depth(kExplainDepth);
}

namespace {

SUBQUAD_REGISTER_PASS(pattern::PatternPassInfo(
    "fuse-attention",
    "Attention written from primitives (softmax(mask(scale*Q*K^T))*V in its usual spellings) "
    "becomes attention_forward, the exact fused kernel; sites whose backward autodiff already "
    "wrote are left to fuse-attention-backward.",
    [](const PassOptions&) -> absl::StatusOr<std::vector<pattern::RewritePattern>> {
      return std::vector<pattern::RewritePattern>{FuseAttentionPattern()};
    }));

SUBQUAD_REGISTER_PASS(pattern::PatternPassInfo(
    "fuse-attention-backward",
    "Attention written from primitives together with the backward autodiff wrote for it "
    "(found through origin links) becomes attention_forward and attention_backward: exact, "
    "O(n*d) memory.",
    [](const PassOptions&) -> absl::StatusOr<std::vector<pattern::RewritePattern>> {
      return std::vector<pattern::RewritePattern>{FuseAttentionBackwardPattern()};
    }));

}  // namespace
}  // namespace subquad
