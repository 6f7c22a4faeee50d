// Exact fused attention: `attention_forward` and `attention_backward`
// (ATTENTION.md, variant 0), the ops the attention recognition passes rewrite
// primitive attention into. Semantics are in ops/ops.h; the tiled kernels
// (online softmax, P recomputed from lse, causal tiles skipped, AVX-512
// micro-kernels) are in ops/internal/attention_kernels.h.

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/attribute.h"
#include "core/builder.h"
#include "core/dtype.h"
#include "core/grad.h"
#include "core/graph.h"
#include "core/op_schema.h"
#include "core/shape.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/internal/attention_kernels.h"
#include "ops/ops.h"

namespace subquad {
namespace {

namespace attn = ops_internal::attention;

TensorType F32(const Shape& shape) { return TensorType{DType::kF32, shape}; }

Shape Lead(const Shape& s) { return Shape(s.dims().subspan(0, s.rank() - 2)); }

Shape Append(Shape s, std::initializer_list<int64_t> dims) {
  for (int64_t d : dims) s.push_back(d);
  return s;
}

// Checks q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv] (equal dtypes and
// leading dims) and returns the leading dims.
absl::StatusOr<Shape> CheckQkv(const TensorType& q, const TensorType& k,
                               const TensorType& v) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        why,
        ": q, k, v must be [..., Tq, D], [..., Tk, D], [..., Tk, Dv] "
        "with equal leading dims, got ",
        q.ToString(), ", ", k.ToString(), ", ", v.ToString()));
  };
  if (q.dtype != k.dtype || q.dtype != v.dtype) return bad("dtypes differ");
  const int r = q.shape.rank();
  if (r < 2 || k.shape.rank() != r || v.shape.rank() != r) {
    return bad("ranks must be equal and at least 2");
  }
  if (Lead(q.shape) != Lead(k.shape) || Lead(q.shape) != Lead(v.shape)) {
    return bad("leading dims differ");
  }
  if (q.shape[r - 1] != k.shape[r - 1]) return bad("q and k head dims differ");
  if (k.shape[r - 2] != v.shape[r - 2]) return bad("k and v lengths differ");
  return Lead(q.shape);
}

attn::Dims MakeDims(const Node& node, const Shape& q, const Shape& k,
                    const Shape& v) {
  const int r = q.rank();
  attn::Dims dm;
  dm.batch = Lead(q).num_elements();
  dm.tq = q[r - 2];
  dm.d = q[r - 1];
  dm.tk = k[r - 2];
  dm.dv = v[r - 1];
  dm.scale = node.GetFloat("scale");
  dm.causal = node.GetBool("causal");
  return dm;
}

std::vector<AttrDef> AttentionAttrs() {
  return {AttrDef{"scale", AttrKind::kFloat, std::nullopt,
                  "factor on the logits q·k (usually 1/sqrt(D))"},
          AttrDef{"causal", AttrKind::kBool, AttrValue(false),
                  "key j visible to query i only when j <= i + (Tk - Tq)"}};
}

// ---- attention_forward ------------------------------------------------------

absl::StatusOr<std::vector<TensorType>> ForwardShape(const ShapeContext& c) {
  const TensorType &q = c.input(0), &k = c.input(1), &v = c.input(2);
  ASSIGN_OR_RETURN(Shape lead, CheckQkv(q, k, v));
  const int r = q.shape.rank();
  return std::vector<TensorType>{
      TensorType{q.dtype, Append(lead, {q.shape[r - 2], v.shape[r - 1]})},
      TensorType{q.dtype, Append(lead, {q.shape[r - 2]})}};
}

template <typename T>
absl::Status ForwardKernel(const KernelContext& ctx) {
  const attn::Dims dm = MakeDims(ctx.node, ctx.inputs[0].shape(),
                                 ctx.inputs[1].shape(), ctx.inputs[2].shape());
  attn::Forward<T>(dm, ctx.inputs[0].data<T>(), ctx.inputs[1].data<T>(),
                   ctx.inputs[2].data<T>(), ctx.outputs[0].data<T>(),
                   ctx.outputs[1].data<T>(), ctx.pool);
  return absl::OkStatus();
}

