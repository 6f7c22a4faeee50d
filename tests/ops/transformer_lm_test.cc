// End-to-end test of nn::BuildTransformerLM's forward pass: the graph run by
// the Executor against an independent reference written here with plain
// loops in double from the documented semantics (ops/ops.h, ops/nn/layers.h),
// reading every parameter by name from the ParameterStore. Also: the
// parameter names, a non-causal model, a position table longer than the
// sequence, determinism across runs and thread counts, and that memory
// planning saves memory without changing results.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/graph.h"
#include "core/tensor.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/nn/layers.h"
#include "runtime/executor.h"
#include "runtime/parameter_store.h"
#include "runtime/plan.h"

namespace subquad {
namespace {

using ::testing::ElementsAreArray;
using nn::TransformerLMConfig;

// ---- The reference ------------------------------------------------------------

// A parameter's values as doubles; fails the test when missing or misshapen.
std::vector<double> Param(const ParameterStore& params, const std::string& name,
                          std::vector<int64_t> shape) {
  const Tensor* t = params.Find(name);
  EXPECT_NE(t, nullptr) << "no parameter '" << name << "'";
  if (t == nullptr) return std::vector<double>(Shape(shape).num_elements(), 0.0);
  EXPECT_EQ(t->shape(), Shape(shape)) << name;
  std::vector<double> out(t->num_elements());
  for (int64_t i = 0; i < t->num_elements(); ++i) {
    out[i] = t->dtype() == DType::kF64 ? t->data<double>()[i]
                                       : static_cast<double>(t->data<float>()[i]);
  }
  return out;
}

// Row-major [rows, d] activations.
using Mat = std::vector<double>;

// y[r] = (x[r] - mean) / sqrt(var + 1e-5) * gamma + beta, biased variance.
Mat RefLayerNorm(const Mat& x, int64_t rows, int64_t d,
                 const std::vector<double>& gamma,
                 const std::vector<double>& beta) {
  Mat y(rows * d);
  for (int64_t r = 0; r < rows; ++r) {
    const double* xr = &x[r * d];
    double mean = 0;
    for (int64_t i = 0; i < d; ++i) mean += xr[i];
    mean /= static_cast<double>(d);
    double var = 0;
    for (int64_t i = 0; i < d; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    var /= static_cast<double>(d);
    const double rstd = 1.0 / std::sqrt(var + 1e-5);
    for (int64_t i = 0; i < d; ++i) {
      y[r * d + i] = (xr[i] - mean) * rstd * gamma[i] + beta[i];
    }
  }
  return y;
}

// x [rows, in] · w [in, out] (+ bias [out]).
Mat RefLinear(const Mat& x, int64_t rows, int64_t in, int64_t out,
              const std::vector<double>& w, const std::vector<double>* bias) {
  Mat y(rows * out, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double acc = bias != nullptr ? (*bias)[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += x[r * in + i] * w[i * out + o];
      y[r * out + o] = acc;
    }
  }
  return y;
}

double RefGelu(double x) {
  const double c = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
}

struct Reference {
  std::vector<double> logits;  // [batch, seq_len, vocab]
  double loss = 0;
};

// The model's forward pass on tokens/targets [batch, seq_len], in double.
Reference RefTransformerLM(const ParameterStore& params,
                           const TransformerLMConfig& c,
                           const std::vector<int32_t>& tokens,
                           const std::vector<int32_t>& targets) {
  const int64_t B = c.batch, T = c.seq_len, D = c.d_model, H = c.heads,
                V = c.vocab, Dh = D / H, F = c.mlp_ratio * D, N = B * T;
  const int64_t max_len = c.max_seq_len > 0 ? c.max_seq_len : T;

  // Token embedding plus the first T rows of the position table.
  const auto wte = Param(params, "embed/wte", {V, D});
  const auto wpe = Param(params, "embed/wpe", {max_len, D});
  Mat x(N * D);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t tok = tokens[b * T + t];
      for (int64_t i = 0; i < D; ++i) {
        x[(b * T + t) * D + i] = wte[tok * D + i] + wpe[t * D + i];
      }
    }
  }

  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = absl::StrCat("block", l, "/");
    auto param = [&](const std::string& name, std::vector<int64_t> shape) {
      return Param(params, p + name, std::move(shape));
    };
    // Attention on LN1(x).
    const Mat h = RefLayerNorm(x, N, D, param("ln1/gamma", {D}),
                               param("ln1/beta", {D}));
    auto proj = [&](const std::string& name) {
      const auto w = param("attn/" + name + "/weight", {D, D});
      const auto bias = param("attn/" + name + "/bias", {D});
      return RefLinear(h, N, D, D, w, &bias);
    };
    const Mat q = proj("q_proj"), k = proj("k_proj"), v = proj("v_proj");
    Mat o(N * D, 0.0);
    const double scale = 1.0 / std::sqrt(static_cast<double>(Dh));
    std::vector<double> s(T);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t hd = 0; hd < H; ++hd) {
        for (int64_t i = 0; i < T; ++i) {
          const int64_t keys = c.causal ? i + 1 : T;  // keys j <= i when causal
          double m = -INFINITY;
          for (int64_t j = 0; j < keys; ++j) {
            double dot = 0;
            for (int64_t e = 0; e < Dh; ++e) {
              dot += q[(b * T + i) * D + hd * Dh + e] *
                     k[(b * T + j) * D + hd * Dh + e];
            }
            s[j] = dot * scale;
            m = std::max(m, s[j]);
          }
          double z = 0;
          for (int64_t j = 0; j < keys; ++j) {
            s[j] = std::exp(s[j] - m);
            z += s[j];
          }
          for (int64_t j = 0; j < keys; ++j) {
            const double pj = s[j] / z;
            for (int64_t e = 0; e < Dh; ++e) {
              o[(b * T + i) * D + hd * Dh + e] +=
                  pj * v[(b * T + j) * D + hd * Dh + e];
            }
          }
        }
      }
    }
    {
      const auto w = param("attn/out_proj/weight", {D, D});
      const auto bias = param("attn/out_proj/bias", {D});
      const Mat a = RefLinear(o, N, D, D, w, &bias);
      for (int64_t i = 0; i < N * D; ++i) x[i] += a[i];
    }
    // MLP on LN2(x).
    const Mat h2 = RefLayerNorm(x, N, D, param("ln2/gamma", {D}),
                                param("ln2/beta", {D}));
    const auto wfc = param("mlp/fc/weight", {D, F});
    const auto bfc = param("mlp/fc/bias", {F});
    Mat f = RefLinear(h2, N, D, F, wfc, &bfc);
    for (double& e : f) e = RefGelu(e);
    const auto wpr = param("mlp/proj/weight", {F, D});
    const auto bpr = param("mlp/proj/bias", {D});
    const Mat mo = RefLinear(f, N, F, D, wpr, &bpr);
    for (int64_t i = 0; i < N * D; ++i) x[i] += mo[i];
  }

  const Mat hf = RefLayerNorm(x, N, D, Param(params, "ln_f/gamma", {D}),
                              Param(params, "ln_f/beta", {D}));
  Reference ref;
  ref.logits = RefLinear(hf, N, D, V, Param(params, "lm_head/weight", {D, V}),
                         nullptr);
  double total = 0;
  for (int64_t r = 0; r < N; ++r) {
    const double* lr = &ref.logits[r * V];
    double m = -INFINITY;
    for (int64_t i = 0; i < V; ++i) m = std::max(m, lr[i]);
    double z = 0;
    for (int64_t i = 0; i < V; ++i) z += std::exp(lr[i] - m);
    total += m + std::log(z) - lr[targets[r]];
  }
  ref.loss = total / static_cast<double>(N);
  return ref;
}

