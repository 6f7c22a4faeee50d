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
};

void PrintUsage(FILE* out) {
  std::fprintf(out, "usage: subquad <command> [args] [--help]\n\ncommands:\n");
  for (const auto& c : kCommands) {
    std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
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
