// Status propagation helpers used throughout subquad.
//
// Debian's Abseil (20220623) has neither ABSL_RETURN_IF_ERROR nor
// ABSL_ASSIGN_OR_RETURN; these are subquad's, defined once, here.
#ifndef SUBQUAD_CORE_STATUS_H_
#define SUBQUAD_CORE_STATUS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SUBQUAD_STATUS_CONCAT_INNER_(a, b) a##b
#define SUBQUAD_STATUS_CONCAT_(a, b) SUBQUAD_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                                   \
  do {                                                          \
    ::absl::Status subquad_status_ = (expr);                    \
    if (!subquad_status_.ok()) return subquad_status_;          \
  } while (false)

// `ASSIGN_OR_RETURN(auto x, StatusOrExpr());` declares/assigns `x` from the
// value of an absl::StatusOr, or returns its error from the enclosing function.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  SUBQUAD_ASSIGN_OR_RETURN_IMPL_(    \
      SUBQUAD_STATUS_CONCAT_(subquad_statusor_, __LINE__), lhs, rexpr)

#define SUBQUAD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = std::move(statusor).value()

#endif  // SUBQUAD_CORE_STATUS_H_
