// Tests of attention_forward and attention_backward (ops/attention.cc):
// against plain-loop references in double (f64 kernels, and f32 within
// tolerance), causal and not, tile edge cases, Tq != Tk, Dv != D, parallel
// against serial (bitwise), the fast exp's error, and end to end: graphs with
// primitive attention and with attention_forward give the same outputs and,
// after autodiff, the same gradients.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/graph.h"
#include "core/op_schema.h"
#include "core/status.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/internal/attention_kernels.h"
#include "ops/nn/layers.h"
#include "ops/ops.h"
#include "passes/autodiff.h"
#include "runtime/executor.h"
#include "runtime/parameter_store.h"
#include "tests/ops/op_test_util.h"

namespace subquad {
namespace {

using ::subquad::testing::ElementAsDouble;
using ::subquad::testing::RandomTensor;
using ::subquad::testing::RunOp;
using ::subquad::testing::SpawningRunner;
using ::subquad::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<double> ToDoubles(const Tensor& t) {
  std::vector<double> out(t.num_elements());
  for (int64_t i = 0; i < t.num_elements(); ++i) out[i] = ElementAsDouble(t, i);
  return out;
}

// max |a − b| / max |b| over finite entries; infinities must match.
double RelativeError(const Tensor& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.num_elements(); ++i) {
    const double x = ElementAsDouble(a, i), y = b[i];
    if (std::isinf(y) || std::isinf(x)) {
      if (x != y) return kInf;
      continue;
    }
    num = std::max(num, std::abs(x - y));
    den = std::max(den, std::abs(y));
  }
  return den > 0 ? num / den : num;
}

double RelativeError(const Tensor& a, const Tensor& b) {
  return RelativeError(a, ToDoubles(b));
}

struct Case {
  std::vector<int64_t> lead;
  int64_t tq, tk, d, dv;
  bool causal;
  double scale;
  std::string name;
};

Shape MakeShape(const std::vector<int64_t>& lead, std::vector<int64_t> tail) {
  std::vector<int64_t> dims = lead;
  dims.insert(dims.end(), tail.begin(), tail.end());
  return Shape(absl::MakeConstSpan(dims));
}

int64_t Heads(const Case& c) {
  int64_t h = 1;
  for (int64_t x : c.lead) h *= x;
  return h;
}

// Plain-loop reference in double: the full score matrix per head.
struct Reference {
  std::vector<double> o, lse, dq, dk, dv;
};

Reference RefAttention(const Case& c, const std::vector<double>& q,
                       const std::vector<double>& k,
                       const std::vector<double>& v,
                       const std::vector<double>& dout) {
  const int64_t h_count = Heads(c), tq = c.tq, tk = c.tk, d = c.d, dv = c.dv;
  Reference r;
  r.o.assign(h_count * tq * dv, 0);
  r.lse.assign(h_count * tq, -kInf);
  r.dq.assign(h_count * tq * d, 0);
  r.dk.assign(h_count * tk * d, 0);
  r.dv.assign(h_count * tk * dv, 0);
  for (int64_t h = 0; h < h_count; ++h) {
    const double* qh = q.data() + h * tq * d;
    const double* kh = k.data() + h * tk * d;
    const double* vh = v.data() + h * tk * dv;
    const double* doh = dout.data() + h * tq * dv;
    for (int64_t i = 0; i < tq; ++i) {
      std::vector<double> s(tk, -kInf), p(tk, 0);
      double m = -kInf;
      for (int64_t j = 0; j < tk; ++j) {
        if (c.causal && j > i + tk - tq) continue;
        double dot = 0;
        for (int64_t t = 0; t < d; ++t) dot += qh[i * d + t] * kh[j * d + t];
        s[j] = c.scale * dot;
        m = std::max(m, s[j]);
      }
      if (m == -kInf) continue;  // no visible key: o = 0, lse = −inf
      double sum = 0;
      for (int64_t j = 0; j < tk; ++j) sum += std::exp(s[j] - m);
      r.lse[h * tq + i] = m + std::log(sum);
      for (int64_t j = 0; j < tk; ++j) p[j] = std::exp(s[j] - m) / sum;
      for (int64_t j = 0; j < tk; ++j) {
        for (int64_t t = 0; t < dv; ++t) {
          r.o[(h * tq + i) * dv + t] += p[j] * vh[j * dv + t];
        }
      }
      // Backward through o = P·V and the row softmax.
      std::vector<double> dp(tk, 0);
      double delta = 0;
      for (int64_t j = 0; j < tk; ++j) {
        for (int64_t t = 0; t < dv; ++t)
          dp[j] += doh[i * dv + t] * vh[j * dv + t];
        delta += p[j] * dp[j];
      }
      for (int64_t j = 0; j < tk; ++j) {
        const double ds = p[j] * (dp[j] - delta) * c.scale;
        for (int64_t t = 0; t < dv; ++t) {
          r.dv[(h * tk + j) * dv + t] += p[j] * doh[i * dv + t];
        }
        for (int64_t t = 0; t < d; ++t) {
          r.dq[(h * tq + i) * d + t] += ds * kh[j * d + t];
          r.dk[(h * tk + j) * d + t] += ds * qh[i * d + t];
        }
      }
    }
  }
  return r;
}

// Inputs of a case in `dtype`: q, k, v, dO, with the logits' spread set by
// `range`.
struct Inputs {
  Tensor q, k, v, dout;
};

Inputs MakeInputs(const Case& c, DType dtype, uint64_t seed,
                  double range = 1.0) {
  return Inputs{
      RandomTensor(dtype, MakeShape(c.lead, {c.tq, c.d}), seed, -range, range),
      RandomTensor(dtype, MakeShape(c.lead, {c.tk, c.d}), seed + 1, -range,
                   range),
      RandomTensor(dtype, MakeShape(c.lead, {c.tk, c.dv}), seed + 2),
      RandomTensor(dtype, MakeShape(c.lead, {c.tq, c.dv}), seed + 3)};
}

AttrMap Attrs(const Case& c) {
  return {{"scale", c.scale}, {"causal", c.causal}};
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  const auto add = [&](std::vector<int64_t> lead, int64_t tq, int64_t tk,
                       int64_t d, int64_t dv, const std::string& name) {
    for (bool causal : {false, true}) {
      cases.push_back(Case{lead, tq, tk, d, dv, causal,
                           1.0 / std::sqrt(static_cast<double>(d)),
                           absl::StrCat(name, causal ? "_causal" : "_full")});
    }
  };
  add({1}, 1, 1, 16, 16, "n1_d16");
  add({2}, 64, 64, 16, 16, "one_tile_d16");
  add({2}, 100, 100, 32, 32, "n100_d32");
  add({1}, 130, 130, 64, 64, "n130_d64");
  add({1}, 70, 70, 128, 128, "n70_d128");
  add({2, 3}, 65, 65, 64, 64, "batch_heads_n65");
  add({1}, 37, 150, 64, 64, "tq37_tk150");
  add({1}, 150, 37, 64, 64, "tq150_tk37");
  add({1}, 200, 200, 32, 16, "dv16_d32");
  add({1}, 90, 90, 24, 24, "d24");
  add({1}, 33, 47, 8, 5, "d8_dv5");
  add({1}, 257, 257, 48, 48, "n257_d48");
  add({2}, 1, 300, 64, 64, "one_query");
  return cases;
}

class AttentionOpTest
    : public ::testing::TestWithParam<std::tuple<DType, Case>> {
 protected:
  DType dtype() const { return std::get<0>(GetParam()); }
  const Case& c() const { return std::get<1>(GetParam()); }
  // f64 kernels against the double reference; f32 within rounding.
  double tolerance() const { return dtype() == DType::kF64 ? 1e-12 : 2e-5; }
};

TEST_P(AttentionOpTest, ForwardAndBackwardMatchReference) {
  const Inputs in = MakeInputs(c(), dtype(), 17, 2.0);
  const Reference ref = RefAttention(c(), ToDoubles(in.q), ToDoubles(in.k),
                                     ToDoubles(in.v), ToDoubles(in.dout));
  ASSERT_OK_AND_ASSIGN(
      std::vector<Tensor> fwd,
      RunOp("attention_forward", {in.q, in.k, in.v}, Attrs(c())));
  ASSERT_EQ(fwd.size(), 2u);
  EXPECT_EQ(fwd[0].shape(), MakeShape(c().lead, {c().tq, c().dv}));
  EXPECT_EQ(fwd[1].shape(), MakeShape(c().lead, {c().tq}));
  EXPECT_LE(RelativeError(fwd[0], ref.o), tolerance()) << "o";
  EXPECT_LE(RelativeError(fwd[1], ref.lse), tolerance()) << "lse";
  ASSERT_OK_AND_ASSIGN(
      std::vector<Tensor> bwd,
      RunOp("attention_backward", {in.q, in.k, in.v, fwd[0], fwd[1], in.dout},
            Attrs(c())));
  ASSERT_EQ(bwd.size(), 3u);
  EXPECT_LE(RelativeError(bwd[0], ref.dq), tolerance()) << "dq";
  EXPECT_LE(RelativeError(bwd[1], ref.dk), tolerance()) << "dk";
  EXPECT_LE(RelativeError(bwd[2], ref.dv), tolerance()) << "dv";
}

// Results do not depend on the pool: bitwise equal for 1, 2 and 3 threads.
TEST_P(AttentionOpTest, ParallelEqualsSerial) {
  const Inputs in = MakeInputs(c(), dtype(), 5);
  ASSERT_OK_AND_ASSIGN(
      std::vector<Tensor> fwd,
      RunOp("attention_forward", {in.q, in.k, in.v}, Attrs(c())));
  ASSERT_OK_AND_ASSIGN(
      std::vector<Tensor> bwd,
      RunOp("attention_backward", {in.q, in.k, in.v, fwd[0], fwd[1], in.dout},
            Attrs(c())));
  for (int threads : {2, 3}) {
    SpawningRunner pool(threads);
    ASSERT_OK_AND_ASSIGN(
        std::vector<Tensor> pf,
        RunOp("attention_forward", {in.q, in.k, in.v}, Attrs(c()), &pool));
    ASSERT_OK_AND_ASSIGN(
        std::vector<Tensor> pb,
        RunOp("attention_backward", {in.q, in.k, in.v, fwd[0], fwd[1], in.dout},
              Attrs(c()), &pool));
    for (size_t i = 0; i < fwd.size(); ++i) {
      EXPECT_TRUE(pf[i].BitwiseEquals(fwd[i]))
          << threads << " threads, output " << i;
    }
    for (size_t i = 0; i < bwd.size(); ++i) {
      EXPECT_TRUE(pb[i].BitwiseEquals(bwd[i]))
          << threads << " threads, grad " << i;
    }
  }
}

std::string CaseName(
    const ::testing::TestParamInfo<std::tuple<DType, Case>>& info) {
  return absl::StrCat(DTypeName(std::get<0>(info.param)), "_",
                      std::get<1>(info.param).name);
}

INSTANTIATE_TEST_SUITE_P(Cases, AttentionOpTest,
                         ::testing::Combine(::testing::Values(DType::kF32,
                                                              DType::kF64),
                                            ::testing::ValuesIn(Cases())),
                         CaseName);

// Rows with no visible key (causal, Tq > Tk): o = 0, lse = −inf, no gradient
// (the AVX-512 path at D = 64, the portable one at D = 24).
TEST(AttentionOpTest, RowsWithoutVisibleKeys) {
  for (const int64_t d : {64, 24}) {
    const Case c{{2}, 150, 37, d, d, true, 0.125, "empty_rows"};
    for (DType dt : {DType::kF32, DType::kF64}) {
      const Inputs in = MakeInputs(c, dt, 3);
      ASSERT_OK_AND_ASSIGN(
          std::vector<Tensor> fwd,
          RunOp("attention_forward", {in.q, in.k, in.v}, Attrs(c)));
      ASSERT_OK_AND_ASSIGN(
          std::vector<Tensor> bwd,
          RunOp("attention_backward",
                {in.q, in.k, in.v, fwd[0], fwd[1], in.dout}, Attrs(c)));
      for (int64_t h = 0; h < 2; ++h) {
        for (int64_t i = 0; i < c.tq - c.tk; ++i) {
          const int64_t row = h * c.tq + i;
          EXPECT_EQ(ElementAsDouble(fwd[1], row), -kInf);
          for (int64_t t = 0; t < d; ++t) {
            EXPECT_EQ(ElementAsDouble(fwd[0], row * d + t), 0.0);
            EXPECT_EQ(ElementAsDouble(bwd[0], row * d + t), 0.0);
          }
        }
      }
    }
  }
}

// Peaked attention (logits spread over tens): the online softmax rescales
// often; f32 stays within rounding of the double reference.
TEST(AttentionOpTest, LargeLogits) {
  for (bool causal : {false, true}) {
    const Case c{{2}, 300, 300, 64, 64, causal, 1.0, "large"};
    for (DType dt : {DType::kF32, DType::kF64}) {
      const Inputs in = MakeInputs(c, dt, 9, 1.5);
      const Reference ref = RefAttention(c, ToDoubles(in.q), ToDoubles(in.k),
                                         ToDoubles(in.v), ToDoubles(in.dout));
      ASSERT_OK_AND_ASSIGN(
          std::vector<Tensor> fwd,
          RunOp("attention_forward", {in.q, in.k, in.v}, Attrs(c)));
      ASSERT_OK_AND_ASSIGN(
          std::vector<Tensor> bwd,
          RunOp("attention_backward",
                {in.q, in.k, in.v, fwd[0], fwd[1], in.dout}, Attrs(c)));
      const double tol = dt == DType::kF64 ? 1e-12 : 5e-5;
      EXPECT_LE(RelativeError(fwd[0], ref.o), tol);
      EXPECT_LE(RelativeError(fwd[1], ref.lse), tol);
      EXPECT_LE(RelativeError(bwd[0], ref.dq), tol);
      EXPECT_LE(RelativeError(bwd[1], ref.dk), tol);
      EXPECT_LE(RelativeError(bwd[2], ref.dv), tol);
    }
  }
}

// One head, long enough for the backward to split keys into chunks whose
// dQ partial sums are added afterwards.
TEST(AttentionOpTest, SingleHeadKeyChunks) {
  for (bool causal : {false, true}) {
    const Case c{{1}, 700, 700, 64, 64, causal, 0.125, "chunks"};
    ops_internal::attention::Dims dm;
    dm.batch = 1;
    dm.tk = c.tk;
    ASSERT_GT(ops_internal::attention::BackwardKeyChunks(dm), 1);
    for (DType dt : {DType::kF32, DType::kF64}) {
      const Inputs in = MakeInputs(c, dt, 21, 2.0);
      const Reference ref = RefAttention(c, ToDoubles(in.q), ToDoubles(in.k),
                                         ToDoubles(in.v), ToDoubles(in.dout));
      SpawningRunner pool(2);
      ASSERT_OK_AND_ASSIGN(
          std::vector<Tensor> fwd,
          RunOp("attention_forward", {in.q, in.k, in.v}, Attrs(c), &pool));
      ASSERT_OK_AND_ASSIGN(
          std::vector<Tensor> bwd,
          RunOp("attention_backward",
                {in.q, in.k, in.v, fwd[0], fwd[1], in.dout}, Attrs(c), &pool));
      const double tol = dt == DType::kF64 ? 1e-12 : 2e-5;
      EXPECT_LE(RelativeError(bwd[0], ref.dq), tol);
      EXPECT_LE(RelativeError(bwd[1], ref.dk), tol);
      EXPECT_LE(RelativeError(bwd[2], ref.dv), tol);
    }
  }
}

TEST(AttentionOpTest, ShapeErrorsNameOpNodeAndShapes) {
  Graph g;
  GraphBuilder b(&g);
  Value q = b.Input("q", DType::kF32, {2, 8, 16});
  Value k = b.Input("k", DType::kF32, {2, 9, 32});
  Value v = b.Input("v", DType::kF32, {2, 9, 16});
  EXPECT_THAT(
      b.AddNode("attention_forward", {q, k, v}, {{"scale", 0.25}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("attention_forward"),
                     HasSubstr("q and k head dims differ"),
                     HasSubstr("f32[2,8,16], f32[2,9,32], f32[2,9,16]"))));
  Value k2 = b.Input("k2", DType::kF32, {3, 9, 16});
  EXPECT_THAT(b.AddNode("attention_forward", {q, k2, v}, {{"scale", 0.25}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("leading dims differ")));
  Value k3 = b.Input("k3", DType::kF32, {2, 9, 16});
  ASSERT_OK_AND_ASSIGN(
      std::vector<Value> fwd,
      b.AddNode("attention_forward", {q, k3, v}, {{"scale", 0.25}}));
  Value bad_do = b.Input("bad_do", DType::kF32, {2, 8, 15});
  EXPECT_THAT(b.AddNode("attention_backward",
                        {q, k3, v, fwd[0], fwd[1], bad_do}, {{"scale", 0.25}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("attention_backward"),
                             HasSubstr("do must be f32[2,8,16]"),
                             HasSubstr("got f32[2,8,15]"))));
  // scale has no default.
  EXPECT_THAT(b.AddNode("attention_forward", {q, k3, v}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("scale")));
}

TEST(AttentionOpTest, FlopsCountVisiblePairs) {
  Graph g;
  GraphBuilder b(&g);
  Value q = b.Input("q", DType::kF32, {3, 10, 16});
  Value k = b.Input("k", DType::kF32, {3, 12, 16});
  Value v = b.Input("v", DType::kF32, {3, 12, 8});
  for (bool causal : {false, true}) {
    ops::AttentionOutputs o = ops::AttentionForward(b, q, k, v, 0.25, causal);
    ASSERT_OK(b.status());
    const Node& node = *g.node(o.o.node);
    // Causal: query i sees i + 3 keys (Tk − Tq = 2), 3..12 → 75 pairs.
    const int64_t pairs = causal ? 75 : 120;
    std::vector<TensorType> types = {b.type(q), b.type(k), b.type(v)};
    EXPECT_EQ(node.schema()->flops(node, types), 3 * pairs * 2 * (16 + 8));
  }
}

#if defined(__AVX512F__)
// Exp2's error against exp2 in double, in units in the last place of the
// f32 result: ≤ 1 ulp for normal results (0.93 measured); 2^0 = 1 exactly,
// 0 for −inf and below −150, NaN for NaN.
TEST(AttentionOpTest, Exp2Accuracy) {
  namespace k = ops_internal::attention::avx512;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-126.0f, 0.0f);
  std::vector<float> xs;
  for (int i = 0; i < (1 << 20); ++i) xs.push_back(u(rng));
  // Every 2^-20 in [-2, 2] (the polynomial's range and its wrap-around),
  // and ±2^-k down to the smallest denormal.
  for (int i = -(1 << 21); i <= (1 << 21); ++i)
    xs.push_back(std::ldexp(i, -20));
  for (int e = 1; e <= 149; ++e) {
    xs.push_back(std::ldexp(1.0f, -e));
    xs.push_back(-std::ldexp(1.0f, -e));
  }
  double worst_ulp = 0;
  float worst_x = 0;
  alignas(64) float in[16], out[16];
  for (size_t i = 0; i < xs.size(); i += 16) {
    for (int l = 0; l < 16; ++l) in[l] = xs[std::min(i + l, xs.size() - 1)];
    _mm512_store_ps(out, k::Exp2(_mm512_load_ps(in)));
    for (int l = 0; l < 16; ++l) {
      const double want = std::exp2(static_cast<double>(in[l]));
      if (want < std::numeric_limits<float>::min()) continue;
      const double ulp = std::ldexp(1.0, std::ilogb(want) - 23);
      const double err = std::abs(out[l] - want) / ulp;
      if (err > worst_ulp) {
        worst_ulp = err;
        worst_x = in[l];
      }
    }
  }
  RecordProperty("worst_ulp", absl::StrCat(worst_ulp));
  EXPECT_LE(worst_ulp, 1.0) << "at x = " << worst_x;
  for (int l = 0; l < 16; ++l) in[l] = 0;
  in[0] = -std::numeric_limits<float>::infinity();
  in[1] = -150.0f;
  in[2] = -1000.0f;
  in[3] = std::numeric_limits<float>::quiet_NaN();
  _mm512_store_ps(out, k::Exp2(_mm512_load_ps(in)));
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], 0.0f);
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_TRUE(std::isnan(out[3]));
  EXPECT_EQ(out[4], 1.0f);
}
#endif

