// The graph-file commands of the `subquad` binary: export-example, inspect,
// nodes, dot, convert, check, diff and run. Golden outputs on small fixed
// graphs; `run` against the in-process executor.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/ops.h"
#include "runtime/executor.h"
#include "runtime/parameter_store.h"
#include "serialize/checkpoint.h"
#include "serialize/graph_io.h"
#include "serialize/npy.h"

namespace subquad {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct Result {
  int code;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class GraphCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "graph_cli_test_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs `subquad <args>` in dir_; stdout and stderr apart.
  Result Cli(const std::string& args) {
    const std::string err = dir_ + "/.stderr";
    const std::string cmd = absl::StrCat("cd '", dir_, "' && ", SUBQUAD_CLI_PATH,
                                         " ", args, " 2>'", err, "'");
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    const int status = pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, ReadFile(err)};
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // %0 x = input f32[2,3]; layer0: w (xavier), matmul, relu; head: v
  // (zeros), matmul, reduce_sum. Outputs h (the relu) and loss.
  // `variant` swaps relu for gelu and v's init for ones.
  void WriteSmallGraph(const std::string& name, bool variant = false) {
    Graph g;
    GraphBuilder b(&g);
    Value x = b.Input("x", DType::kF32, {2, 3});
    Value h;
    {
      auto s = b.Scope("layer0");
      Value w = b.Parameter("w", DType::kF32, {3, 4}, Init::Xavier());
      Value mm = ops::MatMul(b, x, w);
      h = variant ? ops::Gelu(b, mm) : ops::Relu(b, mm);
    }
    {
      auto s = b.Scope("head");
      Value v = b.Parameter("v", DType::kF32, {4, 1},
                            variant ? Init::Ones() : Init::Zeros());
      b.Output("loss", ops::ReduceSumAll(b, ops::MatMul(b, h, v)));
    }
    b.Output("h", h);
    ASSERT_OK(b.status());
    ASSERT_OK(SaveGraph(g, Path(name)));
  }

  std::string dir_;
};

TEST_F(GraphCliTest, HelpEverywhere) {
  for (const char* cmd : {"export-example", "inspect", "nodes", "dot", "convert",
                          "check", "diff", "run"}) {
    Result r = Cli(absl::StrCat(cmd, " --help"));
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_THAT(r.out, StartsWith(absl::StrCat("usage: subquad ", cmd))) << cmd;
    EXPECT_EQ(r.err, "") << cmd;
  }
  Result r = Cli("help");
  for (const char* cmd : {"export-example", "inspect", "nodes", "dot", "convert",
                          "check", "diff", "run"}) {
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("  ", cmd, " "))) << cmd;
  }
}

TEST_F(GraphCliTest, UsageErrorsExitTwo) {
  for (const char* args :
       {"inspect", "nodes", "check", "convert a.sqg", "diff a.sqg", "run g.sqg",
        "export-example", "export-example -o x.txt", "inspect a.sqg b.sqg",
        "nodes a.sqg --role sideways", "dot a.sqg -o a.png",
        "run g.sqg --out d --feed tokens", "export-example -o x.sqg --heads 3"}) {
    Result r = Cli(args);
    EXPECT_EQ(r.code, 2) << args;
    EXPECT_EQ(r.out, "") << args;
    EXPECT_THAT(r.err, HasSubstr("usage: subquad ")) << args;
  }
  EXPECT_THAT(Cli("export-example -o x.sqg --heads 3").err,
              StartsWith("export-example: --d-model=128 is not divisible by "
                         "--heads=3\n"));
  EXPECT_THAT(Cli("nodes a.sqg --role sideways").err,
              StartsWith("nodes: --role=sideways is not forward, backward or "
                         "optimizer\n"));
}

