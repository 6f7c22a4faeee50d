// fuse-attention and fuse-attention-backward: every spelling of attention
// is found, rewritten, and gives the same loss and gradients as the
// primitive graph (f64: 1e-12 relative); every near miss is left alone and
// explained; full language-model training graphs keep their loss and every
// gradient (f64 1e-12, f32 1e-5) with no n×n tensor left.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/builder.h"
#include "core/testing/status_matchers.h"
#include "core/verifier.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/nn/layers.h"
#include "ops/ops.h"
#include "passes/pass_manager.h"
#include "runtime/executor.h"
#include "runtime/parameter_store.h"
#include "tests/ops/op_test_util.h"

namespace subquad {
namespace {

using ::testing::HasSubstr;

constexpr double kInf = std::numeric_limits<double>::infinity();

enum class KLayout { kFlag, kTransposeOp, kPreTransposed };
enum class ScaleAt { kNone, kLogits, kLogitsMul, kLogitsDiv, kQ, kAfterMask, kLogitsByInput };
enum class Mask { kNone, kCausalOp, kWhere, kWhereInverted, kWhereAllVisible, kAdditive,
                  kWhereAntiCausal, kWhereInput };
enum class Softmax { kOp, kExpSumDiv, kExpSubMaxSumDiv, kOpWrongAxis, kOpAfterTanh };

struct Spelling {
  std::string name;
  KLayout k = KLayout::kFlag;
  ScaleAt scale_at = ScaleAt::kLogits;
  Mask mask = Mask::kCausalOp;
  Softmax softmax = Softmax::kOp;
  int rank = 4;
  int64_t tq = 7, tk = 7;
  double fill = -kInf;      // causal_mask and where fills, additive mask value
  bool probs_output = false;  // P is also a graph output
  bool fill_output = false;   // the where fill is also a graph output (shared)
  bool shared_kv_head = false;  // k and v with one head (broadcast)
  // Expected attention_forward attributes.
  double want_scale = 0.5;
  bool want_causal = true;
};

void PrintTo(const Spelling& s, std::ostream* os) { *os << s.name; }

constexpr int64_t kD = 4;

Tensor MaskTensor(DType dt, int64_t tq, int64_t tk,
                  const std::function<double(int64_t, int64_t)>& f) {
  Tensor t(dt, {tq, tk});
  for (int64_t i = 0; i < tq; ++i) {
    for (int64_t j = 0; j < tk; ++j) {
      if (dt == DType::kF64) {
        t.data<double>()[i * tk + j] = f(i, j);
      } else {
        t.data<float>()[i * tk + j] = static_cast<float>(f(i, j));
      }
    }
  }
  return t;
}

Tensor ScalarTensor(DType dt, double v) {
  return dt == DType::kF64 ? Tensor::Scalar<double>(v) : Tensor::Scalar<float>(v);
}

// Builds params q, k (or kt), v and loss = Σ o ⊙ r with o the attention in
// spelling `s`.
void BuildAttention(GraphBuilder& b, const Spelling& s, DType dt) {
  const std::vector<int64_t> lead = s.rank == 4 ? std::vector<int64_t>{2, 3}
                                                : std::vector<int64_t>{3};
  auto shape = [&](int64_t rows, int64_t cols, bool one_head = false) {
    std::vector<int64_t> d = lead;
    if (one_head) d.back() = 1;
    d.push_back(rows);
    d.push_back(cols);
    return Shape(absl::MakeConstSpan(d));
  };
  const Init init = Init::Normal(1.0);
  Value q = b.Parameter("q", dt, shape(s.tq, kD), init);
  Value v = b.Parameter("v", dt, shape(s.tk, kD, s.shared_kv_head), init);
  Value k;
  if (s.k == KLayout::kPreTransposed) {
    k = b.Parameter("kt", dt, shape(kD, s.tk), init);
  } else {
    k = b.Parameter("k", dt, shape(s.tk, kD, s.shared_kv_head), init);
  }
  if (s.scale_at == ScaleAt::kQ) q = ops::Scale(b, q, 0.5);
  Value logits;
  switch (s.k) {
    case KLayout::kFlag:
      logits = ops::MatMul(b, q, k, false, true);
      break;
    case KLayout::kTransposeOp: {
      std::vector<int64_t> perm;
      for (int i = 0; i < s.rank; ++i) perm.push_back(i);
      std::swap(perm[s.rank - 1], perm[s.rank - 2]);
      logits = ops::MatMul(b, q, ops::Transpose(b, k, perm));
      break;
    }
    case KLayout::kPreTransposed:
      logits = ops::MatMul(b, q, k);
      break;
  }
  Value x = logits;
  switch (s.scale_at) {
    case ScaleAt::kLogits:
      x = ops::Scale(b, x, 0.5);
      break;
    case ScaleAt::kLogitsMul:
      x = ops::Mul(b, b.Constant(ScalarTensor(dt, 0.5)), x);
      break;
    case ScaleAt::kLogitsDiv:
      x = ops::Div(b, x, ops::Fill(b, dt, {}, 2.0));
      break;
    case ScaleAt::kLogitsByInput:
      x = ops::Mul(b, x, b.Input("temperature", dt, {}));
      break;
    default:
      break;
  }
  const int64_t off = s.tk - s.tq;
  auto mask_const = [&](const std::function<double(int64_t, int64_t)>& f) {
    return b.Constant(MaskTensor(dt, s.tq, s.tk, f), "mask");
  };
  auto causal = [off](int64_t i, int64_t j) { return j <= i + off ? 1.0 : 0.0; };
  switch (s.mask) {
    case Mask::kNone:
      break;
    case Mask::kCausalOp:
      x = ops::CausalMask(b, x, s.fill);
      break;
    case Mask::kWhere: {
      const Value fill = ops::Fill(b, dt, {}, s.fill);
      x = ops::Where(b, mask_const(causal), x, fill);
      if (s.fill_output) b.graph().SetOutput("fill", fill);
      break;
    }
    case Mask::kWhereInverted:
      x = ops::Where(b, mask_const([&](int64_t i, int64_t j) { return 1 - causal(i, j); }),
                     ops::Fill(b, dt, {}, s.fill), x);
      break;
    case Mask::kWhereAllVisible:
      x = ops::Where(b, mask_const([](int64_t, int64_t) { return 1.0; }), x,
                     ops::Fill(b, dt, {}, s.fill));
      break;
    case Mask::kAdditive:
      x = ops::Add(b, mask_const([&](int64_t i, int64_t j) { return causal(i, j) ? 0 : s.fill; }),
                   x);
      break;
    case Mask::kWhereAntiCausal:
      x = ops::Where(b, mask_const([&](int64_t i, int64_t j) { return j >= i ? 1.0 : 0.0; }), x,
                     ops::Fill(b, dt, {}, s.fill));
      break;
    case Mask::kWhereInput:
      x = ops::Where(b, b.Input("mask", dt, {s.tq, s.tk}), x, ops::Fill(b, dt, {}, s.fill));
      break;
  }
  if (s.scale_at == ScaleAt::kAfterMask) x = ops::Scale(b, x, 0.5);
  Value p;
  switch (s.softmax) {
    case Softmax::kOp:
      p = ops::Softmax(b, x, -1);
      break;
    case Softmax::kOpWrongAxis:
      p = ops::Softmax(b, x, s.rank - 2);
      break;
    case Softmax::kOpAfterTanh:
      p = ops::Softmax(b, ops::Tanh(b, x), -1);
      break;
    case Softmax::kExpSumDiv:
    case Softmax::kExpSubMaxSumDiv: {
      Value shifted = x;
      if (s.softmax == Softmax::kExpSubMaxSumDiv) {
        shifted = ops::Sub(b, x, ops::ReduceMax(b, x, {-1}, true));
      }
      Value e = ops::Exp(b, shifted);
      p = ops::Div(b, e, ops::ReduceSum(b, e, {s.rank - 1}, true));
      break;
    }
  }
  if (s.probs_output) b.graph().SetOutput("p", p);
  Value o = ops::MatMul(b, p, v);
  Value r = b.Constant(testing::RandomTensor(dt, b.type(o).shape, 99), "r");
  std::vector<int64_t> all_axes;
  for (int i = 0; i < s.rank; ++i) all_axes.push_back(i);
  b.graph().SetOutput("loss", ops::ReduceSum(b, ops::Mul(b, o, r), all_axes, false));
}

int CountOp(const Graph& g, absl::string_view op) {
  int n = 0;
  for (const Node* node : g.nodes()) n += node->op() == op;
  return n;
}

// max |a − b| / max |b| (normwise relative difference).
double RelDiff(const Tensor& a, const Tensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.num_elements(); ++i) {
    num = std::max(num, std::abs(testing::ElementAsDouble(a, i) - testing::ElementAsDouble(b, i)));
    den = std::max(den, std::abs(testing::ElementAsDouble(b, i)));
  }
  return den == 0 ? num : num / den;
}

double MaxAbs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    m = std::max(m, std::abs(testing::ElementAsDouble(t, i)));
  }
  return m;
}