// Per visible (query, key) pair: q·k (2·D) and P·V (2·Dv).
int64_t ForwardFlops(const Node& node, absl::Span<const TensorType> in) {
  const attn::Dims dm = MakeDims(node, in[0].shape, in[1].shape, in[2].shape);
  return dm.batch * dm.VisiblePairs() * 2 * (dm.d + dm.dv);
}

// attention_backward for o's gradient. lse's gradient, when the loss uses
// lse, adds P_ij·dlse_i to dS_ij, the same as replacing δ_i by δ_i − dlse_i.
// One extra column does that without a second kernel: V' = [V | 0],
// O' = [O | −1], dO' = [dO | dlse] leave dO·Vᵀ unchanged and make
// rowsum(dO'∘O') = δ − dlse; dV is the first Dv columns of dV'.
absl::Status ForwardGrad(GradContext& ctx) {
  GraphBuilder& b = ctx.builder();
  const double scale = ctx.node().GetFloat("scale");
  const bool causal = ctx.node().GetBool("causal");
  const TensorType& ot = ctx.output_type(0);
  Value d_o = ctx.has_grad_output(0) ? ctx.grad_output(0)
                                     : ops::Fill(b, ot.dtype, ot.shape, 0.0);
  Value v = ctx.input(2), o = ctx.output(0);
  const int r = ot.shape.rank();
  const int64_t dv = ot.shape[r - 1];
  if (ctx.has_grad_output(1)) {
    const Shape lead = Lead(ot.shape);
    const int64_t tq = ot.shape[r - 2];
    const int64_t tk = ctx.input_type(2).shape[r - 2];
    v = ops::Concat(b, {v, ops::Fill(b, ot.dtype, Append(lead, {tk, 1}), 0.0)},
                    r - 1);
    o = ops::Concat(b, {o, ops::Fill(b, ot.dtype, Append(lead, {tq, 1}), -1.0)},
                    r - 1);
    d_o = ops::Concat(b,
                      {d_o, ops::Reshape(b, ctx.grad_output(1),
                                         Append(lead, {tq, 1}).ToVector())},
                      r - 1);
  }
  ops::AttentionGradients g = ops::AttentionBackward(
      b, ctx.input(0), ctx.input(1), v, o, ctx.output(1), d_o, scale, causal);
  if (ctx.has_grad_output(1) && b.ok())
    g.dv = ops::SliceAxis(b, g.dv, r - 1, 0, dv);
  if (ctx.needs_grad(0)) ctx.set_grad_input(0, g.dq);
  if (ctx.needs_grad(1)) ctx.set_grad_input(1, g.dk);
  if (ctx.needs_grad(2)) ctx.set_grad_input(2, g.dv);
  return absl::OkStatus();
}

OpExample Example(std::vector<Shape> shapes, double scale, bool causal,
                  std::vector<std::pair<double, double>> ranges = {}) {
  OpExample ex;
  for (Shape& s : shapes) ex.inputs.push_back(F32(std::move(s)));
  ex.attrs = {{"scale", scale}, {"causal", causal}};
  ex.ranges = std::move(ranges);
  return ex;
}

