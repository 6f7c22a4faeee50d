// Helpers for op tests: run one op's kernel on given tensors without a
// graph runtime, and compare tensors against references.
#ifndef SUBQUAD_TESTS_OPS_OP_TEST_UTIL_H_
#define SUBQUAD_TESTS_OPS_OP_TEST_UTIL_H_

#include "absl/strings/string_view.h"
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <algorithm>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/graph.h"
#include "core/op_schema.h"
#include "core/parallel.h"
#include "core/status.h"
#include "core/tensor.h"
#include "gtest/gtest.h"

namespace subquad::testing {

// Builds a one-node graph (inputs fed as "input" nodes), checks the node with
// the schema's shape rule, and runs the kernel for output 0's dtype on
// `inputs`. `pool` defaults to serial execution.
inline absl::StatusOr<std::vector<Tensor>> RunOp(
    absl::string_view op, const std::vector<Tensor>& inputs, AttrMap attrs = {},
    ParallelRunner* pool = nullptr) {
  Graph g;
  GraphBuilder b(&g);
  std::vector<Value> in;
  for (size_t i = 0; i < inputs.size(); ++i) {
    in.push_back(b.Input(absl::StrCat("in", i), inputs[i].dtype(),
                         inputs[i].shape()));
  }
  RETURN_IF_ERROR(b.status());
  ASSIGN_OR_RETURN(std::vector<Value> outs, b.AddNode(op, in, std::move(attrs)));
  const Node& node = *g.node(outs[0].node);
  const KernelFn* kernel = node.schema()->FindKernel(node.output_type(0).dtype);
  if (kernel == nullptr) {
    return absl::UnimplementedError(absl::StrCat(
        op, ": no kernel for ", DTypeName(node.output_type(0).dtype)));
  }
  std::vector<Tensor> results;
  std::vector<TensorView> in_views, out_views;
  for (const Tensor& t : inputs) in_views.push_back(t.view());
  for (const TensorType& t : node.output_types()) {
    results.emplace_back(t);
    out_views.push_back(results.back().view());
  }
  KernelContext ctx{node, in_views, out_views,
                    pool != nullptr ? pool : SerialRunner::Get()};
  RETURN_IF_ERROR((*kernel)(ctx));
  return results;
}

// A ParallelRunner that runs each chunk on its own std::thread: exercises
// kernels' parallel paths in op tests without the runtime's pool.
class SpawningRunner final : public ParallelRunner {
 public:
  explicit SpawningRunner(int threads) : threads_(threads) {}
  int num_threads() const override { return threads_; }
  void ParallelFor(int64_t n, int64_t min_grain,
                   absl::FunctionRef<void(int64_t, int64_t)> fn) override {
    if (n <= 0) return;
    const int64_t grain = std::max<int64_t>(min_grain, 1);
    int64_t chunks = std::min<int64_t>(threads_, (n + grain - 1) / grain);
    chunks = std::max<int64_t>(chunks, 1);
    std::vector<std::thread> ts;
    const int64_t per = (n + chunks - 1) / chunks;
    for (int64_t c = 1; c < chunks; ++c) {
      const int64_t b = c * per, e = std::min(n, b + per);
      if (b < e) ts.emplace_back([&fn, b, e] { fn(b, e); });
    }
    fn(0, std::min(n, per));
    for (auto& t : ts) t.join();
  }

 private:
  int threads_;
};

// A tensor of `shape` with values uniform in [lo, hi) (floating) or integers
// in [lo, hi) (integer dtypes), from `seed`.
inline Tensor RandomTensor(DType dtype, Shape shape, uint64_t seed,
                           double lo = -1.0, double hi = 1.0) {
  Tensor t(dtype, std::move(shape));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  DispatchDType(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      if constexpr (std::is_floating_point_v<T>) {
        p[i] = static_cast<T>(u(rng));
      } else {
        p[i] = static_cast<T>(std::floor(u(rng)));
      }
    }
  });
  return t;
}

// Element i of a tensor as double.
inline double ElementAsDouble(const Tensor& t, int64_t i) {
  return DispatchDType(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    return static_cast<double>(t.data<T>()[i]);
  });
}

// Checks type equality and |a − b| ≤ atol + rtol·|b| elementwise (NaN and
// infinities must match exactly).
inline ::testing::AssertionResult TensorsNear(const Tensor& a, const Tensor& b,
                                              double rtol, double atol) {
  if (a.type() != b.type()) {
    return ::testing::AssertionFailure()
           << "types differ: " << a.type().ToString() << " vs "
           << b.type().ToString();
  }
  for (int64_t i = 0; i < a.num_elements(); ++i) {
    const double x = ElementAsDouble(a, i), y = ElementAsDouble(b, i);
    if (std::isnan(x) || std::isnan(y) || std::isinf(x) || std::isinf(y)) {
      if ((std::isnan(x) && std::isnan(y)) || x == y) continue;
      return ::testing::AssertionFailure()
             << "element " << i << ": " << x << " vs " << y;
    }
    if (std::abs(x - y) > atol + rtol * std::abs(y)) {
      return ::testing::AssertionFailure()
             << "element " << i << " of " << a.type().ToString() << ": " << x
             << " vs reference " << y << " (diff " << std::abs(x - y) << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace subquad::testing

#endif  // SUBQUAD_TESTS_OPS_OP_TEST_UTIL_H_
