// Golden tests of passes in the graph text form (core/printer.h), many small
// cases per file, as MLIR and LLVM test their passes. Each file in
// tests/passes/testdata/*.golden holds cases separated by "// -----":
//
//   // CASE: what the case shows
//   // PIPELINE: cse,dce
//   <input graph>
//   // EXPECT:
//   <the graph printed after the pipeline>
//
// or "// EXPECT-ERROR: <text the error must contain>". Besides the printed
// form, every successful case is checked semantically: the graph outputs
// before and after the pipeline agree on random inputs and parameters.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/parser.h"
#include "core/printer.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "passes/pass_manager.h"
#include "runtime/executor.h"
#include "tests/ops/op_test_util.h"

namespace subquad {
namespace {

struct GoldenCase {
  std::string file, name, pipeline, input, expect, expect_error;
  int line = 0;
};

void PrintTo(const GoldenCase& c, std::ostream* os) {
  *os << c.file << ":" << c.line << " " << c.name;
}

std::string Normalize(absl::string_view text) {
  std::string out;
  for (absl::string_view l : absl::StrSplit(text, '\n')) {
    l = absl::StripAsciiWhitespace(l);
    if (l.empty()) continue;
    absl::StrAppend(&out, l, "\n");
  }
  return out;
}

std::vector<GoldenCase> LoadCases() {
  std::vector<GoldenCase> cases;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(SUBQUAD_GOLDEN_DIR)) {
    if (e.path().extension() == ".golden") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    GoldenCase c;
    c.file = path.filename().string();
    enum { kInput, kExpect } section = kInput;
    int line_no = 0;
    auto flush = [&] {
      if (!c.pipeline.empty()) cases.push_back(c);
      c = GoldenCase{};
      c.file = path.filename().string();
      section = kInput;
    };
    for (absl::string_view line : absl::StrSplit(ss.str(), '\n')) {
      ++line_no;
      absl::string_view t = absl::StripAsciiWhitespace(line);
      if (t == "// -----") {
        flush();
      } else if (absl::ConsumePrefix(&t, "// CASE:")) {
        c.name = std::string(absl::StripAsciiWhitespace(t));
        c.line = line_no;
      } else if (absl::ConsumePrefix(&t, "// PIPELINE:")) {
        c.pipeline = std::string(absl::StripAsciiWhitespace(t));
      } else if (t == "// EXPECT:") {
        section = kExpect;
      } else if (absl::ConsumePrefix(&t, "// EXPECT-ERROR:")) {
        c.expect_error = std::string(absl::StripAsciiWhitespace(t));
      } else if (!absl::StartsWith(t, "//")) {
        absl::StrAppend(section == kInput ? &c.input : &c.expect, line, "\n");
      }
    }
    flush();
  }
  return cases;
}

// Feeds for every input and values for every parameter, random but fixed.
void RandomValues(const Graph& g, ParameterStore& params, std::vector<Tensor>& feeds_storage,
                  FeedMap& feeds) {
  uint64_t seed = 1;
  feeds_storage.reserve(g.num_nodes());
  for (const Node* n : g.InputNodes()) {
    feeds_storage.push_back(testing::RandomTensor(n->output_type().dtype, n->output_type().shape, seed++));
    feeds[n->name()] = feeds_storage.back().view();
  }
  for (const Node* n : g.ParameterNodes()) {
    params.Set(n->name(), testing::RandomTensor(n->output_type().dtype, n->output_type().shape, seed++));
  }
}

class GoldenTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenTest, Pipeline) {
  const GoldenCase& c = GetParam();
  SCOPED_TRACE(absl::StrCat(c.file, ":", c.line, " ", c.name));
  ASSERT_OK_AND_ASSIGN(Graph g, ParseGraph(c.input));
  const Graph before = g;
  auto pm = PassManager::Create(c.pipeline);
  PassContext ctx;
  absl::StatusOr<bool> run = pm.ok() ? pm->Run(g, ctx) : absl::StatusOr<bool>(pm.status());
  if (!c.expect_error.empty()) {
    ASSERT_FALSE(run.ok()) << "expected an error containing: " << c.expect_error;
    EXPECT_THAT(std::string(run.status().message()), ::testing::HasSubstr(c.expect_error));
    return;
  }
  ASSERT_OK(run.status());
  EXPECT_EQ(Normalize(PrintGraph(g)), Normalize(c.expect));
  // Semantics: every output of the original graph, before and after.
  std::vector<std::string> fetches;
  for (const auto& [name, v] : before.outputs()) fetches.push_back(name);
  if (fetches.empty()) return;
  ParameterStore params;
  std::vector<Tensor> storage;
  FeedMap feeds;
  RandomValues(before, params, storage, feeds);
  ASSERT_OK_AND_ASSIGN(auto exec_before, Executor::Create(before, fetches, &params));
  ASSERT_OK_AND_ASSIGN(auto exec_after, Executor::Create(g, fetches, &params));
  ASSERT_OK_AND_ASSIGN(auto out_before, exec_before->Run(feeds));
  ASSERT_OK_AND_ASSIGN(auto out_after, exec_after->Run(feeds));
  for (size_t i = 0; i < fetches.size(); ++i) {
    EXPECT_TRUE(testing::TensorsNear(out_after[i], out_before[i], 1e-6, 1e-6)) << fetches[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenTest, ::testing::ValuesIn(LoadCases()),
                         [](const ::testing::TestParamInfo<GoldenCase>& info) {
                           std::string name = absl::StrCat(
                               info.param.file.substr(0, info.param.file.find('.')), "_",
                               info.param.line);
                           return name;
                         });

}  // namespace
}  // namespace subquad
