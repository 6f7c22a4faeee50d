#include "passes/attention/recognize.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/dtype.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/ops.h"
#include "passes/pattern/layout.h"

namespace subquad::attention {
namespace {

using pattern::Any;
using pattern::AnyOf;
using pattern::AttrAxesAreLastOnly;
using pattern::AttrEq;
using pattern::AttrIsLastAxis;
using pattern::AttrSwapsLastTwoAxes;
using pattern::AttrWhere;
using pattern::CheckContext;
using pattern::ConstScalar;
using pattern::Match;
using pattern::Op;
using pattern::Pattern;
using pattern::ScalarPredicate;
using pattern::ScalarWhere;

// Masked scores at or below this count as −inf: exp of them underflows to 0
// against any realistic row maximum.
constexpr double kMaskedBelow = -1e4;

bool IsMaskedValue(double v) { return v <= kMaskedBelow; }  // −inf included

ScalarPredicate VeryNegative() {
  return ScalarWhere("-inf or at most -1e4", IsMaskedValue);
}

std::string Label(const Node& n) { return absl::StrCat("node %", n.id(), " (", n.op(), ")"); }

std::string ShapeText(const Shape& s) { return absl::StrCat("[", absl::StrJoin(s.dims(), ","), "]"); }

// x·c as `scale`, mul by a constant, or div by one; the node captured as
// `name`, the constant as `name`_c.
Pattern ScaleOf(const Pattern& x, const std::string& name) {
  return AnyOf({Op("scale", {x}).Capture(name),
                Op("mul", {x, ConstScalar().Capture(name + "_c")}).Commutative().Capture(name),
                Op("div", {x, ConstScalar(ScalarWhere("a non-zero constant",
                                                      [](double v) { return v != 0; }))
                                  .Capture(name + "_c")})
                    .Capture(name)});
}

Pattern MaybeScaled(const std::string& capture, const std::string& scale_name) {
  return AnyOf({ScaleOf(Any(capture), scale_name), Any(capture)});
}

// Q·Kᵀ with Q and K straight or transposed, each optionally scaled.
Pattern Logits() {
  const auto mm = [](Pattern a, Pattern b, bool ta, bool tb) {
    return Op("matmul", {std::move(a), std::move(b)})
        .Attr("transpose_a", AttrEq(ta))
        .Attr("transpose_b", AttrEq(tb))
        .Capture("qk");
  };
  const Pattern k_swapped =
      Op("transpose", {MaybeScaled("k", "kscale")}).Attr("perm", AttrSwapsLastTwoAxes()).Capture("ktr");
  return AnyOf({mm(MaybeScaled("q", "qscale"), MaybeScaled("k", "kscale"), false, true),
                mm(MaybeScaled("q", "qscale"), k_swapped, false, false),
                mm(MaybeScaled("q", "qscale"), MaybeScaled("kt", "kscale"), false, false),
                mm(MaybeScaled("qt", "qscale"), MaybeScaled("k", "kscale"), true, true),
                mm(MaybeScaled("qt", "qscale"), MaybeScaled("kt", "kscale"), true, false)});
}

Pattern Masked(const Pattern& x) {
  return AnyOf({Op("causal_mask", {x})
                    .Attr("fill", AttrWhere("-inf or at most -1e4",
                                            [](const AttrValue& f) { return IsMaskedValue(f.f()); }))
                    .Capture("cmask"),
                Op("where", {Any("mask"), x, ConstScalar(VeryNegative()).Capture("fill")})
                    .Capture("wmask"),
                Op("where", {Any("mask"), ConstScalar(VeryNegative()).Capture("fill"), x})
                    .Capture("wmask_inv"),
                Op("add", {x, Any("mask")}).Commutative().Capture("amask"), x});
}

// The scores: the logits scaled then masked, or masked then scaled.
Pattern Scores() {
  const Pattern logits = Logits();
  return AnyOf({Masked(AnyOf({ScaleOf(logits, "sscale"), logits})),
                ScaleOf(Masked(logits), "sscale_post")});
}

Pattern Probabilities() {
  const Pattern scores = Scores();
  const Pattern shifted =
      AnyOf({Op("sub", {scores.Capture("s"), Op("reduce_max", {Any("s")})
                                                 .Attr("axes", AttrAxesAreLastOnly())
                                                 .Attr("keepdims", AttrEq(true))}),
             scores});
  return AnyOf({Op("softmax", {scores}).Attr("axis", AttrIsLastAxis()),
                Op("div", {Op("exp", {shifted}).Capture("e"), Op("reduce_sum", {Any("e")})
                                                                  .Attr("axes", AttrAxesAreLastOnly())
                                                                  .Attr("keepdims", AttrEq(true))})})
      .Capture("p");
}

// The factor a captured scale node applies.
double ScaleFactor(const Match& m, const std::string& name) {
  const Node& n = m.node(name);
  if (n.op() == "scale") return n.GetFloat("factor");
  const double c = m.scalar(name + "_c");
  return n.op() == "mul" ? c : 1.0 / c;
}

// Element `flat` of a numeric tensor, as a double.
double ElementAsDouble(const Tensor& t, int64_t flat) {
  switch (t.dtype()) {
    case DType::kF32:
      return t.data<float>()[flat];
    case DType::kF64:
      return t.data<double>()[flat];
    case DType::kI32:
      return t.data<int32_t>()[flat];
    case DType::kI64:
      return static_cast<double>(t.data<int64_t>()[flat]);
  }
  return 0;
}

// A mask operand as a function of (leading index, query, key), read from a
// constant (or fill) under reshapes that keep the last two dims and
// broadcasts.
struct ConstMask {
  const Tensor* tensor = nullptr;  // null: every element is `fill`
  double fill = 0;
  int64_t mq = 1, mk = 1, lead = 1;  // the tensor's last two dims, and the rest
  double at(int64_t l, int64_t i, int64_t j) const {
    if (tensor == nullptr) return fill;
    return ElementAsDouble(*tensor, (l * mq + (mq == 1 ? 0 : i)) * mk + (mk == 1 ? 0 : j));
  }
};

absl::StatusOr<ConstMask> ReadMask(const Graph& graph, Value mask, const Node& user) {
  Value v = mask;
  for (;;) {
    const Node& n = *graph.node(v.node);
    const Shape& in_shape = n.num_inputs() > 0 ? graph.type(n.input(0)).shape : Shape();
    const Shape& out_shape = n.output_type(0).shape;
    const auto last_two = [](const Shape& s, int k) { return s.rank() >= k ? s[s.rank() - k] : 1; };
    if (n.op() == "broadcast_to" ||
        (n.op() == "reshape" && last_two(in_shape, 1) == last_two(out_shape, 1) &&
         last_two(in_shape, 2) == last_two(out_shape, 2))) {
      v = n.input(0);
      continue;
    }
    ConstMask m;
    if (n.op() == "fill") {
      m.fill = n.GetFloat("value");
      return m;
    }
    if (n.op() == "constant") {
      const Tensor& t = n.GetTensor("value");
      m.tensor = &t;
      const Shape& s = t.shape();
      m.mk = s.rank() >= 1 ? s[s.rank() - 1] : 1;
      m.mq = s.rank() >= 2 ? s[s.rank() - 2] : 1;
      m.lead = t.num_elements() / std::max<int64_t>(1, m.mq * m.mk);
      return m;
    }
    return absl::FailedPreconditionError(absl::StrCat(
        Label(user), ": its mask ", Label(n),
        " is not a constant, so it cannot be proven causal (fold it with constant-fold, or "
        "use causal_mask)"));
  }
}

enum class MaskKind { kNone, kCausal };

// Classifies a constant mask over scores [..., Tq, Tk]. `keep` says whether
// an element keeps its key; `describe` renders an element for the error.
template <typename Keep>
absl::StatusOr<MaskKind> ClassifyMask(const ConstMask& m, int64_t tq, int64_t tk,
                                      const Node& user, const Keep& keep) {
  bool all = true, causal = true;
  std::string first_non_causal;
  for (int64_t l = 0; l < m.lead; ++l) {
    for (int64_t i = 0; i < tq; ++i) {
      for (int64_t j = 0; j < tk; ++j) {
        absl::StatusOr<bool> k = keep(m.at(l, i, j));
        if (!k.ok()) {
          return absl::FailedPreconditionError(absl::StrCat(
              Label(user), ": ", k.status().message(), " at query ", i, ", key ", j));
        }
        const bool visible = j <= i + (tk - tq);
        all &= *k;
        if (*k != visible && causal) {
          causal = false;
          first_non_causal = absl::StrCat("query ", i, *k ? " keeps" : " drops", " key ", j);
        }
        if (!all && !causal) {
          return absl::FailedPreconditionError(absl::StrCat(
              Label(user), ": the mask is not causal (", first_non_causal,
              "; causal keeps key j for query i when j <= i + ", tk - tq, ")"));
        }
      }
    }
  }
  return all ? MaskKind::kNone : MaskKind::kCausal;
}

// A source (fill, constant), or a broadcast_to / reshape of one.
bool IsConstantValued(const Graph& graph, NodeId id) {
  const Node* n = graph.node(id);
  while (n->op() == "broadcast_to" || n->op() == "reshape") n = graph.node(n->input(0).node);
  return n->num_inputs() == 0 && n->op() != "input" && n->op() != "parameter";
}

absl::Status Precondition(const Node& n, absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat(Label(n), ": ", what));
}

}  // namespace

