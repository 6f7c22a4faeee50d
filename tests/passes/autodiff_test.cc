#include "passes/autodiff.h"

#include <cmath>

#include "absl/strings/match.h"
#include "core/builder.h"
#include "core/testing/status_matchers.h"
#include "core/verifier.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/nn/layers.h"
#include "ops/ops.h"
#include "runtime/executor.h"
#include "tests/ops/op_test_util.h"
#include "tests/passes/grad_check_util.h"

namespace subquad {
namespace {

using ::subquad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;

// ---- Mechanics ---------------------------------------------------------------

TEST(AutodiffTest, ErrorsNameTheNodeAndOp) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF64, {3});
  Value w = b.Parameter("w", DType::kF64, {3});
  Value y = ops::Mul(b, x, w);
  b.Output("vector", y);
  b.Output("const", ops::ReduceSumAll(b, x));
  b.Output("loss", ops::ReduceSumAll(b, y));
  ASSERT_OK(b.status());
  EXPECT_THAT(Autodiff(g, {"vector", {}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("autodiff: loss 'vector' (node 'mul' (mul)) must be a "
                          "floating scalar, got f64[3]")));
  EXPECT_THAT(Autodiff(g, {"nope", {}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("autodiff: loss 'nope' is neither a graph output")));
  EXPECT_THAT(Autodiff(g, {"loss", {"x"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("autodiff: wrt 'x' is not a parameter of the graph")));
  EXPECT_THAT(Autodiff(g, {"const", {}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("autodiff: loss 'const' does not depend on any "
                          "requested parameter")));
}

TEST(AutodiffTest, OpWithoutRuleOnThePathIsAnError) {
  // Register a differentiable op without a rule, as a plugin might.
  static const bool registered = [] {
    OpSchema s;
    s.name = "test_identity_without_rule";
    s.doc = "Identity with no gradient rule (tests only).";
    s.inputs = {{"x", DTypeSet::Floating()}};
    s.outputs = {"y"};
    s.shape_fn = [](const ShapeContext& c) -> absl::StatusOr<std::vector<TensorType>> {
      return std::vector<TensorType>{c.input(0)};
    };
    return OpRegistry::Global().Register(std::move(s)).ok();
  }();
  ASSERT_TRUE(registered);
  const OpSchema* no_rule = OpRegistry::Global().Find("test_identity_without_rule");
  Graph g;
  GraphBuilder b(&g);
  Value w = b.Parameter("w", DType::kF64, {3});
  Value y = b.Add(no_rule->name, {w});
  b.Output("loss", ops::ReduceSumAll(b, y));
  ASSERT_OK(b.status());
  EXPECT_THAT(Autodiff(g, {"loss", {}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("autodiff: node 'test_identity_without_rule' "
                          "(test_identity_without_rule) has no gradient rule; it "
                          "lies between parameter 'w' and loss 'loss'")));
}

TEST(AutodiffTest, NamesRolesOriginsAndScopes) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF64, {2, 3});
  Value y;
  {
    auto s = b.Scope("layer");
    Value w = b.Parameter("w", DType::kF64, {3});
    y = ops::Exp(b, ops::Mul(b, x, w));
  }
  b.Output("loss", ops::ReduceSumAll(b, y));
  ASSERT_OK(b.status());
  const int forward_nodes = g.num_nodes();
  ASSERT_OK_AND_ASSIGN(AutodiffResult r, Autodiff(g, {"loss", {}}));
  EXPECT_OK(Verify(g));
  EXPECT_EQ(r.nodes_added, g.num_nodes() - forward_nodes);
  ASSERT_EQ(r.gradients.size(), 1u);
  EXPECT_EQ(r.gradients[0].first, "layer/w");
  ASSERT_OK_AND_ASSIGN(Value gw, g.GetOutput("grad/layer/w"));
  EXPECT_EQ(gw, r.gradients[0].second);
  EXPECT_EQ(g.type(gw).ToString(), "f64[3]");
  for (const Node* n : g.nodes()) {
    if (n->id() < forward_nodes) {
      EXPECT_EQ(n->role(), Role::kForward);
      continue;
    }
    EXPECT_EQ(n->role(), Role::kBackward) << n->name();
    ASSERT_NE(n->origin(), kNoNode) << n->name();
    const Node& origin = *g.node(n->origin());
    EXPECT_EQ(origin.role(), Role::kForward);
    EXPECT_TRUE(absl::StartsWith(n->name(), origin.name() + "/grad/")) << n->name();
    EXPECT_EQ(n->scope(), origin.scope()) << n->name();
  }
  EXPECT_FALSE(g.GetOutput("grad/x").ok());
}

TEST(AutodiffTest, SumsGradientsOfValuesUsedTwiceAndPrunes) {
  Graph g;
  GraphBuilder b(&g);
  Value w = b.Parameter("w", DType::kF64, {4});
  Value unused = b.Parameter("unused", DType::kF64, {2});
  Value x = b.Input("x", DType::kF64, {4});
  // loss = Σ (w·w + w·x)  =>  dL/dw = 2w + x
  Value loss = ops::ReduceSumAll(b, ops::Add(b, ops::Mul(b, w, w), ops::Mul(b, w, x)));
  b.Output("loss", loss);
  b.Output("side", ops::ReduceSumAll(b, unused));
  ASSERT_OK(b.status());
  ASSERT_OK_AND_ASSIGN(AutodiffResult r, Autodiff(g, {"loss", {}}));
  ASSERT_EQ(r.gradients.size(), 2u);
  ParameterStore params;
  params.Set("w", Tensor::FromVector<double>({4}, {1, 2, 3, 4}));
  params.Set("unused", Tensor::FromVector<double>({2}, {5, 6}));
  Tensor xv = Tensor::FromVector<double>({4}, {10, 20, 30, 40});
  ASSERT_OK_AND_ASSIGN(auto exec, Executor::Create(g, {"grad/w", "grad/unused"}, &params));
  ASSERT_OK_AND_ASSIGN(auto out, exec->Run({{"x", xv.view()}}));
  EXPECT_THAT(out[0].span<double>(), ElementsAre(12, 24, 36, 48));
  EXPECT_THAT(out[1].span<double>(), ElementsAre(0, 0));  // loss ignores it
  // Only gradients toward w were built: no backward node has the side
  // output's reduce_sum as origin.
  const Node* side = g.node(g.GetOutput("side")->node);
  for (const Node* n : g.nodes()) EXPECT_NE(n->origin(), side->id()) << n->name();
}

TEST(AutodiffTest, WrtSelectsParameters) {
  Graph g;
  GraphBuilder b(&g);
  Value a = b.Parameter("a", DType::kF64, {2});
  Value c = b.Parameter("c", DType::kF64, {2});
  b.Output("loss", ops::ReduceSumAll(b, ops::Mul(b, a, c)));
  ASSERT_OK(b.status());
  ASSERT_OK_AND_ASSIGN(AutodiffResult r, Autodiff(g, {"loss", {"c"}}));
  ASSERT_EQ(r.gradients.size(), 1u);
  EXPECT_EQ(r.gradients[0].first, "c");
  EXPECT_FALSE(g.GetOutput("grad/a").ok());
}

// ---- Composite models against finite differences (f64, rel ≤ 1e-6) ---------
// Directional derivatives below 1e-6 in magnitude are compared absolutely:
// some are exactly zero (a key bias shifts every logit of a query row alike,
// which softmax ignores) and their numeric estimate is rounding noise.

void ExpectGradientsMatch(const Graph& g, ParameterStore& params,
                          const FeedMap& feeds, double tol = 1e-6) {
  ASSERT_OK_AND_ASSIGN(testing::GradCheckReport r,
                       testing::CheckGradients(g, params, feeds, "loss", 2,
                                               /*eps=*/1e-3, /*floor=*/1e-6));
  EXPECT_LE(r.max_rel_error, tol) << r.worst;
}

TEST(AutodiffCompositeTest, Mlp) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF64, {5, 6});
  Value h = nn::Mlp(b, x, 16, "mlp", 0.3);
  h = nn::Linear(b, h, 3, "head", true, 0.3);
  b.Output("loss", ops::ReduceMean(b, ops::Mul(b, h, h), {0, 1}));
  ASSERT_OK(b.status());
  ParameterStore params;
  ASSERT_OK(params.Initialize(g, 3));
  Tensor xv = testing::RandomTensor(DType::kF64, {5, 6}, 1);
  ExpectGradientsMatch(g, params, {{"x", xv.view()}});
}

TEST(AutodiffCompositeTest, LayerNormChain) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF64, {4, 8});
  Value w = b.Parameter("w", DType::kF64, {8, 8}, Init::Normal(0.5));
  Value h = nn::LayerNorm(b, x, "ln1");
  h = ops::Tanh(b, ops::MatMul(b, h, w));
  h = nn::LayerNorm(b, h, "ln2");
  h = ops::Add(b, h, x);
  h = nn::LayerNorm(b, h, "ln3");
  Value t = b.Constant(testing::RandomTensor(DType::kF64, {4, 8}, 9));
  b.Output("loss", ops::ReduceSumAll(b, ops::Mul(b, h, t)));
  ASSERT_OK(b.status());
  ParameterStore params;
  ASSERT_OK(params.Initialize(g, 4));
  // Gains and biases away from 1 and 0 so their gradients are generic.
  for (const std::string& name : params.Names()) {
    Tensor& p = *params.Find(name);
    Tensor r = testing::RandomTensor(DType::kF64, p.shape(), std::hash<std::string>{}(name), 0.5, 1.5);
    p = std::move(r);
  }
  Tensor xv = testing::RandomTensor(DType::kF64, {4, 8}, 2);
  ExpectGradientsMatch(g, params, {{"x", xv.view()}});
}

