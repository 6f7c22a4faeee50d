// subquad: inspect and transform subquad graphs, train and benchmark models.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tools/commands.h"

namespace {

constexpr subquad::cli::Command kCommands[] = {
    {"version", "print the version", subquad::cli::RunVersion},
    {"ops", "list the registered ops and their schemas", subquad::cli::RunOps},
    {"train", "train a byte-level language model on text", subquad::cli::RunTrain},
    {"export-example", "write the example TransformerLM graph to a file",
     subquad::cli::RunExportExample},
    {"inspect", "summarise a graph file", subquad::cli::RunInspect},
    {"nodes", "print a graph file's nodes (filter by scope, role, op)",
     subquad::cli::RunNodes},
    {"dot", "render a graph file as Graphviz DOT or SVG", subquad::cli::RunDot},
    {"convert", "convert a graph file between binary and text",
     subquad::cli::RunConvert},
    {"check", "validate a graph file", subquad::cli::RunCheck},
    {"diff", "structural differences between two graph files",
     subquad::cli::RunDiff},
    {"run", "run a graph file on .npy feeds, write .npy fetches",
     subquad::cli::RunRun},
    {"opt", "run a pass pipeline over a graph file (--list-passes lists them)",
     subquad::cli::RunOpt},
};

void PrintUsage(FILE* out) {
  std::fprintf(out, "usage: subquad <command> [args] [--help]\n\ncommands:\n");
  for (const auto& c : kCommands) {
    std::fprintf(out, "  %-15s %s\n", c.name, c.summary);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    PrintUsage(stdout);
    return 0;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& c : kCommands) {
    if (cmd == c.name) return c.run(args);
  }
  std::fprintf(stderr, "subquad: unknown command '%s'\n\n", cmd.c_str());
  PrintUsage(stderr);
  return 2;
}
