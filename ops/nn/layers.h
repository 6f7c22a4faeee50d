// Layers built from primitive ops: what a model is written with.
//
// Each layer creates its parameters under the builder's current scope plus
// the layer's name ("block0/attn/q_proj/weight"), so parameter names say
// where they sit in the model. Attention is written from primitives
// (matmul, scale, causal_mask, softmax, matmul) — never one op — so the
// attention passes find it as they would find a user's own attention.
#ifndef SUBQUAD_OPS_NN_LAYERS_H_
#define SUBQUAD_OPS_NN_LAYERS_H_

#include <cstdint>

#include "absl/strings/string_view.h"
#include "core/builder.h"

namespace subquad::nn {

// y = x·W (+ b); W [in, out] ~ N(0, init_stddev²), b zeros.
Value Linear(GraphBuilder& b, Value x, int64_t out_features,
             absl::string_view name, bool bias = true,
             double init_stddev = 0.02);

// Layer norm over the last axis with learned gain (ones) and bias (zeros).
Value LayerNorm(GraphBuilder& b, Value x, absl::string_view name,
                double epsilon = 1e-5);

// Linear(hidden) → GELU → Linear(out = in); the second projection's init is
// `out_init_stddev` (GPT-2 scales residual projections by 1/√(2·layers)).
Value Mlp(GraphBuilder& b, Value x, int64_t hidden, absl::string_view name,
          double out_init_stddev = 0.02);

// Token embedding (gather from wte [vocab, d]) plus a learned position
// embedding (wpe [max_len, d], its first T rows) for tokens [B, T].
Value Embedding(GraphBuilder& b, Value tokens, int64_t vocab, int64_t d_model,
                int64_t max_len, absl::string_view name,
                DType dtype = DType::kF32);

// Multi-head self-attention on x [B, T, D] from primitives: Q/K/V
// projections, heads split by reshape [B,T,H,Dh] and transpose [B,H,T,Dh],
// S = (Q·Kᵀ)·(1/√Dh), causal mask (when `causal`), softmax over keys, P·V,
// heads merged, output projection.
Value SelfAttention(GraphBuilder& b, Value x, int64_t heads, bool causal,
                    absl::string_view name, double out_init_stddev = 0.02);

struct TransformerLMConfig {
  int64_t vocab = 256;
  int64_t d_model = 128;
  int64_t heads = 4;
  int64_t layers = 2;
  int64_t mlp_ratio = 4;
  int64_t batch = 8;
  int64_t seq_len = 128;
  // Rows of the position table; seq_len when 0. Larger tables let graphs of
  // several sequence lengths share one ParameterStore.
  int64_t max_seq_len = 0;
  bool causal = true;
  DType dtype = DType::kF32;
};

// A pre-LN transformer block: x + Attn(LN(x)), then + MLP(LN(·)).
Value TransformerBlock(GraphBuilder& b, Value x,
                       const TransformerLMConfig& config,
                       absl::string_view name);

// The values a language-model graph exposes.
struct TransformerLM {
  Value tokens;   // input "tokens": i32 [batch, seq_len]
  Value targets;  // input "targets": i32 [batch, seq_len]
  Value logits;   // [batch, seq_len, vocab]; graph output "logits"
  Value loss;     // scalar mean cross-entropy; graph output "loss"
};

// Embeddings → `layers` blocks → final layer norm → logits, and the LM loss
// against `targets`. Errors are recorded in the builder.
TransformerLM BuildTransformerLM(GraphBuilder& b,
                                 const TransformerLMConfig& config);

}  // namespace subquad::nn

#endif  // SUBQUAD_OPS_NN_LAYERS_H_
