#include "passes/plugin.h"

#include "core/parser.h"
#include "core/printer.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "passes/pass_manager.h"

namespace subquad {
namespace {

using ::subquad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;

TEST(PluginTest, LoadsPassesAndOpsThatPipelinesThenUse) {
  ASSERT_OK_AND_ASSIGN(LoadedPlugin p, LoadPlugin(SUBQUAD_TEST_PLUGIN_GOOD));
  EXPECT_THAT(p.passes, ElementsAre("test-double-to-scale"));
  EXPECT_THAT(p.ops, ElementsAre("test_double"));
  ASSERT_OK_AND_ASSIGN(Graph g, ParseGraph(R"(
    %0 f64[3] = input() "x"
    %1 f64[3] = test_double(%0)
    output y = %1
  )"));
  ASSERT_OK_AND_ASSIGN(PassManager pm, PassManager::Create("test-double-to-scale,dce"));
  PassContext ctx;
  ASSERT_OK(pm.Run(g, ctx).status());
  EXPECT_EQ(PrintGraph(g),
            "%0 f64[3] = input() \"x\"\n"
            "%2 f64[3] = scale(%0) {factor=2}\n"
            "output y = %2\n");
  EXPECT_THAT(LoadPlugin(SUBQUAD_TEST_PLUGIN_GOOD),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("is already loaded")));
}

TEST(PluginTest, ErrorsNameThePlugin) {
  EXPECT_THAT(LoadPlugin("/nonexistent/plugin.so"),
              StatusIs(absl::StatusCode::kNotFound,
                       Eq("plugin '/nonexistent/plugin.so': no such file")));
  const std::string not_plugin = SUBQUAD_TEST_PLUGIN_NONE;
  EXPECT_THAT(LoadPlugin(not_plugin),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("plugin '" + not_plugin +
                          "' does not export subquad_plugin_api_version and "
                          "subquad_plugin_register_v1 (write its entry point with "
                          "SUBQUAD_PLUGIN)")));
  const std::string old = SUBQUAD_TEST_PLUGIN_OLD;
  EXPECT_THAT(LoadPlugin(old),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("plugin '" + old + "' was built for plugin API version 999; "
                          "this subquad loads version 1")));
  const std::string clash = SUBQUAD_TEST_PLUGIN_CLASH;
  EXPECT_THAT(LoadPlugin(clash),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       Eq("plugin '" + clash + "': pass 'dce' is already registered")));
  EXPECT_THAT(LoadPlugin(SUBQUAD_TEST_PLUGIN_NOT_LIBRARY),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot be loaded")));
}

}  // namespace
}  // namespace subquad