TEST_F(GraphCliTest, BadInputExitsOneNamingTheProblem) {
  Result r = Cli("check missing.sqg");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "check: cannot open 'missing.sqg': No such file or directory\n");
  std::ofstream(Path("bad.sqtxt")) << "producer_version: 1\nmin_consumer_version: 1\n"
                                      "nodes { id: 0 name: \"x\" op: \"frob\" }\n";
  for (const char* cmd : {"check", "inspect", "nodes", "dot"}) {
    r = Cli(absl::StrCat(cmd, " bad.sqtxt"));
    EXPECT_EQ(r.code, 1) << cmd;
    EXPECT_EQ(r.out, "") << cmd;
    EXPECT_EQ(r.err, absl::StrCat(cmd, ": bad.sqtxt: node 'x' (frob) %0: op: "
                                       "'frob' is not a registered op (see "
                                       "'subquad ops')\n"));
  }
  r = Cli("convert bad.sqtxt good.sqg");
  EXPECT_EQ(r.code, 1);
  EXPECT_FALSE(std::filesystem::exists(Path("good.sqg")));
}

TEST_F(GraphCliTest, ExportExampleConvertAndCheck) {
  Result r = Cli("export-example -o lm.sqg --layers 1 --d-model 8 --heads 2 "
                 "--seq-len 4 --vocab 16 --batch 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "wrote lm.sqg: 58 nodes (58 forward, 0 backward, 0 optimizer), "
                   "2 outputs\n");
  r = Cli("export-example -o train.sqtxt --train --layers 1 --d-model 8 --heads 2 "
          "--seq-len 4 --vocab 16 --batch 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("wrote train.sqtxt: "));
  ASSERT_OK_AND_ASSIGN(Graph g, LoadGraph(Path("train.sqtxt")));
  EXPECT_OK(g.GetOutput("loss").status());
  EXPECT_OK(g.GetOutput("update_norm").status());
  EXPECT_NE(g.FindNode("tokens"), nullptr);
  EXPECT_NE(g.FindNode("targets"), nullptr);

  r = Cli("convert train.sqtxt train.sqg");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("wrote train.sqg (binary, ", g.num_nodes(), " nodes)\n"));
  r = Cli("convert train.sqg again.sqtxt");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFile(Path("train.sqtxt")), ReadFile(Path("again.sqtxt")));
  r = Cli("check train.sqg");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, absl::StrCat("train.sqg: ok (", g.num_nodes(), " nodes, ",
                                g.outputs().size(), " outputs)\n"));
  EXPECT_EQ(Cli("diff train.sqg again.sqtxt").code, 0);
}

TEST_F(GraphCliTest, InspectGolden) {
  WriteSmallGraph("small.sqtxt");
  Result r = Cli("inspect small.sqtxt");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, R"(graph: small.sqtxt
nodes: 7 (7 forward, 0 backward, 0 optimizer)
parameters: 2 tensors, 16 elements, 64 bytes
flops per run: 74
planned peak memory: 192 bytes for all 2 outputs, besides inputs and parameters

inputs:
  x f32[2,3]
outputs:
  loss f32[] = head/reduce_sum
  h f32[2,4] = layer0/relu

nodes by layer   forward  backward optimizer     total
  (none)               1         0         0         1
  head                 3         0         0         3
  layer0               3         0         0         3

nodes by op    forward  backward optimizer     total
  input              1         0         0         1
  matmul             2         0         0         2
  parameter          2         0         0         2
  reduce_sum         1         0         0         1
  relu               1         0         0         1
)");
}

TEST_F(GraphCliTest, NodesGolden) {
  WriteSmallGraph("small.sqg");
  Result r = Cli("nodes small.sqg");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, R"(%0 f32[2,3] = input() "x"
%1 f32[3,4] = parameter() {init="xavier", stddev=0} "layer0/w" @layer0
%2 f32[2,4] = matmul(%0, %1) @layer0
%3 f32[2,4] = relu(%2) @layer0
%4 f32[4,1] = parameter() {init="zeros", stddev=0} "head/v" @head
%5 f32[2,1] = matmul(%3, %4) @head
%6 f32[] = reduce_sum(%5) {axes=[0,1], keepdims=false} @head
output loss = %6
output h = %3
)");
  r = Cli("nodes small.sqg --scope layer0 --op matmul");
  EXPECT_EQ(r.out, "%2 f32[2,4] = matmul(%0, %1) @layer0\n");
  r = Cli("nodes small.sqg --scope lay");
  EXPECT_EQ(r.out, "");
  r = Cli("nodes small.sqg --role backward");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "");
}