// ---- Helpers ------------------------------------------------------------------------

std::vector<std::string> ExpectedParameterNames(const TransformerLMConfig& c) {
  std::vector<std::string> names = {"embed/wpe", "embed/wte", "lm_head/weight",
                                    "ln_f/beta", "ln_f/gamma"};
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = absl::StrCat("block", l, "/");
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      names.push_back(absl::StrCat(p, "attn/", proj, "/weight"));
      names.push_back(absl::StrCat(p, "attn/", proj, "/bias"));
    }
    for (const char* ln : {"ln1", "ln2"}) {
      names.push_back(absl::StrCat(p, ln, "/gamma"));
      names.push_back(absl::StrCat(p, ln, "/beta"));
    }
    for (const char* lin : {"fc", "proj"}) {
      names.push_back(absl::StrCat(p, "mlp/", lin, "/weight"));
      names.push_back(absl::StrCat(p, "mlp/", lin, "/bias"));
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Replaces every parameter with values of unit-ish scale, so attention is far
// from uniform and the gains and biases (initialised to ones and zeros) take
// part: matrices N(0, 1/fan_in), embeddings N(0, 1), gains 1 + N(0, 0.2²),
// biases N(0, 0.2²).
void RandomizeParameters(ParameterStore& params, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (const std::string& name : params.Names()) {
    Tensor* t = params.Find(name);
    const Shape& s = t->shape();
    double mean = 0, sd = 0.2;
    if (name.find("gamma") != std::string::npos) {
      mean = 1.0;
    } else if (name.rfind("embed/", 0) == 0) {
      sd = 1.0;
    } else if (s.rank() == 2) {
      sd = 1.0 / std::sqrt(static_cast<double>(s[0]));
    }
    for (int64_t i = 0; i < t->num_elements(); ++i) {
      const double v = mean + sd * normal(rng);
      if (t->dtype() == DType::kF64) {
        t->data<double>()[i] = v;
      } else {
        t->data<float>()[i] = static_cast<float>(v);
      }
    }
  }
}

Tensor RandomTokens(const TransformerLMConfig& c, uint64_t seed) {
  Tensor t(DType::kI32, {c.batch, c.seq_len});
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> u(0, static_cast<int32_t>(c.vocab - 1));
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<int32_t>()[i] = u(rng);
  return t;
}

std::vector<int32_t> ToVector(const Tensor& t) {
  return {t.data<int32_t>(), t.data<int32_t>() + t.num_elements()};
}

double AsDouble(const Tensor& t, int64_t i) {
  return t.dtype() == DType::kF64 ? t.data<double>()[i]
                                  : static_cast<double>(t.data<float>()[i]);
}

// max |got - want| / max |want|.
double RelError(const Tensor& got, const std::vector<double>& want) {
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < got.num_elements(); ++i) {
    diff = std::max(diff, std::abs(AsDouble(got, i) - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return diff / std::max(scale, 1e-300);
}

// max |a - b| / max |b| between two tensors of one type.
double RelDiff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.type(), b.type());
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < a.num_elements(); ++i) {
    diff = std::max(diff, std::abs(AsDouble(a, i) - AsDouble(b, i)));
    scale = std::max(scale, std::abs(AsDouble(b, i)));
  }
  return diff / std::max(scale, 1e-300);
}

