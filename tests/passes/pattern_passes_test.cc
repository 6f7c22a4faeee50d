// simplify and constant-fold on a real training graph: a small transformer
// language model with its backward graph. The loss and every gradient must
// be unchanged, and the passes must converge.
#include <string>
#include <vector>

#include "core/builder.h"
#include "core/testing/status_matchers.h"
#include "core/verifier.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/nn/layers.h"
#include "passes/pass_manager.h"
#include "runtime/executor.h"
#include "runtime/parameter_store.h"
#include "tests/ops/op_test_util.h"

namespace subquad {
namespace {

TEST(PatternPassesTest, TransformerTrainingGraphKeepsItsLossAndGradients) {
  nn::TransformerLMConfig config;
  config.vocab = 32;
  config.d_model = 16;
  config.heads = 2;
  config.layers = 2;
  config.batch = 2;
  config.seq_len = 8;
  config.dtype = DType::kF64;
  Graph g;
  GraphBuilder b(&g);
  nn::BuildTransformerLM(b, config);
  ASSERT_OK(b.status());
  ASSERT_OK_AND_ASSIGN(PassManager autodiff, PassManager::Create("autodiff{loss=loss}"));
  PassContext ctx;
  ASSERT_OK(autodiff.Run(g, ctx).status());
  const Graph before = g;

  ASSERT_OK_AND_ASSIGN(PassManager pm,
                       PassManager::Create("simplify,constant-fold,simplify,cse,dce"));
  ASSERT_OK(pm.Run(g, ctx).status());
  ASSERT_OK(Verify(g));
  EXPECT_LE(g.num_nodes(), before.num_nodes());

  std::vector<std::string> fetches;
  for (const auto& [name, v] : before.outputs()) fetches.push_back(name);
  ParameterStore params;
  ASSERT_OK(params.Initialize(before, /*seed=*/3));
  Tensor tokens = testing::RandomTensor(DType::kI32, {config.batch, config.seq_len}, 1, 0,
                                        config.vocab);
  Tensor targets = testing::RandomTensor(DType::kI32, {config.batch, config.seq_len}, 2, 0,
                                         config.vocab);
  FeedMap feeds = {{"tokens", tokens.view()}, {"targets", targets.view()}};
  ASSERT_OK_AND_ASSIGN(auto exec_before, Executor::Create(before, fetches, &params));
  ASSERT_OK_AND_ASSIGN(auto exec_after, Executor::Create(g, fetches, &params));
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> want, exec_before->Run(feeds));
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> got, exec_after->Run(feeds));
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < fetches.size(); ++i) {
    EXPECT_TRUE(testing::TensorsNear(got[i], want[i], 1e-12, 1e-12)) << fetches[i];
  }
}

}  // namespace
}  // namespace subquad