TEST_F(GraphCliTest, DiffGolden) {
  WriteSmallGraph("a.sqtxt");
  WriteSmallGraph("b.sqg", /*variant=*/true);
  Result r = Cli("diff a.sqtxt b.sqg");
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(r.out, R"(- node 'layer0/relu' (relu)
~ node 'head/v' (parameter): attribute init: "zeros" -> "ones"
~ node 'head/matmul' (matmul): input 0: layer0/relu -> layer0/gelu
+ node 'layer0/gelu' (gelu)
~ output 'h': layer0/relu -> layer0/gelu
)");
  r = Cli("diff a.sqtxt a.sqtxt");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "");
  r = Cli("diff a.sqtxt missing.sqg");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "diff: cannot open 'missing.sqg': No such file or directory\n");
}

TEST_F(GraphCliTest, Dot) {
  WriteSmallGraph("small.sqg");
  Result r = Cli("dot small.sqg");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("digraph \"small.sqg\" {\n"));
  EXPECT_THAT(r.out, HasSubstr("  subgraph \"cluster_layer0\" {\n    label=\"layer0\";\n"));
  EXPECT_THAT(r.out, HasSubstr("[label=\"input\\nx\", shape=invhouse, fillcolor=\"#d6e6f5\""));
  EXPECT_THAT(r.out, HasSubstr("[label=\"parameter\\nw\", shape=cylinder"));
  EXPECT_THAT(r.out, HasSubstr("  n0 -> n2 [label=\"f32[2,3]\"];\n"));
  EXPECT_THAT(r.out, HasSubstr("[label=\"loss\", shape=house"));
  r = Cli("dot small.sqg -o small.dot");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFile(Path("small.dot")), Cli("dot small.sqg").out);
  // SVG needs Graphviz; without it the message says so.
  r = Cli("dot small.sqg -o small.svg");
  if (system("command -v dot > /dev/null 2>&1") == 0) {
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(ReadFile(Path("small.svg")), HasSubstr("<svg"));
  } else {
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err,
              "dot: writing SVG needs Graphviz's 'dot' program, which is not "
              "installed (Debian: apt-get install graphviz); write DOT instead "
              "with -o FILE.dot\n");
    EXPECT_FALSE(std::filesystem::exists(Path("small.svg")));
  }
  // No temporary files are left behind either way.
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    files.push_back(e.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  EXPECT_THAT(files, ::testing::IsSupersetOf({"small.dot", "small.sqg"}));
  for (const std::string& f : files) EXPECT_THAT(f, ::testing::Not(HasSubstr("tmp")));
}

