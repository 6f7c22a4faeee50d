#include "core/verifier.h"

#include "core/builder.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/ops.h"

namespace subquad {
namespace {

using ::subquad::testing::StatusIs;
using ::testing::Eq;

// x -> exp -> add(x, exp) ; output "y"
struct Small {
  Graph g;
  Value x, e, y;
  Small() {
    GraphBuilder b(&g);
    x = b.Input("x", DType::kF32, {2, 3});
    e = ops::Exp(b, x);
    y = ops::Add(b, x, e);
    b.Output("y", y);
  }
};

absl::StatusCode kFP = absl::StatusCode::kFailedPrecondition;

TEST(VerifierTest, AcceptsBuiltGraph) {
  Small s;
  EXPECT_OK(Verify(s.g));
}

TEST(VerifierTest, RejectsUndefinedInput) {
  Small s;
  s.g.mutable_node(s.y.node)->set_input(1, Value{42, 0});
  EXPECT_THAT(Verify(s.g), StatusIs(kFP, Eq("node 'add' (add) %2: input 1: "
                                            "%42 names no live node")));
}

TEST(VerifierTest, RejectsMissingOutputIndex) {
  Small s;
  s.g.mutable_node(s.y.node)->set_input(1, Value{s.e.node, 3});
  EXPECT_THAT(Verify(s.g), StatusIs(kFP, Eq("node 'add' (add) %2: input 1: "
                                            "%1:3: node 'exp' (exp) has 1 output(s)")));
}

TEST(VerifierTest, RejectsCycle) {
  Small s;
  s.g.mutable_node(s.e.node)->set_input(0, s.y);
  EXPECT_THAT(Verify(s.g),
              StatusIs(kFP, Eq("the graph has a cycle through node 'exp' (exp)")));
}

TEST(VerifierTest, RejectsTypeThatContradictsShapeRule) {
  Small s;
  Graph& g = s.g;
  // Rewire add to a differently shaped operand: its recorded type is stale.
  GraphBuilder b(&g);
  Value z = b.Input("z", DType::kF32, {4, 2, 3});
  g.mutable_node(s.y.node)->set_input(0, z);
  EXPECT_THAT(Verify(g), StatusIs(kFP, Eq("node 'add' (add) %2: output 0 type: "
                                          "recorded f32[2,3], op rule infers f32[4,2,3]")));
}

TEST(VerifierTest, RejectsBadAttributes) {
  Small s;
  s.g.mutable_node(s.e.node)->set_attr("axis", int64_t{1});
  EXPECT_THAT(Verify(s.g), StatusIs(kFP, Eq("node 'exp' (exp) %1: op rule: unknown "
                                            "attribute 'axis' (exp has: none)")));
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {2});
  Value y = ops::Scale(b, x, 2.0);
  g.mutable_node(y.node)->set_attr("factor", "two");
  EXPECT_THAT(Verify(g), StatusIs(kFP, Eq("node 'scale' (scale) %1: op rule: attribute "
                                          "'factor' must be float, got string \"two\"")));
}

TEST(VerifierTest, RejectsUnknownOpDuplicateNamesAndBadOrigin) {
  {
    Graph g;
    NodeSpec spec;
    spec.name = "mystery";
    spec.op = "no_such_op";
    g.AddNode(spec);
    EXPECT_THAT(Verify(g), StatusIs(kFP, Eq("node 'mystery' (no_such_op) %0: op: "
                                            "no op with this name is registered")));
  }
  {
    Small s;
    NodeSpec spec;
    spec.name = "x";  // Graph::AddNode does not check; the verifier does.
    spec.op = "input";
    spec.attrs = {{"dtype", DType::kF32}, {"shape", Shape{1}}};
    spec.output_types = {{DType::kF32, Shape{1}}};
    s.g.AddNode(spec);
    EXPECT_THAT(Verify(s.g), StatusIs(kFP, Eq("node 'x' (input) %3: name: not unique")));
  }
  {
    Small s;
    s.g.mutable_node(s.y.node)->set_origin(77);
    EXPECT_THAT(Verify(s.g),
                StatusIs(kFP, Eq("node 'add' (add) %2: origin: %77 was never a node of "
                                 "this graph")));
  }
}

TEST(VerifierTest, RejectsDanglingGraphOutput) {
  Small s;
  s.g.SetOutput("bad", Value{s.y.node, 2});
  EXPECT_THAT(Verify(s.g), StatusIs(kFP, Eq("graph output 'bad' names undefined value %2:2")));
}

}  // namespace
}  // namespace subquad
