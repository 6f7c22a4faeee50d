// NumPy .npy files: the format NumPy's np.save / np.load use for one array.
//
// Reads format versions 1.0 and 2.0 (3.0 differs only in the header's text
// encoding and is refused), little-endian f32 ('<f4'), f64 ('<f8'), i32
// ('<i4') and i64 ('<i8') in C order, and writes version 1.0 (2.0 when the
// header would not fit). Everything read is validated: the magic, version,
// header length, the header dictionary (exactly the keys 'descr',
// 'fortran_order' and 'shape'), the dtype, the shape (ValidateShape), and the
// data size against the file length, before any tensor is allocated.
#ifndef SUBQUAD_SERIALIZE_NPY_H_
#define SUBQUAD_SERIALIZE_NPY_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tensor.h"

namespace subquad {

// The whole .npy file for `t`.
std::string EncodeNpy(const TensorView& t);
// InvalidArgument naming the problem ("npy: dtype '>f4' is big-endian; ...").
absl::StatusOr<Tensor> DecodeNpy(absl::string_view bytes);

// Atomic, like every subquad save.
absl::Status WriteNpy(const std::string& path, const TensorView& t);
// Errors start with the path. Files larger than `max_bytes` are refused
// before they are read.
absl::StatusOr<Tensor> ReadNpy(const std::string& path,
                               int64_t max_bytes = int64_t{1} << 34);

}  // namespace subquad

#endif  // SUBQUAD_SERIALIZE_NPY_H_
