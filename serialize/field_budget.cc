#include "serialize/field_budget.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"

namespace subquad {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::io::CodedInputStream;
using ::google::protobuf::internal::WireFormatLite;

absl::Status OverBudget(int64_t max_fields) {
  return absl::InvalidArgumentError(
      absl::StrCat("the file holds more than ", max_fields,
                   " protobuf fields (the limit)"));
}

// Counts the fields of one message into *count; stops early once the count
// passes `max`. False when the bytes are malformed.
bool Count(CodedInputStream& in, const Descriptor* d, int64_t max,
           int64_t* count) {
  while (true) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) return true;  // the end (or a malformed tag: the parser says)
    if (++*count > max) return true;
    const FieldDescriptor* f =
        d == nullptr ? nullptr : d->FindFieldByNumber(WireFormatLite::GetTagFieldNumber(tag));
    if (f != nullptr && f->type() == FieldDescriptor::TYPE_MESSAGE &&
        WireFormatLite::GetTagWireType(tag) ==
            WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      uint32_t length;
      if (!in.ReadVarint32(&length)) return false;
      const auto [limit, depth_left] =
          in.IncrementRecursionDepthAndPushLimit(static_cast<int>(
              std::min<uint32_t>(length, static_cast<uint32_t>(INT32_MAX))));
      if (depth_left < 0) return false;
      if (!Count(in, f->message_type(), max, count)) return false;
      if (*count > max) return true;
      if (in.BytesUntilLimit() != 0) return false;
      if (!in.DecrementRecursionDepthAndPopLimit(limit)) return false;
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return false;
    }
  }
}

}  // namespace

absl::Status CheckBinaryFieldBudget(absl::string_view bytes,
                                    const Descriptor* root, int64_t max_fields) {
  CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                      static_cast<int>(std::min<size_t>(bytes.size(), INT32_MAX)));
  int64_t count = 0;
  Count(in, root, max_fields, &count);
  return count > max_fields ? OverBudget(max_fields) : absl::OkStatus();
}

absl::Status CheckTextFieldBudget(absl::string_view text, int64_t max_fields) {
  int64_t count = 0;
  for (char c : text) {
    count += c == ':' || c == '{' || c == '<' || c == ',';
  }
  return count > max_fields ? OverBudget(max_fields) : absl::OkStatus();
}

}  // namespace subquad
