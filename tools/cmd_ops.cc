// `subquad version` and `subquad ops`.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/op_schema.h"
#include "tools/args.h"
#include "tools/commands.h"

namespace subquad::cli {
namespace {

int Usage(const Args& a, const absl::Status& s) {
  std::fprintf(stderr, "%s\n\n%s", std::string(s.message()).c_str(), a.Help().c_str());
  return 2;
}

std::string DescribeOp(const OpSchema& s) {
  std::string out = absl::StrCat(s.name, ": ", s.doc, "\n");
  absl::StrAppend(&out, "  inputs:");
  if (s.inputs.empty()) absl::StrAppend(&out, " none");
  absl::StrAppend(&out, "\n");
  for (size_t i = 0; i < s.inputs.size(); ++i) {
    const ArgDef& a = s.inputs[i];
    const bool variadic = s.variadic_last_input && i + 1 == s.inputs.size();
    absl::StrAppend(&out, "    ", a.name, variadic ? "..." : "", " ",
                    a.dtypes.ToString(), a.differentiable ? "" : " (no gradient)",
                    a.doc.empty() ? "" : absl::StrCat("  ", a.doc), "\n");
  }
  absl::StrAppend(&out, "  outputs: ", absl::StrJoin(s.outputs, ", "), "\n");
  if (!s.attrs.empty()) absl::StrAppend(&out, "  attributes:\n");
  for (const AttrDef& a : s.attrs) {
    absl::StrAppend(&out, "    ", a.name, ": ", AttrKindName(a.kind),
                    a.default_value ? absl::StrCat(" = ", a.default_value->ToString())
                                    : " (required)",
                    a.doc.empty() ? "" : absl::StrCat("  ", a.doc), "\n");
  }
  std::vector<std::string> kernels;
  for (const auto& [t, k] : s.kernels) kernels.emplace_back(DTypeName(t));
  absl::StrAppend(&out, "  kernels: ",
                  s.is_source ? "none (bound by the executor)"
                              : absl::StrJoin(kernels, ", "),
                  "\n");
  absl::StrAppend(&out, "  gradient: ",
                  s.grad           ? "rule registered"
                  : s.is_source    ? "source (no inputs)"
                  : !s.differentiable ? "not differentiable"
                                   : "no rule",
                  "\n");
  return out;
}

}  // namespace

int RunVersion(const std::vector<std::string>& argv) {
  Args a("version", "Prints the subquad version.");
  if (absl::Status s = a.Parse(argv); !s.ok()) return Usage(a, s);
  if (a.help_requested()) {
    std::printf("%s", a.Help().c_str());
    return 0;
  }
  std::printf("subquad %s\n", SUBQUAD_VERSION);
  return 0;
}

int RunOps(const std::vector<std::string>& argv) {
  Args a("ops",
         "Lists every registered op: inputs with dtypes, outputs, attributes "
         "with kinds and defaults, kernels, and whether it has a gradient rule.");
  a.Positional("OP", "show only this op", /*required=*/false);
  a.BoolFlag("names", "print only the op names, one per line");
  if (absl::Status s = a.Parse(argv); !s.ok()) return Usage(a, s);
  if (a.help_requested()) {
    std::printf("%s", a.Help().c_str());
    return 0;
  }
  const auto ops = OpRegistry::Global().List();
  if (!a.positionals().empty()) {
    const OpSchema* s = OpRegistry::Global().Find(a.positionals()[0]);
    if (s == nullptr) {
      std::vector<std::string> names;
      for (const OpSchema* o : ops) names.push_back(o->name);
      std::fprintf(stderr, "ops: no op '%s'; registered ops: %s\n",
                   a.positionals()[0].c_str(), absl::StrJoin(names, ", ").c_str());
      return 1;
    }
    std::printf("%s", DescribeOp(*s).c_str());
    return 0;
  }
  for (const OpSchema* s : ops) {
    if (a.GetBool("names")) {
      std::printf("%s\n", s->name.c_str());
    } else {
      std::printf("%s\n", DescribeOp(*s).c_str());
    }
  }
  return 0;
}

}  // namespace subquad::cli