Pattern ForwardPattern() {
  const Pattern p = Probabilities();
  // Checked first, so that a matmul whose left operand is no softmax or
  // division (a projection) fails at depth 0 and explanations skip it.
  const auto from_probabilities = [](const CheckContext& c) {
    const std::string& op = c.graph.node(c.node.input(0).node)->op();
    return op == "softmax" || op == "div";
  };
  const std::string why = "a left operand made by softmax or div";
  return AnyOf({Op("matmul", {p, Any("v")})
                    .Where(why, from_probabilities)
                    .Attr("transpose_a", AttrEq(false))
                    .Attr("transpose_b", AttrEq(false))
                    .RoleIs(Role::kForward)
                    .Capture("pv"),
                Op("matmul", {p, Any("vt")})
                    .Where(why, from_probabilities)
                    .Attr("transpose_a", AttrEq(false))
                    .Attr("transpose_b", AttrEq(true))
                    .RoleIs(Role::kForward)
                    .Capture("pv")});
}

absl::StatusOr<ForwardSite> AnalyzeForward(const Graph& graph, const Match& m,
                                           const UserMap& users) {
  ForwardSite site;
  site.output = m.value("pv");
  site.nodes = m.nodes();
  const Node& pv = m.node("pv");
  site.q = m.has("q") ? Operand{m.value("q"), false} : Operand{m.value("qt"), true};
  site.k = m.has("k") ? Operand{m.value("k"), false} : Operand{m.value("kt"), true};
  site.v = m.has("v") ? Operand{m.value("v"), false} : Operand{m.value("vt"), true};

  // Leading dims equal (attention_forward does not broadcast heads).
  const auto untransposed_shape = [&](const Operand& x) {
    std::vector<int64_t> s = graph.type(x.value).shape.ToVector();
    if (x.transposed) std::swap(s[s.size() - 1], s[s.size() - 2]);
    return Shape(absl::MakeConstSpan(s));
  };
  const Shape qs = untransposed_shape(site.q), ks = untransposed_shape(site.k),
              vs = untransposed_shape(site.v);
  const auto lead = [](const Shape& s) { return Shape(s.dims().subspan(0, s.rank() - 2)); };
  if (qs.rank() != ks.rank() || qs.rank() != vs.rank() || lead(qs) != lead(ks) ||
      lead(qs) != lead(vs)) {
    return Precondition(pv, absl::StrCat("q ", ShapeText(qs), ", k ", ShapeText(ks), " and v ",
                                         ShapeText(vs),
                                         " have different leading dims (broadcast heads, as in "
                                         "grouped-query attention, are not fused)"));
  }
  const int64_t tq = qs[qs.rank() - 2], tk = ks[ks.rank() - 2];

  // The scale: the product of every constant factor on the way.
  site.scale = 1.0;
  for (const char* name : {"qscale", "kscale", "sscale", "sscale_post"}) {
    if (m.has(name)) site.scale *= ScaleFactor(m, name);
  }
  const double post = m.has("sscale_post") ? ScaleFactor(m, "sscale_post") : 1.0;
  if (m.has("sscale_post") && !(post > 0)) {
    return Precondition(m.node("sscale_post"),
                        absl::StrCat("scales masked scores by ", post,
                                     ", not a positive factor, so the mask does not stay -inf"));
  }
  if (!std::isfinite(site.scale)) {
    return Precondition(pv, absl::StrCat("the scale ", site.scale, " is not finite"));
  }

  // The mask.
  site.softmax_spelling = m.node("p").op() == "softmax" ? "softmax" : "exp/sum/div";
  site.mask_spelling = "no mask";
  if (m.has("cmask")) {
    site.causal = true;
    site.mask_spelling = "causal_mask";
    if (post * m.node("cmask").GetFloat("fill") > kMaskedBelow) {
      return Precondition(m.node("cmask"), "its fill, once scaled, is above -1e4");
    }
  } else if (m.has("wmask") || m.has("wmask_inv")) {
    const bool inverted = m.has("wmask_inv");
    const Node& w = m.node(inverted ? "wmask_inv" : "wmask");
    if (post * m.scalar("fill") > kMaskedBelow) {
      return Precondition(w, "its fill, once scaled, is above -1e4");
    }
    ASSIGN_OR_RETURN(ConstMask mask, ReadMask(graph, m.value("mask"), w));
    ASSIGN_OR_RETURN(MaskKind kind,
                     ClassifyMask(mask, tq, tk, w, [&](double c) -> absl::StatusOr<bool> {
                       return (c != 0) != inverted;
                     }));
    site.causal = kind == MaskKind::kCausal;
    site.mask_spelling = "where-mask";
  } else if (m.has("amask")) {
    const Node& a = m.node("amask");
    ASSIGN_OR_RETURN(ConstMask mask, ReadMask(graph, m.value("mask"), a));
    ASSIGN_OR_RETURN(MaskKind kind,
                     ClassifyMask(mask, tq, tk, a, [&](double c) -> absl::StatusOr<bool> {
                       if (c == 0) return true;
                       if (post * c <= kMaskedBelow) return false;
                       return absl::FailedPreconditionError(absl::StrCat(
                           "adds ", c, ", which is neither 0 nor a mask value (-inf or at "
                           "most -1e4 once scaled)"));
                     }));
    site.causal = kind == MaskKind::kCausal;
    site.mask_spelling = "additive-mask";
  }

  // Intermediates feed only the attention and its backward. Constants (a
  // fill of -inf, a scale factor, maybe shared by every layer after cse)
  // may be used anywhere: the rewrite leaves them alone.
  const absl::flat_hash_set<NodeId> inside(site.nodes.begin(), site.nodes.end());
  for (NodeId id : site.nodes) {
    if (id == pv.id() || IsConstantValued(graph, id)) continue;
    const Node& n = *graph.node(id);
    auto it = users.find(id);
    if (it != users.end()) {
      for (NodeId u : it->second) {
        const Node& user = *graph.node(u);
        if (inside.contains(u)) continue;
        if (user.role() == Role::kBackward && inside.contains(user.origin())) continue;
        return Precondition(n, absl::StrCat("is also used by ", Label(user),
                                            ", outside the attention"));
      }
    }
    for (const auto& [name, v] : graph.outputs()) {
      if (v.node == id) {
        return Precondition(n, absl::StrCat("is the graph output '", name,
                                            "', so the attention's intermediates must stay"));
      }
    }
  }
  return site;
}

