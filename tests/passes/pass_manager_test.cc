#include "passes/pass_manager.h"

#include <string>

#include "core/builder.h"
#include "core/parser.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/ops.h"

namespace subquad {
namespace {

using ::subquad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

TEST(ParsePipelineTest, PassesAndOptions) {
  ASSERT_OK_AND_ASSIGN(auto p, ParsePipeline(
      " autodiff{loss=loss} , cse,dce,sus{c=32, seed=7,heads=[0,2]},x{s=\"a,b\"}"));
  ASSERT_EQ(p.size(), 5u);
  EXPECT_EQ(p[0].pass, "autodiff");
  EXPECT_EQ(p[0].column, 2);
  EXPECT_THAT(p[0].options, ElementsAre(Pair("loss", "loss")));
  EXPECT_EQ(p[1].pass, "cse");
  EXPECT_THAT(p[3].options,
              ElementsAre(Pair("c", "32"), Pair("seed", "7"), Pair("heads", "[0,2]")));
  EXPECT_THAT(p[4].options, ElementsAre(Pair("s", "\"a,b\"")));
}

TEST(ParsePipelineTest, SyntaxErrorsGiveTheColumn) {
  EXPECT_THAT(ParsePipeline(""), StatusIs(kInvalid, Eq("pipeline: column 1: empty pipeline")));
  EXPECT_THAT(ParsePipeline("dce,,cse"),
              StatusIs(kInvalid, Eq("pipeline: column 5: expected a pass name, found ','")));
  EXPECT_THAT(ParsePipeline("dce cse"),
              StatusIs(kInvalid, Eq("pipeline: column 5: expected ',' or the end after "
                                    "pass 'dce', found 'c'")));
  EXPECT_THAT(ParsePipeline("cse{across-roles}"),
              StatusIs(kInvalid, Eq("pipeline: column 17: expected '=' after option "
                                    "'across-roles'")));
  EXPECT_THAT(ParsePipeline("cse{a=1"),
              StatusIs(kInvalid, Eq("pipeline: column 8: unclosed '{' of pass 'cse'")));
}

TEST(PassManagerTest, UnknownPassesAndOptionsAreExplained) {
  EXPECT_THAT(PassManager::Create("dce,nope"),
              StatusIs(kInvalid, HasSubstr("pipeline: column 5: unknown pass 'nope'; "
                                           "valid passes: autodiff, constant-fold, cse, dce")));
  EXPECT_THAT(PassManager::Create("cse{acrossroles=true}"),
              StatusIs(kInvalid, Eq("pipeline: column 1: pass 'cse' has no option "
                                    "'acrossroles'; options: across-roles")));
  EXPECT_THAT(PassManager::Create("cse{across-roles=maybe}"),
              StatusIs(kInvalid, Eq("pipeline: column 1: pass 'cse': option "
                                    "'across-roles' expects true or false, got 'maybe'")));
  EXPECT_THAT(PassManager::Create("dce,optimizer{beta1=1.5}"),
              StatusIs(kInvalid, Eq("pipeline: column 5: pass 'optimizer': option "
                                    "'beta1' = 1.5 is out of range [0, 1]")));
  EXPECT_THAT(PassManager::Create("optimizer{warmup=ten}"),
              StatusIs(kInvalid, Eq("pipeline: column 1: pass 'optimizer': option "
                                    "'warmup' expects an integer, got 'ten'")));
}

TEST(PassManagerTest, PipelineStringListsEveryOption) {
  ASSERT_OK_AND_ASSIGN(PassManager pm, PassManager::Create("dce,cse{across-roles=true}"));
  EXPECT_EQ(pm.PipelineString(), "dce,cse{across-roles=true}");
}

// A pass that breaks the graph (a stale output type), to show the verifier
// runs after each changing pass.
class BreakingPass : public Pass {
 public:
  absl::string_view name() const override { return "test-break"; }
  absl::StatusOr<bool> Run(Graph& g, PassContext&) override {
    for (const Node* n : g.nodes()) {
      if (n->op() == "exp") g.mutable_node(n->id())->set_input(0, Value{n->id(), 0});
    }
    return true;
  }
};

SUBQUAD_REGISTER_PASS((PassInfo{
    "test-break", "Corrupts the graph (tests only).", PassStage::kAny, {},
    [](const PassOptions&) -> absl::StatusOr<std::unique_ptr<Pass>> {
      return std::make_unique<BreakingPass>();
    }}));

TEST(PassManagerTest, VerifierRunsAfterChangingPasses) {
  ASSERT_OK_AND_ASSIGN(Graph g, ParseGraph(R"(
    %0 f32[2] = input() "x"
    %1 f32[2] = exp(%0)
    output y = %1
  )"));
  ASSERT_OK_AND_ASSIGN(PassManager pm, PassManager::Create("dce,test-break"));
  PassContext ctx;
  EXPECT_THAT(pm.Run(g, ctx),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       Eq("verifier after pass 'test-break': the graph has a cycle "
                          "through node 'exp' (exp)")));
}

TEST(PassManagerTest, PrintAfterTimingAndStatistics) {
  ASSERT_OK_AND_ASSIGN(Graph g, ParseGraph(R"(
    %0 f32[2] = input() "x"
    %1 f32[2] = exp(%0)
    %2 f32[2] = exp(%0)
    %3 f32[2] = add(%1, %2)
    %4 f32[2] = neg(%0)
    output y = %3
  )"));
  std::string printed;
  PassManagerOptions o;
  o.print_after = {"cse"};
  o.print = [&](const std::string& s) { printed += s; };
  ASSERT_OK_AND_ASSIGN(PassManager pm, PassManager::Create("cse,dce", o));
  PassContext ctx;
  ASSERT_OK_AND_ASSIGN(bool changed, pm.Run(g, ctx));
  EXPECT_TRUE(changed);
  EXPECT_THAT(printed, HasSubstr("// ---- after cse ----\n%0 f32[2] = input() \"x\"\n"));
  EXPECT_THAT(printed, Not(HasSubstr("after dce")));
  ASSERT_EQ(pm.timings().size(), 2u);
  EXPECT_EQ(pm.timings()[0].pass, "cse");
  EXPECT_TRUE(pm.timings()[1].changed);
  EXPECT_THAT(pm.TimingReport(), HasSubstr("total"));
  EXPECT_EQ(ctx.statistics().at("cse").at("nodes merged"), 1);
  EXPECT_EQ(ctx.statistics().at("dce").at("nodes removed"), 1);
}

TEST(PassRegistryTest, DuplicateNamesAndBadDefaultsAreRejected) {
  PassInfo dup;
  dup.name = "dce";
  dup.create = [](const PassOptions&) -> absl::StatusOr<std::unique_ptr<Pass>> {
    return absl::InternalError("unused");
  };
  EXPECT_THAT(PassRegistry::Global().Register(dup),
              StatusIs(absl::StatusCode::kAlreadyExists, Eq("pass 'dce' is already registered")));
  PassInfo bad = dup;
  bad.name = "test-bad-default";
  bad.options = {{"n", AttrKind::kInt, AttrValue(0.5), "a count"}};
  EXPECT_THAT(PassRegistry::Global().Register(bad),
              StatusIs(kInvalid, Eq("pass 'test-bad-default': option 'n' is declared int "
                                    "with a float default")));
}

}  // namespace
}  // namespace subquad
