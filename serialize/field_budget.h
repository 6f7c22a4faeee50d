// A bound on what parsing untrusted protobuf bytes allocates.
//
// Protobuf's parser allocates an object per field it reads: an empty
// repeated submessage costs 2 bytes of input and tens of bytes of memory,
// so a cap on the input size alone still lets a file ask for many times
// its size. CheckFieldBudget counts the fields of binary or text input,
// without allocating, before the parser runs.
#ifndef SUBQUAD_SERIALIZE_FIELD_BUDGET_H_
#define SUBQUAD_SERIALIZE_FIELD_BUDGET_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"

namespace subquad {

// InvalidArgument when `bytes` hold more than `max_fields` fields of
// messages of type `root` (binary wire format: every field occurrence,
// unknown ones included, is counted; elements of packed lists cost at most
// 8 bytes each and are not). Malformed bytes pass: the parser reports them.
absl::Status CheckBinaryFieldBudget(absl::string_view bytes,
                                    const google::protobuf::Descriptor* root,
                                    int64_t max_fields);

// The same bound for protobuf text: every field needs a ':', '{', '<' or
// (in a list) ',', so their count bounds the field count from above.
absl::Status CheckTextFieldBudget(absl::string_view text, int64_t max_fields);

}  // namespace subquad

#endif  // SUBQUAD_SERIALIZE_FIELD_BUDGET_H_