// A built model with its store and data.
struct Model {
  TransformerLMConfig config;
  Graph graph;
  nn::TransformerLM lm;
  ParameterStore params;
  Tensor tokens, targets;

  FeedMap feeds() const {
    return {{"tokens", tokens.view()}, {"targets", targets.view()}};
  }
};

std::unique_ptr<Model> MakeModel(const TransformerLMConfig& c, uint64_t seed,
                                 bool randomize = true) {
  auto m = std::make_unique<Model>();
  m->config = c;
  GraphBuilder b(&m->graph);
  m->lm = nn::BuildTransformerLM(b, c);
  EXPECT_OK(b.status());
  EXPECT_OK(m->params.Initialize(m->graph, seed));
  if (randomize) RandomizeParameters(m->params, seed + 1000);
  m->tokens = RandomTokens(c, seed + 1);
  m->targets = RandomTokens(c, seed + 2);
  return m;
}

TransformerLMConfig SmallConfig(DType dtype) {
  TransformerLMConfig c;
  c.vocab = 96;
  c.d_model = 32;
  c.heads = 4;
  c.layers = 2;
  c.batch = 2;
  c.seq_len = 16;
  c.dtype = dtype;
  return c;
}

double Tolerance(DType dtype) { return dtype == DType::kF64 ? 1e-10 : 1e-4; }

