// Registry-wide op tests. They walk the op registry and run every op's
// declared examples (OpSchema::examples): kernels in f32 and f64 agree, and
// every differentiable op's gradient rule matches central finite differences
// in f64. A new op is covered here without new test code; an op with kernels
// but no examples, or differentiable but without a gradient rule, fails.
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/op_schema.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/ops.h"
#include "tests/ops/op_test_util.h"
#include "tests/passes/grad_check_util.h"

namespace subquad {
namespace {

std::vector<std::string> OpsWithKernels() {
  std::vector<std::string> names;
  for (const OpSchema* s : OpRegistry::Global().List()) {
    if (!s->is_source) names.push_back(s->name);
  }
  return names;
}

std::vector<std::string> DifferentiableOps() {
  std::vector<std::string> names;
  for (const OpSchema* s : OpRegistry::Global().List()) {
    if (!s->is_source && s->differentiable) names.push_back(s->name);
  }
  return names;
}

// Values for input i of `ex` as `dtype` (floating inputs may change dtype).
Tensor ExampleInput(const OpExample& ex, int i, DType dtype, uint64_t seed) {
  const auto range = i < static_cast<int>(ex.ranges.size())
                         ? ex.ranges[i]
                         : std::pair<double, double>{-1.0, 1.0};
  return testing::RandomTensor(dtype, ex.inputs[i].shape, seed, range.first,
                               range.second);
}

DType AsFloat(DType original, DType floating) {
  return IsFloating(original) ? floating : original;
}

class OpRegistryTest : public ::testing::TestWithParam<std::string> {
 protected:
  const OpSchema& schema() const {
    return *OpRegistry::Global().Find(GetParam());
  }
};

TEST_P(OpRegistryTest, DeclaresExamples) {
  EXPECT_FALSE(schema().examples.empty())
      << "op '" << GetParam() << "' declares no examples (OpSchema::examples)";
}

TEST_P(OpRegistryTest, KernelsAgreeAcrossFloatTypes) {
  const OpSchema& s = schema();
  if (!s.kernels.contains(DType::kF32) || !s.kernels.contains(DType::kF64)) {
    GTEST_SKIP() << GetParam() << " has no f32+f64 kernel pair";
  }
  for (size_t e = 0; e < s.examples.size(); ++e) {
    const OpExample& ex = s.examples[e];
    SCOPED_TRACE(absl::StrCat(GetParam(), " example ", e));
    std::vector<Tensor> in32, in64;
    for (size_t i = 0; i < ex.inputs.size(); ++i) {
      in64.push_back(ExampleInput(ex, i, AsFloat(ex.inputs[i].dtype, DType::kF64), 11 + i));
      Tensor t32(AsFloat(ex.inputs[i].dtype, DType::kF32), ex.inputs[i].shape);
      for (int64_t k = 0; k < t32.num_elements(); ++k) {
        const double v = testing::ElementAsDouble(in64.back(), k);
        DispatchDType(t32.dtype(), [&](auto zero) {
          using T = decltype(zero);
          t32.data<T>()[k] = static_cast<T>(v);
        });
      }
      in32.push_back(std::move(t32));
    }
    ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out64, testing::RunOp(GetParam(), in64, ex.attrs));
    ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out32, testing::RunOp(GetParam(), in32, ex.attrs));
    ASSERT_EQ(out32.size(), out64.size());
    for (size_t o = 0; o < out64.size(); ++o) {
      ASSERT_EQ(out32[o].shape(), out64[o].shape());
      for (int64_t k = 0; k < out64[o].num_elements(); ++k) {
        const double a = testing::ElementAsDouble(out32[o], k);
        const double b = testing::ElementAsDouble(out64[o], k);
        if (std::isnan(b)) continue;
        ASSERT_NEAR(a, b, 1e-4 * (1 + std::abs(b))) << "output " << o << " element " << k;
      }
    }
  }
}

// Instantiated for the differentiable ops only.
class OpGradientTest : public OpRegistryTest {};

TEST_P(OpGradientTest, MatchesFiniteDifferences) {
  const OpSchema& s = schema();
  ASSERT_TRUE(static_cast<bool>(s.grad))
      << "op '" << GetParam() << "' is differentiable but has no gradient rule";
  for (size_t e = 0; e < s.examples.size(); ++e) {
    const OpExample& ex = s.examples[e];
    SCOPED_TRACE(absl::StrCat(GetParam(), " example ", e));
    Graph g;
    GraphBuilder b(&g);
    ParameterStore params;
    std::vector<Value> inputs;
    int differentiable_inputs = 0;
    for (size_t i = 0; i < ex.inputs.size(); ++i) {
      const DType dt = AsFloat(ex.inputs[i].dtype, DType::kF64);
      Tensor value = ExampleInput(ex, i, dt, 101 + i);
      if (IsFloating(dt) && s.input_def(i).differentiable) {
        const std::string name = absl::StrCat("in", i);
        inputs.push_back(b.Parameter(name, dt, ex.inputs[i].shape));
        params.Set(name, std::move(value));
        ++differentiable_inputs;
      } else {
        inputs.push_back(b.Constant(std::move(value), absl::StrCat("const", i)));
      }
    }
    if (differentiable_inputs == 0) continue;
    ASSERT_OK_AND_ASSIGN(std::vector<Value> outs, b.AddNode(GetParam(), inputs, ex.attrs));
    // loss = Σ_o Σ out_o ⊙ R_o with fixed random R_o: every output's
    // gradient is exercised with a generic upstream gradient.
    Value loss;
    for (size_t o = 0; o < outs.size(); ++o) {
      const TensorType& t = b.type(outs[o]);
      if (t.dtype != DType::kF64) continue;
      Value r = b.Constant(testing::RandomTensor(DType::kF64, t.shape, 500 + o));
      Value term = ops::ReduceSumAll(b, ops::Mul(b, outs[o], r));
      loss = loss.valid() ? ops::Add(b, loss, term) : term;
    }
    b.Output("loss", loss);
    ASSERT_OK(b.status());
    ASSERT_OK_AND_ASSIGN(testing::GradCheckReport report,
                         testing::CheckGradients(g, params, {}, "loss", 3,
                                                 /*eps=*/1e-5, /*floor=*/1e-9));
    EXPECT_LE(report.max_rel_error, ex.grad_tolerance) << report.worst;
  }
}

std::string OpName(const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

INSTANTIATE_TEST_SUITE_P(Ops, OpRegistryTest, ::testing::ValuesIn(OpsWithKernels()),
                         OpName);
INSTANTIATE_TEST_SUITE_P(Ops, OpGradientTest, ::testing::ValuesIn(DifferentiableOps()),
                         OpName);

}  // namespace
}  // namespace subquad