// Runs both graphs on the same parameters and feeds; every output of
// `reference` must agree within `tol` (normwise relative). The gradient of a
// key projection's bias is zero in exact arithmetic (softmax does not change
// when every score of a row moves by q·b), so both graphs give rounding
// noise there: those must be at most `tol` times the largest gradient.
void ExpectSameOutputs(const Graph& reference, const Graph& rewritten, double tol,
                       const FeedMap& feeds = {}) {
  std::vector<std::string> fetches;
  for (const auto& [name, v] : reference.outputs()) fetches.push_back(name);
  ParameterStore params;
  ASSERT_OK(params.Initialize(reference, /*seed=*/5));
  ASSERT_OK_AND_ASSIGN(auto a, Executor::Create(reference, fetches, &params));
  ASSERT_OK_AND_ASSIGN(auto b, Executor::Create(rewritten, fetches, &params));
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> want, a->Run(feeds));
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> got, b->Run(feeds));
  double largest = 0;
  for (const Tensor& t : want) largest = std::max(largest, MaxAbs(t));
  for (size_t i = 0; i < fetches.size(); ++i) {
    if (absl::EndsWith(fetches[i], "k_proj/bias")) {
      EXPECT_LE(MaxAbs(want[i]), tol * largest) << fetches[i];
      EXPECT_LE(MaxAbs(got[i]), tol * largest) << fetches[i];
      continue;
    }
    EXPECT_LE(RelDiff(got[i], want[i]), tol) << fetches[i];
  }
}

