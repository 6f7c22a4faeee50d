// `subquad convert` (binary <-> text) and `subquad check` (load + verify).
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "serialize/graph_io.h"
#include "tools/args.h"
#include "tools/cmd_common.h"
#include "tools/commands.h"

namespace subquad::cli {

int RunConvert(const std::vector<std::string>& argv) {
  Args a("convert",
         "Reads a graph file and writes it in the format OUT's extension names "
         "(.sqg binary, .sqtxt text). The graph is validated on the way.");
  a.Positional("IN", "the graph file to read")
      .Positional("OUT", "the graph file to write");
  if (auto done = ParseArgs(a, argv)) return *done;
  const std::string in = a.positionals()[0], out = a.positionals()[1];
  for (const std::string& p : {in, out}) {
    if (auto f = GraphFormatFromPath(p); !f.ok()) {
      return UsageError(a, "convert", f.status().message());
    }
  }
  absl::StatusOr<Graph> g = LoadGraphFile(in);
  if (!g.ok()) return BadInput("convert", g.status());
  if (absl::Status s = SaveGraph(*g, out); !s.ok()) return BadInput("convert", s);
  std::printf("wrote %s (%s, %d nodes)\n", out.c_str(),
              std::string(GraphFormatName(*GraphFormatFromPath(out))).c_str(),
              g->num_nodes());
  return kExitOk;
}

int RunCheck(const std::vector<std::string>& argv) {
  Args a("check",
         "Loads a graph file with full validation (versions, sizes, references, "
         "cycles, ops, attributes, shapes) and runs the verifier. Exit code 0 "
         "when the file is a valid graph, 1 with the first problem on stderr.");
  a.Positional("FILE", "a graph file (.sqg or .sqtxt)");
  if (auto done = ParseArgs(a, argv)) return *done;
  const std::string path = a.positionals()[0];
  absl::StatusOr<Graph> g = LoadGraphFile(path);
  if (!g.ok()) return BadInput("check", g.status());
  std::printf("%s: ok (%d nodes, %zu outputs)\n", path.c_str(), g->num_nodes(),
              g->outputs().size());
  return kExitOk;
}

}  // namespace subquad::cli
