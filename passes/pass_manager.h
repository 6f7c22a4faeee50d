// PassManager: runs a pipeline of registered passes over a graph.
//
//   ASSIGN_OR_RETURN(PassManager pm, PassManager::Create(
//       "autodiff{loss=loss},cse,dce", {.verify_each = true, .timing = true}));
//   ASSIGN_OR_RETURN(bool changed, pm.Run(graph, ctx));
//
// Pipelines are text: passes separated by commas, each with optional
// options in braces: `name{key=value,key=[1,2]}`. Values are typed by the
// pass's option declarations; strings may be double-quoted. Parse errors
// give the column and list the valid passes or options.
#ifndef SUBQUAD_PASSES_PASS_MANAGER_H_
#define SUBQUAD_PASSES_PASS_MANAGER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/graph.h"
#include "passes/pass.h"

namespace subquad {

// One pass of a parsed pipeline: its name and its options as written.
struct PipelineEntry {
  std::string pass;
  std::vector<std::pair<std::string, std::string>> options;  // key, raw value
  int column = 1;  // 1-based column of the pass name
};

// Syntax only (no registry lookup); errors give the 1-based column.
absl::StatusOr<std::vector<PipelineEntry>> ParsePipeline(absl::string_view text);

struct PassManagerOptions {
  // Run the verifier after every pass that changed the graph.
  bool verify_each = true;
  // Print the graph after these passes (by name), or after every pass.
  std::vector<std::string> print_after;
  bool print_after_all = false;
  // Where printed graphs go (nullptr: nowhere).
  std::function<void(const std::string&)> print;
};

struct PassTiming {
  std::string pass;
  double seconds = 0;
  bool changed = false;
};

class PassManager {
 public:
  static absl::StatusOr<PassManager> Create(absl::string_view pipeline,
                                            PassManagerOptions options = {});

  // Runs every pass in order. Errors name the pass (and, from the verifier,
  // the node). Returns whether any pass changed the graph.
  absl::StatusOr<bool> Run(Graph& graph, PassContext& ctx);

  const std::vector<PassTiming>& timings() const { return timings_; }
  // "pass  seconds  changed" table with a total line.
  std::string TimingReport() const;
  // Canonical text of the pipeline with every option value.
  std::string PipelineString() const;

 private:
  struct Entry {
    const PassInfo* info;
    PassOptions options;
    std::unique_ptr<Pass> pass;
  };
  std::vector<Entry> entries_;
  PassManagerOptions options_;
  std::vector<PassTiming> timings_;
};

}  // namespace subquad

#endif  // SUBQUAD_PASSES_PASS_MANAGER_H_
