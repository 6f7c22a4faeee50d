// The pattern language: describes a subgraph rooted at one value, to find it
// in a graph, capture its parts by name, and say precisely why it is not
// there.
//
//   using namespace subquad::pattern;
//   // matmul(transpose(a, swap of the last two axes), b), a and b captured.
//   Pattern p = Op("matmul", {Op("transpose", {Any("a")})
//                                 .Attr("perm", AttrSwapsLastTwoAxes()),
//                             Any("b")});
//   MatchResult r = MatchPattern(graph, p, node.output());
//   if (r.matched()) { Value a = r.match.value("a"); ... }
//   else std::cout << r.reason;
//   // "node %3 (transpose): attribute perm is [1,0,2], expected a swap of
//   //  the last two axes ([0,2,1])"
//
// A Pattern matches a Value. The kinds:
//   Op("softmax", {x})      a node of that op, with exactly these operands;
//   Op("softmax")           ... with any operands;
//   OpIn({"add", "sub"}, {x, y}), AnyOp(): a node of one of several / any op;
//   Any(), Any("x")         any value (captured as "x");
//   ConstScalar(pred)       a constant, fill, or broadcast_to/reshape of one,
//                           whose elements all equal one value satisfying
//                           `pred` ("is -inf or below -1e4");
//   AnyOf({p, q})           the first alternative that matches.
// Modifiers refine any pattern: Capture, Attr, Rank, MinRank, ShapeIs,
// DTypeIn, SameTypeAs, SingleUse, Commutative, Output, AllOperands, RoleIs,
// OriginIs, Where/Check (custom conditions; WhereMatched/CheckMatched run
// after the operands and may read their captures), and Through (look
// through no-op ops: reshape/transpose chains that cancel, scale by 1, ...).
//
// Captures: naming the same capture twice means "the same value" (x and x
// in x * sigmoid(x)). A match may start from captures of an earlier match
// (the seed), which is how a backward pattern is anchored on its forward
// match: capture the forward softmax, then require OriginIs("softmax") in
// the backward pattern.
//
// Matching backtracks over commutative operand orders, alternatives and
// look-through candidates. When it fails, the reason is the one given at the
// deepest point reached: the most pattern nodes matched, and among equals a
// node of the right op with a broken constraint before a node of the wrong
// op (the first such failure wins ties). Reasons always read
//   node %41 (softmax): attribute axis is 1, expected the last axis (3)
// so that `subquad opt --explain` can tell a user which node broke a rewrite.
#ifndef SUBQUAD_PASSES_PATTERN_PATTERN_H_
#define SUBQUAD_PASSES_PATTERN_PATTERN_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "core/attribute.h"
#include "core/dtype.h"
#include "core/graph.h"

namespace subquad::pattern {

// ---- Matches ----------------------------------------------------------------

// What a successful match found: the root value, the named captures, and the
// nodes the pattern's op patterns matched (root first).
class Match {
 public:
  Value root() const { return root_; }
  bool has(absl::string_view name) const { return Find(name) != nullptr; }
  // The captured value; the capture must exist (checked).
  Value value(absl::string_view name) const;
  // The node producing the captured value.
  const Node& node(absl::string_view name) const;
  // The element value a ConstScalar capture matched (checked).
  double scalar(absl::string_view name) const;
  const std::vector<NodeId>& nodes() const { return nodes_; }
  const Graph& graph() const { return *graph_; }

  // For seeding a match with captures made elsewhere.
  void Bind(std::string name, Value v, std::optional<double> scalar = {});

 private:
  friend class Matcher;
  struct Binding {
    std::string name;
    Value value;
    std::optional<double> scalar;
  };
  const Binding* Find(absl::string_view name) const;

  const Graph* graph_ = nullptr;
  Value root_;
  std::vector<Binding> bindings_;
  std::vector<NodeId> nodes_;
};

// Who uses each value: one entry per consuming input slot, plus one per graph
// output. Built once per graph state and shared by matches.
class UseIndex {
 public:
  explicit UseIndex(const Graph& graph);
  int count(Value v) const;
  // "%5, %7, output 'y'".
  std::string Describe(Value v) const;
  // Forgets the uses `node`'s inputs make (the node is being removed).
  void RemoveUsesBy(const Node& node);

