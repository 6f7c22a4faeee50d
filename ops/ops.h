// Typed builder functions for every built-in op: what model code calls.
//
//   Value h = ops::Gelu(b, ops::MatMul(b, x, w1));
//
// Each is a thin wrapper over GraphBuilder::Add; errors are recorded in the
// builder (see core/builder.h). Op semantics are documented here; the schema
// of each op lives next to its kernels in ops/<family>.cc and is listed by
// `subquad ops`.
#ifndef SUBQUAD_OPS_OPS_H_
#define SUBQUAD_OPS_OPS_H_

#include <cstdint>
#include <limits>
#include <vector>

#include "core/builder.h"

namespace subquad::ops {

// ---- Sources ----------------------------------------------------------------
// `fill`: a tensor of `shape` with every element `value`.
Value Fill(GraphBuilder& b, DType dtype, Shape shape, double value);

// ---- Elementwise (f32/f64; binary ops broadcast as NumPy does) --------------
Value Add(GraphBuilder& b, Value x, Value y);
Value Sub(GraphBuilder& b, Value x, Value y);
Value Mul(GraphBuilder& b, Value x, Value y);
Value Div(GraphBuilder& b, Value x, Value y);
Value Neg(GraphBuilder& b, Value x);
Value Exp(GraphBuilder& b, Value x);
Value Log(GraphBuilder& b, Value x);
Value Sqrt(GraphBuilder& b, Value x);
Value Rsqrt(GraphBuilder& b, Value x);
Value Tanh(GraphBuilder& b, Value x);
Value Relu(GraphBuilder& b, Value x);
// GELU, tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
Value Gelu(GraphBuilder& b, Value x);
// `scale`: x · factor.
Value Scale(GraphBuilder& b, Value x, double factor);
// `pow`: x ^ exponent (elementwise, constant exponent).
Value Pow(GraphBuilder& b, Value x, double exponent);
// `where`: cond ? x : y, elementwise with broadcasting; cond of any dtype,
// true where non-zero; cond carries no gradient.
Value Where(GraphBuilder& b, Value cond, Value x, Value y);
// `causal_mask`: scores [..., Tq, Tk] with entry (i, j) replaced by `fill`
// where j > i + (Tk − Tq) (the key lies in the query's future).
Value CausalMask(GraphBuilder& b, Value scores,
                 double fill = -std::numeric_limits<double>::infinity());
// `cast`: converts to `dtype` (float → int truncates toward zero).
Value Cast(GraphBuilder& b, Value x, DType dtype);

// ---- Reductions and normalisations -------------------------------------------
// Axes may be negative; duplicates are an error. keepdims keeps reduced axes
// as size 1.
Value ReduceSum(GraphBuilder& b, Value x, std::vector<int64_t> axes,
                bool keepdims = false);
Value ReduceMean(GraphBuilder& b, Value x, std::vector<int64_t> axes,
                 bool keepdims = false);
Value ReduceMax(GraphBuilder& b, Value x, std::vector<int64_t> axes,
                bool keepdims = false);
// All axes, to a scalar.
Value ReduceSumAll(GraphBuilder& b, Value x);
Value Softmax(GraphBuilder& b, Value x, int64_t axis = -1);
Value LogSoftmax(GraphBuilder& b, Value x, int64_t axis = -1);

// `layer_norm` over the last axis: y = (x − mean)·rstd·gamma + beta with
// rstd = 1/√(var + epsilon) (biased variance). Also returns mean and rstd
// (shape x.shape[:-1]) for the backward pass.
struct LayerNormOutputs {
  Value y, mean, rstd;
};
LayerNormOutputs LayerNorm(GraphBuilder& b, Value x, Value gamma, Value beta,
                           double epsilon = 1e-5);

// `cross_entropy`: mean over all positions of −log softmax(logits)[target].
// logits [..., V] f32/f64, targets [...] i32/i64 (no gradient); a target
// outside [0, V) is a run-time error naming the position.
Value CrossEntropy(GraphBuilder& b, Value logits, Value targets);

// ---- Linear algebra ----------------------------------------------------------
// `matmul`: x [..., M, K] · y [..., K, N] → [..., M, N]; batch dims broadcast;
// transpose flags swap the last two dims of an operand before multiplying.
Value MatMul(GraphBuilder& b, Value x, Value y, bool transpose_x = false,
             bool transpose_y = false);

// ---- Data movement (all dtypes) -------------------------------------------------
// `reshape`: same elements, new shape. One entry of `shape` may be -1 (the
// wrapper resolves it; the node stores the full shape).
Value Reshape(GraphBuilder& b, Value x, std::vector<int64_t> shape);
// `transpose`: output dim i is input dim perm[i].
Value Transpose(GraphBuilder& b, Value x, std::vector<int64_t> perm);
// `slice`: x[starts[0]:limits[0], starts[1]:limits[1], ...].
Value Slice(GraphBuilder& b, Value x, std::vector<int64_t> starts,
            std::vector<int64_t> limits);
// A slice along one axis, all of the others.
Value SliceAxis(GraphBuilder& b, Value x, int64_t axis, int64_t start,
                int64_t limit);
// `concat`: joins along `axis`; other dims must agree.
Value Concat(GraphBuilder& b, std::vector<Value> xs, int64_t axis);
// `broadcast_to`: NumPy broadcasting to `shape`.
Value BroadcastTo(GraphBuilder& b, Value x, Shape shape);
// `gather`: rows of `table` [V, ...] at integer `indices` [...] → [..., ...]
// (embedding lookup); an index outside [0, V) is a run-time error.
Value Gather(GraphBuilder& b, Value table, Value indices);

// ---- Helpers for gradient rules ---------------------------------------------
// The adjoint of NumPy broadcasting: sums `g` over the dims that broadcasting
// from `shape` added or expanded, and returns a value of `shape` (g itself
// when the shapes are equal).
Value ReduceToShape(GraphBuilder& b, Value g, const Shape& shape);

// ---- Fused attention (ops/attention.cc) -------------------------------------
// Exact attention as one op (ATTENTION.md, variant 0); what the attention
// recognition passes rewrite primitive attention into. Per head, q [Tq, D],
// k [Tk, D], v [Tk, Dv] (leading dims equal, no broadcasting), s = scale:
//   S = s·q·kᵀ, with S_ij = −inf when causal and j > i + (Tk − Tq) (the
//   alignment of causal_mask); o = softmax(S)·v; lse_i = log Σ_j exp(S_ij).
// A query with no visible key (causal with Tq > Tk) gets o = 0, lse = −inf
// (where softmax of a row of only −inf would give NaN). The kernels never hold
// a Tq×Tk matrix.

// `attention_forward` → (o [..., Tq, Dv], lse [..., Tq]). Its gradient rule
// emits attention_backward.
struct AttentionOutputs {
  Value o, lse;
};
AttentionOutputs AttentionForward(GraphBuilder& b, Value q, Value k, Value v,
                                  double scale, bool causal = false);

// `attention_backward`: the gradients of attention_forward's o, from its o,
// lse and o's gradient d_o: δ = rowsum(d_o∘o), P = exp(S − lse),
// dv = Pᵀ·d_o, dS = P⊙(d_o·vᵀ − δ), dq = s·dS·k, dk = s·dSᵀ·q. P is
// recomputed tile by tile (extra memory O(T·D) per head); not differentiable.
struct AttentionGradients {
  Value dq, dk, dv;
};
AttentionGradients AttentionBackward(GraphBuilder& b, Value q, Value k, Value v,
                                     Value o, Value lse, Value d_o,
                                     double scale, bool causal = false);

}  // namespace subquad::ops

#endif  // SUBQUAD_OPS_OPS_H_
