// Text from files quoted in error messages: printable ASCII stays as it is,
// every other byte becomes \xNN, so a message is one readable line whatever
// the file holds.
#ifndef SUBQUAD_SERIALIZE_PRINTABLE_H_
#define SUBQUAD_SERIALIZE_PRINTABLE_H_

#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace subquad {

inline std::string Printable(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      out.push_back(c);
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", u);
    }
  }
  return out;
}

}  // namespace subquad

#endif  // SUBQUAD_SERIALIZE_PRINTABLE_H_
