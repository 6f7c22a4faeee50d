// The parallel-for interface kernels use. The runtime supplies the thread
// pool behind it (runtime/thread_pool.h); core and ops depend only on this.
#ifndef SUBQUAD_CORE_PARALLEL_H_
#define SUBQUAD_CORE_PARALLEL_H_

#include <cstdint>

#include "absl/functional/function_ref.h"

namespace subquad {

class ParallelRunner {
 public:
  virtual ~ParallelRunner() = default;
  virtual int num_threads() const = 0;
  // Calls fn(begin, end) on disjoint ranges covering [0, n), each at least
  // `min_grain` long (except possibly the last), and returns when all are
  // done. The caller's thread takes part.
  virtual void ParallelFor(int64_t n, int64_t min_grain,
                           absl::FunctionRef<void(int64_t, int64_t)> fn) = 0;
};

// Runs everything on the calling thread.
class SerialRunner final : public ParallelRunner {
 public:
  int num_threads() const override { return 1; }
  void ParallelFor(int64_t n, int64_t min_grain,
                   absl::FunctionRef<void(int64_t, int64_t)> fn) override {
    if (n > 0) fn(0, n);
  }
  static SerialRunner* Get() {
    static SerialRunner r;
    return &r;
  }
};

}  // namespace subquad

#endif  // SUBQUAD_CORE_PARALLEL_H_
