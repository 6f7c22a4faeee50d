#include "runtime/profile.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"

namespace subquad {

std::string Profile::SummaryByOp(int top) const {
  struct Row {
    std::string op;
    int64_t nanos = 0, flops = 0, bytes = 0, count = 0;
  };
  absl::flat_hash_map<std::string, Row> rows;
  int64_t sum = 0;
  for (const NodeProfile& n : nodes) {
    Row& r = rows[n.op];
    r.op = n.op;
    r.nanos += n.nanos;
    r.flops += n.flops;
    r.bytes += n.bytes;
    ++r.count;
    sum += n.nanos;
  }
  std::vector<Row> sorted;
  for (auto& [k, r] : rows) sorted.push_back(r);
  std::sort(sorted.begin(), sorted.end(),
            [](const Row& a, const Row& b) { return a.nanos > b.nanos; });
  std::string out = absl::StrFormat("%-16s %6s %10s %6s %10s %10s\n", "op",
                                    "nodes", "ms", "share", "GFLOP/s", "GB/s");
  for (int i = 0; i < static_cast<int>(sorted.size()) && i < top; ++i) {
    const Row& r = sorted[i];
    const double sec = r.nanos * 1e-9;
    absl::StrAppendFormat(
        &out, "%-16s %6d %10.3f %5.1f%% %10.2f %10.2f\n", r.op, r.count,
        r.nanos * 1e-6, sum > 0 ? 100.0 * r.nanos / sum : 0.0,
        sec > 0 ? r.flops / sec * 1e-9 : 0.0, sec > 0 ? r.bytes / sec * 1e-9 : 0.0);
  }
  return out;
}

}  // namespace subquad