// Runs the model's executor for logits and loss and compares with the
// reference.
void CheckAgainstReference(const TransformerLMConfig& c, uint64_t seed,
                           bool randomize, ExecutorOptions options = {}) {
  auto m = MakeModel(c, seed, randomize);
  ASSERT_OK_AND_ASSIGN(
      auto exec,
      Executor::Create(m->graph, {"logits", "loss"}, &m->params, options));
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out, exec->Run(m->feeds()));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].type(),
            (TensorType{c.dtype, Shape{c.batch, c.seq_len, c.vocab}}));
  EXPECT_EQ(out[1].type(), (TensorType{c.dtype, Shape{}}));

  const Reference ref =
      RefTransformerLM(m->params, c, ToVector(m->tokens), ToVector(m->targets));
  const double tol = Tolerance(c.dtype);
  EXPECT_LE(RelError(out[0], ref.logits), tol);
  const double loss = AsDouble(out[1], 0);
  EXPECT_LE(std::abs(loss - ref.loss) / std::abs(ref.loss), tol)
      << "loss " << loss << " vs reference " << ref.loss;
  // The reference is not degenerate: the loss is of the order of log(vocab)
  // and logits vary.
  EXPECT_GT(ref.loss, 0.1);
  double lo = ref.logits[0], hi = ref.logits[0];
  for (double v : ref.logits) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  EXPECT_GT(hi - lo, randomize ? 1.0 : 1e-3);
}

// ---- Tests -----------------------------------------------------------------------

class TransformerLMTest : public ::testing::TestWithParam<DType> {};

INSTANTIATE_TEST_SUITE_P(Dtypes, TransformerLMTest,
                         ::testing::Values(DType::kF64, DType::kF32),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

TEST_P(TransformerLMTest, ParameterNamesAndShapes) {
  const TransformerLMConfig c = SmallConfig(GetParam());
  auto m = MakeModel(c, 1, /*randomize=*/false);
  EXPECT_THAT(m->params.Names(), ElementsAreArray(ExpectedParameterNames(c)));
  for (const std::string& name : m->params.Names()) {
    EXPECT_EQ(m->params.Find(name)->dtype(), c.dtype) << name;
  }
  // Inputs and outputs as documented.
  EXPECT_EQ(m->graph.type(m->lm.tokens),
            (TensorType{DType::kI32, Shape{c.batch, c.seq_len}}));
  EXPECT_EQ(m->graph.type(m->lm.targets),
            (TensorType{DType::kI32, Shape{c.batch, c.seq_len}}));
  ASSERT_OK_AND_ASSIGN(Value logits, m->graph.GetOutput("logits"));
  ASSERT_OK_AND_ASSIGN(Value loss, m->graph.GetOutput("loss"));
  EXPECT_EQ(logits, m->lm.logits);
  EXPECT_EQ(loss, m->lm.loss);
  // Initialisation: gains ones, biases zeros, matrices small and random.
  for (const std::string& name : m->params.Names()) {
    const Tensor& t = *m->params.Find(name);
    const bool gamma = name.find("gamma") != std::string::npos;
    const bool zero = name.find("beta") != std::string::npos ||
                      name.find("bias") != std::string::npos;
    double max_abs = 0;
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      const double v = AsDouble(t, i);
      if (gamma) {
        EXPECT_EQ(v, 1.0) << name;
      }
      if (zero) {
        EXPECT_EQ(v, 0.0) << name;
      }
      max_abs = std::max(max_abs, std::abs(v));
    }
    if (!gamma && !zero) {
      EXPECT_GT(max_abs, 0.0) << name;
      EXPECT_LT(max_abs, 0.2) << name;  // stddev <= 0.02: 10 sigma
    }
  }
}

