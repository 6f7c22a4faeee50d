#include "passes/simplify.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "passes/pass.h"
#include "passes/pattern/layout.h"

namespace subquad {
namespace {

using pattern::Any;
using pattern::AttrEq;
using pattern::AttrIsIdentityPermutation;
using pattern::AttrSwapsLastTwoAxes;
using pattern::CheckContext;
using pattern::ConstScalar;
using pattern::LookThrough;
using pattern::Match;
using pattern::Op;
using pattern::OpIn;
using pattern::Pattern;
using pattern::RewritePattern;
using pattern::Rewriter;
using pattern::ScalarIs;

// A rewrite that replaces the root by capture `name`.
pattern::RewriteFn ReplaceWith(std::string name) {
  return [name](Rewriter& rw, const Match& m) { return rw.Replace(m.root(), m.value(name)); };
}

RewritePattern MulByOne() {
  return RewritePattern(
      "mul-by-one",
      Op("mul", {Any("x"), ConstScalar(ScalarIs(1))}).Commutative().SameTypeAs("x"),
      ReplaceWith("x"));
}

RewritePattern AddZero() {
  return RewritePattern(
      "add-zero",
      Op("add", {Any("x"), ConstScalar(ScalarIs(0))}).Commutative().SameTypeAs("x"),
      ReplaceWith("x"));
}

RewritePattern SubZero() {
  return RewritePattern("sub-zero",
                        Op("sub", {Any("x"), ConstScalar(ScalarIs(0))}).SameTypeAs("x"),
                        ReplaceWith("x"));
}

RewritePattern ScaleByOne() {
  return RewritePattern("scale-by-one",
                        Op("scale", {Any("x")}).Attr("factor", AttrEq(1.0)),
                        ReplaceWith("x"));
}

RewritePattern ScaleOfScale() {
  return RewritePattern(
      "scale-of-scale", Op("scale", {Op("scale", {Any("x")}).Capture("inner")}),
      [](Rewriter& rw, const Match& m) {
        const double factor =
            m.node("inner").GetFloat("factor") * rw.anchor().GetFloat("factor");
        if (factor == 1.0) return rw.Replace(m.root(), m.value("x"));
        return rw.Replace(m.root(), rw.builder().Add("scale", {m.value("x")},
                                                     {{"factor", factor}}));
      });
}

RewritePattern NegNeg() {
  return RewritePattern("neg-neg", Op("neg", {Op("neg", {Any("x")})}), ReplaceWith("x"));
}

RewritePattern TransposeIdentity() {
  return RewritePattern("transpose-identity",
                        Op("transpose", {Any("x")}).Attr("perm", AttrIsIdentityPermutation()),
                        ReplaceWith("x"));
}

RewritePattern TransposeOfTranspose() {
  return RewritePattern(
      "transpose-of-transpose",
      Op("transpose", {Op("transpose", {Any("x")}).Capture("inner")}),
      [](Rewriter& rw, const Match& m) {
        std::vector<int64_t> perm = ComposePermutations(m.node("inner").GetInts("perm"),
                                                        rw.anchor().GetInts("perm"));
        if (IsIdentityPermutation(perm)) return rw.Replace(m.root(), m.value("x"));
        return rw.Replace(m.root(), rw.builder().Add("transpose", {m.value("x")},
                                                     {{"perm", std::move(perm)}}));
      });
}

RewritePattern ReshapeSameShape() {
  return RewritePattern("reshape-same-shape", Op("reshape", {Any("x")}).SameTypeAs("x"),
                        ReplaceWith("x"));
}

RewritePattern ReshapeOfReshape() {
  return RewritePattern(
      "reshape-of-reshape", Op("reshape", {Op("reshape", {Any("x")})}),
      [](Rewriter& rw, const Match& m) {
        const Value x = m.value("x");
        if (rw.graph().type(x) == rw.graph().type(m.root())) return rw.Replace(m.root(), x);
        return rw.Replace(m.root(), rw.builder().Add("reshape", {x},
                                                     {{"shape", rw.anchor().GetShape("shape")}}));
      });
}

RewritePattern CancelLayoutChain() {
  const LookThrough layout = LookThrough::LayoutChains();
  return RewritePattern(
             "cancel-layout-chain",
             OpIn({"reshape", "transpose"}, {Any()})
                 .CheckMatched([layout](const CheckContext& c) -> std::optional<std::string> {
                   if (!layout.Equivalents(c.graph, c.value).empty()) return std::nullopt;
                   return std::string(
                       "expected a reshape/transpose chain below it that gives back an "
                       "earlier value");
                 }),
             [layout](Rewriter& rw, const Match& m) {
               // The deepest equivalent undoes the longest chain.
               return rw.Replace(m.root(), layout.Equivalents(rw.graph(), m.root()).back());
             })
      .set_benefit(2);
}

// matmul with operand `which` (0: a, 1: b) taken from below a transpose of
// its last two axes, and that operand's flag flipped.
RewritePattern MatmulTranspose(int which) {
  const char* flag = which == 0 ? "transpose_a" : "transpose_b";
  Pattern t = Op("transpose", {Any("inner")}).Attr("perm", AttrSwapsLastTwoAxes());
  Pattern root = which == 0 ? Op("matmul", {t, Any("other")}) : Op("matmul", {Any("other"), t});
  return RewritePattern(
      which == 0 ? "matmul-transpose-a" : "matmul-transpose-b", root,
      [which, flag](Rewriter& rw, const Match& m) {
        AttrMap attrs = rw.anchor().attrs();
        if (rw.anchor().GetBool(flag)) {
          attrs.erase(flag);
        } else {
          attrs[flag] = true;
        }
        std::vector<Value> operands = {m.value("inner"), m.value("other")};
        if (which == 1) std::swap(operands[0], operands[1]);
        return rw.Replace(m.root(), rw.builder().Add("matmul", operands, std::move(attrs)));
      });
}

}  // namespace

std::vector<pattern::RewritePattern> SimplifyPatterns() {
  return {MulByOne(),          AddZero(),           SubZero(),
          ScaleByOne(),        ScaleOfScale(),      NegNeg(),
          TransposeIdentity(), TransposeOfTranspose(), ReshapeSameShape(),
          ReshapeOfReshape(),  CancelLayoutChain(), MatmulTranspose(0),
          MatmulTranspose(1)};
}

namespace {

SUBQUAD_REGISTER_PASS(pattern::PatternPassInfo(
    "simplify",
    "Algebraic and layout clean-ups: x*1, x+0, x-0, scale chains, double negation, "
    "transpose and reshape chains, transposes folded into matmul flags.",
    [](const PassOptions&) -> absl::StatusOr<std::vector<pattern::RewritePattern>> {
      return SimplifyPatterns();
    }));

}  // namespace
}  // namespace subquad
