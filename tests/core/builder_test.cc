#include "core/builder.h"

#include <cmath>

#include "core/graph.h"
#include "core/printer.h"
#include "core/testing/status_matchers.h"
#include "core/verifier.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/ops.h"

namespace subquad {
namespace {

using ::subquad::testing::IsOk;
using ::subquad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;

TEST(GraphBuilderTest, InfersTypesAndNamesNodesByScope) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {4, 8});
  Value w;
  Value y;
  {
    auto s = b.Scope("block0");
    auto a = b.Scope("attn");
    w = b.Parameter("w", DType::kF32, {8, 16});
    y = ops::MatMul(b, x, w);
    y = ops::MatMul(b, y, w, false, true);
  }
  ASSERT_OK(b.status());
  EXPECT_EQ(b.type(y).ToString(), "f32[4,8]");
  EXPECT_EQ(g.node(w.node)->name(), "block0/attn/w");
  EXPECT_EQ(g.node(y.node)->name(), "block0/attn/matmul_1");
  EXPECT_EQ(g.node(y.node)->scope(), "block0/attn");
  EXPECT_EQ(g.node(x.node)->scope(), "");
  EXPECT_EQ(b.current_scope(), "");
  EXPECT_OK(Verify(g));
}

TEST(GraphBuilderTest, AddNodeReturnsErrorNamingOpNodeAndShapes) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {4, 3});
  Value y = b.Input("y", DType::kF32, {5});
  auto s = b.Scope("blk");
  EXPECT_THAT(b.AddNode("add", {x, y}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("add: building node 'blk/add': shapes do not "
                          "broadcast: f32[4,3] vs f32[5]")));
  // AddNode failures do not poison the builder.
  EXPECT_OK(b.status());
}

TEST(GraphBuilderTest, TypedHelpersRecordTheFirstError) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {4, 3});
  Value bad = ops::MatMul(b, x, x);  // inner dims 3 vs 4
  EXPECT_FALSE(bad.valid());
  Value later = ops::Exp(b, bad);  // ignored: the builder already failed
  EXPECT_FALSE(later.valid());
  EXPECT_THAT(b.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                   HasSubstr("matmul: building node 'matmul'")));
  EXPECT_EQ(g.num_nodes(), 1);
}

TEST(GraphBuilderTest, RejectsUnknownOpAttributesAndArity) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {2, 2});
  EXPECT_THAT(b.AddNode("frobnicate", {x}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("frobnicate: building node 'frobnicate': no op with "
                          "this name is registered")));
  EXPECT_THAT(b.AddNode("exp", {x, x}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("exp: building node 'exp': expects 1 input, got 2")));
  EXPECT_THAT(b.AddNode("scale", {x}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("scale: building node 'scale': missing required "
                          "attribute 'factor' (float)")));
  EXPECT_THAT(b.AddNode("scale", {x}, {{"factor", int64_t{2}}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("scale: building node 'scale': attribute 'factor' "
                          "must be float, got int 2")));
  EXPECT_THAT(b.AddNode("softmax", {x}, {{"axes", int64_t{1}}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown attribute 'axes' (softmax has: axis)")));
  Value i = b.Input("i", DType::kI32, {2, 2});
  EXPECT_THAT(b.AddNode("exp", {i}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("exp: building node 'exp': input 0 ('x') is "
                          "i32[2,2]; allowed dtypes: {f32,f64}")));
  EXPECT_THAT(b.AddNode("exp", {Value{99, 0}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("exp: building node 'exp': input 0 (%99) is not a "
                          "value of this graph")));
}

TEST(GraphBuilderTest, DuplicateSourceNamesAreErrors) {
  Graph g;
  GraphBuilder b(&g);
  b.Input("x", DType::kF32, {2});
  b.Parameter("x", DType::kF32, {2});
  EXPECT_THAT(b.status(),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       Eq("parameter: building node 'x': the name is already taken")));
}

TEST(GraphBuilderTest, ParameterValidatesInitAndDtype) {
  Graph g;
  GraphBuilder b(&g);
  EXPECT_THAT(b.AddNode("parameter", {},
                        {{"dtype", DType::kF32}, {"shape", Shape{2}}, {"init", "uniformish"}},
                        "p"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("parameter: building node 'p': init \"uniformish\" is "
                          "not one of normal, xavier, zeros, ones")));
  EXPECT_THAT(b.AddNode("parameter", {}, {{"dtype", DType::kI32}, {"shape", Shape{2}}}, "q"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("parameter: building node 'q': parameters must be f32 "
                          "or f64, got i32")));
  EXPECT_THAT(b.AddNode("input", {}, {{"dtype", DType::kF32}, {"shape", Shape{-3, 2}}}, "in"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("shape [-3,2]: dim 0 = -3 is outside")));
  EXPECT_THAT(b.AddNode("input", {},
                        {{"dtype", DType::kF32},
                         {"shape", Shape{1 << 30, 1 << 30, 1 << 30}}},
                        "huge"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("has more than 1099511627776 elements")));
}

TEST(GraphBuilderTest, RoleAndOriginAreStamped) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF64, {3});
  Value y = ops::Exp(b, x);
  b.set_role(Role::kBackward);
  b.set_origin(y.node);
  Value z = ops::Neg(b, y);
  ASSERT_OK(b.status());
  EXPECT_EQ(g.node(z.node)->role(), Role::kBackward);
  EXPECT_EQ(g.node(z.node)->origin(), y.node);
  EXPECT_EQ(g.node(y.node)->role(), Role::kForward);
}

TEST(GraphBuilderTest, ReshapeInfersMinusOne) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {4, 6});
  Value y = ops::Reshape(b, x, {2, -1, 3});
  ASSERT_OK(b.status());
  EXPECT_EQ(b.shape(y), (Shape{2, 4, 3}));
  ops::Reshape(b, x, {5, -1});
  EXPECT_THAT(b.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                   Eq("reshape: cannot infer -1 in [5,-1] for f32[4,6]")));
}