// ---- end to end: primitive attention vs attention_forward -------------------

// A self-attention layer on x [B, T, Dm] as nn::SelfAttention writes it
// (projections, heads split by reshape + transpose, scaled Q·Kᵀ, causal
// mask, softmax, P·V, merge, output projection), with the core either from
// primitives or one attention_forward. loss = Σ out ⊙ R.
void BuildModel(GraphBuilder& b, DType dt, int64_t batch, int64_t t, int64_t dm,
                int64_t heads, bool causal, bool fused) {
  const int64_t dh = dm / heads;
  Value x = b.Parameter("x", dt, {batch, t, dm});
  auto scope = b.Scope("attn");
  auto split = [&](Value v) {
    return ops::Transpose(b, ops::Reshape(b, v, {batch, t, heads, dh}),
                          {0, 2, 1, 3});
  };
  Value q = split(nn::Linear(b, x, dm, "q_proj"));
  Value k = split(nn::Linear(b, x, dm, "k_proj"));
  Value v = split(nn::Linear(b, x, dm, "v_proj"));
  const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
  Value o;
  if (fused) {
    o = ops::AttentionForward(b, q, k, v, scale, causal).o;
  } else {
    Value s = ops::Scale(b, ops::MatMul(b, q, k, false, true), scale);
    if (causal) s = ops::CausalMask(b, s);
    o = ops::MatMul(b, ops::Softmax(b, s, -1), v);
  }
  o = ops::Reshape(b, ops::Transpose(b, o, {0, 2, 1, 3}), {batch, t, dm});
  Value out = nn::Linear(b, o, dm, "out_proj");
  Value r = b.Constant(RandomTensor(dt, {batch, t, dm}, 77), "r");
  b.Output("out", out);
  b.Output("loss", ops::ReduceSumAll(b, ops::Mul(b, out, r)));
}

