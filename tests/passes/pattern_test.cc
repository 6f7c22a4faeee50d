// The pattern language (passes/pattern/pattern.h), one feature at a time,
// with every failure reason asserted exactly.
#include "passes/pattern/pattern.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/parser.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "passes/pattern/layout.h"

namespace subquad::pattern {
namespace {

using ::testing::ElementsAre;

Graph Parse(absl::string_view text) {
  absl::StatusOr<Graph> g = ParseGraph(text);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *std::move(g) : Graph();
}

Value V(NodeId id, int output = 0) { return Value{id, output}; }

// Matches and expects a failure; returns its reason.
std::string Reason(const Graph& g, const Pattern& p, Value v, const Match* seed = nullptr) {
  MatchResult r = MatchPattern(g, p, v, seed);
  EXPECT_FALSE(r.matched()) << p.ToString() << " matched " << v.ToString();
  return r.reason;
}

constexpr absl::string_view kMatmulGraph = R"(
%0 f32[2,4,3] = input() "a"
%1 f32[2,4,5] = input() "b"
%2 f32[2,3,4] = transpose(%0) {perm=[0,2,1]}
%3 f32[2,3,5] = matmul(%2, %1)
%4 f32[4,3,2] = transpose(%0) {perm=[1,2,0]}
output y = %3
)";

TEST(PatternTest, OpPatternsCaptureValuesAndNodes) {
  Graph g = Parse(kMatmulGraph);
  Pattern p = Op("matmul", {Op("transpose", {Any("a")}).Capture("t"), Any("b")});
  MatchResult r = MatchPattern(g, p, V(3));
  ASSERT_TRUE(r.matched()) << r.reason;
  EXPECT_EQ(r.match.root(), V(3));
  EXPECT_EQ(r.match.value("a"), V(0));
  EXPECT_EQ(r.match.value("b"), V(1));
  EXPECT_EQ(r.match.node("t").id(), 2);
  EXPECT_TRUE(r.match.has("t"));
  EXPECT_FALSE(r.match.has("c"));
  EXPECT_THAT(r.match.nodes(), ElementsAre(3, 2));
  EXPECT_EQ(p.ToString(), "matmul(t=transpose(a), b)");
  EXPECT_THAT(p.RootOps(), ElementsAre("matmul"));
}

TEST(PatternTest, OpMismatchNamesTheNodeAndTheExpectedOps) {
  Graph g = Parse(kMatmulGraph);
  EXPECT_EQ(Reason(g, Op("softmax"), V(3)), "node %3 (matmul): op is matmul, expected softmax");
  EXPECT_EQ(Reason(g, OpIn({"add", "sub"}), V(3)),
            "node %3 (matmul): op is matmul, expected add or sub");
  EXPECT_EQ(Reason(g, OpIn({"add", "sub", "div"}), V(3)),
            "node %3 (matmul): op is matmul, expected one of add, sub, div");
  EXPECT_EQ(Reason(g, Op("matmul", {Any()}), V(3)),
            "node %3 (matmul): has 2 operands, expected 1");
  EXPECT_TRUE(MatchPattern(g, Op("matmul"), V(3)).matched());  // operands unchecked
  EXPECT_TRUE(MatchPattern(g, AnyOp({Any(), Any()}), V(3)).matched());
}

TEST(PatternTest, TheReasonIsTheDeepestFailure) {
  Graph g = Parse(R"(
%0 f32[4] = input() "x"
%1 f32[4] = neg(%0)
%2 f32[4] = tanh(%1)
%3 f32[4] = exp(%2)
output y = %3
)");
  MatchResult r = MatchPattern(g, Op("exp", {Op("tanh", {Op("relu", {Any()})})}), V(3));
  EXPECT_FALSE(r.matched());
  EXPECT_EQ(r.reason, "node %1 (neg): op is neg, expected relu");
  EXPECT_EQ(r.depth, 2);
  // Alternatives: the one that got furthest speaks.
  Pattern alt = AnyOf({Op("exp", {Op("relu")}), Op("exp", {Op("tanh", {Op("sqrt")})}),
                       Op("log")});
  r = MatchPattern(g, alt, V(3));
  EXPECT_EQ(r.reason, "node %1 (neg): op is neg, expected sqrt");
  EXPECT_EQ(r.depth, 2);
  EXPECT_EQ(alt.ToString(), "anyof(exp(relu(...)), exp(tanh(sqrt(...))), log(...))");
  EXPECT_THAT(alt.RootOps(), ElementsAre("exp", "log"));
  EXPECT_TRUE(MatchPattern(g, AnyOf({Op("log"), Op("exp", {Op("tanh")})}), V(3)).matched());
}

TEST(PatternTest, AttributePredicates) {
  Graph g = Parse(R"(
%0 f32[2,2,3,3] = input() "s"
%1 f32[2,2,3,3] = softmax(%0) {axis=1}
%2 f32[2,2,3,3] = softmax(%0)
%3 f32[2,2,3,3] = scale(%0) {factor=2}
%4 f32[2,2,3,3] = softmax(%0) {axis=3}
output y = %1
)");
  EXPECT_EQ(Reason(g, Op("softmax").Attr("axis", AttrIsLastAxis()), V(1)),
            "node %1 (softmax): attribute axis is 1, expected the last axis (3)");
  // The schema default (-1) and the positive spelling both count.
  EXPECT_TRUE(MatchPattern(g, Op("softmax").Attr("axis", AttrIsLastAxis()), V(2)).matched());
  EXPECT_TRUE(MatchPattern(g, Op("softmax").Attr("axis", AttrIsLastAxis()), V(4)).matched());
  EXPECT_EQ(Reason(g, Op("scale").Attr("factor", AttrEq(1.0)), V(3)),
            "node %3 (scale): attribute factor is 2, expected 1");
  // Numbers compare by value whatever their kind.
  EXPECT_TRUE(MatchPattern(g, Op("scale").Attr("factor", AttrEq(2)), V(3)).matched());
  EXPECT_EQ(Reason(g, Op("scale").Attr("factor", AttrIn({0.5, 4.0})), V(3)),
            "node %3 (scale): attribute factor is 2, expected one of 0.5, 4");
  EXPECT_EQ(Reason(g, Op("scale").Attr("factor", AttrWhere("a negative number",
                                                            [](const AttrValue& v) {
                                                              return v.f() < 0;
                                                            })),
                   V(3)),
            "node %3 (scale): attribute factor is 2, expected a negative number");
  EXPECT_EQ(Reason(g, Op("scale").Attr("perm", AttrEq(1)), V(3)),
            "node %3 (scale): has no attribute perm");
}

TEST(PatternTest, PermutationPredicates) {
  Graph g = Parse(kMatmulGraph);
  EXPECT_TRUE(MatchPattern(g, Op("transpose").Attr("perm", AttrSwapsLastTwoAxes()), V(2))
                  .matched());
  EXPECT_EQ(Reason(g, Op("transpose").Attr("perm", AttrSwapsLastTwoAxes()), V(4)),
            "node %4 (transpose): attribute perm is [1,2,0], expected a swap of the last "
            "two axes ([0,2,1])");
  EXPECT_EQ(Reason(g, Op("transpose").Attr("perm", AttrIsIdentityPermutation()), V(4)),
            "node %4 (transpose): attribute perm is [1,2,0], expected the identity "
            "permutation");
}

TEST(PatternTest, TypePredicates) {
  Graph g = Parse(R"(
%0 f32[4,8] = input() "x"
%1 i32[8] = input() "i"
%2 f32[4,8] = exp(%0)
%3 f32[8] = input() "z"
%4 f32[4,8] = add(%0, %3)
output y = %4
)");
  EXPECT_TRUE(MatchPattern(g, Any().Rank(2).MinRank(1).ShapeIs({4, 8}), V(0)).matched());
  EXPECT_EQ(Reason(g, Any().Rank(3), V(0)), "node %0 (input): shape is [4,8], expected rank 3");
  EXPECT_EQ(Reason(g, Any().MinRank(2), V(1)),
            "node %1 (input): shape is [8], expected rank at least 2");
  EXPECT_EQ(Reason(g, Op("exp").ShapeIs({8, 4}), V(2)),
            "node %2 (exp): shape is [4,8], expected [8,4]");
  EXPECT_EQ(Reason(g, Any().DTypeIn(DTypeSet::Floating()), V(1)),
            "node %1 (input): dtype is i32, expected one of {f32,f64}");
  EXPECT_TRUE(MatchPattern(g, Op("add", {Any("x"), Any()}).SameTypeAs("x"), V(4)).matched());
  EXPECT_EQ(Reason(g, Op("add", {Any(), Any("x")}).SameTypeAs("x"), V(4)),
            "node %4 (add): type is f32[4,8], expected f32[8], the type of capture 'x' (%3)");
}

TEST(PatternTest, CommutativeOperandsTryBothOrders) {
  Graph g = Parse(R"(
%0 f32[3] = input() "x"
%1 f32[3] = fill() {dtype=f32, shape=[3], value=1}
%2 f32[3] = mul(%1, %0)
%3 f32[3] = fill() {dtype=f32, shape=[3], value=2}
%4 f32[3] = mul(%3, %0)
output y = %2
)");
  Pattern ordered = Op("mul", {Any("x"), ConstScalar(ScalarIs(1)).Capture("one")});
  EXPECT_EQ(Reason(g, ordered, V(2)),
            "node %0 (input): op is input, expected a constant scalar (constant or fill, or "
            "a broadcast_to or reshape of one)");
  MatchResult r = MatchPattern(g, ordered.Commutative(), V(2));
  ASSERT_TRUE(r.matched()) << r.reason;
  EXPECT_EQ(r.match.value("x"), V(0));
  EXPECT_EQ(r.match.value("one"), V(1));
  EXPECT_EQ(r.match.scalar("one"), 1.0);
  // Both orders fail as deep; the swapped one found a constant of the wrong
  // value, which says more than a wrong op.
  EXPECT_EQ(Reason(g, ordered.Commutative(), V(4)), "node %3 (fill): value is 2, expected 1");
}

TEST(PatternTest, RepeatedCapturesMeanTheSameValue) {
  Graph g = Parse(R"(
%0 f32[3] = input() "x"
%1 f32[3] = input() "z"
%2 f32[3] = exp(%0)
%3 f32[3] = mul(%2, %0)
%4 f32[3] = mul(%2, %1)
output y = %3
output w = %4
)");
  // x * exp(x), written either way round.
  Pattern p = Op("mul", {Any("x"), Op("exp", {Any("x")})}).Commutative();
  MatchResult r = MatchPattern(g, p, V(3));
  ASSERT_TRUE(r.matched()) << r.reason;
  EXPECT_EQ(r.match.value("x"), V(0));
  // Swapped, x is %1 and exp's operand %0 is not it.
  EXPECT_EQ(Reason(g, p, V(4)), "node %0 (input): expected the value of capture 'x' (%1)");
  // A seed binds captures before the match starts.
  Match seed;
  seed.Bind("x", V(1));
  EXPECT_EQ(Reason(g, Op("exp", {Any("x")}), V(2), &seed),
            "node %0 (input): expected the value of capture 'x' (%1)");
}

TEST(PatternTest, SingleUse) {
  Graph g = Parse(R"(
%0 f32[3] = input() "x"
%1 f32[3] = exp(%0)
%2 f32[3] = neg(%1)
%3 f32[3] = tanh(%1)
%4 f32[3] = relu(%2)
%5 f32[3] = sqrt(%4)
output y = %3
output z = %4
output w = %5
)");
  EXPECT_EQ(Reason(g, Op("exp").SingleUse(), V(1)),
            "node %1 (exp): has 2 uses (%2, %3), expected a single use");
  EXPECT_EQ(Reason(g, Op("relu").SingleUse(), V(4)),
            "node %4 (relu): has 2 uses (%5, output 'z'), expected a single use");
  EXPECT_TRUE(MatchPattern(g, Op("neg").SingleUse(), V(2)).matched());
  Graph unused = Parse("%0 f32[3] = input() \"x\"\n%1 f32[3] = exp(%0)\n");
  EXPECT_EQ(Reason(unused, Op("exp").SingleUse(), V(1)),
            "node %1 (exp): has no uses, expected a single use");
}

TEST(PatternTest, ConstantScalars) {
  const double inf = std::numeric_limits<double>::infinity();
  Graph g = Parse(R"(
%0 f32[2,3] = input() "x"
%1 f32[] = fill() {dtype=f32, shape=[], value=-inf}
%2 f32[2,3] = broadcast_to(%1) {shape=[2,3]}
%3 f32[2,3] = fill() {dtype=f32, shape=[2,3], value=-1}
%4 f32[3] = constant() {value=tensor<f32[3] {1, 1, 2}>}
%5 f32[1] = constant() {value=tensor<f32[1] {-20000}>}
%6 f32[1,1] = reshape(%5) {shape=[1,1]}
%7 f32[2,3] = exp(%0)
output y = %7
)");
  ScalarPredicate very_negative = ScalarWhere(
      "-inf or below -1e4", [](double v) { return std::isinf(v) || v < -1e4; });
  MatchResult r = MatchPattern(g, ConstScalar(very_negative).Capture("fill"), V(2));
  ASSERT_TRUE(r.matched()) << r.reason;
  EXPECT_EQ(r.match.scalar("fill"), -inf);
  EXPECT_TRUE(MatchPattern(g, ConstScalar(very_negative), V(6)).matched());
  EXPECT_TRUE(MatchPattern(g, ConstScalar(), V(3)).matched());
  EXPECT_EQ(Reason(g, ConstScalar(very_negative), V(3)),
            "node %3 (fill): value is -1, expected -inf or below -1e4");
  EXPECT_EQ(Reason(g, ConstScalar(), V(4)),
            "node %4 (constant): tensor f32[3] {1, 1, 2} holds several values, expected one "
            "value repeated");
  EXPECT_EQ(Reason(g, ConstScalar(ScalarIs(0)), V(7)),
            "node %7 (exp): op is exp, expected a constant scalar (constant or fill, or a "
            "broadcast_to or reshape of one)");
  EXPECT_EQ(ConstScalar(ScalarIs(0)).ToString(), "const(0)");
}

TEST(PatternTest, OutputsOfMultiOutputNodes) {
  Graph g = Parse(R"(
%0 f32[2,4] = input() "x"
%1 f32[4] = parameter() {init="ones", stddev=0} "g"
%2 f32[4] = parameter() {init="zeros", stddev=0} "b"
%3 (f32[2,4], f32[2], f32[2]) = layer_norm(%0, %1, %2) {epsilon=1e-05}
output y = %3
)");
  EXPECT_TRUE(MatchPattern(g, Op("layer_norm").Output(1), V(3, 1)).matched());
  EXPECT_TRUE(MatchPattern(g, Op("layer_norm").Output(-1), V(3, 2)).matched());
  EXPECT_EQ(Reason(g, Op("layer_norm"), V(3, 2)),
            "node %3:2 (layer_norm): is output 2 of the node, expected output 0");
  EXPECT_EQ(Reason(g, Op("layer_norm").Output(1).Rank(2), V(3, 1)),
            "node %3:1 (layer_norm): shape is [2], expected rank 2");
}

TEST(PatternTest, RolesAndOriginsAnchorABackwardMatchOnAForwardOne) {
  Graph g = Parse(R"(
%0 f32[2,3] = input() "s"
%1 f32[2,3] = softmax(%0)
%2 f32[2,3] = exp(%0)
%3 f32[2,3] = input() "dy"
%4 f32[2,3] = mul(%3, %1) !backward <%1
%5 f32[2,3] = mul(%3, %2) !backward <%2
output y = %4
output z = %5
)");
  MatchResult fwd = MatchPattern(g, Op("softmax", {Any("s")}).Capture("p"), V(1));
  ASSERT_TRUE(fwd.matched());
  Pattern bwd = Op("mul", {Any("dy"), Any("p")}).RoleIs(Role::kBackward).OriginIs("p");
  MatchResult r = MatchPattern(g, bwd, V(4), &fwd.match);
  ASSERT_TRUE(r.matched()) << r.reason;
  EXPECT_EQ(r.match.value("s"), V(0));  // the seed's captures come along
  EXPECT_EQ(r.match.value("dy"), V(3));
  Pattern by_origin = Op("mul", {Any("dy"), Any()}).OriginIs("p");
  EXPECT_EQ(Reason(g, by_origin, V(5), &fwd.match),
            "node %5 (mul): origin is %2, expected %1, the node of capture 'p'");
  EXPECT_EQ(Reason(g, Op("softmax").RoleIs(Role::kBackward), V(1)),
            "node %1 (softmax): role is forward, expected backward");
  EXPECT_EQ(Reason(g, Op("softmax").OriginIs("q"), V(1)),
            "node %1 (softmax): expected the origin to be the node of capture 'q', which "
            "is not bound");
}

TEST(PatternTest, CustomConditions) {
  Graph g = Parse(R"(
%0 f32[2,3] = input() "x"
%1 f32[2,3] = exp(%0) @block0/attn
%2 f32[2,3] = tanh(%1)
output y = %2
)");
  auto in_attn = [](const CheckContext& c) { return c.node.scope() == "block0/attn"; };
  EXPECT_TRUE(MatchPattern(g, Op("exp").Where("a node in block0/attn", in_attn), V(1)).matched());
  EXPECT_EQ(Reason(g, Op("tanh").Where("a node in block0/attn", in_attn), V(2)),
            "node %2 (tanh): expected a node in block0/attn");
  EXPECT_EQ(Reason(g, Op("tanh").Check([](const CheckContext& c) -> std::optional<std::string> {
              return absl::StrCat("scope is '", c.node.scope(), "', expected a scope");
            }),
                   V(2)),
            "node %2 (tanh): scope is '', expected a scope");
  // Checked after the operands: may read their captures, and fails deeper.
  Pattern same_scope =
      Op("tanh", {Op("exp").Capture("e")})
          .WhereMatched("the scope of its operand", [](const CheckContext& c) {
            return c.node.scope() == c.captures.node("e").scope();
          });
  MatchResult r = MatchPattern(g, same_scope, V(2));
  EXPECT_EQ(r.reason, "node %2 (tanh): expected the scope of its operand");
  EXPECT_EQ(r.depth, 2);
  EXPECT_EQ(Reason(g, Op("tanh", {Any()}).CheckMatched([](const CheckContext&) {
              return std::optional<std::string>("no reason at all");
            }),
                   V(2)),
            "node %2 (tanh): no reason at all");
}

TEST(PatternTest, AllOperands) {
  Graph g = Parse(R"(
%0 f32[2] = input() "x"
%1 f32[2] = fill() {dtype=f32, shape=[2], value=1}
%2 f32[2] = constant() {value=tensor<f32[2] {1, 2}>}
%3 f32[6] = concat(%1, %2, %1) {axis=0}
%4 f32[6] = concat(%1, %0, %2) {axis=0}
output y = %3
output z = %4
)");
  Pattern p = Op("concat").AllOperands(OpIn({"constant", "fill"}));
  EXPECT_TRUE(MatchPattern(g, p, V(3)).matched());
  EXPECT_EQ(Reason(g, p, V(4)), "node %0 (input): op is input, expected constant or fill");
  EXPECT_EQ(p.ToString(), "concat({constant|fill}(...)...)");
}

TEST(PatternTest, LookThroughLayoutChainsThatCancel) {
  Graph g = Parse(R"(
%0 f32[2,4,6] = input() "x"
%1 f32[2,4,6] = softmax(%0)
%2 f32[2,4,2,3] = reshape(%1) {shape=[2,4,2,3]}
%3 f32[2,2,4,3] = transpose(%2) {perm=[0,2,1,3]}
%4 f32[2,4,2,3] = transpose(%3) {perm=[0,2,1,3]}
%5 f32[2,4,6] = reshape(%4) {shape=[2,4,6]}
%6 f32[2,6,4] = transpose(%1) {perm=[0,2,1]}
%7 f32[2,4,6] = reshape(%6) {shape=[2,4,6]}
%8 f32[2,4,6] = tanh(%5)
%9 f32[2,4,6] = tanh(%7)
output y = %8
output z = %9
)");
  Pattern p = Op("tanh", {Op("softmax").Capture("p").Through(LookThrough::LayoutChains())});
  MatchResult r = MatchPattern(g, p, V(8));
  ASSERT_TRUE(r.matched()) << r.reason;
  EXPECT_EQ(r.match.value("p"), V(1));
  // A transpose followed by a reshape reorders the elements: no look-through.
  EXPECT_EQ(Reason(g, p, V(9)), "node %7 (reshape): op is reshape, expected softmax");
  EXPECT_THAT(LookThrough::LayoutChains().Equivalents(g, V(5)), ElementsAre(V(1)));
  EXPECT_THAT(LookThrough::LayoutChains().Equivalents(g, V(4)), ElementsAre(V(2)));
  EXPECT_TRUE(LookThrough::LayoutChains().Equivalents(g, V(7)).empty());
  // Captures compare through the chain as well.
  Pattern same = Op("tanh", {Any("p").Through(LookThrough::LayoutChains())});
  Match seed;
  seed.Bind("p", V(1));
  EXPECT_TRUE(MatchPattern(g, same, V(8), &seed).matched());
}

TEST(PatternTest, LookThroughIdentityOps) {
  Graph g = Parse(R"(
%0 f32[3] = input() "x"
%1 f32[3] = exp(%0)
%2 f32[3] = scale(%1) {factor=1}
%3 f32[3] = cast(%2) {dtype=f32}
%4 f32[3] = scale(%1) {factor=2}
%5 f32[3] = relu(%1)
output y = %3
output z = %4
output w = %5
)");
  Pattern exp = Op("exp").Through(LookThrough({"scale", "cast"}));
  EXPECT_TRUE(MatchPattern(g, exp, V(3)).matched());
  EXPECT_EQ(Reason(g, exp, V(4)), "node %4 (scale): op is scale, expected exp");
  LookThrough custom({});
  custom.Add("relu", [](const Graph&, const Node&) { return true; });
  EXPECT_TRUE(MatchPattern(g, Op("exp").Through(custom), V(5)).matched());
  EXPECT_EQ(LookThrough({"reshape", "transpose", "scale"}).ToString(),
            "reshape/transpose chains, scale");
}

TEST(LayoutTest, IdentityChains) {
  using S = LayoutStep;
  // Head split, head transpose, and back.
  EXPECT_TRUE(IsIdentityLayoutChain(
      {2, 4, 6}, {S::Reshape({2, 4, 2, 3}), S::Transpose({0, 2, 1, 3}),
                  S::Transpose({0, 2, 1, 3}), S::Reshape({2, 4, 6})}));
  EXPECT_FALSE(IsIdentityLayoutChain(
      {2, 4, 6}, {S::Reshape({2, 4, 2, 3}), S::Transpose({0, 2, 1, 3}), S::Reshape({2, 4, 6})}));
  // Splits and merges that cross the original dims.
  EXPECT_TRUE(IsIdentityLayoutChain({4, 6}, {S::Reshape({2, 12}), S::Reshape({8, 3}),
                                             S::Reshape({4, 6})}));
  EXPECT_TRUE(IsIdentityLayoutChain({6, 4}, {S::Reshape({2, 3, 4}), S::Transpose({1, 0, 2}),
                                             S::Transpose({1, 0, 2}), S::Reshape({6, 4})}));
  EXPECT_FALSE(IsIdentityLayoutChain({2, 3}, {S::Reshape({3, 2}), S::Transpose({1, 0})}));
  // A transpose that only moves unit dims keeps the element order.
  EXPECT_TRUE(IsIdentityLayoutChain({2, 3}, {S::Reshape({2, 1, 3, 1}),
                                             S::Transpose({1, 0, 3, 2}), S::Reshape({2, 3})}));
  EXPECT_FALSE(IsIdentityLayoutChain({3, 3}, {S::Transpose({1, 0})}));
  EXPECT_TRUE(IsIdentityLayoutChain({3, 3}, {}));
  EXPECT_TRUE(IsIdentityLayoutChain({}, {S::Reshape({1, 1}), S::Reshape({})}));
}

TEST(LayoutTest, Permutations) {
  EXPECT_THAT(ComposePermutations({1, 0, 2}, {0, 2, 1}), ElementsAre(1, 2, 0));
  EXPECT_TRUE(IsIdentityPermutation(ComposePermutations({1, 2, 0}, {2, 0, 1})));
  EXPECT_THAT(SwapLastTwoAxes(4), ElementsAre(0, 1, 3, 2));
}

}  // namespace
}  // namespace subquad::pattern
