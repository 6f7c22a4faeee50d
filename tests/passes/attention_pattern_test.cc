// The pattern language on the job it exists for: recognising attention
// written from primitives in several spellings, saying why a near miss is
// not attention, and anchoring the backward match on the forward match
// through origin links (as the attention passes of passes/attention/ do).
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/parser.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/nn/layers.h"
#include "passes/pass_manager.h"
#include "passes/pattern/pattern.h"

namespace subquad::pattern {
namespace {

// P·V with P = softmax(mask(s·Q·Kᵀ)), in the spellings users write:
// Kᵀ as a matmul flag or a transpose; the scale optional; the mask by
// causal_mask, by where(mask, S, −inf), or none; softmax as the op or as
// exp / reduce_sum / div.
Pattern ForwardAttention() {
  Pattern kt = AnyOf({Op("matmul", {Any("q"), Any("k")}).Attr("transpose_b", AttrEq(true)),
                      Op("matmul", {Any("q"), Op("transpose", {Any("k")})
                                                  .Attr("perm", AttrSwapsLastTwoAxes())})
                          .Attr("transpose_b", AttrEq(false))})
                   .Attr("transpose_a", AttrEq(false));
  Pattern scaled = AnyOf({Op("scale", {kt}).Capture("scale"), kt});
  ScalarPredicate very_negative = ScalarWhere(
      "-inf or below -1e4", [](double v) { return std::isinf(v) ? v < 0 : v < -1e4; });
  Pattern masked = AnyOf({Op("causal_mask", {scaled}).Attr("fill", AttrWhere("-inf",
                                                                              [](const AttrValue& f) {
                                                                                return std::isinf(f.f()) && f.f() < 0;
                                                                              })),
                          Op("where", {Any("mask"), scaled, ConstScalar(very_negative)}), scaled});
  Pattern probs = AnyOf(
      {Op("softmax", {masked}).Attr("axis", AttrIsLastAxis()),
       Op("div", {Op("exp", {masked}).Capture("e"),
                  Op("reduce_sum", {Any("e")})
                      .Attr("axes", AttrAxesAreLastOnly())
                      .Attr("keepdims", AttrEq(true))})});
  return Op("matmul", {probs.Capture("p"), Any("v")})
      .Attr("transpose_a", AttrEq(false))
      .Attr("transpose_b", AttrEq(false))
      .Capture("pv");
}

// The backward of P·V and of the softmax, anchored on a forward match (the
// seed): dP = dO·Vᵀ made by P·V's gradient rule, dS = softmax_grad(P, dP)
// made by the softmax's.
Pattern BackwardAttention() {
  Pattern dp = Op("matmul", {Any("dO"), Any("v")})
                   .Attr("transpose_b", AttrEq(true))
                   .RoleIs(Role::kBackward)
                   .OriginIs("pv");
  return Op("softmax_grad", {Any("p"), dp}).RoleIs(Role::kBackward).OriginIs("p");
}

std::vector<MatchResult> MatchAll(const Graph& g, const Pattern& p, absl::string_view op,
                                  const Match* seed = nullptr) {
  std::vector<MatchResult> out;
  for (const Node* n : g.nodes()) {
    if (n->op() == op) out.push_back(MatchPattern(g, p, n->output(), seed));
  }
  return out;
}

TEST(AttentionPatternTest, FindsTheModelsAttentionAndAnchorsItsBackward) {
  nn::TransformerLMConfig config;
  config.vocab = 16;
  config.d_model = 8;
  config.heads = 2;
  config.layers = 3;
  config.batch = 1;
  config.seq_len = 4;
  Graph g;
  GraphBuilder b(&g);
  nn::BuildTransformerLM(b, config);
  ASSERT_OK(b.status());
  ASSERT_OK_AND_ASSIGN(PassManager pm, PassManager::Create("autodiff{loss=loss},cse,dce"));
  PassContext ctx;
  ASSERT_OK(pm.Run(g, ctx).status());

  std::vector<Match> forward;
  for (MatchResult& r : MatchAll(g, ForwardAttention(), "matmul")) {
    if (r.matched()) forward.push_back(std::move(r.match));
  }
  ASSERT_EQ(forward.size(), 3u);
  for (const Match& f : forward) {
    EXPECT_EQ(f.node("p").op(), "softmax");
    EXPECT_EQ(f.node("scale").GetFloat("factor"), 1.0 / std::sqrt(4.0));
    EXPECT_EQ(f.node("pv").role(), Role::kForward);
    // Each forward match anchors exactly one backward match.
    int anchored = 0;
    for (MatchResult& r : MatchAll(g, BackwardAttention(), "softmax_grad", &f)) {
      if (!r.matched()) continue;
      ++anchored;
      EXPECT_EQ(r.match.value("p"), f.value("p"));
      EXPECT_EQ(r.match.node("dO").role(), Role::kBackward);
    }
    EXPECT_EQ(anchored, 1) << f.node("pv").name();
  }
  // A backward match seeded with another layer's forward match says why not.
  std::vector<MatchResult> crossed = MatchAll(g, BackwardAttention(), "softmax_grad", &forward[0]);
  ASSERT_EQ(crossed.size(), 3u);
  int mismatched_origin = 0;
  for (const MatchResult& r : crossed) {
    if (!r.matched() && absl::StrContains(r.reason, "expected the value of capture 'p'")) {
      ++mismatched_origin;
    }
  }
  EXPECT_EQ(mismatched_origin, 2);
}

constexpr absl::string_view kHandWritten = R"(
%0 f32[1,2,4,3] = input() "q"
%1 f32[1,2,4,3] = input() "k"
%2 f32[1,2,4,3] = input() "v"
%3 f32[4,4] = input() "mask"
%4 f32[1,2,3,4] = transpose(%1) {perm=[0,1,3,2]}
%5 f32[1,2,4,4] = matmul(%0, %4)
%6 f32[1,2,4,4] = scale(%5) {factor=0.5}
%7 f32[] = fill() {dtype=f32, shape=[], value=-inf}
%8 f32[1,2,4,4] = where(%3, %6, %7)
%9 f32[1,2,4,4] = exp(%8)
%10 f32[1,2,4,1] = reduce_sum(%9) {axes=[3], keepdims=true}
%11 f32[1,2,4,4] = div(%9, %10)
%12 f32[1,2,4,3] = matmul(%11, %2)
%13 f32[1,2,4,4] = softmax(%5) {axis=2}
%14 f32[1,2,4,3] = matmul(%13, %2)
%15 f32[1,2,4,4] = fill() {dtype=f32, shape=[1,2,4,4], value=-1}
%16 f32[1,2,4,4] = where(%3, %5, %15)
%17 f32[1,2,4,4] = softmax(%16)
%18 f32[1,2,4,3] = matmul(%17, %2)
output o = %12
output o2 = %14
output o3 = %18
)";

TEST(AttentionPatternTest, OtherSpellingsMatchAndNearMissesSayWhy) {
  ASSERT_OK_AND_ASSIGN(Graph g, ParseGraph(kHandWritten));
  // where-mask, transpose of K, exp / reduce_sum / div.
  MatchResult r = MatchPattern(g, ForwardAttention(), Value{12, 0});
  ASSERT_TRUE(r.matched()) << r.reason;
  EXPECT_EQ(r.match.value("q"), (Value{0, 0}));
  EXPECT_EQ(r.match.value("k"), (Value{1, 0}));
  EXPECT_EQ(r.match.value("v"), (Value{2, 0}));
  EXPECT_EQ(r.match.value("mask"), (Value{3, 0}));
  EXPECT_EQ(r.match.node("p").op(), "div");
  // Softmax over the wrong axis.
  EXPECT_EQ(MatchPattern(g, ForwardAttention(), Value{14, 0}).reason,
            "node %13 (softmax): attribute axis is 2, expected the last axis (3)");
  // A mask value that does not hide anything.
  EXPECT_EQ(MatchPattern(g, ForwardAttention(), Value{18, 0}).reason,
            "node %15 (fill): value is -1, expected -inf or below -1e4");
}

}  // namespace
}  // namespace subquad::pattern
