// Per-node measurements of one executor run, and their summaries.
#ifndef SUBQUAD_RUNTIME_PROFILE_H_
#define SUBQUAD_RUNTIME_PROFILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/graph.h"

namespace subquad {

struct NodeProfile {
  NodeId node = kNoNode;
  std::string name;
  std::string op;
  std::string scope;
  Role role = Role::kForward;
  int64_t nanos = 0;
  int64_t flops = 0;
  int64_t bytes = 0;  // inputs read + outputs written
};

struct Profile {
  std::vector<NodeProfile> nodes;  // in execution order
  int64_t total_nanos = 0;

  // Time, flops and share of the run per op, slowest first; `top` rows.
  std::string SummaryByOp(int top = 20) const;
};

}  // namespace subquad

#endif  // SUBQUAD_RUNTIME_PROFILE_H_