// `run` gives bit for bit what the in-process executor gives.
TEST_F(GraphCliTest, RunMatchesTheInProcessExecutor) {
  ASSERT_EQ(Cli("export-example -o lm.sqg --layers 1 --d-model 8 --heads 2 "
                "--seq-len 4 --vocab 16 --batch 2")
                .code,
            0);
  Tensor tokens = Tensor::FromVector<int32_t>({2, 4}, std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8});
  Tensor targets = Tensor::FromVector<int32_t>({2, 4}, std::vector<int32_t>{2, 3, 4, 5, 6, 7, 8, 9});
  ASSERT_OK(WriteNpy(Path("tokens.npy"), tokens.view()));
  ASSERT_OK(WriteNpy(Path("targets.npy"), targets.view()));

  ASSERT_OK_AND_ASSIGN(Graph g, LoadGraph(Path("lm.sqg")));
  auto expected = [&](const ParameterStore& init) -> std::vector<Tensor> {
    ParameterStore params = init;
    ExecutorOptions options;
    options.num_threads = 1;
    auto exec = Executor::Create(g, {"loss", "logits"}, &params, options);
    EXPECT_OK(exec.status());
    auto out = (*exec)->Run({{"tokens", tokens.view()}, {"targets", targets.view()}});
    EXPECT_OK(out.status());
    return *out;
  };

  Result r = Cli("run lm.sqg --feed tokens=tokens.npy --feed=targets=targets.npy "
                 "--fetch loss --fetch logits --seed 7 --threads 1 --out out");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "loss f32[] -> out/loss.npy\nlogits f32[2,4,16] -> out/logits.npy\n");
  ParameterStore seeded;
  ASSERT_OK(seeded.Initialize(g, 7));
  std::vector<Tensor> want = expected(seeded);
  ASSERT_OK_AND_ASSIGN(Tensor loss, ReadNpy(Path("out/loss.npy")));
  ASSERT_OK_AND_ASSIGN(Tensor logits, ReadNpy(Path("out/logits.npy")));
  EXPECT_TRUE(loss.BitwiseEquals(want[0]));
  EXPECT_TRUE(logits.BitwiseEquals(want[1]));

  // Parameters from a checkpoint.
  ParameterStore other;
  ASSERT_OK(other.Initialize(g, 11));
  Checkpoint c;
  for (const std::string& name : other.Names()) c.tensors[name] = *other.Find(name);
  ASSERT_OK(SaveCheckpoint(c, Path("p.sqckpt")));
  r = Cli("run lm.sqg --feed tokens=tokens.npy --feed targets=targets.npy "
          "--threads 1 --checkpoint p.sqckpt --out out2");
  ASSERT_EQ(r.code, 0) << r.err;
  want = expected(other);
  ASSERT_OK_AND_ASSIGN(loss, ReadNpy(Path("out2/loss.npy")));
  EXPECT_TRUE(loss.BitwiseEquals(want[0]));
  EXPECT_FALSE(loss.BitwiseEquals(expected(seeded)[0]));

  // Problems with feeds and checkpoints are bad input.
  c.tensors.erase("lm_head/weight");
  ASSERT_OK(SaveCheckpoint(c, Path("partial.sqckpt")));
  r = Cli("run lm.sqg --feed tokens=tokens.npy --feed targets=targets.npy "
          "--checkpoint partial.sqckpt --out out3");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "run: partial.sqckpt: has no tensor for parameter 'lm_head/weight'\n");
  r = Cli("run lm.sqg --feed tokens=tokens.npy --out out3");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "run: input 'targets' (i32[2,4]) is needed by the fetches but was not fed\n");
  r = Cli("run lm.sqg --feed tokens=targets.npy --feed targets=nope.npy --out out3");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "run: cannot open 'nope.npy': No such file or directory\n");
  r = Cli("run lm.sqg --fetch embed/gather --fetch embed_gather --out out4");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "run: fetches 'embed/gather' and 'embed_gather' would both be "
                   "written to out4/embed_gather.npy\n");
  r = Cli("run lm.sqg --feed tokens=tokens.npy --feed targets=targets.npy --seed 3 "
          "--checkpoint p.sqckpt --out out3");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, StartsWith("run: give --seed or --checkpoint, not both\n"));
}

TEST_F(GraphCliTest, TrainWritesCheckpointsAndResumes) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "the quick brown fox jumps over the lazy dog. ";
  std::ofstream(Path("corpus.txt")) << text;
  const std::string common =
      "train --corpus corpus.txt --layers 1 --d-model 16 --heads 2 --seq-len 16 "
      "--batch 2 --steps 6 --eval-every 3 --threads 1 --checkpoint-dir ckpt ";
  Result r = Cli(common + "--checkpoint-every 2 --keep 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("  checkpoint ckpt/ckpt-0000000002.sqckpt\n"));
  EXPECT_THAT(r.out, HasSubstr("  checkpoint ckpt/ckpt-0000000006.sqckpt\n"));
  ASSERT_OK_AND_ASSIGN(std::vector<CheckpointFile> files, ListCheckpoints(Path("ckpt")));
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].step, 4);
  r = Cli(common + "--resume");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("  resuming from ckpt/ckpt-0000000006.sqckpt at step 6\n"));
  r = Cli(common + "--resume --lr 0.1");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, StartsWith("train: cannot resume from ckpt/ckpt-0000000006.sqckpt: "
                                "it was written by a run with optimizer.lr=0.003; this run "
                                "has optimizer.lr=0.1\n"));
  r = Cli("train --resume");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, StartsWith("train: --resume needs --checkpoint-dir\n"));
}

}  // namespace
}  // namespace subquad
