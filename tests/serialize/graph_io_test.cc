#include "serialize/graph_io.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/serialize/graph_test_util.h"

namespace subquad {
namespace {

using ::subquad::testing::FirstDifference;
using ::subquad::testing::StatusIs;
using ::subquad::testing::TinyLM;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class GraphIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "graph_io_test_", getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::vector<std::string> Files() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      out.push_back(e.path().filename().string());
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string Read(const std::string& path) const {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string dir_;
};

TEST_F(GraphIoTest, SavesAndLoadsBothFormatsByExtension) {
  ASSERT_OK_AND_ASSIGN(Graph g, TinyLM(2));
  ASSERT_OK(SaveGraph(g, dir_ + "/lm.sqg"));
  ASSERT_OK(SaveGraph(g, dir_ + "/lm.sqtxt"));
  // Saving over an existing file replaces it; no temporary files remain.
  ASSERT_OK(SaveGraph(g, dir_ + "/lm.sqg"));
  EXPECT_THAT(Files(), ElementsAre("lm.sqg", "lm.sqtxt"));
  EXPECT_THAT(Read(dir_ + "/lm.sqtxt"),
              StartsWith("# subquad graph, text format version 1 "
                         "(serialize/graph.proto)\nproducer_version: 1\n"
                         "min_consumer_version: 1\nnodes {\n  name: \"tokens\"\n"));
  for (const char* name : {"/lm.sqg", "/lm.sqtxt"}) {
    ASSERT_OK_AND_ASSIGN(Graph back, LoadGraph(dir_ + name));
    EXPECT_EQ(FirstDifference(g, back), "") << name;
  }
  // An explicit format overrides the extension.
  ASSERT_OK(SaveGraph(g, dir_ + "/lm.bin", GraphFormat::kBinary));
  ASSERT_OK_AND_ASSIGN(Graph back, LoadGraph(dir_ + "/lm.bin", GraphFormat::kBinary));
  EXPECT_EQ(FirstDifference(g, back), "");
  EXPECT_EQ(Read(dir_ + "/lm.bin"), Read(dir_ + "/lm.sqg"));
}

TEST_F(GraphIoTest, ErrorsNameThePath) {
  ASSERT_OK_AND_ASSIGN(Graph g, TinyLM(0));
  EXPECT_THAT(SaveGraph(g, dir_ + "/lm.pb"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("cannot tell the format of '", dir_,
                                    "/lm.pb' from its name: use .sqg for binary "
                                    "or .sqtxt for text graphs")));
  EXPECT_THAT(LoadGraph(dir_ + "/none.sqg"),
              StatusIs(absl::StatusCode::kNotFound,
                       absl::StrCat("cannot open '", dir_,
                                    "/none.sqg': No such file or directory")));
  EXPECT_THAT(SaveGraph(g, dir_ + "/no/such/dir/lm.sqg"),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(StartsWith(absl::StrCat("cannot create '", dir_,
                                                     "/no/such/dir/.tmp-lm.sqg.")),
                             HasSubstr("': No such file or directory"))));
  ASSERT_OK(SaveGraph(g, dir_ + "/lm.sqg"));
  const int64_t size = std::filesystem::file_size(dir_ + "/lm.sqg");
  EXPECT_THAT(LoadGraph(dir_ + "/lm.sqg", std::nullopt, {.max_bytes = 1000}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("'", dir_, "/lm.sqg' is ", size,
                                    " bytes; the limit is 1000")));
  // A binary file read as text.
  std::filesystem::copy_file(dir_ + "/lm.sqg", dir_ + "/lm.sqtxt");
  EXPECT_THAT(LoadGraph(dir_ + "/lm.sqtxt"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith(absl::StrCat(dir_, "/lm.sqtxt: not a text subquad "
                                                     "graph: line 1, column "))));
  EXPECT_THAT(LoadGraph(dir_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cannot tell the format")));
}

}  // namespace
}  // namespace subquad