TEST(GraphBuilderTest, OutputsAreNamed) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {2});
  b.Output("y", ops::Exp(b, x));
  ASSERT_OK(b.status());
  ASSERT_OK_AND_ASSIGN(Value y, g.GetOutput("y"));
  EXPECT_EQ(g.node(y.node)->op(), "exp");
  EXPECT_THAT(g.GetOutput("z"), StatusIs(absl::StatusCode::kNotFound,
                                         Eq("no graph output 'z'; outputs are: y")));
}

TEST(GraphTest, CopyIsDeepAndRemoveChecksUses) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {2});
  Value y = ops::Exp(b, x);
  Value z = ops::Neg(b, y);
  b.Output("z", z);
  Graph copy = g;
  copy.mutable_node(y.node)->set_scope("changed");
  EXPECT_EQ(g.node(y.node)->scope(), "");
  EXPECT_THAT(g.RemoveNode(y.node),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       Eq("cannot remove node 'exp' (exp): node 'neg' (neg) uses %1")));
  EXPECT_THAT(g.RemoveNode(z.node),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       Eq("cannot remove node 'neg' (neg): it is graph output 'z'")));
  EXPECT_EQ(g.ReplaceAllUsesWith(z, y), 1);
  EXPECT_OK(g.RemoveNode(z.node));
  EXPECT_EQ(g.num_nodes(), 2);
  EXPECT_EQ(g.node(z.node), nullptr);
  EXPECT_EQ(g.FindNode("neg"), nullptr);
  EXPECT_EQ(copy.num_nodes(), 3);
}

TEST(GraphTest, TopologicalOrderAndUsers) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {2});
  Value y = ops::Exp(b, x);
  Value z = ops::Add(b, x, y);
  ASSERT_OK(b.status());
  ASSERT_OK_AND_ASSIGN(auto order, g.TopologicalOrder());
  EXPECT_THAT(order, ElementsAre(x.node, y.node, z.node));
  auto users = g.ComputeUsers();
  EXPECT_THAT(users[x.node], ElementsAre(y.node, z.node));
  EXPECT_THAT(users[z.node], ElementsAre());
  // A cycle: x's consumer feeds back into exp.
  g.mutable_node(y.node)->set_input(0, z);
  EXPECT_THAT(g.TopologicalOrder(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       Eq("the graph has a cycle through node 'exp' (exp)")));
}

TEST(GraphTest, RenameKeepsNamesUnique) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {2});
  Value y = ops::Exp(b, x);
  EXPECT_OK(g.RenameNode(y.node, "e"));
  EXPECT_EQ(g.FindNode("e")->id(), y.node);
  EXPECT_THAT(g.RenameNode(y.node, "x"),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       Eq("cannot rename node 'e' (exp) to 'x': the name is "
                          "taken by node %0")));
}

}  // namespace
}  // namespace subquad
