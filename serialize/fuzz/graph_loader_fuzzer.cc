// libFuzzer target for the graph loader: every input is parsed as a binary
// and as a text graph file (serialize/graph_io.h). Loading must never crash,
// hang, leak or allocate without bound, and a graph that loads must save and
// load again to the same text (else the target aborts: a finding).
//
// Built by -DSUBQUAD_FUZZ=ON with clang (ASan + UBSan); see .ci/run for
// the seed corpus and the run.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "core/printer.h"
#include "google/protobuf/stubs/logging.h"
#include "serialize/graph_io.h"

namespace {

// A smaller id bound than the default keeps each run fast: the node table of
// a graph with id N has N slots (the default is tested in the unit tests).
constexpr subquad::LoadLimits kLimits = {.max_bytes = 1 << 20,
                                         .max_node_id = (1 << 16) - 1,
                                         .max_fields = 1 << 20};

[[noreturn]] void Fail(const char* what, absl::string_view detail) {
  std::fprintf(stderr, "graph_loader_fuzzer: %s: %.*s\n", what,
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Protobuf logs invalid UTF-8 in string fields; the loader reports it.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (subquad::GraphFormat format :
       {subquad::GraphFormat::kBinary, subquad::GraphFormat::kText}) {
    absl::StatusOr<subquad::Graph> g = subquad::ParseGraph(bytes, format, kLimits);
    if (!g.ok()) {
      if (g.status().message().empty()) Fail("an error without a message", "");
      continue;
    }
    const std::string printed = subquad::PrintGraph(*g);
    absl::StatusOr<std::string> saved = subquad::SerializeGraph(*g, format);
    if (!saved.ok()) Fail("a loaded graph does not save", saved.status().message());
    absl::StatusOr<subquad::Graph> again =
        subquad::ParseGraph(*saved, format, kLimits);
    if (!again.ok()) Fail("a saved graph does not load", again.status().message());
    if (subquad::PrintGraph(*again) != printed) {
      Fail("a graph changed in a save/load round trip", printed);
    }
  }
  return 0;
}
