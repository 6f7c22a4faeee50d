// Typed node attributes: int, float, string, bool, int list, float list,
// shape, dtype and tensor.
#ifndef SUBQUAD_CORE_ATTRIBUTE_H_
#define SUBQUAD_CORE_ATTRIBUTE_H_

#include <cstdint>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <variant>
#include <vector>

#include "absl/container/btree_map.h"
#include "core/dtype.h"
#include "core/shape.h"
#include "core/tensor.h"

namespace subquad {

enum class AttrKind : uint8_t {
  kInt,
  kFloat,
  kString,
  kBool,
  kIntList,
  kFloatList,
  kShape,
  kDType,
  kTensor,
};

// "int", "float", "string", "bool", "int_list", "float_list", "shape",
// "dtype", "tensor".
absl::string_view AttrKindName(AttrKind k);

// Tensor attributes are shared and immutable: copying a graph does not copy
// its constants.
using TensorAttr = std::shared_ptr<const Tensor>;

class AttrValue {
 public:
  using Storage = std::variant<int64_t, double, std::string, bool,
                               std::vector<int64_t>, std::vector<double>,
                               Shape, DType, TensorAttr>;

  AttrValue() : v_(int64_t{0}) {}
  AttrValue(int v) : v_(int64_t{v}) {}
  AttrValue(int64_t v) : v_(v) {}
  AttrValue(double v) : v_(v) {}
  AttrValue(float v) : v_(double{v}) {}
  AttrValue(std::string v) : v_(std::move(v)) {}
  AttrValue(absl::string_view v) : v_(std::string(v)) {}
  AttrValue(const char* v) : v_(std::string(v)) {}
  AttrValue(bool v) : v_(v) {}
  AttrValue(std::vector<int64_t> v) : v_(std::move(v)) {}
  AttrValue(std::initializer_list<int64_t> v) : v_(std::vector<int64_t>(v)) {}
  AttrValue(std::vector<double> v) : v_(std::move(v)) {}
  AttrValue(Shape v) : v_(std::move(v)) {}
  AttrValue(DType v) : v_(v) {}
  AttrValue(TensorAttr v) : v_(std::move(v)) {}
  AttrValue(Tensor v) : v_(std::make_shared<const Tensor>(std::move(v))) {}

  AttrKind kind() const { return static_cast<AttrKind>(v_.index()); }

  int64_t i() const { return std::get<int64_t>(v_); }
  double f() const { return std::get<double>(v_); }
  const std::string& s() const { return std::get<std::string>(v_); }
  bool b() const { return std::get<bool>(v_); }
  const std::vector<int64_t>& ints() const {
    return std::get<std::vector<int64_t>>(v_);
  }
  const std::vector<double>& floats() const {
    return std::get<std::vector<double>>(v_);
  }
  const Shape& shape() const { return std::get<Shape>(v_); }
  DType dtype() const { return std::get<DType>(v_); }
  const Tensor& tensor() const { return *std::get<TensorAttr>(v_); }
  const TensorAttr& tensor_ptr() const { return std::get<TensorAttr>(v_); }

  // Rendering for printers, exact for numbers: 3, 0.5, -inf, "gelu", true,
  // [0,2,1], [4,4] for shapes, f32 for dtypes, tensor<f32[2] {1, 2}> for
  // small tensors and tensor<f32[64,64]> for large ones.
  std::string ToString() const;

  // Structural equality; tensors compare by type and bits.
  friend bool operator==(const AttrValue& a, const AttrValue& b);
  friend bool operator!=(const AttrValue& a, const AttrValue& b) {
    return !(a == b);
  }

 private:
  Storage v_;
};

// Shortest decimal text that reads back as exactly `v` ("0.1", "1e-05",
// "-inf", "nan"); FormatFloat32 the same for a float.
std::string FormatDouble(double v);
std::string FormatFloat32(float v);

// Tensors of at most this many elements print their values (and so parse
// back from the text form); larger ones print only their type.
inline constexpr int64_t kMaxPrintedTensorElements = 16;

// Attributes by name; ordered so printing and hashing are deterministic.
using AttrMap = absl::btree_map<std::string, AttrValue>;

}  // namespace subquad

#endif  // SUBQUAD_CORE_ATTRIBUTE_H_
