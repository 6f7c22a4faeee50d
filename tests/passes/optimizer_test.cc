#include "passes/optimizer.h"

#include <cmath>

#include "core/builder.h"
#include "core/testing/status_matchers.h"
#include "core/verifier.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/ops.h"
#include "passes/autodiff.h"
#include "runtime/executor.h"
#include "tests/ops/op_test_util.h"

namespace subquad {
namespace {

using ::subquad::testing::RunOp;
using ::subquad::testing::StatusIs;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::Pointwise;

Tensor F64(Shape s, std::vector<double> v) {
  return Tensor::FromVector<double>(std::move(s), v);
}

TEST(UpdateOpsTest, AdamWMatchesAHandComputedStep) {
  // One element, step index 1 (t = 2), with state from a previous step.
  const double p = 0.5, g = 0.2, m = 0.1, v = 0.03, lr = 0.01, scale = 0.5;
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
  std::vector<Tensor> in = {F64({1}, {p}), F64({1}, {g}), F64({1}, {m}), F64({1}, {v}),
                            Tensor::Scalar<double>(lr), Tensor::Scalar<int64_t>(1),
                            Tensor::Scalar<double>(scale)};
  ASSERT_OK_AND_ASSIGN(auto out, RunOp("adamw_update", in, {{"weight_decay", wd}}));
  const double gs = g * scale;
  const double m1 = b1 * m + (1 - b1) * gs, v1 = b2 * v + (1 - b2) * gs * gs;
  const double mhat = m1 / (1 - b1 * b1), vhat = v1 / (1 - b2 * b2);
  const double p1 = p * (1 - lr * wd) - lr * mhat / (std::sqrt(vhat) + eps);
  EXPECT_NEAR(in[0].data<double>()[0], p1, 1e-15);
  EXPECT_NEAR(in[2].data<double>()[0], m1, 1e-15);
  EXPECT_NEAR(in[3].data<double>()[0], v1, 1e-15);
  EXPECT_NEAR(out[0].data<double>()[0], (p1 - p) * (p1 - p), 1e-15);
}

TEST(UpdateOpsTest, SgdMomentumAndNesterov) {
  for (bool nesterov : {false, true}) {
    std::vector<Tensor> in = {F64({2}, {1.0, -2.0}), F64({2}, {0.5, 0.25}),
                              F64({2}, {0.1, 0.2}), Tensor::Scalar<double>(0.1),
                              Tensor::Scalar<double>(1.0)};
    ASSERT_OK_AND_ASSIGN(auto out, RunOp("sgd_update", in,
                                         {{"momentum", 0.9}, {"weight_decay", 0.01},
                                          {"nesterov", nesterov}}));
    const double g0 = 0.5 + 0.01 * 1.0, g1 = 0.25 + 0.01 * -2.0;
    const double v0 = 0.9 * 0.1 + g0, v1 = 0.9 * 0.2 + g1;
    const double s0 = nesterov ? g0 + 0.9 * v0 : v0, s1 = nesterov ? g1 + 0.9 * v1 : v1;
    EXPECT_THAT(in[2].span<double>(), Pointwise(DoubleNear(1e-15), {v0, v1}));
    EXPECT_THAT(in[0].span<double>(),
                Pointwise(DoubleNear(1e-15), {1.0 - 0.1 * s0, -2.0 - 0.1 * s1}));
  }
}

TEST(UpdateOpsTest, LearningRateSchedules) {
  auto lr_at = [](int64_t step, AttrMap attrs) {
    attrs["base_lr"] = 1.0;
    auto out = RunOp("learning_rate", {Tensor::Scalar<int64_t>(step)}, attrs);
    return out.ok() ? static_cast<double>((*out)[0].data<float>()[0]) : -1.0;
  };
  const AttrMap cosine = {{"warmup_steps", int64_t{10}}, {"total_steps", int64_t{110}},
                          {"min_lr", 0.1}};
  EXPECT_NEAR(lr_at(0, cosine), 0.1, 1e-7);   // warm-up: (step+1)/10
  EXPECT_NEAR(lr_at(4, cosine), 0.5, 1e-7);
  EXPECT_NEAR(lr_at(10, cosine), 1.0, 1e-7);  // decay starts at the peak
  EXPECT_NEAR(lr_at(60, cosine), 0.55, 1e-6);  // half way: (1 + 0.1) / 2
  EXPECT_NEAR(lr_at(110, cosine), 0.1, 1e-7);
  EXPECT_NEAR(lr_at(500, cosine), 0.1, 1e-7);
  AttrMap linear = cosine;
  linear["schedule"] = "linear";
  EXPECT_NEAR(lr_at(60, linear), 0.55, 1e-6);
  EXPECT_NEAR(lr_at(35, linear), 1.0 - 0.9 * 0.25, 1e-6);
  EXPECT_NEAR(lr_at(1000, {{"schedule", "constant"}}), 1.0, 1e-7);
}

TEST(UpdateOpsTest, GlobalNormScaleClips) {
  std::vector<Tensor> in = {F64({2}, {3.0, 0.0}), F64({1}, {4.0})};
  ASSERT_OK_AND_ASSIGN(auto out, RunOp("global_norm_scale", in, {{"max_norm", 1.0}}));
  EXPECT_NEAR(out[1].data<double>()[0], 5.0, 1e-12);
  EXPECT_NEAR(out[0].data<double>()[0], 1.0 / (5.0 + 1e-6), 1e-12);
  ASSERT_OK_AND_ASSIGN(out, RunOp("global_norm_scale", in, {{"max_norm", 10.0}}));
  EXPECT_EQ(out[0].data<double>()[0], 1.0);
}

// loss = Σ (w − t)² + Σ (u − 2)², a convex problem with its minimum at t, 2.
void BuildQuadratic(Graph& g) {
  GraphBuilder b(&g);
  Value w = b.Parameter("w", DType::kF64, {3, 2}, Init::Normal(1.0));
  Value u = b.Parameter("u", DType::kF64, {2}, Init::Zeros());
  Value t = b.Constant(F64({3, 2}, {1, -2, 3, 0.5, -1, 2}));
  Value d = ops::Sub(b, w, t);
  Value e = ops::Sub(b, u, b.ScalarConstant(2.0));
  b.Output("loss", ops::Add(b, ops::ReduceSumAll(b, ops::Mul(b, d, d)),
                            ops::ReduceSumAll(b, ops::Mul(b, e, e))));
  ASSERT_OK(b.status());
}

TEST(OptimizerPassTest, ConvexProblemConvergesWithEachOptimizer) {
  for (const char* kind : {"adamw", "sgd"}) {
    SCOPED_TRACE(kind);
    Graph g;
    BuildQuadratic(g);
    ASSERT_OK(Autodiff(g, {"loss", {}}).status());
    OptimizerOptions o;
    o.kind = kind;
    o.lr = std::string(kind) == "sgd" ? 0.05 : 0.1;
    o.weight_decay = 0.0;
    o.clip_norm = 100.0;
    ASSERT_OK_AND_ASSIGN(OptimizerResult r, AddOptimizer(g, o));
    EXPECT_EQ(r.parameters_updated, 2);
    ASSERT_OK(Verify(g));
    for (const Node* n : g.nodes()) {
      if (n->op() == "adamw_update" || n->op() == "sgd_update") {
        EXPECT_EQ(n->role(), Role::kOptimizer);
      }
    }
    ParameterStore params;
    ASSERT_OK(params.Initialize(g, 1));
    ASSERT_OK_AND_ASSIGN(auto exec, Executor::Create(g, {"loss", "update_norm"}, &params));
    double first = 0, last = 0;
    for (int64_t step = 0; step < 300; ++step) {
      Tensor s = Tensor::Scalar<int64_t>(step);
      ASSERT_OK_AND_ASSIGN(auto out, exec->Run({{"step", s.view()}}));
      last = out[0].data<double>()[0];
      if (step == 0) first = last;
    }
    EXPECT_GT(first, 1.0);
    EXPECT_LT(last, 1e-6);
    EXPECT_THAT(params.Find("u")->span<double>(), Pointwise(DoubleNear(1e-3), {2.0, 2.0}));
  }
}

TEST(OptimizerPassTest, UpdatesRunAfterEveryReaderOfTheParameter) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF64, {4, 3});
  Value w = b.Parameter("w", DType::kF64, {3, 3});
  Value h = ops::Tanh(b, ops::MatMul(b, x, w));
  h = ops::MatMul(b, h, w);  // w read twice: its backward reads w again
  b.Output("loss", ops::ReduceSumAll(b, ops::Mul(b, h, h)));
  ASSERT_OK(b.status());
  ASSERT_OK(Autodiff(g, {"loss", {}}).status());
  OptimizerOptions o;
  o.clip_norm = 0;  // no clipping: no global barrier before the updates
  ASSERT_OK(AddOptimizer(g, o).status());
  ASSERT_OK_AND_ASSIGN(Plan plan, Plan::Create(g, {*g.GetOutput("update_norm")}));
  int update_pos = -1, last_reader = -1;
  for (int i = 0; i < static_cast<int>(plan.schedule().size()); ++i) {
    const Node& n = *g.node(plan.schedule()[i]);
    if (n.op() == "adamw_update" && n.input(0) == w) update_pos = i;
    for (const Value& in : n.inputs()) {
      if (in == w && n.op() != "adamw_update") last_reader = i;
    }
  }
  ASSERT_GE(update_pos, 0);
  EXPECT_GT(update_pos, last_reader);
}

