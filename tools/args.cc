#include "tools/args.h"

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace subquad::cli {

Args& Args::Flag(std::string name, std::string default_value, std::string help) {
  flag_order_.push_back(name);
  flags_[std::move(name)] = {std::move(default_value), std::move(help), false};
  return *this;
}

Args& Args::BoolFlag(std::string name, std::string help) {
  flag_order_.push_back(name);
  flags_[std::move(name)] = {"false", std::move(help), true};
  return *this;
}

Args& Args::Positional(std::string name, std::string help, bool required) {
  positionals_.push_back({std::move(name), std::move(help), required});
  return *this;
}

absl::Status Args::Parse(const std::vector<std::string>& argv) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "-h" || a == "--help") {
      help_ = true;
      return absl::OkStatus();
    }
    if (a.size() > 2 && a[0] == '-' && a[1] == '-') {
      std::string name = a.substr(2), value;
      bool has_value = false;
      if (size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      auto it = flags_.find(name);
      if (it == flags_.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            command_, ": unknown flag --", name, " (see 'subquad ", command_,
            " --help')"));
      }
      if (!has_value) {
        if (it->second.is_bool) {
          value = "true";
        } else if (i + 1 < argv.size()) {
          value = argv[++i];
        } else {
          return absl::InvalidArgumentError(
              absl::StrCat(command_, ": flag --", name, " needs a value"));
        }
      }
      values_[name] = value;
      continue;
    }
    positional_values_.push_back(a);
  }
  size_t required = 0;
  for (const auto& p : positionals_) required += p.required ? 1 : 0;
  if (positional_values_.size() < required) {
    return absl::InvalidArgumentError(absl::StrCat(
        command_, ": missing argument ", positionals_[positional_values_.size()].name,
        " (see 'subquad ", command_, " --help')"));
  }
  if (positional_values_.size() > positionals_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        command_, ": unexpected argument '", positional_values_[positionals_.size()],
        "'"));
  }
  return absl::OkStatus();
}

std::string Args::Help() const {
  std::string usage = absl::StrCat("usage: subquad ", command_);
  for (const auto& p : positionals_) {
    absl::StrAppend(&usage, p.required ? " " : " [", p.name, p.required ? "" : "]");
  }
  if (!flags_.empty()) absl::StrAppend(&usage, " [flags]");
  std::string out = absl::StrCat(usage, "\n\n", summary_, "\n");
  if (!positionals_.empty()) absl::StrAppend(&out, "\narguments:\n");
  for (const auto& p : positionals_) {
    absl::StrAppendFormat(&out, "  %-22s %s\n", p.name, p.help);
  }
  if (!flags_.empty()) absl::StrAppend(&out, "\nflags:\n");
  for (const std::string& name : flag_order_) {
    const FlagDef& f = flags_.at(name);
    const std::string left =
        f.is_bool ? absl::StrCat("--", name) : absl::StrCat("--", name, "=", f.default_value);
    absl::StrAppendFormat(&out, "  %-22s %s\n", left, f.help);
  }
  return out;
}

std::string Args::GetString(absl::string_view name) const {
  auto it = values_.find(name);
  if (it != values_.end()) return it->second;
  return flags_.at(std::string(name)).default_value;
}

absl::StatusOr<int64_t> Args::GetInt(absl::string_view name) const {
  const std::string s = GetString(name);
  int64_t v;
  if (!absl::SimpleAtoi(s, &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat(command_, ": --", name, "=", s, " is not an integer"));
  }
  return v;
}

absl::StatusOr<double> Args::GetDouble(absl::string_view name) const {
  const std::string s = GetString(name);
  double v;
  if (!absl::SimpleAtod(s, &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat(command_, ": --", name, "=", s, " is not a number"));
  }
  return v;
}

bool Args::GetBool(absl::string_view name) const {
  const std::string s = GetString(name);
  return s == "true" || s == "1" || s == "yes";
}

}  // namespace subquad::cli
