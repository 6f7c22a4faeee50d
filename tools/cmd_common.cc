#include "tools/cmd_common.h"

#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "serialize/graph_io.h"

namespace subquad::cli {

std::optional<int> ParseArgs(Args& args, std::vector<std::string> argv) {
  for (std::string& a : argv) {
    if (a == "-o") a = "--output";
  }
  if (absl::Status s = args.Parse(argv); !s.ok()) {
    std::fprintf(stderr, "%s\n\n%s", std::string(s.message()).c_str(),
                 args.Help().c_str());
    return kExitUsage;
  }
  if (args.help_requested()) {
    std::printf("%s", args.Help().c_str());
    return kExitOk;
  }
  return std::nullopt;
}

int BadInput(absl::string_view command, const absl::Status& status) {
  std::fprintf(stderr, "%s: %s\n", std::string(command).c_str(),
               std::string(status.message()).c_str());
  return kExitBadInput;
}

int UsageError(const Args& args, absl::string_view command,
               absl::string_view message) {
  std::fprintf(stderr, "%s: %s\n\n%s", std::string(command).c_str(),
               std::string(message).c_str(), args.Help().c_str());
  return kExitUsage;
}

absl::StatusOr<std::vector<std::string>> TakeRepeatedFlag(
    std::vector<std::string>& argv, absl::string_view name) {
  const std::string flag = absl::StrCat("--", name);
  std::vector<std::string> values, rest;
  for (size_t i = 0; i < argv.size(); ++i) {
    if (argv[i] == flag) {
      if (i + 1 == argv.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("flag ", flag, " needs a value"));
      }
      values.push_back(argv[++i]);
    } else if (absl::StartsWith(argv[i], flag + "=")) {
      values.push_back(argv[i].substr(flag.size() + 1));
    } else {
      rest.push_back(argv[i]);
    }
  }
  argv = std::move(rest);
  return values;
}

bool FlagGiven(const std::vector<std::string>& argv, absl::string_view name) {
  const std::string flag = absl::StrCat("--", name);
  for (const std::string& a : argv) {
    if (a == flag || absl::StartsWith(a, flag + "=")) return true;
  }
  return false;
}

std::string HumanBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " bytes");
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes) / 1024;
  int u = 0;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  return absl::StrFormat("%d bytes (%.1f %s)", bytes, v, units[u]);
}

std::string HumanCount(int64_t n) {
  if (n < 1000) return absl::StrCat(n);
  const char* units[] = {"k", "M", "G", "T", "P"};
  double v = static_cast<double>(n) / 1000;
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  return absl::StrFormat("%d (%.3g %s)", n, v, units[u]);
}

absl::StatusOr<Graph> LoadGraphFile(const std::string& path) {
  return LoadGraph(path);
}

std::string LayerOf(const Node& n) {
  if (n.scope().empty()) return "(none)";
  return n.scope().substr(0, n.scope().find('/'));
}

std::string ValueName(const Graph& graph, Value v) {
  const Node* n = graph.node(v.node);
  if (n == nullptr) return v.ToString();
  return v.output == 0 ? n->name() : absl::StrCat(n->name(), ":", v.output);
}

}  // namespace subquad::cli
