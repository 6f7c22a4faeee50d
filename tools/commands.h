// The subquad CLI's subcommands. Each returns the process exit code:
// 0 success, 1 bad input (message on stderr), 2 usage error.
#ifndef SUBQUAD_TOOLS_COMMANDS_H_
#define SUBQUAD_TOOLS_COMMANDS_H_

#include <string>
#include <vector>

namespace subquad::cli {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const std::vector<std::string>& args);
};

int RunVersion(const std::vector<std::string>& args);
int RunOps(const std::vector<std::string>& args);
int RunTrain(const std::vector<std::string>& args);

}  // namespace subquad::cli

#endif  // SUBQUAD_TOOLS_COMMANDS_H_
