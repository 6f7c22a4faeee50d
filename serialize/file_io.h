// Whole-file reads with a size cap, and atomic whole-file writes.
//
// WriteFileAtomically writes a temporary file in the destination's
// directory, fsyncs it, renames it over the destination and fsyncs the
// directory: a reader (or a crash at any moment) sees either the old file or
// the complete new one, never a partial file under the final name.
#ifndef SUBQUAD_SERIALIZE_FILE_IO_H_
#define SUBQUAD_SERIALIZE_FILE_IO_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace subquad {

// The contents of `path`; InvalidArgument when it holds more than
// `max_bytes` (checked before reading), NotFound when it does not exist.
absl::StatusOr<std::string> ReadFileToString(const std::string& path,
                                             int64_t max_bytes);

// Errors name the path and the failing system call.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents);

// Temporary files of WriteFileAtomically start with this prefix (they are
// hidden, and never match a name a caller chose unless it starts so too).
inline constexpr char kTempFilePrefix[] = ".tmp-";

}  // namespace subquad

#endif  // SUBQUAD_SERIALIZE_FILE_IO_H_
