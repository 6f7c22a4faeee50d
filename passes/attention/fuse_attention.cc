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

// attention_forward on the site's Q, K and V (transposed back where the
// graph holds them transposed).
struct FusedForward {
  Value q, k, v;
  ops::AttentionOutputs out;
};

FusedForward BuildForward(GraphBuilder& b, const attention::ForwardSite& site) {
  FusedForward f;
  f.q = attention::Untransposed(b, site.q);
  f.k = attention::Untransposed(b, site.k);
  f.v = attention::Untransposed(b, site.v);
  f.out = ops::AttentionForward(b, f.q, f.k, f.v, site.scale, site.causal);
  return f;
}

absl::Status FuseForward(Rewriter& rw, const Match& m) {
  const attention::UserMap users = rw.graph().ComputeUsers();
  absl::StatusOr<attention::ForwardSite> site = attention::AnalyzeForward(rw.graph(), m, users);
  if (!site.ok()) return rw.Decline(std::string(site.status().message()));
  absl::StatusOr<attention::BackwardRegion> region =
      attention::FindBackward(rw.graph(), *site, users);
  if (region.ok() || !absl::IsNotFound(region.status())) {
    return rw.Decline(
        "autodiff already wrote its backward from primitives, which reads its intermediates; "
        "fuse-attention-backward fuses forward and backward together");
  }
  const FusedForward f = BuildForward(rw.builder(), *site);
  RETURN_IF_ERROR(rw.builder().status());
  return rw.Replace(site->output, f.out.o);
}

absl::Status FuseForwardAndBackward(Rewriter& rw, const Match& m) {
  const attention::UserMap users = rw.graph().ComputeUsers();
  absl::StatusOr<attention::ForwardSite> site = attention::AnalyzeForward(rw.graph(), m, users);
  if (!site.ok()) return rw.Decline(std::string(site.status().message()));
  absl::StatusOr<attention::BackwardRegion> region =
      attention::FindBackward(rw.graph(), *site, users);
  if (absl::IsNotFound(region.status())) {
    return rw.Decline("it has no backward (autodiff has not run); fuse-attention fuses the "
                      "forward alone");
  }
  if (!region.ok()) return rw.Decline(std::string(region.status().message()));
  GraphBuilder& b = rw.builder();
  const FusedForward f = BuildForward(b, *site);
  RETURN_IF_ERROR(b.status());
  // The backward, as the gradient rule of attention_forward would write it.
  b.set_role(Role::kBackward);
  b.set_origin(f.out.o.node);
  const ops::AttentionGradients g = ops::AttentionBackward(
      b, f.q, f.k, f.v, f.out.o, f.out.lse, region->d_o, site->scale, site->causal);
  struct Gradient {
    Value primitive;  // what autodiff wrote (invalid: nothing needs it)
    const attention::Operand& operand;
    Value fused;
  };
  const Gradient grads[] = {{region->grad_q, site->q, g.dq},
                            {region->grad_k, site->k, g.dk},
                            {region->grad_v, site->v, g.dv}};
  RETURN_IF_ERROR(rw.Replace(site->output, f.out.o));
  for (const Gradient& x : grads) {
    if (!x.primitive.valid()) continue;
    const Value fused = attention::GradientFor(b, x.operand, x.fused);
    RETURN_IF_ERROR(b.status());
    RETURN_IF_ERROR(rw.Replace(x.primitive, fused));
  }
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
