#include "core/attribute.h"

#include <cmath>
#include <cstdlib>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace subquad {

absl::string_view AttrKindName(AttrKind k) {
  switch (k) {
    case AttrKind::kInt:
      return "int";
    case AttrKind::kFloat:
      return "float";
    case AttrKind::kString:
      return "string";
    case AttrKind::kBool:
      return "bool";
    case AttrKind::kIntList:
      return "int_list";
    case AttrKind::kFloatList:
      return "float_list";
    case AttrKind::kShape:
      return "shape";
    case AttrKind::kDType:
      return "dtype";
    case AttrKind::kTensor:
      return "tensor";
  }
  return "?";
}

namespace {

}  // namespace

std::string FormatDouble(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  for (int precision : {6, 9, 12, 15, 17}) {
    std::string s = absl::StrFormat("%.*g", precision, v);
    if (std::strtod(s.c_str(), nullptr) == v) return s;
  }
  return absl::StrFormat("%.17g", v);
}

std::string FormatFloat32(float v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  for (int precision : {6, 7, 8, 9}) {
    std::string s = absl::StrFormat("%.*g", precision, v);
    if (std::strtof(s.c_str(), nullptr) == v) return s;
  }
  return absl::StrFormat("%.9g", v);
}

std::string FormatTensorValues(const Tensor& t) {
  std::string out;
  DispatchDType(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = t.data<T>();
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      if (i > 0) out += ", ";
      if constexpr (std::is_same_v<T, float>) {
        out += FormatFloat32(p[i]);
      } else if constexpr (std::is_same_v<T, double>) {
        out += FormatDouble(p[i]);
      } else {
        absl::StrAppend(&out, p[i]);
      }
    }
  });
  return out;
}

std::string AttrValue::ToString() const {
  switch (kind()) {
    case AttrKind::kInt:
      return absl::StrCat(i());
    case AttrKind::kFloat:
      return FormatDouble(f());
    case AttrKind::kString:
      return absl::StrCat("\"", s(), "\"");
    case AttrKind::kBool:
      return b() ? "true" : "false";
    case AttrKind::kIntList:
      return absl::StrCat("[", absl::StrJoin(ints(), ","), "]");
    case AttrKind::kFloatList:
      return absl::StrCat(
          "[",
          absl::StrJoin(floats(), ",",
                        [](std::string* out, double v) {
                          out->append(FormatDouble(v));
                        }),
          "]");
    case AttrKind::kShape:
      return shape().ToString();
    case AttrKind::kDType:
      return std::string(DTypeName(dtype()));
    case AttrKind::kTensor: {
      const TensorAttr& t = tensor_ptr();
      if (t == nullptr) return "tensor<null>";
      if (t->num_elements() <= kMaxPrintedTensorElements) {
        return absl::StrCat("tensor<", t->type().ToString(), " {",
                            FormatTensorValues(*t), "}>");
      }
      return absl::StrCat("tensor<", t->type().ToString(), ">");
    }
  }
  return "?";
}

bool operator==(const AttrValue& a, const AttrValue& b) {
  if (a.kind() != b.kind()) return false;
  if (a.kind() == AttrKind::kTensor) {
    const TensorAttr& x = a.tensor_ptr();
    const TensorAttr& y = b.tensor_ptr();
    if (x == y) return true;
    if (x == nullptr || y == nullptr) return false;
    return x->BitwiseEquals(*y);
  }
  return a.v_ == b.v_;
}

}  // namespace subquad
