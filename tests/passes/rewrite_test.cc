// The rewrite driver (passes/pattern/rewrite.h), and --explain on the
// pattern passes built with it (simplify, constant-fold).
#include "passes/pattern/rewrite.h"

#include <string>
#include <vector>

#include "core/op_schema.h"
#include "core/parser.h"
#include "core/printer.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "passes/constant_fold.h"
#include "passes/pass_manager.h"
#include "passes/simplify.h"

namespace subquad::pattern {
namespace {

using ::subquad::testing::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::IsEmpty;
using ::testing::Pair;

Graph Parse(absl::string_view text) {
  absl::StatusOr<Graph> g = ParseGraph(text);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *std::move(g) : Graph();
}

RewritePattern NegNeg() {
  return RewritePattern("neg-neg", Op("neg", {Op("neg", {Any("x")})}),
                        [](Rewriter& rw, const Match& m) {
                          return rw.Replace(m.root(), m.value("x"));
                        });
}

TEST(RewriteTest, AppliesToAFixpointAndSweepsWhatItKilled) {
  Graph g = Parse(R"(
%0 f32[3] = input() "x"
%1 f32[3] = parameter() {init="ones", stddev=0} "w"
%2 f32[3] = neg(%0)
%3 f32[3] = neg(%2)
%4 f32[3] = neg(%3)
%5 f32[3] = neg(%4)
%6 f32[3] = exp(%0)
%7 f32[3] = mul(%5, %1)
output y = %7
)");
  PassContext ctx;
  GreedyOptions o;
  o.pass_name = "test";
  ASSERT_OK_AND_ASSIGN(GreedyResult r, ApplyPatternsGreedily(g, {NegNeg()}, &ctx, o));
  EXPECT_EQ(r.rewrites, 2);
  EXPECT_EQ(r.nodes_removed, 4);
  EXPECT_EQ(r.iterations, 2);  // one that rewrites, one that finds nothing
  EXPECT_THAT(r.applied, ElementsAre(Pair("neg-neg", 2)));
  // %6 was dead before: the driver removes only what its rewrites killed.
  EXPECT_EQ(PrintGraph(g),
            "%0 f32[3] = input() \"x\"\n"
            "%1 f32[3] = parameter() {init=\"ones\", stddev=0} \"w\"\n"
            "%6 f32[3] = exp(%0)\n"
            "%7 f32[3] = mul(%0, %1)\n"
            "output y = %7\n");
  EXPECT_THAT(ctx.statistics().at("test"),
              ElementsAre(Pair("neg-neg applied", 2), Pair("nodes removed", 4)));
  EXPECT_THAT(ctx.explanations(), IsEmpty());  // explaining is off
}

TEST(RewriteTest, FailsLoudlyWhenPatternsDoNotConverge) {
  // neg(x) -> scale(x, -1) and back, forever.
  RewritePattern to_scale("to-scale", Op("neg", {Any("x")}), [](Rewriter& rw, const Match& m) {
    return rw.Replace(m.root(), rw.builder().Add("scale", {m.value("x")}, {{"factor", -1.0}}));
  });
  RewritePattern to_neg("to-neg", Op("scale", {Any("x")}).Attr("factor", AttrEq(-1.0)),
                        [](Rewriter& rw, const Match& m) {
                          return rw.Replace(m.root(), rw.builder().Add("neg", {m.value("x")}));
                        });
  Graph g = Parse(R"(
%0 f32[3] = input() "x"
%1 f32[3] = neg(%0)
%2 f32[3] = exp(%0)
%3 f32[3] = neg(%2)
output y = %1
output z = %3
)");
  GreedyOptions o;
  o.max_iterations = 3;
  o.pass_name = "ping-pong";
  EXPECT_THAT(ApplyPatternsGreedily(g, {to_scale, to_neg}, nullptr, o),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       Eq("ping-pong: pattern rewriting did not converge in 3 iterations; "
                          "still firing in the last one: to-scale (2 times)")));
}

TEST(RewriteTest, HigherBenefitFirst) {
  auto replace_with = [](std::string op) {
    return [op](Rewriter& rw, const Match& m) {
      return rw.Replace(m.root(), rw.builder().Add(op, {m.value("x")}));
    };
  };
  Graph g = Parse("%0 f32[3] = input() \"x\"\n%1 f32[3] = exp(%0)\noutput y = %1\n");
  std::vector<RewritePattern> patterns = {
      RewritePattern("to-tanh", Op("exp", {Any("x")}), replace_with("tanh")),
      RewritePattern("to-relu", Op("exp", {Any("x")}), replace_with("relu")).set_benefit(5)};
  ASSERT_OK_AND_ASSIGN(GreedyResult r, ApplyPatternsGreedily(g, patterns, nullptr));
  EXPECT_THAT(r.applied, ElementsAre(Pair("to-relu", 1)));
  EXPECT_EQ(PrintGraph(g), "%0 f32[3] = input() \"x\"\n%2 f32[3] = relu(%0)\noutput y = %2\n");
}

TEST(RewriteTest, NewNodesTakeTheAnchorsScopeRoleAndOrigin) {
  Graph g = Parse(R"(
%0 f32[3] = input() "x"
%1 f32[3] = exp(%0) @layer
%2 f32[3] = neg(%1) !backward <%1 @layer/grad
%3 f32[3] = neg(%2) !backward <%1 @layer/grad
output y = %3
)");
  RewritePattern to_relu("to-relu", Op("neg", {Op("neg", {Any("x")})}),
                         [](Rewriter& rw, const Match& m) {
                           return rw.Replace(m.root(), rw.builder().Add("relu", {m.value("x")}));
                         });
  ASSERT_OK(ApplyPatternsGreedily(g, {to_relu}, nullptr).status());
  const Node* relu = g.FindNode("layer/grad/relu");
  ASSERT_NE(relu, nullptr);
  EXPECT_EQ(relu->role(), Role::kBackward);
  EXPECT_EQ(relu->origin(), 1);
  EXPECT_EQ(relu->scope(), "layer/grad");
}

TEST(RewriteTest, RewriteErrorsNameThePatternAndTheAnchor) {
  Graph g = Parse(R"(
%0 f32[2,3] = input() "x"
%1 f32[6] = reshape(%0) {shape=[6]}
%2 f32[6] = exp(%1)
output y = %2
)");
  RewritePattern bad_type("bad-type", Op("reshape", {Any("x")}),
                          [](Rewriter& rw, const Match& m) {
                            return rw.Replace(m.root(), m.value("x"));
                          });
  EXPECT_THAT(ApplyPatternsGreedily(g, {bad_type}, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("pattern 'bad-type' at node %1 (reshape): Replace: replacement node "
                          "%0 (input) has type f32[2,3], but node %1 (reshape) has type f32[6]")));
  RewritePattern bad_build("bad-build", Op("exp", {Any("x")}), [](Rewriter& rw, const Match& m) {
    return rw.Replace(m.root(), rw.builder().Add("matmul", {m.value("x"), m.value("x")}));
  });
  EXPECT_THAT(ApplyPatternsGreedily(g, {bad_build}, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::StartsWith("pattern 'bad-build' at node %2 (exp): Replace: "
                                             "replacement %-1 for %2 is not a value of the "
                                             "graph (building it failed: matmul: building node "
                                             "'matmul': ")));
  RewritePattern idle("idle", Op("exp"), [](Rewriter&, const Match&) { return absl::OkStatus(); });
  EXPECT_THAT(ApplyPatternsGreedily(g, {idle}, nullptr),
              StatusIs(absl::StatusCode::kInternal,
                       Eq("pattern 'idle' matched at node %2 (exp) but its rewrite neither "
                          "replaced a value nor declined")));
}

TEST(RewriteTest, DeclinedRewritesAreExplainedAndLeaveNothingBehind) {
  Graph g = Parse("%0 f32[3] = input() \"x\"\n%1 f32[3] = exp(%0)\noutput y = %1\n");
  const std::string before = PrintGraph(g);
  RewritePattern picky("picky", Op("exp", {Any("x")}), [](Rewriter& rw, const Match& m) {
    rw.builder().Add("tanh", {m.value("x")});  // built, then thought better of
    return rw.Decline("x is not known to be small");
  });
  PassContext ctx;
  ctx.set_explain(true);
  GreedyOptions o;
  o.pass_name = "test";
  ASSERT_OK_AND_ASSIGN(GreedyResult r, ApplyPatternsGreedily(g, {picky}, &ctx, o));
  EXPECT_EQ(r.rewrites, 0);
  EXPECT_EQ(PrintGraph(g), before);
  EXPECT_THAT(ctx.explanations(),
              ElementsAre("test: pattern 'picky' matched at node %1 (exp) but was declined: "
                          "x is not known to be small"));
}

TEST(RewriteTest, ExplainsAppliedRewritesAndFinalMisses) {
  Graph g = Parse(R"(
%0 f32[3] = input() "x"
%1 f32[3] = neg(%0)
%2 f32[3] = neg(%1)
%3 f32[3] = neg(%2)
output y = %3
)");
  PassContext ctx;
  ctx.set_explain(true);
  GreedyOptions o;
  o.pass_name = "test";
  ASSERT_OK(ApplyPatternsGreedily(g, {NegNeg()}, &ctx, o).status());
  // The misses come from the final sweep, on the final graph.
  EXPECT_THAT(ctx.explanations(),
              ElementsAre("test: pattern 'neg-neg' applied at node %2 (neg)",
                          "test: pattern 'neg-neg' did not match at node %3 (neg): node %0 "
                          "(input): op is input, expected neg"));
}

TEST(RewriteTest, PatternPassesRegisterWithAnIterationBound) {
  ASSERT_OK(PassRegistry::Global().Register(PatternPassInfo(
      "test-neg-neg", "Removes double negations.",
      [](const PassOptions&) -> absl::StatusOr<std::vector<RewritePattern>> {
        return std::vector<RewritePattern>{NegNeg()};
      })));
  const PassInfo* info = PassRegistry::Global().Find("test-neg-neg");
  ASSERT_NE(info, nullptr);
  ASSERT_NE(info->FindOption("max-iterations"), nullptr);
  Graph g = Parse("%0 f32[3] = input() \"x\"\n%1 f32[3] = neg(%0)\n%2 f32[3] = neg(%1)\n"
                  "output y = %2\n");
  ASSERT_OK_AND_ASSIGN(PassManager pm, PassManager::Create("test-neg-neg{max-iterations=2}"));
  PassContext ctx;
  ASSERT_OK_AND_ASSIGN(bool changed, pm.Run(g, ctx));
  EXPECT_TRUE(changed);
  EXPECT_EQ(PrintGraph(g), "%0 f32[3] = input() \"x\"\noutput y = %0\n");
  ASSERT_OK_AND_ASSIGN(changed, pm.Run(g, ctx));
  EXPECT_FALSE(changed);
}

// ---- --explain on the standard pattern passes ----------------------------------

std::vector<std::string> Explain(Graph& g, absl::string_view pipeline) {
  absl::StatusOr<PassManager> pm = PassManager::Create(pipeline);
  EXPECT_TRUE(pm.ok()) << pm.status();
  PassContext ctx;
  ctx.set_explain(true);
  absl::Status s = pm->Run(g, ctx).status();
  EXPECT_TRUE(s.ok()) << s;
  return ctx.explanations();
}

TEST(ExplainTest, SimplifySaysWhyATransposeDidNotFoldIntoMatmul) {
  Graph g = Parse(R"(
%0 f32[3,2,4] = input() "x"
%1 f32[2,4,5] = input() "y"
%2 f32[2,3,4] = transpose(%0) {perm=[1,0,2]}
%3 f32[2,3,5] = matmul(%2, %1)
%4 f32[2,3,5] = neg(%3)
%5 f32[2,3,5] = neg(%4)
output z = %5
)");
  const std::string before_matmul = PrintNode(g, *g.node(3));
  std::vector<std::string> lines = Explain(g, "simplify");
  EXPECT_EQ(PrintNode(g, *g.node(3)), before_matmul);  // not folded
  EXPECT_THAT(lines, Contains("simplify: pattern 'matmul-transpose-a' did not match at node "
                              "%3 (matmul): node %2 (transpose): attribute perm is [1,0,2], "
                              "expected a swap of the last two axes ([0,2,1])"));
  EXPECT_THAT(lines, Contains("simplify: pattern 'matmul-transpose-b' did not match at node "
                              "%3 (matmul): node %1 (input): op is input, expected transpose"));
  EXPECT_THAT(lines, Contains("simplify: pattern 'neg-neg' applied at node %5 (neg)"));
  EXPECT_THAT(lines, Contains("simplify: pattern 'cancel-layout-chain' did not match at node "
                              "%2 (transpose): expected a reshape/transpose chain below it "
                              "that gives back an earlier value"));
}

TEST(ExplainTest, ConstantFoldExplainsOnlyNodesWithConstantOperands) {
  Graph g = Parse(R"(
%0 f32[2,3] = input() "x"
%1 f32[2,3] = constant() {value=tensor<f32[2,3] {1, 2, 3, 4, 5, 6}>}
%2 f32[2,3] = exp(%1)
%3 f32[2,3] = mul(%0, %2)
output y = %3
)");
  EXPECT_THAT(Explain(g, "constant-fold{max-elements=4}"),
              ElementsAre("constant-fold: pattern 'fold' did not match at node %2 (exp): "
                          "result has 6 elements, expected at most 4 (max-elements)"));
}

// Ops the fold must leave alone even when their operands are constant.
TEST(ConstantFoldTest, NeverFoldsInPlaceUpdatesOrOpsWithoutKernels) {
  auto same_type = [](const ShapeContext& c) -> absl::StatusOr<std::vector<TensorType>> {
    return std::vector<TensorType>{c.input(0)};
  };
  auto copy = [](const KernelContext& k) -> absl::Status {
    std::copy_n(k.inputs[0].data<float>(), k.inputs[0].num_elements(),
                k.outputs[0].data<float>());
    return absl::OkStatus();
  };
  OpSchema in_place;
  in_place.name = "test_update_in_place";
  in_place.inputs = {ArgDef{"x", DTypeSet::All(), true, "the updated tensor"}};
  in_place.outputs = {"y"};
  in_place.shape_fn = same_type;
  in_place.kernels[DType::kF32] = copy;
  in_place.mutates_inputs = {0};
  OpSchema no_kernel;
  no_kernel.name = "test_no_kernel";
  no_kernel.inputs = {ArgDef{"x", DTypeSet::All(), true, "any tensor"}};
  no_kernel.outputs = {"y"};
  no_kernel.shape_fn = same_type;
  ASSERT_OK(OpRegistry::Global().Register(std::move(in_place)));
  ASSERT_OK(OpRegistry::Global().Register(std::move(no_kernel)));

  Graph g = Parse(R"(
%0 f32[2] = fill() {dtype=f32, shape=[2], value=1}
%1 f32[2] = test_update_in_place(%0)
%2 f32[2] = test_no_kernel(%0)
output y = %1
output z = %2
)");
  const std::string before = PrintGraph(g);
  PassContext ctx;
  ctx.set_explain(true);
  GreedyOptions o;
  o.pass_name = "constant-fold";
  ASSERT_OK_AND_ASSIGN(GreedyResult r,
                       ApplyPatternsGreedily(g, {ConstantFoldPattern()}, &ctx, o));
  EXPECT_EQ(r.rewrites, 0);
  EXPECT_EQ(PrintGraph(g), before);
  EXPECT_THAT(ctx.explanations(),
              ElementsAre("constant-fold: pattern 'fold' did not match at node %1 "
                          "(test_update_in_place): updates its inputs in place, expected a "
                          "pure op",
                          "constant-fold: pattern 'fold' did not match at node %2 "
                          "(test_no_kernel): op has no kernel for f32"));
}

TEST(ConstantFoldTest, KernelErrorsAreLeftForTheRuntime) {
  Graph g = Parse(R"(
%0 f32[3,2] = constant() {value=tensor<f32[3,2] {1, 2, 3, 4, 5, 6}>}
%1 i32[2] = constant() {value=tensor<i32[2] {0, 7}>}
%2 f32[2,2] = gather(%0, %1)
output y = %2
)");
  const std::string before = PrintGraph(g);
  std::vector<std::string> lines = Explain(g, "constant-fold");
  EXPECT_EQ(PrintGraph(g), before);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], ::testing::StartsWith("constant-fold: pattern 'fold' matched at node "
                                              "%2 (gather) but was declined: node 'gather' "
                                              "(gather): "));
}

TEST(ConstantFoldTest, EvaluatesOneNode) {
  Graph g = Parse(R"(
%0 f64[2] = constant() {value=tensor<f64[2] {1, 4}>}
%1 f64[2] = fill() {dtype=f64, shape=[2], value=2}
%2 f64[2] = div(%0, %1)
%3 f64[2] = input() "x"
%4 f64[2] = add(%3, %1)
output y = %2
output z = %4
)");
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out, EvaluateConstantNode(g, *g.node(2)));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_THAT(out[0].span<double>(), ElementsAre(0.5, 2.0));
  EXPECT_THAT(EvaluateConstantNode(g, *g.node(4)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("node 'add' (add): operand 0 (%3) is node 'x' (input), not a "
                          "constant or fill")));
}

}  // namespace
}  // namespace subquad::pattern
