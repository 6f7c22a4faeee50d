// `subquad opt`: runs a pass pipeline over a graph file.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/printer.h"
#include "passes/pass_manager.h"
#include "passes/plugin.h"
#include "serialize/graph_io.h"
#include "tools/args.h"
#include "tools/cmd_common.h"
#include "tools/commands.h"

namespace subquad::cli {
namespace {

std::string ListPasses() {
  std::string out;
  for (const PassInfo* p : PassRegistry::Global().List()) {
    absl::StrAppend(&out, p->name, "  (stage: ", PassStageName(p->stage), ")\n    ", p->help, "\n");
    for (const PassOptionDef& o : p->options) {
      std::string range;
      if (o.min || o.max) {
        range = absl::StrCat(" [", o.min ? absl::StrCat(*o.min) : "-inf", ", ",
                             o.max ? absl::StrCat(*o.max) : "inf", "]");
      }
      absl::StrAppend(&out, "    ", o.name, ": ", AttrKindName(o.kind), " = ",
                      o.default_value.ToString(), range, "  ", o.help, "\n");
    }
  }
  return out;
}

}  // namespace

int RunOpt(const std::vector<std::string>& argv_in) {
  Args a("opt",
         "Runs a pass pipeline over a graph file and writes the result (to -o, "
         "else prints it in the text form).");
  a.Positional("IN", "graph file (.sqg binary or .sqtxt text)", /*required=*/false)
      .Flag("output", "", "where to write the result (-o; format by extension)")
      .Flag("pipeline", "", "passes, e.g. \"autodiff{loss=loss},cse,dce\"")
      .Flag("load-plugin", "", "a plugin shared library (repeatable)")
      .Flag("print-after", "", "print the graph after this pass, or 'all'")
      .BoolFlag("verify-each", "run the verifier after every changing pass")
      .BoolFlag("timing", "print each pass's time")
      .BoolFlag("explain", "print why patterns did or did not apply")
      .BoolFlag("stats", "print the passes' statistics")
      .BoolFlag("list-passes", "list every pass (built-in and loaded) with its options");
  std::vector<std::string> argv = argv_in;
  auto plugins = TakeRepeatedFlag(argv, "load-plugin");
  if (!plugins.ok()) return UsageError(a, "opt", plugins.status().message());
  if (std::optional<int> done = ParseArgs(a, argv)) return *done;
  for (const std::string& p : *plugins) {
    auto loaded = LoadPlugin(p);
    if (!loaded.ok()) return BadInput("opt", loaded.status());
  }
  if (a.GetBool("list-passes")) {
    std::printf("%s", ListPasses().c_str());
    return kExitOk;
  }
  if (a.positionals().empty()) return UsageError(a, "opt", "missing argument IN");
  if (a.GetString("pipeline").empty()) return UsageError(a, "opt", "--pipeline is required");

  PassManagerOptions pmo;
  pmo.verify_each = a.GetBool("verify-each");
  const std::string print_after = a.GetString("print-after");
  if (print_after == "all") {
    pmo.print_after_all = true;
  } else if (!print_after.empty()) {
    pmo.print_after = absl::StrSplit(print_after, ',');
  }
  pmo.print = [](const std::string& s) { std::fputs(s.c_str(), stderr); };
  auto pm = PassManager::Create(a.GetString("pipeline"), pmo);
  if (!pm.ok()) return UsageError(a, "opt", pm.status().message());

  auto graph = LoadGraphFile(a.positionals()[0]);
  if (!graph.ok()) return BadInput("opt", graph.status());
  PassContext ctx;
  ctx.set_explain(a.GetBool("explain"));
  auto changed = pm->Run(*graph, ctx);
  if (a.GetBool("explain")) {
    for (const std::string& e : ctx.explanations()) std::fprintf(stderr, "explain: %s\n", e.c_str());
  }
  if (!changed.ok()) return BadInput("opt", changed.status());
  if (a.GetBool("timing")) std::fprintf(stderr, "%s", pm->TimingReport().c_str());
  if (a.GetBool("stats")) {
    for (const auto& [pass, counters] : ctx.statistics()) {
      for (const auto& [name, n] : counters) {
        std::fprintf(stderr, "%s: %s %lld\n", pass.c_str(), name.c_str(), (long long)n);
      }
    }
  }
  const std::string out = a.GetString("output");
  if (out.empty()) {
    std::printf("%s", PrintGraph(*graph).c_str());
    return kExitOk;
  }
  if (absl::Status s = SaveGraph(*graph, out); !s.ok()) return BadInput("opt", s);
  return kExitOk;
}

}  // namespace subquad::cli
