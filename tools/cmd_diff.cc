// `subquad diff`: structural differences between two graph files, by node
// name (ids may differ). Like diff(1): exit 0 when equal, 1 when they
// differ, 2 on trouble.
//
//   - node 'b' (relu)                                removed
//   + node 'c' (gelu)                                added
//   ~ node 'mm' (matmul): attribute transpose_b: false -> true
//   ~ node 'mm' (matmul): input 1: w -> v
//   ~ output 'y': relu -> gelu
#include <bit>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tools/args.h"
#include "tools/cmd_common.h"
#include "tools/commands.h"

namespace subquad::cli {
namespace {

std::string Types(absl::Span<const TensorType> ts) {
  return absl::StrJoin(ts, ", ", [](std::string* out, const TensorType& t) {
    out->append(t.ToString());
  });
}

std::string OriginName(const Graph& g, const Node& n) {
  if (n.origin() == kNoNode) return "(none)";
  const Node* o = g.node(n.origin());
  return o == nullptr ? "(missing)" : o->name();
}

bool SameAttr(const AttrValue& x, const AttrValue& y);

// Changes between two nodes of the same name, one line each.
std::vector<std::string> NodeChanges(const Graph& ga, const Node& a,
                                     const Graph& gb, const Node& b) {
  std::vector<std::string> out;
  auto change = [&](absl::string_view field, absl::string_view from,
                    absl::string_view to) {
    if (from != to) out.push_back(absl::StrCat(field, ": ", from, " -> ", to));
  };
  change("op", a.op(), b.op());
  const int n = std::max(a.num_inputs(), b.num_inputs());
  for (int i = 0; i < n; ++i) {
    change(absl::StrCat("input ", i),
           i < a.num_inputs() ? ValueName(ga, a.input(i)) : "(none)",
           i < b.num_inputs() ? ValueName(gb, b.input(i)) : "(none)");
  }
  absl::btree_set<std::string> names;
  for (const auto& [k, v] : a.attrs()) names.insert(k);
  for (const auto& [k, v] : b.attrs()) names.insert(k);
  for (const std::string& k : names) {
    const AttrValue* x = a.FindAttr(k);
    const AttrValue* y = b.FindAttr(k);
    if (x != nullptr && y != nullptr && SameAttr(*x, *y)) continue;
    // Tensors that print alike but differ in their bits say so.
    std::string from = x != nullptr ? x->ToString() : "(unset)";
    std::string to = y != nullptr ? y->ToString() : "(unset)";
    if (from == to) to += " (other values)";
    change(absl::StrCat("attribute ", k), from, to);
  }
  change("output types", Types(a.output_types()), Types(b.output_types()));
  change("role", RoleName(a.role()), RoleName(b.role()));
  change("origin", OriginName(ga, a), OriginName(gb, b));
  change("scope", a.scope().empty() ? "(none)" : a.scope(),
         b.scope().empty() ? "(none)" : b.scope());
  return out;
}

// Equality with floats compared by bits, so NaN equals itself.
bool SameAttr(const AttrValue& x, const AttrValue& y) {
  if (x.kind() != y.kind()) return false;
  if (x.kind() == AttrKind::kFloat) {
    return std::bit_cast<uint64_t>(x.f()) == std::bit_cast<uint64_t>(y.f());
  }
  if (x.kind() == AttrKind::kFloatList) {
    if (x.floats().size() != y.floats().size()) return false;
    for (size_t i = 0; i < x.floats().size(); ++i) {
      if (std::bit_cast<uint64_t>(x.floats()[i]) !=
          std::bit_cast<uint64_t>(y.floats()[i])) {
        return false;
      }
    }
    return true;
  }
  return x == y;
}

std::string Label(const Node& n) {
  return absl::StrCat("node '", n.name(), "' (", n.op(), ")");
}

std::vector<std::string> Diff(const Graph& a, const Graph& b) {
  std::vector<std::string> lines;
  // Loaded graphs are acyclic: the orders exist.
  const std::vector<NodeId> order_a = *a.TopologicalOrder();
  const std::vector<NodeId> order_b = *b.TopologicalOrder();
  for (NodeId id : order_a) {
    const Node& n = *a.node(id);
    const Node* m = b.FindNode(n.name());
    if (m == nullptr) {
      lines.push_back(absl::StrCat("- ", Label(n)));
      continue;
    }
    for (const std::string& c : NodeChanges(a, n, b, *m)) {
      lines.push_back(absl::StrCat("~ ", Label(n), ": ", c));
    }
  }
  for (NodeId id : order_b) {
    const Node& m = *b.node(id);
    if (a.FindNode(m.name()) == nullptr) {
      lines.push_back(absl::StrCat("+ ", Label(m)));
    }
  }
  for (const auto& [name, v] : a.outputs()) {
    absl::StatusOr<Value> w = b.GetOutput(name);
    if (!w.ok()) {
      lines.push_back(absl::StrCat("- output '", name, "' = ", ValueName(a, v)));
    } else if (ValueName(a, v) != ValueName(b, *w)) {
      lines.push_back(absl::StrCat("~ output '", name, "': ", ValueName(a, v),
                                   " -> ", ValueName(b, *w)));
    }
  }
  for (const auto& [name, w] : b.outputs()) {
    if (!a.GetOutput(name).ok()) {
      lines.push_back(absl::StrCat("+ output '", name, "' = ", ValueName(b, w)));
    }
  }
  return lines;
}

}  // namespace

int RunDiff(const std::vector<std::string>& argv) {
  Args a("diff",
         "Compares two graph files structurally, matching nodes by name: "
         "removed (-), added (+) and changed (~) nodes with the op, inputs, "
         "attributes, output types, role, origin and scope that differ, then "
         "graph outputs. Exit code 0 when the graphs are equal, 1 when they "
         "differ, 2 on trouble (usage, unreadable or invalid files).");
  a.Positional("A", "the first graph file").Positional("B", "the second graph file");
  if (auto done = ParseArgs(a, argv)) return *done;
  absl::StatusOr<Graph> ga = LoadGraphFile(a.positionals()[0]);
  if (!ga.ok()) {
    BadInput("diff", ga.status());
    return kExitUsage;
  }
  absl::StatusOr<Graph> gb = LoadGraphFile(a.positionals()[1]);
  if (!gb.ok()) {
    BadInput("diff", gb.status());
    return kExitUsage;
  }
  const std::vector<std::string> lines = Diff(*ga, *gb);
  for (const std::string& l : lines) std::printf("%s\n", l.c_str());
  return lines.empty() ? 0 : 1;
}

}  // namespace subquad::cli