TEST_P(TransformerLMTest, MatchesReference) {
  CheckAgainstReference(SmallConfig(GetParam()), 7, /*randomize=*/true);
}

TEST_P(TransformerLMTest, MatchesReferenceWithInitialParameters) {
  CheckAgainstReference(SmallConfig(GetParam()), 8, /*randomize=*/false);
}

TEST_P(TransformerLMTest, MatchesReferenceNonCausal) {
  TransformerLMConfig c = SmallConfig(GetParam());
  c.causal = false;
  CheckAgainstReference(c, 9, /*randomize=*/true);
}

TEST_P(TransformerLMTest, MatchesReferenceWithLongerPositionTable) {
  TransformerLMConfig c = SmallConfig(GetParam());
  c.max_seq_len = 40;  // wpe [40, d]: the graph uses its first 16 rows
  auto m = MakeModel(c, 10);
  EXPECT_EQ(m->params.Find("embed/wpe")->shape(), Shape({40, c.d_model}));
  CheckAgainstReference(c, 10, /*randomize=*/true);
}

TEST_P(TransformerLMTest, MatchesReferenceOtherShapes) {
  // One layer, 2 heads of 12, an odd sequence length and mlp_ratio 2.
  TransformerLMConfig c = SmallConfig(GetParam());
  c.layers = 1;
  c.d_model = 24;
  c.heads = 2;
  c.mlp_ratio = 2;
  c.seq_len = 7;
  c.batch = 3;
  c.vocab = 50;
  CheckAgainstReference(c, 11, /*randomize=*/true);
}

TEST_P(TransformerLMTest, CausalOutputsIgnoreTheFuture) {
  // Changing the last token changes no earlier position's logits when causal.
  const TransformerLMConfig c = SmallConfig(GetParam());
  auto m = MakeModel(c, 12);
  ASSERT_OK_AND_ASSIGN(auto exec,
                       Executor::Create(m->graph, {"logits"}, &m->params));
  ASSERT_OK_AND_ASSIGN(auto before, exec->Run(m->feeds()));
  for (int64_t b = 0; b < c.batch; ++b) {
    int32_t& last = m->tokens.data<int32_t>()[b * c.seq_len + c.seq_len - 1];
    last = static_cast<int32_t>((last + 1) % c.vocab);
  }
  ASSERT_OK_AND_ASSIGN(auto after, exec->Run(m->feeds()));
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t t = 0; t < c.seq_len; ++t) {
      bool same = true;
      for (int64_t v = 0; v < c.vocab; ++v) {
        const int64_t i = (b * c.seq_len + t) * c.vocab + v;
        same = same && AsDouble(before[0], i) == AsDouble(after[0], i);
      }
      EXPECT_EQ(same, t < c.seq_len - 1) << "batch " << b << " position " << t;
    }
  }
}

TEST_P(TransformerLMTest, DeterministicAcrossRunsAndThreads) {
  // Big enough for the kernels' parallel paths (logits 4x64x256 = 64K
  // elements, scores 4x4x64x64).
  TransformerLMConfig c = SmallConfig(GetParam());
  c.batch = 4;
  c.seq_len = 64;
  c.d_model = 64;
  c.vocab = 256;
  auto m = MakeModel(c, 13);
  ExecutorOptions one, two;
  one.num_threads = 1;
  two.num_threads = 2;
  ASSERT_OK_AND_ASSIGN(auto e1, Executor::Create(m->graph, {"logits", "loss"},
                                                 &m->params, one));
  ASSERT_OK_AND_ASSIGN(auto e2, Executor::Create(m->graph, {"logits", "loss"},
                                                 &m->params, two));
  ASSERT_OK_AND_ASSIGN(auto a1, e1->Run(m->feeds()));
  ASSERT_OK_AND_ASSIGN(auto b1, e1->Run(m->feeds()));
  ASSERT_OK_AND_ASSIGN(auto a2, e2->Run(m->feeds()));
  ASSERT_OK_AND_ASSIGN(auto b2, e2->Run(m->feeds()));
  for (int i = 0; i < 2; ++i) {
    // Same executor, same feeds: bit for bit.
    EXPECT_TRUE(a1[i].BitwiseEquals(b1[i])) << "1 thread, fetch " << i;
    EXPECT_TRUE(a2[i].BitwiseEquals(b2[i])) << "2 threads, fetch " << i;
    // 1 vs 2 threads: bit for bit, or within 1e-6 (f32) / 1e-13 (f64) if a
    // kernel splits a reduction differently.
    if (!a1[i].BitwiseEquals(a2[i])) {
      EXPECT_LE(RelDiff(a2[i], a1[i]),
                c.dtype == DType::kF32 ? 1e-6 : 1e-13)
          << "fetch " << i;
    }
  }
  const Reference ref =
      RefTransformerLM(m->params, c, ToVector(m->tokens), ToVector(m->targets));
  EXPECT_LE(RelError(a2[0], ref.logits), Tolerance(c.dtype));
}