TEST(OptimizerPassTest, StateIsNotTrainable) {
  Graph g;
  BuildQuadratic(g);
  ASSERT_OK(Autodiff(g, {"loss", {}}).status());
  ASSERT_OK(AddOptimizer(g, {}).status());
  const Node* m = g.FindNode("optimizer/adam_m/w");
  ASSERT_NE(m, nullptr);
  EXPECT_FALSE(m->GetBool("trainable"));
  EXPECT_TRUE(g.FindNode("w")->GetBool("trainable"));
  // Differentiating the training graph again touches only w and u.
  ASSERT_OK_AND_ASSIGN(AutodiffResult again, Autodiff(g, {"loss", {}}));
  ASSERT_EQ(again.gradients.size(), 2u);
  EXPECT_EQ(again.gradients[0].first, "w");
  EXPECT_EQ(again.gradients[1].first, "u");
}

TEST(OptimizerPassTest, Errors) {
  Graph g;
  BuildQuadratic(g);
  EXPECT_THAT(AddOptimizer(g, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("optimizer: the graph has no gradient outputs "
                          "(grad/<parameter>); run autodiff first")));
  OptimizerOptions bad;
  bad.kind = "lion";
  EXPECT_THAT(AddOptimizer(g, bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("optimizer: kind \"lion\" is not one of adamw, sgd")));
}

TEST(PlanTest, InPlaceUpdateOfANonParameterIsRejected) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF64, {2});
  Value lr = b.ScalarConstant(0.1);
  Value s = b.ScalarConstant(1.0);
  Value upd = b.Add("sgd_update", {x, x, x, lr, s});
  ASSERT_OK(b.status());
  EXPECT_THAT(Plan::Create(g, {upd}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       Eq("node 'sgd_update' (sgd_update) updates input 0 in place, "
                          "but it is node 'x' (input), not a parameter")));
}

}  // namespace
}  // namespace subquad
