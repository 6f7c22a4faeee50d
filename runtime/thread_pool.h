// ThreadPool: a small persistent pool (one worker fewer than its thread
// count; the caller is the last thread) implementing ParallelRunner for
// kernels. Sized for this project's machines: a handful of cores.
#ifndef SUBQUAD_RUNTIME_THREAD_POOL_H_
#define SUBQUAD_RUNTIME_THREAD_POOL_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/parallel.h"

namespace subquad {

class ThreadPool final : public ParallelRunner {
 public:
  // `num_threads` <= 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool() override;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const override { return num_threads_; }
  // Splits [0, n) into at most num_threads() contiguous chunks of at least
  // `min_grain`. Nested calls from inside a chunk run serially.
  void ParallelFor(int64_t n, int64_t min_grain,
                   absl::FunctionRef<void(int64_t, int64_t)> fn) override;

 private:
  void WorkerLoop(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  // The job in flight (guarded by mu_).
  const absl::FunctionRef<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_chunk_ = 0;
  int job_chunks_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

}  // namespace subquad

#endif  // SUBQUAD_RUNTIME_THREAD_POOL_H_