absl::StatusOr<BackwardRegion> FindBackward(const Graph& graph, const ForwardSite& site,
                                            const UserMap& users) {
  const absl::flat_hash_set<NodeId> forward(site.nodes.begin(), site.nodes.end());
  BackwardRegion region;
  absl::flat_hash_set<NodeId> in_region;
  for (const Node* n : graph.nodes()) {
    if (n->role() == Role::kBackward && forward.contains(n->origin())) {
      region.nodes.push_back(n->id());
      in_region.insert(n->id());
    }
  }
  if (region.nodes.empty()) {
    return absl::NotFoundError("the attention has no backward");
  }
  const TensorType& o_type = graph.type(site.output);
  // What flows in: forward values, constants, and one gradient of o.
  for (NodeId id : region.nodes) {
    const Node& n = *graph.node(id);
    for (const Value& in : n.inputs()) {
      if (in_region.contains(in.node)) continue;
      const Node& p = *graph.node(in.node);
      if (p.role() == Role::kForward || p.num_inputs() == 0) continue;
      if (graph.type(in) == o_type && (!region.d_o.valid() || region.d_o == in)) {
        region.d_o = in;
        continue;
      }
      return Precondition(n, absl::StrCat("reads ", pattern::DescribeValue(graph, in),
                                          region.d_o.valid() ? ", a second gradient" : "",
                                          " from outside the attention's backward"));
    }
  }
  if (!region.d_o.valid()) {
    return Precondition(*graph.node(region.nodes.front()),
                        "the attention's backward reads no gradient of its output");
  }

  // What flows out: the gradients of q, k and v, told apart by who reads
  // them (the backward of their producers, or grad/<parameter>).
  const Operand* operands[] = {&site.q, &site.k, &site.v};
  const char* names[] = {"q", "k", "v"};
  Value* grads[] = {&region.grad_q, &region.grad_k, &region.grad_v};
  for (int a = 0; a < 3; ++a) {
    for (int b = a + 1; b < 3; ++b) {
      if (operands[a]->value.node == operands[b]->value.node) {
        return Precondition(*graph.node(operands[a]->value.node),
                            absl::StrCat("produces both ", names[a], " and ", names[b],
                                         " of the attention, whose gradients then cannot be "
                                         "told apart"));
      }
    }
  }
  const auto which_operand = [&](NodeId origin) -> int {
    for (int a = 0; a < 3; ++a) {
      if (operands[a]->value.node == origin) return a;
    }
    return -1;
  };
  absl::flat_hash_map<Value, int> claimed;  // value -> operand
  const auto claim = [&](Value v, int a, const std::string& reader) -> absl::Status {
    const Node& n = *graph.node(v.node);
    if (a < 0) {
      return Precondition(n, absl::StrCat("is read by ", reader,
                                          ", which is not the backward of q, k or v"));
    }
    auto [it, inserted] = claimed.emplace(v, a);
    if (!inserted && it->second != a) {
      return Precondition(n, absl::StrCat("is read as the gradient of both ", names[it->second],
                                          " and ", names[a]));
    }
    if (grads[a]->valid() && *grads[a] != v) {
      return Precondition(n, absl::StrCat("is a second gradient of ", names[a]));
    }
    *grads[a] = v;
    return absl::OkStatus();
  };
  for (NodeId id : region.nodes) {
    auto it = users.find(id);
    if (it != users.end()) {
      for (NodeId u : it->second) {
        if (in_region.contains(u)) continue;
        const Node& user = *graph.node(u);
        for (const Value& in : user.inputs()) {
          if (in.node != id) continue;
          RETURN_IF_ERROR(claim(in, which_operand(user.origin()), Label(user)));
        }
      }
    }
    for (const auto& [name, v] : graph.outputs()) {
      if (v.node != id) continue;
      int a = -1;
      for (int c = 0; c < 3; ++c) {
        const Node& producer = *graph.node(operands[c]->value.node);
        if (producer.op() == "parameter" && name == absl::StrCat("grad/", producer.name())) a = c;
      }
      RETURN_IF_ERROR(claim(v, a, absl::StrCat("the graph output '", name, "'")));
    }
  }
  return region;
}

Value Untransposed(GraphBuilder& b, const Operand& x) {
  if (!x.transposed) return x.value;
  return ops::Transpose(b, x.value, SwapLastTwoAxes(b.type(x.value).shape.rank()));
}

Value GradientFor(GraphBuilder& b, const Operand& x, Value grad) {
  if (!x.transposed) return grad;
  return ops::Transpose(b, grad, SwapLastTwoAxes(b.type(grad).shape.rank()));
}

}  // namespace subquad::attention