// Runs `pipeline` with explaining on; returns the explanations.
std::vector<std::string> RunPipeline(Graph& g, absl::string_view pipeline) {
  PassContext ctx;
  ctx.set_explain(true);
  absl::StatusOr<PassManager> pm = PassManager::Create(pipeline);
  EXPECT_OK(pm.status());
  if (!pm.ok()) return {};
  EXPECT_OK(pm->Run(g, ctx).status());
  EXPECT_OK(Verify(g));
  return ctx.explanations();
}

// No tensor with the score matrix's last two dims is left.
void ExpectNoScoreMatrix(const Graph& g, int64_t tq, int64_t tk) {
  for (const Node* n : g.nodes()) {
    for (const TensorType& t : n->output_types()) {
      const Shape& s = t.shape;
      if (s.rank() >= 2 && s[s.rank() - 2] == tq && s[s.rank() - 1] == tk && tq > kD) {
        ADD_FAILURE() << "node %" << n->id() << " (" << n->op() << ") still makes "
                      << t.ToString();
      }
    }
  }
}

class SpellingTest : public ::testing::TestWithParam<Spelling> {};

void ExpectFused(const Graph& g, const Spelling& s) {
  ASSERT_EQ(CountOp(g, "attention_forward"), 1);
  for (const Node* n : g.nodes()) {
    if (n->op() != "attention_forward") continue;
    EXPECT_DOUBLE_EQ(n->GetFloat("scale"), s.want_scale);
    EXPECT_EQ(n->GetBool("causal"), s.want_causal);
  }
  EXPECT_EQ(CountOp(g, "softmax"), 0);
  EXPECT_EQ(CountOp(g, "exp"), 0);
}

TEST_P(SpellingTest, ForwardIsFused) {
  const Spelling& s = GetParam();
  Graph g;
  GraphBuilder b(&g);
  BuildAttention(b, s, DType::kF64);
  ASSERT_OK(b.status());
  const Graph before = g;
  RunPipeline(g, "fuse-attention");
  ExpectFused(g, s);
  ExpectNoScoreMatrix(g, s.tq, s.tk);
  ExpectSameOutputs(before, g, 1e-12);
}

TEST_P(SpellingTest, BackwardIsFusedAndGradientsAgree) {
  const Spelling& s = GetParam();
  Graph g;
  GraphBuilder b(&g);
  BuildAttention(b, s, DType::kF64);
  ASSERT_OK(b.status());
  RunPipeline(g, "autodiff{loss=loss}");
  const Graph before = g;
  const std::vector<std::string> why = RunPipeline(g, "fuse-attention,fuse-attention-backward");
  ExpectFused(g, s);
  EXPECT_EQ(CountOp(g, "attention_backward"), 1) << absl::StrJoin(why, "\n");
  EXPECT_EQ(CountOp(g, "softmax_grad"), 0);
  ExpectNoScoreMatrix(g, s.tq, s.tk);
  ExpectSameOutputs(before, g, 1e-12);
}

