#include "core/op_schema.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/status.h"

namespace subquad {

const AttrValue& ShapeContext::attr(absl::string_view name) const {
  auto it = attrs_.find(name);
  SUBQUAD_CHECK(it != attrs_.end())
      << schema_.name << ": shape rule reads attribute '" << name
      << "' which the schema does not declare";
  return it->second;
}

const AttrDef* OpSchema::FindAttr(absl::string_view attr) const {
  for (const AttrDef& a : attrs) {
    if (a.name == attr) return &a;
  }
  return nullptr;
}

const ArgDef& OpSchema::input_def(int i) const {
  if (i >= static_cast<int>(inputs.size())) return inputs.back();
  return inputs[i];
}

absl::StatusOr<AttrMap> OpSchema::ResolveAttrs(const AttrMap& given) const {
  AttrMap out;
  for (const auto& [key, value] : given) {
    const AttrDef* def = FindAttr(key);
    if (def == nullptr) {
      std::string known;
      for (const AttrDef& a : attrs) {
        absl::StrAppend(&known, known.empty() ? "" : ", ", a.name);
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown attribute '", key, "' (", name, " has: ",
          known.empty() ? "none" : known, ")"));
    }
    if (value.kind() != def->kind) {
      return absl::InvalidArgumentError(absl::StrCat(
          "attribute '", key, "' must be ", AttrKindName(def->kind), ", got ",
          AttrKindName(value.kind()), " ", value.ToString()));
    }
    if (value.kind() == AttrKind::kTensor && value.tensor_ptr() == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("attribute '", key, "' holds no tensor"));
    }
    out[key] = value;
  }
  for (const AttrDef& def : attrs) {
    if (out.contains(def.name)) continue;
    if (!def.default_value.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "missing required attribute '", def.name, "' (",
          AttrKindName(def.kind), ")"));
    }
    out[def.name] = *def.default_value;
  }
  return out;
}

absl::StatusOr<std::vector<TensorType>> OpSchema::InferTypes(
    absl::Span<const TensorType> in, const AttrMap& given) const {
  const int n = static_cast<int>(in.size());
  const int declared = static_cast<int>(inputs.size());
  if (variadic_last_input ? n < declared : n != declared) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expects ", variadic_last_input ? "at least " : "", declared,
        " input", declared == 1 ? "" : "s", ", got ", n));
  }
  for (int i = 0; i < n; ++i) {
    const ArgDef& def = input_def(i);
    if (!def.dtypes.Contains(in[i].dtype)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input ", i, " ('", def.name, "') is ", in[i].ToString(),
          "; allowed dtypes: ", def.dtypes.ToString()));
    }
  }
  ASSIGN_OR_RETURN(AttrMap attrs_resolved, ResolveAttrs(given));
  ShapeContext ctx(*this, in, attrs_resolved);
  ASSIGN_OR_RETURN(std::vector<TensorType> out, shape_fn(ctx));
  if (out.size() != outputs.size()) {
    return absl::InternalError(absl::StrCat(
        "shape rule returned ", out.size(), " types for ", outputs.size(),
        " outputs"));
  }
  for (const TensorType& t : out) {
    RETURN_IF_ERROR(ValidateShape(t.shape));
  }
  return out;
}

const KernelFn* OpSchema::FindKernel(DType output_dtype) const {
  auto it = kernels.find(output_dtype);
  return it == kernels.end() ? nullptr : &it->second;
}

OpRegistry& OpRegistry::Global() {
  static OpRegistry* registry = new OpRegistry();
  return *registry;
}

absl::Status OpRegistry::Register(OpSchema schema) {
  if (schema.name.empty()) {
    return absl::InvalidArgumentError("op schema without a name");
  }
  if (!schema.shape_fn) {
    return absl::InvalidArgumentError(
        absl::StrCat("op '", schema.name, "' has no shape rule"));
  }
  if (schema.inputs.empty() && schema.variadic_last_input) {
    return absl::InvalidArgumentError(absl::StrCat(
        "op '", schema.name, "' is variadic but declares no input"));
  }
  if (ops_.contains(schema.name)) {
    return absl::AlreadyExistsError(
        absl::StrCat("op '", schema.name, "' is already registered"));
  }
  std::string name = schema.name;
  ops_.emplace(std::move(name), std::make_unique<OpSchema>(std::move(schema)));
  return absl::OkStatus();
}

const OpSchema* OpRegistry::Find(absl::string_view name) const {
  auto it = ops_.find(name);
  return it == ops_.end() ? nullptr : it->second.get();
}

std::vector<const OpSchema*> OpRegistry::List() const {
  std::vector<const OpSchema*> out;
  for (const auto& [name, s] : ops_) out.push_back(s.get());
  return out;
}

namespace internal {

OpRegistrar::OpRegistrar(OpSchema schema) {
  std::string name = schema.name;
  absl::Status s = OpRegistry::Global().Register(std::move(schema));
  if (!s.ok()) {
    std::fprintf(stderr, "subquad: registering op '%s' failed: %s\n",
                 name.c_str(), std::string(s.message()).c_str());
    std::abort();
  }
}

}  // namespace internal
}  // namespace subquad
