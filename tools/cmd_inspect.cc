// `subquad inspect` (a summary of a graph file) and `subquad nodes` (its
// nodes in the text form of core/printer.h, filtered).
#include <algorithm>
#include <array>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/op_schema.h"
#include "core/printer.h"
#include "runtime/plan.h"
#include "tools/args.h"
#include "tools/cmd_common.h"
#include "tools/commands.h"

namespace subquad::cli {
namespace {

// Counts per key and role, printed as a table with a total column.
class RoleTable {
 public:
  void Add(const std::string& key, Role role) {
    ++rows_[key][static_cast<int>(role)];
  }
  std::string Render(absl::string_view title) const {
    size_t width = title.size();
    for (const auto& [key, counts] : rows_) width = std::max(width, key.size() + 2);
    std::string out = absl::StrFormat("%-*s %9s %9s %9s %9s\n", width, title,
                                      "forward", "backward", "optimizer", "total");
    for (const auto& [key, c] : rows_) {
      absl::StrAppendFormat(&out, "  %-*s %9d %9d %9d %9d\n", width - 2, key,
                            c[0], c[1], c[2], c[0] + c[1] + c[2]);
    }
    return out;
  }

 private:
  absl::btree_map<std::string, std::array<int, 3>> rows_;
};

// Sums that a hostile file could push past int64 stop at its maximum.
int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_add_overflow(a, b, &r) ? std::numeric_limits<int64_t>::max() : r;
}

struct TensorTally {
  int tensors = 0;
  int64_t elements = 0;
  int64_t bytes = 0;
  std::string Render() const {
    return absl::StrCat(tensors, " tensors, ", HumanCount(elements),
                        " elements, ", HumanBytes(bytes));
  }
};

std::string Summary(const std::string& path, const Graph& g) {
  int by_role[3] = {0, 0, 0};
  RoleTable by_layer, by_op;
  TensorTally params, state;
  int64_t flops = 0;
  for (const Node* n : g.nodes()) {
    ++by_role[static_cast<int>(n->role())];
    by_layer.Add(LayerOf(*n), n->role());
    by_op.Add(n->op(), n->role());
    if (n->op() == "parameter") {
      TensorTally& t = n->role() == Role::kOptimizer ? state : params;
      ++t.tensors;
      t.elements = SaturatingAdd(t.elements, n->output_type(0).num_elements());
      t.bytes = SaturatingAdd(t.bytes, n->output_type(0).byte_size());
    }
    if (n->schema() != nullptr && n->schema()->flops) {
      std::vector<TensorType> in;
      for (const Value& v : n->inputs()) in.push_back(g.type(v));
      flops = SaturatingAdd(flops, n->schema()->flops(*n, in));
    }
  }
  std::vector<Value> outs;
  for (const auto& [name, v] : g.outputs()) outs.push_back(v);
  auto plan = Plan::Create(g, outs);
  std::string out = absl::StrCat("graph: ", path, "\n");
  absl::StrAppend(&out, "nodes: ", g.num_nodes(), " (", by_role[0], " forward, ",
                  by_role[1], " backward, ", by_role[2], " optimizer)\n");
  absl::StrAppend(&out, "parameters: ", params.Render(), "\n");
  if (state.tensors > 0) {
    absl::StrAppend(&out, "optimizer state: ", state.Render(), "\n");
  }
  absl::StrAppend(&out, "flops per run: ", HumanCount(flops), "\n");
  absl::StrAppend(&out, "planned peak memory: ",
                  plan.ok() ? HumanBytes(plan->peak_bytes())
                            : absl::StrCat("unavailable (", plan.status().message(), ")"),
                  " for all ", outs.size(), " outputs, besides inputs and parameters\n");
  absl::StrAppend(&out, "\ninputs:\n");
  for (const Node* n : g.InputNodes()) {
    absl::StrAppend(&out, "  ", n->name(), " ", n->output_type(0).ToString(), "\n");
  }
  if (g.InputNodes().empty()) absl::StrAppend(&out, "  (none)\n");
  absl::StrAppend(&out, "outputs:\n");
  for (const auto& [name, v] : g.outputs()) {
    absl::StrAppend(&out, "  ", name, " ", g.type(v).ToString(), " = ",
                    ValueName(g, v), "\n");
  }
  if (g.outputs().empty()) absl::StrAppend(&out, "  (none)\n");
  absl::StrAppend(&out, "\n", by_layer.Render("nodes by layer"));
  absl::StrAppend(&out, "\n", by_op.Render("nodes by op"));
  return out;
}

}  // namespace

int RunInspect(const std::vector<std::string>& argv) {
  Args a("inspect",
         "Summarises a graph file: node counts by role, layer (the first "
         "component of the scope) and op; parameter and optimizer-state counts "
         "and bytes; the flops of one run; the planned peak of intermediate "
         "memory when every output is fetched; inputs and outputs with shapes.");
  a.Positional("FILE", "a graph file (.sqg or .sqtxt)");
  if (auto done = ParseArgs(a, argv)) return *done;
  const std::string path = a.positionals()[0];
  absl::StatusOr<Graph> g = LoadGraphFile(path);
  if (!g.ok()) return BadInput("inspect", g.status());
  std::printf("%s", Summary(path, *g).c_str());
  return kExitOk;
}

int RunNodes(const std::vector<std::string>& argv) {
  Args a("nodes",
         "Prints the nodes of a graph file in topological order, one line each "
         "(the text form of core/printer.h), then the graph outputs. Filters "
         "combine; with any filter the outputs are not printed.");
  a.Positional("FILE", "a graph file (.sqg or .sqtxt)")
      .Flag("scope", "", "only nodes in this scope or below it (block0/attn)")
      .Flag("role", "", "only nodes of this role: forward | backward | optimizer")
      .Flag("op", "", "only nodes of this op");
  if (auto done = ParseArgs(a, argv)) return *done;
  const std::string scope = a.GetString("scope");
  const std::string role = a.GetString("role");
  const std::string op = a.GetString("op");
  if (!role.empty() && role != "forward" && role != "backward" &&
      role != "optimizer") {
    return UsageError(a, "nodes",
                      absl::StrCat("--role=", role,
                                   " is not forward, backward or optimizer"));
  }
  absl::StatusOr<Graph> g = LoadGraphFile(a.positionals()[0]);
  if (!g.ok()) return BadInput("nodes", g.status());
  if (scope.empty() && role.empty() && op.empty()) {
    std::printf("%s", PrintGraph(*g).c_str());
    return kExitOk;
  }
  // Loaded graphs are acyclic: the order exists.
  const std::vector<NodeId> order = *g->TopologicalOrder();
  for (NodeId id : order) {
    const Node& n = *g->node(id);
    if (!scope.empty() && n.scope() != scope &&
        !absl::StartsWith(n.scope(), absl::StrCat(scope, "/"))) {
      continue;
    }
    if (!role.empty() && RoleName(n.role()) != role) continue;
    if (!op.empty() && n.op() != op) continue;
    std::printf("%s\n", PrintNode(*g, n).c_str());
  }
  return kExitOk;
}

}  // namespace subquad::cli
