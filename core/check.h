// SUBQUAD_CHECK(cond) << "message": aborts with the message when `cond` is
// false. Only for programmer errors (broken invariants); anything a user can
// cause returns an absl::Status instead. (Debian's Abseil has no absl/log.)
#ifndef SUBQUAD_CORE_CHECK_H_
#define SUBQUAD_CORE_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace subquad::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* cond) {
    stream_ << file << ":" << line << ": check failed: " << cond << " ";
  }
  [[noreturn]] ~CheckFailure() {
    std::fprintf(stderr, "%s\n", stream_.str().c_str());
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace subquad::internal

#define SUBQUAD_CHECK(cond) \
  if (cond) {               \
  } else                    \
    ::subquad::internal::CheckFailure(__FILE__, __LINE__, #cond).stream()

#endif  // SUBQUAD_CORE_CHECK_H_