struct ModelRun {
  std::vector<std::string> names;  // "out", then "grad/<param>"
  std::vector<Tensor> values;
};

absl::StatusOr<ModelRun> RunModel(DType dt, int64_t t, bool causal, bool fused,
                                  ParallelRunner* pool) {
  Graph g;
  GraphBuilder b(&g);
  BuildModel(b, dt, /*batch=*/2, t, /*dm=*/64, /*heads=*/4, causal, fused);
  RETURN_IF_ERROR(b.status());
  ASSIGN_OR_RETURN(AutodiffResult ad, Autodiff(g, {"loss", {}}));
  ModelRun run;
  run.names.push_back("out");
  for (const auto& [name, grad] : ad.gradients)
    run.names.push_back("grad/" + name);
  ParameterStore params;
  RETURN_IF_ERROR(params.Initialize(g, 1));
  // Values of order one (not the init's 0.02) so attention is not uniform.
  uint64_t seed = 100;
  for (const std::string& name : params.Names()) {
    const Tensor* p = params.Find(name);
    const double range = name == "x" ? 1.0 : 0.4;
    params.Set(name, RandomTensor(dt, p->shape(), seed++, -range, range));
  }
  ExecutorOptions options;
  options.pool = pool;
  ASSIGN_OR_RETURN(auto exec, Executor::Create(g, run.names, &params, options));
  ASSIGN_OR_RETURN(run.values, exec->Run({}));
  return run;
}