OpSchema MakeAttentionForwardSchema() {
  OpSchema s;
  s.name = "attention_forward";
  s.doc =
      "Exact attention o = softmax(scale*q*k^T [causal: key j > i + (Tk - Tq) "
      "masked]) * v over the last two dims, and the rows' log-sum-exp lse, by "
      "a "
      "tiled online softmax that never holds the Tq x Tk matrix. A query with "
      "no visible key gets o = 0, lse = -inf.";
  s.inputs = {ArgDef{"q", DTypeSet::Floating(), true, "queries [..., Tq, D]"},
              ArgDef{"k", DTypeSet::Floating(), true, "keys [..., Tk, D]"},
              ArgDef{"v", DTypeSet::Floating(), true, "values [..., Tk, Dv]"}};
  s.outputs = {"o", "lse"};
  s.attrs = AttentionAttrs();
  s.shape_fn = ForwardShape;
  s.kernels[DType::kF32] = ForwardKernel<float>;
  s.kernels[DType::kF64] = ForwardKernel<double>;
  s.flops = ForwardFlops;
  s.grad = ForwardGrad;
  // Square and causal with batch dims, Dv != D, cached keys (Tq < Tk),
  // n = 1, and sizes past one 64-query tile with D = 16 and 32 (the f32
  // kernels' AVX-512 path). The registry's check weighs o and lse, so lse's
  // gradient path is checked too. (Causal with Tq > Tk has rows with no
  // visible key, lse = -inf: tests/ops/attention_test.cc covers it.)
  s.examples = {
      Example({{3, 4}, {5, 4}, {5, 4}}, 0.5, false),
      Example({{2, 5, 3}, {2, 5, 3}, {2, 5, 2}}, 0.7, true),
      Example({{2, 1, 3, 4}, {2, 1, 6, 4}, {2, 1, 6, 4}}, 0.5, true),
      Example({{1, 16}, {1, 16}, {1, 16}}, 0.25, true),
      Example({{1, 70, 16}, {1, 70, 16}, {1, 70, 16}}, 0.25, true),
      Example({{1, 3, 32}, {1, 67, 32}, {1, 67, 32}}, 0.18, true),
      Example({{2, 66, 16}, {2, 9, 16}, {2, 9, 32}}, 0.25, false),
  };
  return s;
}

SUBQUAD_REGISTER_OP(MakeAttentionForwardSchema());

// ---- attention_backward -----------------------------------------------------

absl::StatusOr<std::vector<TensorType>> BackwardShape(const ShapeContext& c) {
  const TensorType &q = c.input(0), &k = c.input(1), &v = c.input(2);
  ASSIGN_OR_RETURN(Shape lead, CheckQkv(q, k, v));
  const int r = q.shape.rank();
  const TensorType o{q.dtype, Append(lead, {q.shape[r - 2], v.shape[r - 1]})};
  const TensorType lse{q.dtype, Append(lead, {q.shape[r - 2]})};
  const TensorType* want[] = {&o, &lse, &o};
  for (int i = 3; i < 6; ++i) {
    if (c.input(i) != *want[i - 3]) {
      return absl::InvalidArgumentError(absl::StrCat(
          c.schema().inputs[i].name, " must be ", want[i - 3]->ToString(),
          " for q, k, v ", q.ToString(), ", ", k.ToString(), ", ", v.ToString(),
          "; got ", c.input(i).ToString()));
    }
  }
  return std::vector<TensorType>{q, k, v};
}

template <typename T>
absl::Status BackwardKernel(const KernelContext& ctx) {
  const attn::Dims dm = MakeDims(ctx.node, ctx.inputs[0].shape(),
                                 ctx.inputs[1].shape(), ctx.inputs[2].shape());
  attn::Backward<T>(dm, ctx.inputs[0].data<T>(), ctx.inputs[1].data<T>(),
                    ctx.inputs[2].data<T>(), ctx.inputs[3].data<T>(),
                    ctx.inputs[4].data<T>(), ctx.inputs[5].data<T>(),
                    ctx.outputs[0].data<T>(), ctx.outputs[1].data<T>(),
                    ctx.outputs[2].data<T>(), ctx.pool);
  return absl::OkStatus();
}

// Per visible pair: S recomputed (2·D), dP = dO·Vᵀ (2·Dv), dV (2·Dv), dK
// (2·D) and dQ (2·D).
int64_t BackwardFlops(const Node& node, absl::Span<const TensorType> in) {
  const attn::Dims dm = MakeDims(node, in[0].shape, in[1].shape, in[2].shape);
  return dm.batch * dm.VisiblePairs() * (6 * dm.d + 4 * dm.dv);
}