TEST_P(SpellingTest, FusedBeforeAutodiffGivesTheSameGradients) {
  const Spelling& s = GetParam();
  Graph reference;
  {
    GraphBuilder b(&reference);
    BuildAttention(b, s, DType::kF64);
    ASSERT_OK(b.status());
  }
  Graph g = reference;
  RunPipeline(reference, "autodiff{loss=loss}");
  RunPipeline(g, "fuse-attention,autodiff{loss=loss}");
  EXPECT_EQ(CountOp(g, "attention_backward"), 1);
  ExpectNoScoreMatrix(g, s.tq, s.tk);
  ExpectSameOutputs(reference, g, 1e-12);
}

INSTANTIATE_TEST_SUITE_P(
    Spellings, SpellingTest,
    ::testing::Values(
        Spelling{.name = "flag_scale_causal_mask_softmax"},
        Spelling{.name = "transpose_k_scale_on_q_no_mask_exp_sum_div",
                 .k = KLayout::kTransposeOp,
                 .scale_at = ScaleAt::kQ,
                 .mask = Mask::kNone,
                 .softmax = Softmax::kExpSumDiv,
                 .want_causal = false},
        Spelling{.name = "mul_const_where_mask_max_subtracted",
                 .scale_at = ScaleAt::kLogitsMul,
                 .mask = Mask::kWhere,
                 .softmax = Softmax::kExpSubMaxSumDiv,
                 .fill = -1e9,
                 .fill_output = true},
        Spelling{.name = "k_laid_out_transposed_div_additive_mask",
                 .k = KLayout::kPreTransposed,
                 .scale_at = ScaleAt::kLogitsDiv,
                 .mask = Mask::kAdditive,
                 .fill = -1e9},
        Spelling{.name = "rank3_scale_after_inverted_where",
                 .scale_at = ScaleAt::kAfterMask,
                 .mask = Mask::kWhereInverted,
                 .softmax = Softmax::kExpSumDiv,
                 .rank = 3,
                 .fill = -1e30},
        Spelling{.name = "cached_keys_no_scale_large_negative_fill",
                 .scale_at = ScaleAt::kNone,
                 .tq = 5,
                 .tk = 9,
                 .fill = -1e9,
                 .want_scale = 1.0},
        Spelling{.name = "where_mask_keeping_every_key",
                 .k = KLayout::kTransposeOp,
                 .mask = Mask::kWhereAllVisible,
                 .want_causal = false}),
    [](const ::testing::TestParamInfo<Spelling>& info) { return info.param.name; });

// ---- near misses -------------------------------------------------------------

struct NearMiss {
  Spelling spelling;
  std::string reason;  // a substring of the explanation
};

void PrintTo(const NearMiss& m, std::ostream* os) { *os << m.spelling.name; }

class NearMissTest : public ::testing::TestWithParam<NearMiss> {};

TEST_P(NearMissTest, IsNotRewrittenAndExplained) {
  const NearMiss& m = GetParam();
  for (const bool with_backward : {false, true}) {
    Graph g;
    GraphBuilder b(&g);
    BuildAttention(b, m.spelling, DType::kF64);
    ASSERT_OK(b.status());
    if (with_backward) RunPipeline(g, "autodiff{loss=loss}");
    const int nodes = g.num_nodes();
    const std::vector<std::string> why =
        RunPipeline(g, "fuse-attention,fuse-attention-backward");
    EXPECT_EQ(CountOp(g, "attention_forward"), 0);
    EXPECT_EQ(g.num_nodes(), nodes);
    const std::string all = absl::StrJoin(why, "\n");
    EXPECT_THAT(all, HasSubstr(m.reason)) << "with_backward=" << with_backward;
  }
}

