// GoogleMock matchers for absl::Status and absl::StatusOr<T>.
//
//   EXPECT_THAT(DoThing(), IsOk());
//   EXPECT_THAT(Parse("x"), StatusIs(absl::StatusCode::kInvalidArgument,
//                                    HasSubstr("node 'x'")));
//
// Debian's Abseil lacks absl/status/status_matchers.h; this is subquad's.
#ifndef SUBQUAD_CORE_TESTING_STATUS_MATCHERS_H_
#define SUBQUAD_CORE_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/status.h"
#include "gmock/gmock.h"

namespace subquad::testing {
namespace internal {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

class IsOkMatcher {
 public:
  using is_gtest_matcher = void;
  template <typename S>
  bool MatchAndExplain(const S& s, ::testing::MatchResultListener* l) const {
    const absl::Status& st = GetStatus(s);
    if (!st.ok()) *l << "which is " << st;
    return st.ok();
  }
  void DescribeTo(std::ostream* os) const { *os << "is OK"; }
  void DescribeNegationTo(std::ostream* os) const { *os << "is not OK"; }
};

class StatusIsMatcher {
 public:
  using is_gtest_matcher = void;
  StatusIsMatcher(absl::StatusCode code,
                  ::testing::Matcher<const std::string&> message)
      : code_(code), message_(std::move(message)) {}

  template <typename S>
  bool MatchAndExplain(const S& s, ::testing::MatchResultListener* l) const {
    const absl::Status& st = GetStatus(s);
    if (st.code() != code_) {
      *l << "whose code is " << absl::StatusCodeToString(st.code())
         << " (message: \"" << st.message() << "\")";
      return false;
    }
    const std::string msg(st.message());
    ::testing::StringMatchResultListener inner;
    if (!message_.MatchAndExplain(msg, &inner)) {
      *l << "whose message \"" << msg << "\" does not match";
      if (!inner.str().empty()) *l << ", " << inner.str();
      return false;
    }
    return true;
  }
  void DescribeTo(std::ostream* os) const {
    *os << "has code " << absl::StatusCodeToString(code_)
        << " and a message that ";
    message_.DescribeTo(os);
  }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "does not have code " << absl::StatusCodeToString(code_)
        << " or has a message that ";
    message_.DescribeNegationTo(os);
  }

 private:
  absl::StatusCode code_;
  ::testing::Matcher<const std::string&> message_;
};

}  // namespace internal

inline internal::IsOkMatcher IsOk() { return {}; }

inline internal::StatusIsMatcher StatusIs(
    absl::StatusCode code,
    ::testing::Matcher<const std::string&> message = ::testing::_) {
  return {code, std::move(message)};
}

}  // namespace subquad::testing

#define EXPECT_OK(expr) EXPECT_THAT((expr), ::subquad::testing::IsOk())
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::subquad::testing::IsOk())

// ASSERT_OK_AND_ASSIGN(auto x, StatusOrExpr());
#define ASSERT_OK_AND_ASSIGN(lhs, rexpr)                                    \
  SUBQUAD_ASSERT_OK_AND_ASSIGN_IMPL_(                                      \
      SUBQUAD_STATUS_CONCAT_(subquad_assert_statusor_, __LINE__), lhs, rexpr)
#define SUBQUAD_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                       \
  ASSERT_THAT(statusor.status(), ::subquad::testing::IsOk());    \
  lhs = std::move(statusor).value()

#endif  // SUBQUAD_CORE_TESTING_STATUS_MATCHERS_H_
