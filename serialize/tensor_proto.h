// Tensor ↔ TensorProto (serialize/graph.proto): dtype, dims and the elements
// as raw little-endian bytes. Shared by graph files and checkpoints.
#ifndef SUBQUAD_SERIALIZE_TENSOR_PROTO_H_
#define SUBQUAD_SERIALIZE_TENSOR_PROTO_H_

#include <optional>

#include "absl/status/statusor.h"
#include "core/dtype.h"
#include "core/shape.h"
#include "core/tensor.h"
#include "serialize/graph.pb.h"

namespace subquad {

proto::DType DTypeToProto(DType t);
// nullopt for values the enum does not declare (proto3 keeps them).
std::optional<DType> DTypeFromProto(int t);

// A shape from dims: InvalidArgument when ValidateShape refuses it (the rank
// is checked first, so a long list gives a short message).
absl::StatusOr<Shape> ShapeFromProto(
    const google::protobuf::RepeatedField<int64_t>& dims);
// InvalidArgument for a dtype the enum does not declare.
absl::StatusOr<DType> CheckedDTypeFromProto(int t);
absl::StatusOr<TensorType> TensorTypeFromProto(
    int dtype, const google::protobuf::RepeatedField<int64_t>& dims);

void TensorToProto(const TensorView& t, proto::TensorProto* p);
// InvalidArgument for an unknown dtype, a shape ValidateShape refuses, or
// data whose size is not dtype size × elements; nothing is allocated before
// the checks pass.
absl::StatusOr<Tensor> TensorFromProto(const proto::TensorProto& p);

}  // namespace subquad

#endif  // SUBQUAD_SERIALIZE_TENSOR_PROTO_H_
