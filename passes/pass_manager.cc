#include "passes/pass_manager.h"

#include <chrono>
#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/printer.h"
#include "core/status.h"
#include "core/verifier.h"

namespace subquad {
namespace {

absl::Status SyntaxError(int column, absl::string_view msg) {
  return absl::InvalidArgumentError(
      absl::StrCat("pipeline: column ", column, ": ", msg));
}

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
         c == '.' || c == '/';
}

std::string ValidPasses() {
  std::vector<std::string> names;
  for (const PassInfo* p : PassRegistry::Global().List()) names.push_back(p->name);
  return absl::StrJoin(names, ", ");
}

// Converts the text of an option value to the option's kind.
absl::StatusOr<AttrValue> ParseOptionValue(const PassInfo& info,
                                           const PassOptionDef& def,
                                           absl::string_view raw) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pass '", info.name, "': option '", def.name, "' expects ", what,
        ", got '", raw, "'"));
  };
  auto parse_list = [&](auto parse_one, auto& out) -> bool {
    absl::string_view body = raw;
    if (!absl::ConsumePrefix(&body, "[") || !absl::ConsumeSuffix(&body, "]")) return false;
    if (absl::StripAsciiWhitespace(body).empty()) return true;
    for (absl::string_view part : absl::StrSplit(body, ',')) {
      typename std::decay_t<decltype(out)>::value_type v;
      if (!parse_one(absl::StripAsciiWhitespace(part), &v)) return false;
      out.push_back(v);
    }
    return true;
  };
  switch (def.kind) {
    case AttrKind::kInt: {
      int64_t v;
      if (!absl::SimpleAtoi(raw, &v)) return bad("an integer");
      return AttrValue(v);
    }
    case AttrKind::kFloat: {
      double v;
      if (!absl::SimpleAtod(raw, &v)) return bad("a number");
      return AttrValue(v);
    }
    case AttrKind::kBool: {
      bool v;
      if (!absl::SimpleAtob(raw, &v)) return bad("true or false");
      return AttrValue(v);
    }
    case AttrKind::kString: {
      absl::string_view s = raw;
      if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
      return AttrValue(s);
    }
    case AttrKind::kIntList: {
      std::vector<int64_t> v;
      if (!parse_list([](absl::string_view p, int64_t* x) { return absl::SimpleAtoi(p, x); }, v)) {
        return bad("a list of integers like [1,2]");
      }
      return AttrValue(std::move(v));
    }
    case AttrKind::kFloatList: {
      std::vector<double> v;
      if (!parse_list([](absl::string_view p, double* x) { return absl::SimpleAtod(p, x); }, v)) {
        return bad("a list of numbers like [0.5,1]");
      }
      return AttrValue(std::move(v));
    }
    default:
      return bad("a value of a supported kind");
  }
}

}  // namespace

absl::StatusOr<std::vector<PipelineEntry>> ParsePipeline(absl::string_view text) {
  std::vector<PipelineEntry> out;
  size_t i = 0;
  auto skip_ws = [&] {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  };
  auto col = [&](size_t at) { return static_cast<int>(at) + 1; };
  skip_ws();
  if (i == text.size()) return SyntaxError(1, "empty pipeline");
  while (true) {
    skip_ws();
    PipelineEntry e;
    e.column = col(i);
    const size_t start = i;
    while (i < text.size() && IsNameChar(text[i])) ++i;
    if (i == start) {
      return SyntaxError(col(i), i < text.size()
                                     ? absl::StrCat("expected a pass name, found '", text.substr(i, 1), "'")
                                     : "expected a pass name at the end");
    }
    e.pass = std::string(text.substr(start, i - start));
    skip_ws();
    if (i < text.size() && text[i] == '{') {
      ++i;
      while (true) {
        skip_ws();
        const size_t kstart = i;
        while (i < text.size() && IsNameChar(text[i])) ++i;
        if (i == kstart) return SyntaxError(col(i), absl::StrCat("expected an option name in '", e.pass, "{...}'"));
        std::string key(text.substr(kstart, i - kstart));
        skip_ws();
        if (i >= text.size() || text[i] != '=') {
          return SyntaxError(col(i), absl::StrCat("expected '=' after option '", key, "'"));
        }
        ++i;
        skip_ws();
        const size_t vstart = i;
        int depth = 0;
        bool quoted = false;
        while (i < text.size()) {
          const char c = text[i];
          if (c == '"') quoted = !quoted;
          if (!quoted) {
            if (c == '[') ++depth;
            if (c == ']') --depth;
            if (depth == 0 && (c == ',' || c == '}')) break;
          }
          ++i;
        }
        if (i >= text.size()) return SyntaxError(col(i), absl::StrCat("unclosed '{' of pass '", e.pass, "'"));
        absl::string_view value = absl::StripAsciiWhitespace(text.substr(vstart, i - vstart));
        if (value.empty()) return SyntaxError(col(vstart), absl::StrCat("empty value for option '", key, "'"));
        e.options.emplace_back(std::move(key), std::string(value));
        if (text[i] == '}') {
          ++i;
          break;
        }
        ++i;  // ','
      }
    }
    out.push_back(std::move(e));
    skip_ws();
    if (i == text.size()) break;
    if (text[i] != ',') {
      return SyntaxError(col(i), absl::StrCat("expected ',' or the end after pass '",
                                             out.back().pass, "', found '", text.substr(i, 1), "'"));
    }
    ++i;
  }
  return out;
}

