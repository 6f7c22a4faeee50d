#include "ops/nn/layers.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "ops/ops.h"

namespace subquad::nn {

Value Linear(GraphBuilder& b, Value x, int64_t out_features,
             absl::string_view name, bool bias, double init_stddev) {
  if (!b.ok()) return Value{};
  auto scope = b.Scope(name);
  const TensorType& t = b.type(x);
  if (t.shape.rank() < 1) {
    b.RecordError(absl::InvalidArgumentError(absl::StrCat(
        "linear '", b.current_scope(), "': input ", t.ToString(),
        " has no feature axis")));
    return Value{};
  }
  const int64_t in = t.shape.dim(t.shape.rank() - 1);
  Value w = b.Parameter("weight", t.dtype, {in, out_features},
                        Init::Normal(init_stddev));
  Value y = ops::MatMul(b, x, w);
  if (bias) {
    Value bv = b.Parameter("bias", t.dtype, {out_features}, Init::Zeros());
    y = ops::Add(b, y, bv);
  }
  return y;
}

Value LayerNorm(GraphBuilder& b, Value x, absl::string_view name,
                double epsilon) {
  if (!b.ok()) return Value{};
  auto scope = b.Scope(name);
  const TensorType& t = b.type(x);
  const int64_t d = t.shape.rank() > 0 ? t.shape.dim(t.shape.rank() - 1) : 1;
  Value gamma = b.Parameter("gamma", t.dtype, {d}, Init::Ones());
  Value beta = b.Parameter("beta", t.dtype, {d}, Init::Zeros());
  return ops::LayerNorm(b, x, gamma, beta, epsilon).y;
}

Value Mlp(GraphBuilder& b, Value x, int64_t hidden, absl::string_view name,
          double out_init_stddev) {
  if (!b.ok()) return Value{};
  auto scope = b.Scope(name);
  const Shape& s = b.shape(x);
  const int64_t d = s.dim(s.rank() - 1);
  Value h = ops::Gelu(b, Linear(b, x, hidden, "fc"));
  return Linear(b, h, d, "proj", /*bias=*/true, out_init_stddev);
}

Value Embedding(GraphBuilder& b, Value tokens, int64_t vocab, int64_t d_model,
                int64_t max_len, absl::string_view name, DType dtype) {
  if (!b.ok()) return Value{};
  auto scope = b.Scope(name);
  const Shape& s = b.shape(tokens);
  if (s.rank() != 2) {
    b.RecordError(absl::InvalidArgumentError(absl::StrCat(
        "embedding '", b.current_scope(), "': tokens ", b.type(tokens).ToString(),
        " must be [batch, seq_len]")));
    return Value{};
  }
  const int64_t t = s.dim(1);
  if (max_len < t) {
    b.RecordError(absl::InvalidArgumentError(absl::StrCat(
        "embedding '", b.current_scope(), "': seq_len ", t,
        " exceeds the position table's ", max_len, " rows")));
    return Value{};
  }
  Value wte = b.Parameter("wte", dtype, {vocab, d_model}, Init::Normal(0.02));
  Value wpe = b.Parameter("wpe", dtype, {max_len, d_model}, Init::Normal(0.01));
  Value tok = ops::Gather(b, wte, tokens);  // [B, T, D]
  Value pos = max_len == t ? wpe : ops::SliceAxis(b, wpe, 0, 0, t);
  return ops::Add(b, tok, pos);
}

Value SelfAttention(GraphBuilder& b, Value x, int64_t heads, bool causal,
                    absl::string_view name, double out_init_stddev) {
  if (!b.ok()) return Value{};
  auto scope = b.Scope(name);
  const Shape& s = b.shape(x);
  if (s.rank() != 3 || heads <= 0 || s.dim(2) % heads != 0) {
    b.RecordError(absl::InvalidArgumentError(absl::StrCat(
        "attention '", b.current_scope(), "': input ", b.type(x).ToString(),
        " must be [batch, seq, d_model] with d_model divisible by heads=",
        heads)));
    return Value{};
  }
  const int64_t B = s.dim(0), T = s.dim(1), D = s.dim(2), Dh = D / heads;
  auto split_heads = [&](Value v) {  // [B,T,D] -> [B,H,T,Dh]
    return ops::Transpose(b, ops::Reshape(b, v, {B, T, heads, Dh}), {0, 2, 1, 3});
  };
  Value q = split_heads(Linear(b, x, D, "q_proj"));
  Value k = split_heads(Linear(b, x, D, "k_proj"));
  Value v = split_heads(Linear(b, x, D, "v_proj"));
  Value scores = ops::MatMul(b, q, k, false, /*transpose_y=*/true);  // [B,H,T,T]
  scores = ops::Scale(b, scores, 1.0 / std::sqrt(static_cast<double>(Dh)));
  if (causal) scores = ops::CausalMask(b, scores);
  Value p = ops::Softmax(b, scores, -1);
  Value o = ops::MatMul(b, p, v);  // [B,H,T,Dh]
  o = ops::Reshape(b, ops::Transpose(b, o, {0, 2, 1, 3}), {B, T, D});
  return Linear(b, o, D, "out_proj", /*bias=*/true, out_init_stddev);
}

Value TransformerBlock(GraphBuilder& b, Value x,
                       const TransformerLMConfig& c, absl::string_view name) {
  if (!b.ok()) return Value{};
  auto scope = b.Scope(name);
  const double resid_std =
      0.02 / std::sqrt(2.0 * static_cast<double>(std::max<int64_t>(1, c.layers)));
  Value h = SelfAttention(b, LayerNorm(b, x, "ln1"), c.heads, c.causal, "attn",
                          resid_std);
  x = ops::Add(b, x, h);
  h = Mlp(b, LayerNorm(b, x, "ln2"), c.mlp_ratio * c.d_model, "mlp", resid_std);
  return ops::Add(b, x, h);
}

TransformerLM BuildTransformerLM(GraphBuilder& b, const TransformerLMConfig& c) {
  TransformerLM lm;
  if (c.dtype != DType::kF32 && c.dtype != DType::kF64) {
    b.RecordError(absl::InvalidArgumentError("TransformerLM: dtype must be f32 or f64"));
    return lm;
  }
  lm.tokens = b.Input("tokens", DType::kI32, {c.batch, c.seq_len});
  lm.targets = b.Input("targets", DType::kI32, {c.batch, c.seq_len});
  const int64_t max_len = c.max_seq_len > 0 ? c.max_seq_len : c.seq_len;
  Value x = Embedding(b, lm.tokens, c.vocab, c.d_model, max_len, "embed",
                      c.dtype);
  for (int64_t l = 0; l < c.layers; ++l) {
    x = TransformerBlock(b, x, c, absl::StrCat("block", l));
  }
  x = LayerNorm(b, x, "ln_f");
  lm.logits = Linear(b, x, c.vocab, "lm_head", /*bias=*/false);
  {
    auto scope = b.Scope("loss");
    lm.loss = ops::CrossEntropy(b, lm.logits, lm.targets);
  }
  b.Output("logits", lm.logits);
  b.Output("loss", lm.loss);
  return lm;
}

}  // namespace subquad::nn