INSTANTIATE_TEST_SUITE_P(
    NearMisses, NearMissTest,
    ::testing::Values(
        NearMiss{Spelling{.name = "softmax_over_queries", .softmax = Softmax::kOpWrongAxis},
                 "attribute axis is 2, expected the last axis (3)"},
        NearMiss{Spelling{.name = "anti_causal_mask", .mask = Mask::kWhereAntiCausal},
                 "the mask is not causal (query 0 keeps key 1; causal keeps key j for query i "
                 "when j <= i + 0)"},
        NearMiss{Spelling{.name = "mask_fed_at_run_time", .mask = Mask::kWhereInput},
                 "is not a constant, so it cannot be proven causal"},
        NearMiss{Spelling{.name = "scale_fed_at_run_time", .scale_at = ScaleAt::kLogitsByInput},
                 "node %"},
        NearMiss{Spelling{.name = "tanh_soft_cap", .softmax = Softmax::kOpAfterTanh},
                 "(tanh)"},
        NearMiss{Spelling{.name = "probabilities_are_an_output", .probs_output = true},
                 "is the graph output 'p', so the attention's intermediates must stay"},
        NearMiss{Spelling{.name = "keys_shared_by_heads", .shared_kv_head = true},
                 "have different leading dims (broadcast heads, as in grouped-query attention, "
                 "are not fused)"},
        NearMiss{Spelling{.name = "mask_fill_too_small", .fill = -10},
                 "attribute fill is -10, expected -inf or at most -1e4"}),
    [](const ::testing::TestParamInfo<NearMiss>& info) { return info.param.spelling.name; });

// fuse-attention alone leaves a site whose backward autodiff wrote, and says
// which pass owns it; fuse-attention-backward alone says a site without a
// backward belongs to fuse-attention.
TEST(FuseAttentionTest, EachPassSaysWhichSitesBelongToTheOther) {
  Graph g;
  GraphBuilder b(&g);
  BuildAttention(b, Spelling{.name = "default"}, DType::kF64);
  ASSERT_OK(b.status());
  Graph forward_only = g;
  EXPECT_THAT(absl::StrJoin(RunPipeline(forward_only, "fuse-attention-backward"), "\n"),
              HasSubstr("it has no backward (autodiff has not run); fuse-attention fuses the "
                        "forward alone"));
  EXPECT_EQ(CountOp(forward_only, "attention_forward"), 0);
  RunPipeline(g, "autodiff{loss=loss}");
  EXPECT_THAT(absl::StrJoin(RunPipeline(g, "fuse-attention"), "\n"),
              HasSubstr("autodiff already wrote its backward from primitives"));
  EXPECT_EQ(CountOp(g, "attention_forward"), 0);
}

// ---- language models ------------------------------------------------------------

struct LmCase {
  DType dtype;
  double tol;
};

class LanguageModelTest : public ::testing::TestWithParam<LmCase> {};

TEST_P(LanguageModelTest, TrainingGraphKeepsItsLossAndGradients) {
  nn::TransformerLMConfig config;
  config.vocab = 32;
  config.d_model = 32;
  config.heads = 2;
  config.layers = 2;
  config.batch = 2;
  config.seq_len = 70;  // past one 64-query tile of the kernels
  config.dtype = GetParam().dtype;
  Graph g;
  GraphBuilder b(&g);
  nn::BuildTransformerLM(b, config);
  ASSERT_OK(b.status());
  RunPipeline(g, "autodiff{loss=loss}");
  const Graph before = g;
  const std::vector<std::string> why =
      RunPipeline(g, "fuse-attention,fuse-attention-backward,dce");
  EXPECT_EQ(CountOp(g, "attention_forward"), 2) << absl::StrJoin(why, "\n");
  EXPECT_EQ(CountOp(g, "attention_backward"), 2);
  EXPECT_EQ(CountOp(g, "softmax"), 0);
  EXPECT_EQ(CountOp(g, "softmax_grad"), 0);
  ExpectNoScoreMatrix(g, config.seq_len, config.seq_len);
  Tensor tokens = testing::RandomTensor(DType::kI32, {config.batch, config.seq_len}, 1, 0,
                                        config.vocab);
  Tensor targets = testing::RandomTensor(DType::kI32, {config.batch, config.seq_len}, 2, 0,
                                         config.vocab);
  ExpectSameOutputs(before, g, GetParam().tol,
                    {{"tokens", tokens.view()}, {"targets", targets.view()}});
}

INSTANTIATE_TEST_SUITE_P(DTypes, LanguageModelTest,
                         ::testing::Values(LmCase{DType::kF64, 1e-12}, LmCase{DType::kF32, 1e-5}),
                         [](const ::testing::TestParamInfo<LmCase>& info) {
                           return std::string(DTypeName(info.param.dtype));
                         });

}  // namespace
}  // namespace subquad
