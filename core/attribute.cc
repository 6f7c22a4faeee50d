#include "core/attribute.h"

#include <cmath>

#include "absl/strings/str_cat.h"
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

std::string FormatFloat(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return absl::StrCat(v);
}

}  // namespace

std::string AttrValue::ToString() const {
  switch (kind()) {
    case AttrKind::kInt:
      return absl::StrCat(i());
    case AttrKind::kFloat:
      return FormatFloat(f());
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
                          out->append(FormatFloat(v));
                        }),
          "]");
    case AttrKind::kShape:
      return shape().ToString();
    case AttrKind::kDType:
      return std::string(DTypeName(dtype()));
    case AttrKind::kTensor: {
      const TensorAttr& t = tensor_ptr();
      if (t == nullptr) return "tensor<null>";
      if (t->num_elements() == 1) {
        return absl::StrCat("tensor<", t->type().ToString(), " ",
                            t->DebugString(1).substr(t->type().ToString().size() + 1),
                            ">");
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