OpSchema MakeAttentionBackwardSchema() {
  OpSchema s;
  s.name = "attention_backward";
  s.doc =
      "Gradients dq, dk, dv of attention_forward's o, given its o and lse and "
      "o's gradient do: P recomputed tile by tile from q, k and lse, "
      "delta = rowsum(do*o), dv = P^T*do, dS = P*(do*v^T - delta), "
      "dq = scale*dS*k, dk = scale*dS^T*q. Extra memory O(T*D) per head; "
      "causal tiles above the diagonal skipped.";
  s.inputs = {
      ArgDef{"q", DTypeSet::Floating(), true, "queries [..., Tq, D]"},
      ArgDef{"k", DTypeSet::Floating(), true, "keys [..., Tk, D]"},
      ArgDef{"v", DTypeSet::Floating(), true, "values [..., Tk, Dv]"},
      ArgDef{"o", DTypeSet::Floating(), true,
             "attention_forward's o [..., Tq, Dv]"},
      ArgDef{"lse", DTypeSet::Floating(), true,
             "attention_forward's lse [..., Tq]"},
      ArgDef{"do", DTypeSet::Floating(), true, "gradient of o [..., Tq, Dv]"}};
  s.outputs = {"dq", "dk", "dv"};
  s.attrs = AttentionAttrs();
  s.shape_fn = BackwardShape;
  s.kernels[DType::kF32] = BackwardKernel<float>;
  s.kernels[DType::kF64] = BackwardKernel<double>;
  s.flops = BackwardFlops;
  s.differentiable = false;  // no second-order gradients
  // o and lse need not come from the forward for the kernel's arithmetic;
  // lse in [2, 4) keeps P of order one. o, lse and do take the shapes the
  // forward of q, k, v gives.
  const auto example = [](Shape q, Shape k, Shape v, double scale, bool causal) {
    const int r = q.rank();
    const Shape o = Append(Lead(q), {q[r - 2], v[r - 1]});
    const Shape lse = Append(Lead(q), {q[r - 2]});
    return Example({q, k, v, o, lse, o}, scale, causal,
                   {{-1, 1}, {-1, 1}, {-1, 1}, {-1, 1}, {2, 4}, {-1, 1}});
  };
  s.examples = {
      example({2, 5, 4}, {2, 5, 4}, {2, 5, 4}, 0.5, true),
      example({3, 4}, {6, 4}, {6, 2}, 0.5, false),
      example({1, 70, 16}, {1, 70, 16}, {1, 70, 16}, 0.25, false),
      example({1, 3, 32}, {1, 67, 32}, {1, 67, 32}, 0.18, true),
      example({1, 70, 16}, {1, 70, 16}, {1, 70, 16}, 0.25, true),
  };
  return s;
}

SUBQUAD_REGISTER_OP(MakeAttentionBackwardSchema());

}  // namespace

// ---- builder functions (declared in ops/ops.h) ------------------------------

namespace ops {

AttentionOutputs AttentionForward(GraphBuilder& b, Value q, Value k, Value v,
                                  double scale, bool causal) {
  std::vector<Value> out =
      b.AddMulti("attention_forward", {q, k, v},
                 {{"scale", scale}, {"causal", causal}}, 2);
  return {out[0], out[1]};
}

AttentionGradients AttentionBackward(GraphBuilder& b, Value q, Value k, Value v,
                                     Value o, Value lse, Value d_o,
                                     double scale, bool causal) {
  std::vector<Value> out =
      b.AddMulti("attention_backward", {q, k, v, o, lse, d_o},
                 {{"scale", scale}, {"causal", causal}}, 3);
  return {out[0], out[1], out[2]};
}

}  // namespace ops
}  // namespace subquad
