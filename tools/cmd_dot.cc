// `subquad dot`: a graph file as Graphviz DOT (or SVG through `dot`).
//
// Scopes become nested clusters; forward, backward and optimizer nodes get
// different fill colours; inputs, parameters and constants different
// shapes; edges carry the type of the value; graph outputs are extra nodes.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "serialize/file_io.h"
#include "tools/args.h"
#include "tools/cmd_common.h"
#include "tools/commands.h"

extern char** environ;

namespace subquad::cli {
namespace {

std::string Quote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

const char* FillColor(Role r) {
  switch (r) {
    case Role::kForward:
      return "#d6e6f5";  // blue
    case Role::kBackward:
      return "#f8d9c0";  // orange
    case Role::kOptimizer:
      return "#d3ebd0";  // green
  }
  return "white";
}

const char* NodeShape(const Node& n) {
  if (n.op() == "input") return "invhouse";
  if (n.op() == "parameter") return "cylinder";
  if (n.op() == "constant") return "note";
  return "box";
}

// The scopes as a tree; each level holds the nodes whose scope ends there.
struct ScopeTree {
  std::vector<const Node*> nodes;
  std::map<std::string, ScopeTree> children;
};

void EmitScope(const ScopeTree& t, const std::string& path, int depth,
               std::string* out) {
  const std::string indent(2 * depth, ' ');
  for (const Node* n : t.nodes) {
    // The name within the node's scope (the cluster says the rest).
    const std::string prefix = n->scope().empty() ? "" : absl::StrCat(n->scope(), "/");
    const std::string short_name = absl::StartsWith(n->name(), prefix)
                                       ? n->name().substr(prefix.size())
                                       : n->name();
    std::string label = n->op();
    if (short_name != n->op()) absl::StrAppend(&label, "\n", short_name);
    absl::StrAppend(out, indent, "n", n->id(), " [label=", Quote(label),
                    ", shape=", NodeShape(*n), ", fillcolor=\"",
                    FillColor(n->role()), "\", tooltip=",
                    Quote(absl::StrCat("%", n->id(), " ", n->name())), "];\n");
  }
  for (const auto& [name, child] : t.children) {
    const std::string child_path = path.empty() ? name : absl::StrCat(path, "/", name);
    absl::StrAppend(out, indent, "subgraph ", Quote(absl::StrCat("cluster_", child_path)),
                    " {\n", indent, "  label=", Quote(name), ";\n");
    EmitScope(child, child_path, depth + 1, out);
    absl::StrAppend(out, indent, "}\n");
  }
}

std::string ToDot(const Graph& g, absl::string_view title) {
  std::string out = absl::StrCat(
      "digraph ", Quote(title), " {\n",
      "  rankdir=TB;\n"
      // Without it dot fails ("trouble in init_rank") on clusters that
      // forward and backward edges both cross.
      "  newrank=true;\n"
      "  graph [fontname=\"Helvetica\", fontsize=11, style=\"rounded\", "
      "color=\"#999999\"];\n"
      "  node [style=\"filled,rounded\", fontname=\"Helvetica\", fontsize=10];\n"
      "  edge [fontname=\"Helvetica\", fontsize=8, color=\"#555555\"];\n");
  ScopeTree root;
  for (const Node* n : g.nodes()) {
    ScopeTree* t = &root;
    if (!n->scope().empty()) {
      for (absl::string_view part : absl::StrSplit(n->scope(), '/')) {
        t = &t->children[std::string(part)];
      }
    }
    t->nodes.push_back(n);
  }
  EmitScope(root, "", 1, &out);
  for (const Node* n : g.nodes()) {
    for (const Value& v : n->inputs()) {
      std::string label = g.type(v).ToString();
      if (v.output != 0) label = absl::StrCat(":", v.output, " ", label);
      absl::StrAppend(&out, "  n", v.node, " -> n", n->id(),
                      " [label=", Quote(label), "];\n");
    }
  }
  int k = 0;
  for (const auto& [name, v] : g.outputs()) {
    absl::StrAppend(&out, "  out", k, " [label=", Quote(name),
                    ", shape=house, fillcolor=\"#eeeeee\"];\n", "  n", v.node,
                    " -> out", k, " [label=", Quote(g.type(v).ToString()), "];\n");
    ++k;
  }
  absl::StrAppend(&out, "}\n");
  return out;
}

// Runs `dot -Tsvg -o svg_path dot_path`. NotFound when there is no `dot`.
absl::Status RunGraphviz(const std::string& dot_path, const std::string& svg_path) {
  std::vector<std::string> args = {"dot", "-Tsvg", "-o", svg_path, dot_path};
  std::vector<char*> cargs;
  for (std::string& s : args) cargs.push_back(s.data());
  cargs.push_back(nullptr);
  pid_t pid;
  const int err = posix_spawnp(&pid, "dot", nullptr, nullptr, cargs.data(), environ);
  if (err == ENOENT) {
    return absl::NotFoundError(
        "writing SVG needs Graphviz's 'dot' program, which is not installed "
        "(Debian: apt-get install graphviz); write DOT instead with -o FILE.dot");
  }
  if (err != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot run 'dot': ", std::strerror(err)));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return absl::UnavailableError(
          absl::StrCat("waiting for 'dot': ", std::strerror(errno)));
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(
        "'dot -Tsvg' failed (", WIFEXITED(status) ? "exit code " : "signal ",
        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

int RunDot(const std::vector<std::string>& argv) {
  Args a("dot",
         "Renders a graph file as Graphviz DOT: a cluster per scope, forward "
         "nodes blue, backward orange, optimizer green; inputs, parameters and "
         "constants as distinct shapes; value types on the edges. Writes DOT to "
         "stdout, to -o FILE.dot, or SVG to -o FILE.svg (needs Graphviz's "
         "`dot`).");
  a.Positional("FILE", "a graph file (.sqg or .sqtxt)")
      .Flag("output", "", "-o, write here (.dot or .svg) instead of stdout");
  if (auto done = ParseArgs(a, argv)) return *done;
  const std::string path = a.positionals()[0];
  const std::string out = a.GetString("output");
  const bool svg = absl::EndsWith(out, ".svg");
  if (!out.empty() && !svg && !absl::EndsWith(out, ".dot")) {
    return UsageError(a, "dot",
                      absl::StrCat("-o ", out, ": the name must end in .dot or .svg"));
  }
  absl::StatusOr<Graph> g = LoadGraphFile(path);
  if (!g.ok()) return BadInput("dot", g.status());
  const std::string dot = ToDot(*g, path);
  if (out.empty()) {
    std::fwrite(dot.data(), 1, dot.size(), stdout);
    return kExitOk;
  }
  if (!svg) {
    if (absl::Status s = WriteFileAtomically(out, dot); !s.ok()) {
      return BadInput("dot", s);
    }
    return kExitOk;
  }
  // dot writes a temporary SVG that is then renamed into place.
  const std::string tmp_dot = absl::StrCat(out, ".", getpid(), ".tmp.dot");
  const std::string tmp_svg = absl::StrCat(out, ".", getpid(), ".tmp.svg");
  absl::Status s = WriteFileAtomically(tmp_dot, dot);
  if (s.ok()) s = RunGraphviz(tmp_dot, tmp_svg);
  if (s.ok() && std::rename(tmp_svg.c_str(), out.c_str()) != 0) {
    s = absl::UnavailableError(absl::StrCat("cannot rename to '", out,
                                            "': ", std::strerror(errno)));
  }
  std::remove(tmp_dot.c_str());
  std::remove(tmp_svg.c_str());
  if (!s.ok()) return BadInput("dot", s);
  return kExitOk;
}

}  // namespace subquad::cli
