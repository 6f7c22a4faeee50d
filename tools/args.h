// Command-line parsing for the subquad CLI's subcommands.
//
// Each subcommand declares its flags (name, kind, default, help) and
// positional arguments; Parse() accepts "--name=value", "--name value" and
// bare "--flag" for booleans, rejects unknown flags with a message naming
// them, and renders --help. Flag names use hyphens, as users type them.
#ifndef SUBQUAD_TOOLS_ARGS_H_
#define SUBQUAD_TOOLS_ARGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace subquad::cli {

class Args {
 public:
  Args(std::string command, std::string summary)
      : command_(std::move(command)), summary_(std::move(summary)) {}

  // Declarations (before Parse). Defaults are given as text.
  Args& Flag(std::string name, std::string default_value, std::string help);
  Args& BoolFlag(std::string name, std::string help);
  Args& Positional(std::string name, std::string help, bool required = true);

  // InvalidArgument for unknown flags, missing values or positionals.
  // Sets help_requested() for -h/--help.
  absl::Status Parse(const std::vector<std::string>& argv);
  bool help_requested() const { return help_; }
  std::string Help() const;

  // Typed reads; InvalidArgument names the flag and the bad text.
  std::string GetString(absl::string_view name) const;
  absl::StatusOr<int64_t> GetInt(absl::string_view name) const;
  absl::StatusOr<double> GetDouble(absl::string_view name) const;
  bool GetBool(absl::string_view name) const;
  const std::vector<std::string>& positionals() const { return positional_values_; }

 private:
  struct FlagDef {
    std::string default_value;
    std::string help;
    bool is_bool = false;
  };
  struct PositionalDef {
    std::string name, help;
    bool required;
  };
  std::string command_, summary_;
  absl::btree_map<std::string, FlagDef> flags_;
  std::vector<std::string> flag_order_;
  std::vector<PositionalDef> positionals_;
  absl::btree_map<std::string, std::string> values_;
  std::vector<std::string> positional_values_;
  bool help_ = false;
};

}  // namespace subquad::cli

#endif  // SUBQUAD_TOOLS_ARGS_H_
