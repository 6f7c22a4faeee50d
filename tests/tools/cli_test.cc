// Runs the built `subquad` binary and checks its output and exit codes.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

struct Result {
  int code;
  std::string out;  // stdout and stderr together
};

Result RunCli(const std::string& args) {
  const std::string cmd = std::string(SUBQUAD_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(CliTest, Version) {
  Result r = RunCli("version");
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, StartsWith("subquad "));
}

TEST(CliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RunCli("").code, 2);
  Result r = RunCli("frobnicate");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.out, HasSubstr("subquad: unknown command 'frobnicate'"));
  r = RunCli("ops --bogus");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.out, HasSubstr("ops: unknown flag --bogus (see 'subquad ops --help')"));
}

TEST(CliTest, OpsListsEveryOpWithSchema) {
  Result r = RunCli("ops --names");
  EXPECT_EQ(r.code, 0);
  for (const char* op :
       {"add", "broadcast_to", "cast", "causal_mask", "concat", "constant",
        "cross_entropy", "div", "exp", "fill", "gather", "gelu", "input",
        "layer_norm", "log", "log_softmax", "matmul", "mul", "neg", "parameter",
        "pow", "reduce_max", "reduce_mean", "reduce_sum", "relu", "reshape",
        "rsqrt", "scale", "slice", "softmax", "sqrt", "sub", "tanh",
        "transpose", "where"}) {
    EXPECT_THAT(r.out, HasSubstr(std::string(op) + "\n")) << op;
  }
  r = RunCli("ops matmul");
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("matmul: "));
  EXPECT_THAT(r.out, HasSubstr("transpose_b: bool = false"));
  EXPECT_THAT(r.out, HasSubstr("kernels: f32, f64"));
  EXPECT_THAT(r.out, HasSubstr("gradient: "));
  r = RunCli("ops gather");
  EXPECT_THAT(r.out, HasSubstr("(no gradient)"));
  r = RunCli("ops nope");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("ops: no op 'nope'; registered ops: "));
  EXPECT_THAT(r.out, HasSubstr(", matmul, "));
}

TEST(CliTest, HelpEverywhere) {
  for (const char* cmd : {"ops", "version"}) {
    Result r = RunCli(std::string(cmd) + " --help");
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_THAT(r.out, StartsWith(std::string("usage: subquad ") + cmd)) << cmd;
  }
  Result r = RunCli("help");
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("commands:"));
}

}  // namespace
