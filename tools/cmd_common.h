// Helpers shared by the subquad commands that read and write graph files:
// argument handling with the CLI's exit codes, and graph loading with the
// message a user sees.
#ifndef SUBQUAD_TOOLS_CMD_COMMON_H_
#define SUBQUAD_TOOLS_CMD_COMMON_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/graph.h"
#include "tools/args.h"

namespace subquad::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitBadInput = 1;
inline constexpr int kExitUsage = 2;

// Rewrites the short flag "-o" as "--output" (the parser knows long flags
// only), then parses. Returns the exit code when the command is done: 0
// after printing --help, 2 after a usage error (message and help on
// stderr); nullopt to go on.
std::optional<int> ParseArgs(Args& args, std::vector<std::string> argv);

// Prints "<command>: <message>" to stderr; returns 1 (bad input).
int BadInput(absl::string_view command, const absl::Status& status);
// Prints "<command>: <message>" and the help to stderr; returns 2.
int UsageError(const Args& args, absl::string_view command,
               absl::string_view message);

// Removes every "--name VALUE" / "--name=VALUE" from argv and returns the
// values in order: for flags that repeat (run's --feed and --fetch).
// InvalidArgument when the last one has no value.
absl::StatusOr<std::vector<std::string>> TakeRepeatedFlag(
    std::vector<std::string>& argv, absl::string_view name);

// Whether argv sets --name (as "--name", "--name VALUE" or "--name=VALUE").
bool FlagGiven(const std::vector<std::string>& argv, absl::string_view name);

// "(none)" for the empty scope, else its first component: the layer.
std::string LayerOf(const Node& n);

// "49380 bytes (48.2 KiB)"; "12 bytes" below 1 KiB.
std::string HumanBytes(int64_t bytes);
// "1234567 (1.23 M)"; the number alone below 1000.
std::string HumanCount(int64_t n);

// Loads a graph file (format by extension).
absl::StatusOr<Graph> LoadGraphFile(const std::string& path);

// The text of a value in a user's terms: "name" for output 0, "name:k".
std::string ValueName(const Graph& graph, Value v);

}  // namespace subquad::cli

#endif  // SUBQUAD_TOOLS_CMD_COMMON_H_