TEST(AutodiffCompositeTest, CausalMultiHeadAttentionFromPrimitives) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF64, {2, 7, 8});
  Value y = nn::SelfAttention(b, x, /*heads=*/2, /*causal=*/true, "attn", 0.3);
  Value t = b.Constant(testing::RandomTensor(DType::kF64, {2, 7, 8}, 5));
  b.Output("loss", ops::ReduceSumAll(b, ops::Mul(b, y, t)));
  ASSERT_OK(b.status());
  ParameterStore params;
  ASSERT_OK(params.Initialize(g, 5));
  for (const std::string& name : params.Names()) {
    Tensor& p = *params.Find(name);
    p = testing::RandomTensor(DType::kF64, p.shape(), std::hash<std::string>{}(name), -0.7, 0.7);
  }
  Tensor xv = testing::RandomTensor(DType::kF64, {2, 7, 8}, 3);
  ExpectGradientsMatch(g, params, {{"x", xv.view()}});
}

TEST(AutodiffCompositeTest, TwoLayerTransformerLM) {
  nn::TransformerLMConfig c;
  c.vocab = 23;
  c.d_model = 16;
  c.heads = 2;
  c.layers = 2;
  c.batch = 2;
  c.seq_len = 6;
  c.dtype = DType::kF64;
  Graph g;
  GraphBuilder b(&g);
  nn::BuildTransformerLM(b, c);
  ASSERT_OK(b.status());
  ParameterStore params;
  ASSERT_OK(params.Initialize(g, 6));
  for (const std::string& name : params.Names()) {
    Tensor& p = *params.Find(name);
    const bool gain = absl::StrContains(name, "gamma");
    p = testing::RandomTensor(DType::kF64, p.shape(), std::hash<std::string>{}(name),
                              gain ? 0.5 : -0.4, gain ? 1.5 : 0.4);
  }
  Tensor tokens = testing::RandomTensor(DType::kI32, {2, 6}, 7, 0, 23);
  Tensor targets = testing::RandomTensor(DType::kI32, {2, 6}, 8, 0, 23);
  ExpectGradientsMatch(g, params, {{"tokens", tokens.view()}, {"targets", targets.view()}});
}

}  // namespace
}  // namespace subquad
