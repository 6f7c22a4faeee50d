// `subquad opt`, run as a user runs it.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

using ::testing::HasSubstr;

struct Result {
  int code;
  std::string out;
};

Result Cli(const std::string& args) {
  const std::string cmd = std::string(SUBQUAD_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

class OptCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // One folder per test: ctest runs the tests of this file in parallel.
    dir_ = std::filesystem::path(::testing::TempDir()) /
           (std::string("opt_cli_test_") +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    lm_ = (dir_ / "lm.sqg").string();
    ASSERT_EQ(Cli("export-example -o " + lm_ + " --layers 1 --d-model 32 --heads 2 "
                  "--seq-len 16 --batch 2").code, 0);
  }
  std::filesystem::path dir_;
  std::string lm_;
};

TEST_F(OptCliTest, RunsAPipelineAndWritesTheResult) {
  const std::string out = (dir_ / "train.sqtxt").string();
  Result r = Cli("opt " + lm_ + " -o " + out +
                 " --pipeline 'autodiff{loss=loss},simplify,cse,dce,optimizer' "
                 "--timing --stats --verify-each");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("autodiff"));
  EXPECT_THAT(r.out, HasSubstr("total"));
  EXPECT_THAT(r.out, HasSubstr("autodiff: parameters differentiated"));
  r = Cli("check " + out);
  EXPECT_EQ(r.code, 0) << r.out;
  r = Cli("nodes " + out + " --role optimizer --op adamw_update");
  EXPECT_THAT(r.out, HasSubstr("= adamw_update("));
}

TEST_F(OptCliTest, ExplainsNearMisses) {
  Result r = Cli("opt " + lm_ + " --pipeline simplify --explain");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("explain: simplify: pattern 'transpose-identity' did not "
                               "match at node"));
  EXPECT_THAT(r.out, HasSubstr("attribute perm is [0,2,1,3], expected the identity "
                               "permutation"));
}

TEST_F(OptCliTest, ListsPassesAndReportsErrors) {
  Result r = Cli("opt --list-passes");
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("simplify  (stage: any)"));
  EXPECT_THAT(r.out, HasSubstr("    lr: float = 0.001 [0, inf]  peak learning rate"));
  r = Cli("opt " + lm_ + " --pipeline 'dce,bogus'");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.out, HasSubstr("opt: pipeline: column 5: unknown pass 'bogus'"));
  r = Cli("opt " + lm_ + " --pipeline dce --load-plugin /nonexistent/p.so");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("opt: plugin '/nonexistent/p.so': no such file"));
  r = Cli("opt " + lm_);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.out, HasSubstr("--pipeline is required"));
}

}  // namespace