TEST(AttentionEndToEndTest, FusedGraphMatchesPrimitiveGraph) {
  SpawningRunner pool(2);
  for (DType dt : {DType::kF64, DType::kF32}) {
    // f64 ≤ 1e-12 relative; f32 ≤ 1e-5.
    const double tol = dt == DType::kF64 ? 1e-12 : 1e-5;
    for (bool causal : {false, true}) {
      for (int64_t t : {1, 37, 130}) {
        SCOPED_TRACE(absl::StrCat(DTypeName(dt), causal ? " causal" : " full",
                                  " T=", t));
        ASSERT_OK_AND_ASSIGN(ModelRun prim,
                             RunModel(dt, t, causal, false, &pool));
        ASSERT_OK_AND_ASSIGN(ModelRun fused,
                             RunModel(dt, t, causal, true, &pool));
        ASSERT_EQ(prim.names, fused.names);
        ASSERT_EQ(prim.names.size(), 10u);  // out + x + 4 × (weight, bias)
        for (size_t i = 0; i < prim.names.size(); ++i) {
          // k_proj's bias gets zero gradient in exact arithmetic (adding
          // q_i·b to row i of S leaves its softmax unchanged): both graphs
          // give rounding noise, measured against the k weight's gradient.
          double err = RelativeError(fused.values[i], prim.values[i]);
          if (prim.names[i] == "grad/attn/k_proj/bias") {
            const auto w = std::find(prim.names.begin(), prim.names.end(),
                                     "grad/attn/k_proj/weight");
            ASSERT_NE(w, prim.names.end());
            double diff = 0, scale = 0;
            const Tensor& kw = prim.values[w - prim.names.begin()];
            for (int64_t e = 0; e < kw.num_elements(); ++e) {
              scale = std::max(scale, std::abs(ElementAsDouble(kw, e)));
            }
            for (int64_t e = 0; e < prim.values[i].num_elements(); ++e) {
              diff =
                  std::max(diff, std::abs(ElementAsDouble(fused.values[i], e) -
                                          ElementAsDouble(prim.values[i], e)));
            }
            // (With T = 1 the k weight's gradient is zero as well.)
            err = scale > 0 ? diff / scale : diff;
          }
          EXPECT_LE(err, tol) << prim.names[i];
        }
      }
    }
  }
}

// Autodiff of a graph with attention_forward emits attention_backward.
TEST(AttentionEndToEndTest, GradientRuleEmitsAttentionBackward) {
  Graph g;
  GraphBuilder b(&g);
  Value q = b.Parameter("q", DType::kF32, {2, 8, 16});
  Value k = b.Parameter("k", DType::kF32, {2, 8, 16});
  Value v = b.Parameter("v", DType::kF32, {2, 8, 16});
  ops::AttentionOutputs o = ops::AttentionForward(b, q, k, v, 0.25, true);
  b.Output("loss", ops::ReduceSumAll(b, o.o));
  ASSERT_OK(b.status());
  ASSERT_OK(Autodiff(g, {"loss", {}}).status());
  int backward = 0;
  for (const Node* n : g.nodes()) {
    if (n->op() == "attention_backward") {
      ++backward;
      EXPECT_TRUE(n->GetBool("causal"));
      EXPECT_EQ(n->GetFloat("scale"), 0.25);
      EXPECT_EQ(n->role(), Role::kBackward);
    }
  }
  EXPECT_EQ(backward, 1);
}

}  // namespace
}  // namespace subquad
