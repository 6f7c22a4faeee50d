#include "core/dtype.h"

#include <ostream>
#include <string>

#include "absl/strings/str_cat.h"

namespace subquad {

absl::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "f32";
    case DType::kF64:
      return "f64";
    case DType::kI32:
      return "i32";
    case DType::kI64:
      return "i64";
  }
  return "?";
}

std::ostream& operator<<(std::ostream& os, DType t) {
  const absl::string_view name = DTypeName(t);
  return os.write(name.data(), static_cast<std::streamsize>(name.size()));
}

std::optional<DType> ParseDType(absl::string_view name) {
  for (DType t : kAllDTypes) {
    if (DTypeName(t) == name) return t;
  }
  return std::nullopt;
}

size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF64:
    case DType::kI64:
      return 8;
  }
  return 0;
}

std::string DTypeSet::ToString() const {
  std::string out = "{";
  for (DType t : kAllDTypes) {
    if (!Contains(t)) continue;
    if (out.size() > 1) out += ",";
    absl::StrAppend(&out, DTypeName(t));
  }
  return out + "}";
}

}  // namespace subquad