absl::StatusOr<PassManager> PassManager::Create(absl::string_view pipeline,
                                                PassManagerOptions options) {
  ASSIGN_OR_RETURN(std::vector<PipelineEntry> parsed, ParsePipeline(pipeline));
  PassManager pm;
  pm.options_ = std::move(options);
  for (const PipelineEntry& e : parsed) {
    const PassInfo* info = PassRegistry::Global().Find(e.pass);
    if (info == nullptr) {
      return SyntaxError(e.column, absl::StrCat("unknown pass '", e.pass,
                                                "'; valid passes: ", ValidPasses()));
    }
    AttrMap given;
    for (const auto& [key, raw] : e.options) {
      const PassOptionDef* def = info->FindOption(key);
      if (def == nullptr) {
        std::vector<std::string> names;
        for (const PassOptionDef& o : info->options) names.push_back(o.name);
        return SyntaxError(e.column, absl::StrCat(
                                         "pass '", info->name, "' has no option '", key,
                                         "'; options: ", names.empty() ? "none" : absl::StrJoin(names, ", ")));
      }
      auto value = ParseOptionValue(*info, *def, raw);
      if (!value.ok()) return SyntaxError(e.column, value.status().message());
      given[key] = *std::move(value);
    }
    auto resolved = ResolvePassOptions(*info, given);
    if (!resolved.ok()) return SyntaxError(e.column, resolved.status().message());
    auto pass = info->create(*resolved);
    if (!pass.ok()) {
      return absl::Status(pass.status().code(),
                          absl::StrCat("pass '", info->name, "': ", pass.status().message()));
    }
    pm.entries_.push_back({info, *std::move(resolved), *std::move(pass)});
  }
  return pm;
}

absl::StatusOr<bool> PassManager::Run(Graph& graph, PassContext& ctx) {
  timings_.clear();
  bool any = false;
  for (Entry& e : entries_) {
    const auto t0 = std::chrono::steady_clock::now();
    auto changed = e.pass->Run(graph, ctx);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!changed.ok()) {
      return absl::Status(changed.status().code(),
                          absl::StrCat("pass '", e.info->name, "': ", changed.status().message()));
    }
    timings_.push_back({e.info->name, secs, *changed});
    any |= *changed;
    if (*changed && options_.verify_each) {
      if (absl::Status s = Verify(graph); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("verifier after pass '", e.info->name,
                                                   "': ", s.message()));
      }
    }
    const bool print =
        options_.print_after_all ||
        std::find(options_.print_after.begin(), options_.print_after.end(), e.info->name) !=
            options_.print_after.end();
    if (print && options_.print) {
      options_.print(absl::StrCat("// ---- after ", e.info->name,
                                  *changed ? "" : " (unchanged)", " ----\n", PrintGraph(graph)));
    }
  }
  return any;
}

std::string PassManager::TimingReport() const {
  std::string out = absl::StrFormat("%-32s %12s %8s\n", "pass", "ms", "changed");
  double total = 0;
  for (const PassTiming& t : timings_) {
    absl::StrAppendFormat(&out, "%-32s %12.3f %8s\n", t.pass, t.seconds * 1e3,
                          t.changed ? "yes" : "no");
    total += t.seconds;
  }
  absl::StrAppendFormat(&out, "%-32s %12.3f\n", "total", total * 1e3);
  return out;
}

std::string PassManager::PipelineString() const {
  std::vector<std::string> parts;
  for (const Entry& e : entries_) {
    if (e.options.values().empty()) {
      parts.push_back(e.info->name);
      continue;
    }
    std::vector<std::string> opts;
    for (const auto& [k, v] : e.options.values()) opts.push_back(absl::StrCat(k, "=", v.ToString()));
    parts.push_back(absl::StrCat(e.info->name, "{", absl::StrJoin(opts, ","), "}"));
  }
  return absl::StrJoin(parts, ",");
}

}  // namespace subquad
