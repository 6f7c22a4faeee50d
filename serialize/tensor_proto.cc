#include "serialize/tensor_proto.h"

#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status.h"

static_assert(std::endian::native == std::endian::little,
              "files store tensors as little-endian bytes; a big-endian host "
              "needs a byte swap in TensorToProto and TensorFromProto");

namespace subquad {

proto::DType DTypeToProto(DType t) {
  switch (t) {
    case DType::kF32:
      return proto::DTYPE_F32;
    case DType::kF64:
      return proto::DTYPE_F64;
    case DType::kI32:
      return proto::DTYPE_I32;
    case DType::kI64:
      return proto::DTYPE_I64;
  }
  return proto::DTYPE_UNSPECIFIED;
}

std::optional<DType> DTypeFromProto(int t) {
  switch (t) {
    case proto::DTYPE_F32:
      return DType::kF32;
    case proto::DTYPE_F64:
      return DType::kF64;
    case proto::DTYPE_I32:
      return DType::kI32;
    case proto::DTYPE_I64:
      return DType::kI64;
    default:
      return std::nullopt;
  }
}

absl::StatusOr<Shape> ShapeFromProto(
    const google::protobuf::RepeatedField<int64_t>& dims) {
  if (dims.size() > kMaxRank) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", dims.size(), " > ", kMaxRank));
  }
  Shape s(absl::MakeConstSpan(dims.data(), static_cast<size_t>(dims.size())));
  RETURN_IF_ERROR(ValidateShape(s));
  return s;
}

absl::StatusOr<DType> CheckedDTypeFromProto(int t) {
  std::optional<DType> d = DTypeFromProto(t);
  if (!d.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dtype ", t, " is not one of f32 (1), f64 (2), i32 (3), i64 (4)"));
  }
  return *d;
}

absl::StatusOr<TensorType> TensorTypeFromProto(
    int dtype, const google::protobuf::RepeatedField<int64_t>& dims) {
  ASSIGN_OR_RETURN(DType d, CheckedDTypeFromProto(dtype));
  ASSIGN_OR_RETURN(Shape s, ShapeFromProto(dims));
  return TensorType{d, std::move(s)};
}

void TensorToProto(const TensorView& t, proto::TensorProto* p) {
  p->set_dtype(DTypeToProto(t.dtype()));
  for (int64_t d : t.shape().dims()) p->add_dims(d);
  p->set_data(static_cast<const char*>(t.raw_data()),
              static_cast<size_t>(t.byte_size()));
}

absl::StatusOr<Tensor> TensorFromProto(const proto::TensorProto& p) {
  ASSIGN_OR_RETURN(TensorType type, TensorTypeFromProto(p.dtype(), p.dims()));
  // ValidateShape bounds the element count by 2^40: no overflow here.
  const int64_t expected = type.byte_size();
  if (static_cast<int64_t>(p.data().size()) != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor data is ", p.data().size(), " bytes; ",
                     type.ToString(), " needs ", expected));
  }
  Tensor t(type);
  if (expected > 0) {
    std::memcpy(t.raw_data(), p.data().data(), static_cast<size_t>(expected));
  }
  return t;
}

}  // namespace subquad