TEST_P(TransformerLMTest, PlanningSavesMemoryAndChangesNothing) {
  const TransformerLMConfig c = SmallConfig(GetParam());
  auto m = MakeModel(c, 14);
  ExecutorOptions planned;
  planned.num_threads = 2;
  ASSERT_OK_AND_ASSIGN(auto exec, Executor::Create(m->graph, {"logits", "loss"},
                                                   &m->params, planned));
  const Plan& plan = exec->plan();
  EXPECT_LT(plan.peak_bytes(), plan.unshared_bytes()) << plan.DebugString(m->graph);
  EXPECT_GT(plan.peak_bytes(), 0);
  // The logits buffer alone is part of the peak.
  EXPECT_GE(plan.peak_bytes(), c.batch * c.seq_len * c.vocab *
                                   static_cast<int64_t>(DTypeSize(c.dtype)));
  ASSERT_OK_AND_ASSIGN(auto want, exec->Run(m->feeds()));

  struct Variant {
    const char* name;
    PlanOptions options;
  };
  for (const Variant& v : {Variant{"no sharing", {true, true, false}},
                           Variant{"no in-place", {false, true, true}},
                           Variant{"no alias", {true, false, true}},
                           Variant{"none", {false, false, false}}}) {
    ExecutorOptions options = planned;
    options.plan = v.options;
    ASSERT_OK_AND_ASSIGN(auto other, Executor::Create(m->graph, {"logits", "loss"},
                                                      &m->params, options));
    if (!v.options.share_memory) {
      EXPECT_EQ(other->plan().peak_bytes(), other->plan().unshared_bytes())
          << v.name;
      EXPECT_GT(other->plan().peak_bytes(), plan.peak_bytes()) << v.name;
    }
    ASSERT_OK_AND_ASSIGN(auto got, other->Run(m->feeds()));
    for (int i = 0; i < 2; ++i) {
      EXPECT_TRUE(got[i].BitwiseEquals(want[i]))
          << v.name << ", fetch " << i << ": rel diff "
          << RelDiff(got[i], want[i]);
    }
  }
}

TEST_P(TransformerLMTest, ParameterUpdatesAreSeenByTheNextRun) {
  const TransformerLMConfig c = SmallConfig(GetParam());
  auto m = MakeModel(c, 15);
  ASSERT_OK_AND_ASSIGN(auto exec,
                       Executor::Create(m->graph, {"logits", "loss"}, &m->params));
  ASSERT_OK_AND_ASSIGN(auto before, exec->Run(m->feeds()));
  RandomizeParameters(m->params, 99);
  ASSERT_OK_AND_ASSIGN(auto after, exec->Run(m->feeds()));
  EXPECT_FALSE(before[1].BitwiseEquals(after[1]));
  const Reference ref =
      RefTransformerLM(m->params, c, ToVector(m->tokens), ToVector(m->targets));
  EXPECT_LE(RelError(after[0], ref.logits), Tolerance(c.dtype));
}

}  // namespace
}  // namespace subquad
