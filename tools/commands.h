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
// Graph files (tools/cmd_export.cc, cmd_inspect.cc, cmd_dot.cc,
// cmd_convert.cc, cmd_diff.cc, cmd_run.cc).
int RunExportExample(const std::vector<std::string>& args);
int RunInspect(const std::vector<std::string>& args);
int RunNodes(const std::vector<std::string>& args);
int RunDot(const std::vector<std::string>& args);
int RunConvert(const std::vector<std::string>& args);
int RunCheck(const std::vector<std::string>& args);
// Exit codes as diff(1): 0 equal, 1 different, 2 trouble.
int RunDiff(const std::vector<std::string>& args);
int RunRun(const std::vector<std::string>& args);
int RunOpt(const std::vector<std::string>& args);

}  // namespace subquad::cli

#endif  // SUBQUAD_TOOLS_COMMANDS_H_