 private:
  struct Use {
    NodeId user = kNoNode;  // kNoNode: a graph output
    std::string output;
  };
  absl::flat_hash_map<Value, std::vector<Use>> uses_;
};

// ---- Predicates ----------------------------------------------------------------

// What a check sees: the value being matched, the node producing it, the
// graph, and the captures made so far.
struct CheckContext {
  const Graph& graph;
  Value value;
  const Node& node;
  const Match& captures;
};

// A constraint on an attribute. `check` returns nullopt when the value is
// acceptable, else a description of what was expected ("the last axis (3)");
// the failure reads "attribute <name> is <value>, expected <description>".
struct AttrPredicate {
  std::function<std::optional<std::string>(const AttrValue&,
                                           const CheckContext&)>
      check;
};
AttrPredicate AttrEq(AttrValue v);
AttrPredicate AttrIn(std::vector<AttrValue> values);
AttrPredicate AttrWhere(std::string description,
                        std::function<bool(const AttrValue&)> test);
// An int attribute naming the last axis of input `input` (-1 or rank-1).
AttrPredicate AttrIsLastAxis(int input = 0);
// An int-list attribute naming only the last axis of input 0 ([-1] or
// [rank-1]): a reduction over the last axis.
AttrPredicate AttrAxesAreLastOnly();
// An int-list attribute that swaps the last two axes of input 0 and keeps
// the others (a matmul transpose flag).
AttrPredicate AttrSwapsLastTwoAxes();
AttrPredicate AttrIsIdentityPermutation();

// A constraint on the element value of a ConstScalar: "expected <description>".
struct ScalarPredicate {
  std::string description;
  std::function<bool(double)> test;
};
ScalarPredicate ScalarIs(double v);  // exact; NaN matches NaN
ScalarPredicate ScalarWhere(std::string description,
                            std::function<bool(double)> test);

// ---- Look-through -----------------------------------------------------------

// Ops a pattern may look through when they leave the value unchanged.
// reshape and transpose are followed along whole chains: the value below a
// chain counts when the chain composes to the identity (a head split undone
// by a head merge). Other ops count one by one when they are an identity:
// scale (factor 1), pow (exponent 1), cast (to its input's dtype),
// broadcast_to (to its input's shape), or ops given with their own test.
class LookThrough {
 public:
  using IdentityTest = std::function<bool(const Graph&, const Node&)>;

  // Ops among reshape, transpose, scale, pow, cast, broadcast_to (checked).
  explicit LookThrough(std::vector<std::string> ops);
  // reshape and transpose.
  static LookThrough LayoutChains();
  // Another op (its input 0 passes through), with its identity test.
  LookThrough& Add(std::string op, IdentityTest is_identity);

  // Values equal to `v` (same type, same elements) found by looking through
  // the ops below it, nearest first; `v` itself excluded.
  std::vector<Value> Equivalents(const Graph& graph, Value v) const;

  // "reshape/transpose chains, scale".
  std::string ToString() const;

 private:
  bool layout_reshape_ = false;
  bool layout_transpose_ = false;
  std::vector<std::pair<std::string, IdentityTest>> identities_;
};

// ---- Patterns -------------------------------------------------------------------

namespace internal {
struct PatternNode;
}  // namespace internal

// A pattern over one value. Cheap to copy (shared, immutable nodes); each
// modifier returns a new pattern.
class Pattern {
 public:
  // Binds the matched value as `name` (see "Captures" above).
  Pattern Capture(std::string name) const;

  // The node's attribute (or its schema default) satisfies `pred`.
  Pattern Attr(std::string name, AttrPredicate pred) const;
  // Type constraints on the matched value.
  Pattern Rank(int rank) const;
  Pattern MinRank(int rank) const;
  Pattern ShapeIs(Shape shape) const;
  Pattern DTypeIn(DTypeSet dtypes) const;
  // The value's type (dtype and shape) equals the type of capture `name`
  // (checked after the operands matched).
  Pattern SameTypeAs(std::string name) const;
  // The value has exactly one use (a graph output counts as a use).
  Pattern SingleUse() const;
  // A two-operand op pattern also matches with its operands swapped.
  Pattern Commutative() const;
  // Which output of the node (default 0); -1: any output.
  Pattern Output(int index) const;
  Pattern RoleIs(Role role) const;
  // The node's origin is the node of capture `name` (checked after the
  // operands matched, so the capture may come from the seed, an earlier
  // operand or this pattern's subtree).
  Pattern OriginIs(std::string name) const;
  // Every operand matches `each` (variadic ops such as concat).
  Pattern AllOperands(Pattern each) const;

