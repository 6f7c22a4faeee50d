#include "passes/pass.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/check.h"

namespace subquad {

absl::string_view PassStageName(PassStage s) {
  switch (s) {
    case PassStage::kAny:
      return "any";
    case PassStage::kForward:
      return "forward";
    case PassStage::kJoint:
      return "joint";
  }
  return "?";
}

const AttrValue& PassOptions::Get(absl::string_view name) const {
  auto it = values_.find(name);
  SUBQUAD_CHECK(it != values_.end()) << "pass option '" << std::string(name)
                                     << "' was not declared";
  return it->second;
}

std::string PassOptions::ToString() const {
  std::vector<std::string> parts;
  for (const auto& [k, v] : values_) parts.push_back(absl::StrCat(k, "=", v.ToString()));
  return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
}

void PassContext::Count(absl::string_view pass, absl::string_view counter,
                        int64_t delta) {
  stats_[std::string(pass)][std::string(counter)] += delta;
}

void PassContext::Explain(absl::string_view pass, std::string message) {
  if (!explain_) return;
  explanations_.push_back(absl::StrCat(pass, ": ", message));
}

const PassOptionDef* PassInfo::FindOption(absl::string_view option) const {
  for (const PassOptionDef& o : options) {
    if (o.name == option) return &o;
  }
  return nullptr;
}

PassRegistry& PassRegistry::Global() {
  static PassRegistry* r = new PassRegistry();
  return *r;
}

absl::Status PassRegistry::Register(PassInfo info) {
  if (info.name.empty()) return absl::InvalidArgumentError("pass without a name");
  if (!info.create) {
    return absl::InvalidArgumentError(
        absl::StrCat("pass '", info.name, "' has no factory"));
  }
  for (const PassOptionDef& o : info.options) {
    if (o.default_value.kind() != o.kind) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pass '", info.name, "': option '", o.name, "' is declared ",
          AttrKindName(o.kind), " with a ", AttrKindName(o.default_value.kind()),
          " default"));
    }
  }
  if (passes_.contains(info.name)) {
    return absl::AlreadyExistsError(
        absl::StrCat("pass '", info.name, "' is already registered"));
  }
  std::string name = info.name;
  passes_.emplace(std::move(name), std::make_unique<PassInfo>(std::move(info)));
  return absl::OkStatus();
}

const PassInfo* PassRegistry::Find(absl::string_view name) const {
  auto it = passes_.find(name);
  return it == passes_.end() ? nullptr : it->second.get();
}

std::vector<const PassInfo*> PassRegistry::List() const {
  std::vector<const PassInfo*> out;
  for (const auto& [k, v] : passes_) out.push_back(v.get());
  return out;
}

absl::StatusOr<PassOptions> ResolvePassOptions(const PassInfo& info,
                                               const AttrMap& given) {
  AttrMap values;
  for (const auto& [key, value] : given) {
    const PassOptionDef* def = info.FindOption(key);
    if (def == nullptr) {
      std::vector<std::string> names;
      for (const PassOptionDef& o : info.options) names.push_back(o.name);
      return absl::InvalidArgumentError(absl::StrCat(
          "pass '", info.name, "' has no option '", key, "'; options: ",
          names.empty() ? "none" : absl::StrJoin(names, ", ")));
    }
    if (value.kind() != def->kind) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pass '", info.name, "': option '", key, "' must be ",
          AttrKindName(def->kind), ", got ", AttrKindName(value.kind()), " ",
          value.ToString()));
    }
    auto check = [&](double x) -> absl::Status {
      if ((def->min && x < *def->min) || (def->max && x > *def->max)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "pass '", info.name, "': option '", key, "' = ", x,
            " is out of range [", def->min ? absl::StrCat(*def->min) : "-inf",
            ", ", def->max ? absl::StrCat(*def->max) : "inf", "]"));
      }
      return absl::OkStatus();
    };
    absl::Status s;
    switch (value.kind()) {
      case AttrKind::kInt:
        s = check(static_cast<double>(value.i()));
        break;
      case AttrKind::kFloat:
        s = check(value.f());
        break;
      case AttrKind::kIntList:
        for (int64_t x : value.ints()) {
          if (s.ok()) s = check(static_cast<double>(x));
        }
        break;
      case AttrKind::kFloatList:
        for (double x : value.floats()) {
          if (s.ok()) s = check(x);
        }
        break;
      default:
        break;
    }
    if (!s.ok()) return s;
    values[key] = value;
  }
  for (const PassOptionDef& def : info.options) {
    if (!values.contains(def.name)) values[def.name] = def.default_value;
  }
  return PassOptions(std::move(values));
}

namespace internal {

PassRegistrar::PassRegistrar(PassInfo info) {
  std::string name = info.name;
  absl::Status s = PassRegistry::Global().Register(std::move(info));
  if (!s.ok()) {
    std::fprintf(stderr, "subquad: registering pass '%s' failed: %s\n",
                 name.c_str(), std::string(s.message()).c_str());
    std::abort();
  }
}

}  // namespace internal
}  // namespace subquad