  // A condition on the node, checked before its operands: failing reads
  // "expected <description>".
  Pattern Where(std::string description,
                std::function<bool(const CheckContext&)> test) const;
  // As Where, with the reason written by `check` (nullopt: satisfied).
  Pattern Check(
      std::function<std::optional<std::string>(const CheckContext&)> check)
      const;
  // As Where and Check, but checked after the operands matched, so the
  // condition may read their captures.
  Pattern WhereMatched(std::string description,
                       std::function<bool(const CheckContext&)> test) const;
  Pattern CheckMatched(
      std::function<std::optional<std::string>(const CheckContext&)> check)
      const;

  // When matching a value, also try the values found by looking through
  // the ops of `through` below it (the value itself first).
  Pattern Through(LookThrough through) const;

  // The ops this pattern can match at its root (empty: any op), and the
  // output index it expects there.
  std::vector<std::string> RootOps() const;
  int RootOutput() const;

  // A one-line rendering for debugging: matmul(transpose(a), b).
  std::string ToString() const;

  // For the factories below; a pattern is built with them.
  explicit Pattern(std::shared_ptr<const internal::PatternNode> node)
      : node_(std::move(node)) {}
  const internal::PatternNode& node() const { return *node_; }

 private:
  Pattern With(const std::function<void(internal::PatternNode&)>& edit) const;

  std::shared_ptr<const internal::PatternNode> node_;
};

Pattern Op(std::string op);
Pattern Op(std::string op, std::vector<Pattern> operands);
Pattern OpIn(std::vector<std::string> ops);
Pattern OpIn(std::vector<std::string> ops, std::vector<Pattern> operands);
Pattern AnyOp();
Pattern AnyOp(std::vector<Pattern> operands);
Pattern Any();
Pattern Any(std::string capture);
Pattern ConstScalar();
Pattern ConstScalar(ScalarPredicate pred);
Pattern AnyOf(std::vector<Pattern> alternatives);

// ---- Matching ---------------------------------------------------------------

struct MatchResult {
  bool matched() const { return ok; }
  bool ok = false;
  Match match;         // when matched
  std::string reason;  // when not: why, at the deepest point reached
  int depth = 0;       // pattern nodes matched before that point
};

// Matches `pattern` against `value`. `seed` holds captures the match must
// agree with (and that it may read); `uses` is built on demand when null.
MatchResult MatchPattern(const Graph& graph, const Pattern& pattern,
                         Value value, const Match* seed = nullptr,
                         const UseIndex* uses = nullptr);

// "node %41 (softmax)", "node %3:1 (layer_norm)": how reasons name a value.
std::string DescribeValue(const Graph& graph, Value v);

// ---- Internals, shared with the matcher ------------------------------------

namespace internal {

using CheckFn =
    std::function<std::optional<std::string>(const CheckContext&)>;

struct PatternNode {
  enum class Kind { kAny, kOp, kConstScalar, kAnyOf };
  Kind kind = Kind::kAny;
  std::vector<std::string> ops;                   // kOp; empty: any op
  std::optional<std::vector<Pattern>> operands;   // kOp; nullopt: unchecked
  std::optional<Pattern> each_operand;            // kOp
  bool commutative = false;
  int output = 0;                                 // kOp; -1: any
  bool single_use = false;
  std::vector<CheckFn> checks;                    // before operands
  std::vector<CheckFn> post_checks;               // after operands
  std::optional<ScalarPredicate> scalar;          // kConstScalar
  std::vector<Pattern> alternatives;              // kAnyOf
  std::optional<LookThrough> through;
  std::string capture;
};

}  // namespace internal
}  // namespace subquad::pattern

#endif  // SUBQUAD_PASSES_PATTERN_PATTERN_H_
