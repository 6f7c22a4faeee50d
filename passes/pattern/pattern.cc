#include "passes/pattern/pattern.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/check.h"
#include "core/op_schema.h"
#include "passes/pattern/layout.h"

namespace subquad::pattern {

using internal::CheckFn;
using internal::PatternNode;

// ---- Match ---------------------------------------------------------------------

const Match::Binding* Match::Find(absl::string_view name) const {
  for (const Binding& b : bindings_) {
    if (b.name == name) return &b;
  }
  return nullptr;
}

Value Match::value(absl::string_view name) const {
  const Binding* b = Find(name);
  SUBQUAD_CHECK(b != nullptr) << "the match has no capture '" << name << "'";
  return b->value;
}

const Node& Match::node(absl::string_view name) const {
  const Node* n = graph_->node(value(name).node);
  SUBQUAD_CHECK(n != nullptr) << "capture '" << name << "' names a removed node";
  return *n;
}

double Match::scalar(absl::string_view name) const {
  const Binding* b = Find(name);
  SUBQUAD_CHECK(b != nullptr && b->scalar.has_value())
      << "the match has no constant-scalar capture '" << name << "'";
  return *b->scalar;
}

void Match::Bind(std::string name, Value v, std::optional<double> scalar) {
  bindings_.push_back({std::move(name), v, scalar});
}

// ---- UseIndex ------------------------------------------------------------------

UseIndex::UseIndex(const Graph& graph) {
  for (const Node* n : graph.nodes()) {
    for (const Value& v : n->inputs()) uses_[v].push_back({n->id(), {}});
  }
  for (const auto& [name, v] : graph.outputs()) {
    uses_[v].push_back({kNoNode, name});
  }
}

int UseIndex::count(Value v) const {
  auto it = uses_.find(v);
  return it == uses_.end() ? 0 : static_cast<int>(it->second.size());
}

std::string UseIndex::Describe(Value v) const {
  auto it = uses_.find(v);
  if (it == uses_.end()) return "";
  return absl::StrJoin(it->second, ", ", [](std::string* s, const Use& u) {
    if (u.user == kNoNode) {
      absl::StrAppend(s, "output '", u.output, "'");
    } else {
      absl::StrAppend(s, "%", u.user);
    }
  });
}

void UseIndex::RemoveUsesBy(const Node& node) {
  for (const Value& v : node.inputs()) {
    auto it = uses_.find(v);
    if (it == uses_.end()) continue;
    auto& list = it->second;
    for (auto u = list.begin(); u != list.end(); ++u) {
      if (u->user == node.id()) {
        list.erase(u);
        break;
      }
    }
  }
}

// ---- Predicates ------------------------------------------------------------------

namespace {

bool IsNumeric(const AttrValue& v) {
  return v.kind() == AttrKind::kInt || v.kind() == AttrKind::kFloat;
}
double AsDouble(const AttrValue& v) {
  return v.kind() == AttrKind::kInt ? static_cast<double>(v.i()) : v.f();
}
bool AttrEquals(const AttrValue& a, const AttrValue& b) {
  if (IsNumeric(a) && IsNumeric(b)) return AsDouble(a) == AsDouble(b);
  return a == b;
}

std::string JoinOps(const std::vector<std::string>& ops) {
  if (ops.size() == 1) return ops[0];
  if (ops.size() == 2) return absl::StrCat(ops[0], " or ", ops[1]);
  return absl::StrCat("one of ", absl::StrJoin(ops, ", "));
}

std::string PermString(absl::Span<const int64_t> p) {
  return absl::StrCat("[", absl::StrJoin(p, ","), "]");
}

}  // namespace

AttrPredicate AttrEq(AttrValue v) {
  return {[v](const AttrValue& a, const CheckContext&) -> std::optional<std::string> {
    if (AttrEquals(a, v)) return std::nullopt;
    return v.ToString();
  }};
}

AttrPredicate AttrIn(std::vector<AttrValue> values) {
  return {[values](const AttrValue& a,
                   const CheckContext&) -> std::optional<std::string> {
    for (const AttrValue& v : values) {
      if (AttrEquals(a, v)) return std::nullopt;
    }
    return absl::StrCat("one of ",
                        absl::StrJoin(values, ", ", [](std::string* s, const AttrValue& v) {
                          s->append(v.ToString());
                        }));
  }};
}

AttrPredicate AttrWhere(std::string description,
                        std::function<bool(const AttrValue&)> test) {
  return {[description = std::move(description), test = std::move(test)](
              const AttrValue& a, const CheckContext&) -> std::optional<std::string> {
    if (test(a)) return std::nullopt;
    return description;
  }};
}

AttrPredicate AttrAxesAreLastOnly() {
  return {[](const AttrValue& a, const CheckContext& c) -> std::optional<std::string> {
    const int rank = c.graph.type(c.node.input(0)).shape.rank();
    if (a.kind() == AttrKind::kIntList && a.ints().size() == 1 &&
        (a.ints()[0] == -1 || a.ints()[0] == rank - 1)) {
      return std::nullopt;
    }
    return absl::StrCat("[", rank - 1, "] (the last axis)");
  }};
}

AttrPredicate AttrIsLastAxis(int input) {
  return {[input](const AttrValue& a,
                  const CheckContext& c) -> std::optional<std::string> {
    if (input >= c.node.num_inputs()) {
      return absl::StrCat("the last axis of input ", input,
                          ", which the node does not have");
    }
    const int rank = c.graph.type(c.node.input(input)).shape.rank();
    if (a.kind() == AttrKind::kInt && (a.i() == -1 || a.i() == rank - 1)) {
      return std::nullopt;
    }
    return absl::StrCat("the last axis (", rank - 1, ")");
  }};
}

AttrPredicate AttrSwapsLastTwoAxes() {
  return {[](const AttrValue& a, const CheckContext& c) -> std::optional<std::string> {
    const int rank = c.node.num_inputs() > 0
                         ? c.graph.type(c.node.input(0)).shape.rank()
                         : 0;
    const std::vector<int64_t> want = SwapLastTwoAxes(rank);
    if (rank >= 2 && a.kind() == AttrKind::kIntList && a.ints() == want) {
      return std::nullopt;
    }
    if (rank < 2) {
      return absl::StrCat("a swap of the last two axes of an input of rank >= 2 (rank is ",
                          rank, ")");
    }
    return absl::StrCat("a swap of the last two axes (", PermString(want), ")");
  }};
}

AttrPredicate AttrIsIdentityPermutation() {
  return AttrWhere("the identity permutation", [](const AttrValue& a) {
    return a.kind() == AttrKind::kIntList && IsIdentityPermutation(a.ints());
  });
}

ScalarPredicate ScalarIs(double v) {
  return {FormatDouble(v), [v](double x) {
            return std::isnan(v) ? std::isnan(x) : x == v;
          }};
}

ScalarPredicate ScalarWhere(std::string description,
                            std::function<bool(double)> test) {
  return {std::move(description), std::move(test)};
}

// ---- LookThrough -------------------------------------------------------------------

LookThrough::LookThrough(std::vector<std::string> ops) {
  for (const std::string& op : ops) {
    if (op == "reshape") {
      layout_reshape_ = true;
    } else if (op == "transpose") {
      layout_transpose_ = true;
    } else if (op == "scale") {
      Add(op, [](const Graph&, const Node& n) { return n.GetFloat("factor") == 1.0; });
    } else if (op == "pow") {
      Add(op, [](const Graph&, const Node& n) { return n.GetFloat("exponent") == 1.0; });
    } else if (op == "cast") {
      Add(op, [](const Graph& g, const Node& n) {
        return g.type(n.input(0)).dtype == n.output_type(0).dtype;
      });
    } else if (op == "broadcast_to") {
      Add(op, [](const Graph& g, const Node& n) {
        return g.type(n.input(0)).shape == n.output_type(0).shape;
      });
    } else {
      SUBQUAD_CHECK(false) << "LookThrough: no built-in identity test for op '"
                           << op << "'; give one with LookThrough::Add";
    }
  }
}

LookThrough LookThrough::LayoutChains() { return LookThrough({"reshape", "transpose"}); }

LookThrough& LookThrough::Add(std::string op, IdentityTest is_identity) {
  identities_.emplace_back(std::move(op), std::move(is_identity));
  return *this;
}

std::vector<Value> LookThrough::Equivalents(const Graph& graph, Value v) const {
  constexpr int kMaxHops = 16;
  std::vector<Value> out;
  std::vector<LayoutStep> steps;  // outermost first
  const TensorType& want = graph.type(v);
  Value cur = v;
  for (int hop = 0; hop < kMaxHops; ++hop) {
    const Node* n = graph.node(cur.node);
    if (n == nullptr || cur.output != 0 || n->num_inputs() == 0) break;
    if (layout_reshape_ && n->op() == "reshape") {
      steps.push_back(LayoutStep::Reshape(n->output_type(0).shape));
    } else if (layout_transpose_ && n->op() == "transpose") {
      steps.push_back(LayoutStep::Transpose(n->GetInts("perm")));
    } else {
      bool passed = false;
      for (const auto& [op, test] : identities_) {
        if (op == n->op() && test(graph, *n)) {
          passed = true;
          break;
        }
      }
      if (!passed) break;
    }
    cur = n->input(0);
    if (graph.type(cur) != want) continue;
    std::vector<LayoutStep> forward(steps.rbegin(), steps.rend());
    if (forward.empty() || IsIdentityLayoutChain(want.shape, forward)) {
      out.push_back(cur);
    }
  }
  return out;
}

std::string LookThrough::ToString() const {
  std::vector<std::string> parts;
  if (layout_reshape_ && layout_transpose_) {
    parts.push_back("reshape/transpose chains");
  } else if (layout_reshape_) {
    parts.push_back("reshape chains");
  } else if (layout_transpose_) {
    parts.push_back("transpose chains");
  }
  for (const auto& [op, test] : identities_) parts.push_back(op);
  return absl::StrJoin(parts, ", ");
}

// ---- Pattern -----------------------------------------------------------------------

namespace {

Pattern Make(PatternNode node) {
  return Pattern(std::make_shared<const PatternNode>(std::move(node)));
}

}  // namespace

Pattern Pattern::With(const std::function<void(PatternNode&)>& edit) const {
  auto copy = std::make_shared<PatternNode>(*node_);
  edit(*copy);
  return Pattern(std::move(copy));
}

Pattern Pattern::Capture(std::string name) const {
  return With([&](PatternNode& n) { n.capture = std::move(name); });
}

Pattern Pattern::Attr(std::string name, AttrPredicate pred) const {
  return With([&](PatternNode& n) {
    n.checks.push_back([name, pred](const CheckContext& c) -> std::optional<std::string> {
      const AttrValue* v = c.node.FindAttr(name);
      if (v == nullptr && c.node.schema() != nullptr) {
        const AttrDef* def = c.node.schema()->FindAttr(name);
        if (def != nullptr && def->default_value.has_value()) v = &*def->default_value;
      }
      if (v == nullptr) return absl::StrCat("has no attribute ", name);
      std::optional<std::string> expected = pred.check(*v, c);
      if (!expected.has_value()) return std::nullopt;
      return absl::StrCat("attribute ", name, " is ", v->ToString(), ", expected ",
                          *expected);
    });
  });
}

Pattern Pattern::Rank(int rank) const {
  return With([&](PatternNode& n) {
    n.checks.push_back([rank](const CheckContext& c) -> std::optional<std::string> {
      const Shape& s = c.graph.type(c.value).shape;
      if (s.rank() == rank) return std::nullopt;
      return absl::StrCat("shape is ", s.ToString(), ", expected rank ", rank);
    });
  });
}

Pattern Pattern::MinRank(int rank) const {
  return With([&](PatternNode& n) {
    n.checks.push_back([rank](const CheckContext& c) -> std::optional<std::string> {
      const Shape& s = c.graph.type(c.value).shape;
      if (s.rank() >= rank) return std::nullopt;
      return absl::StrCat("shape is ", s.ToString(), ", expected rank at least ", rank);
    });
  });
}

Pattern Pattern::ShapeIs(Shape shape) const {
  return With([&](PatternNode& n) {
    n.checks.push_back([shape](const CheckContext& c) -> std::optional<std::string> {
      const Shape& s = c.graph.type(c.value).shape;
      if (s == shape) return std::nullopt;
      return absl::StrCat("shape is ", s.ToString(), ", expected ", shape.ToString());
    });
  });
}

Pattern Pattern::DTypeIn(DTypeSet dtypes) const {
  return With([&](PatternNode& n) {
    n.checks.push_back([dtypes](const CheckContext& c) -> std::optional<std::string> {
      const DType t = c.graph.type(c.value).dtype;
      if (dtypes.Contains(t)) return std::nullopt;
      return absl::StrCat("dtype is ", DTypeName(t), ", expected one of ",
                          dtypes.ToString());
    });
  });
}

Pattern Pattern::SameTypeAs(std::string name) const {
  return With([&](PatternNode& n) {
    n.post_checks.push_back([name](const CheckContext& c) -> std::optional<std::string> {
      if (!c.captures.has(name)) {
        return absl::StrCat("expected the type of capture '", name,
                            "', which is not bound");
      }
      const Value other = c.captures.value(name);
      const TensorType& mine = c.graph.type(c.value);
      const TensorType& theirs = c.graph.type(other);
      if (mine == theirs) return std::nullopt;
      return absl::StrCat("type is ", mine.ToString(), ", expected ", theirs.ToString(),
                          ", the type of capture '", name, "' (", other.ToString(), ")");
    });
  });
}

Pattern Pattern::SingleUse() const {
  return With([](PatternNode& n) { n.single_use = true; });
}

Pattern Pattern::Commutative() const {
  return With([](PatternNode& n) {
    SUBQUAD_CHECK(n.kind == PatternNode::Kind::kOp && n.operands.has_value() &&
                  n.operands->size() == 2)
        << "Commutative() needs an op pattern with two operands";
    n.commutative = true;
  });
}

Pattern Pattern::Output(int index) const {
  return With([&](PatternNode& n) { n.output = index; });
}

Pattern Pattern::RoleIs(Role role) const {
  return With([&](PatternNode& n) {
    n.checks.push_back([role](const CheckContext& c) -> std::optional<std::string> {
      if (c.node.role() == role) return std::nullopt;
      return absl::StrCat("role is ", RoleName(c.node.role()), ", expected ",
                          RoleName(role));
    });
  });
}

Pattern Pattern::OriginIs(std::string name) const {
  return With([&](PatternNode& n) {
    n.post_checks.push_back([name](const CheckContext& c) -> std::optional<std::string> {
      if (!c.captures.has(name)) {
        return absl::StrCat("expected the origin to be the node of capture '", name,
                            "', which is not bound");
      }
      const NodeId want = c.captures.value(name).node;
      if (c.node.origin() == want) return std::nullopt;
      return absl::StrCat(
          "origin is ", c.node.origin() == kNoNode ? "none" : absl::StrCat("%", c.node.origin()),
          ", expected %", want, ", the node of capture '", name, "'");
    });
  });
}

Pattern Pattern::AllOperands(Pattern each) const {
  return With([&](PatternNode& n) {
    SUBQUAD_CHECK(n.kind == PatternNode::Kind::kOp)
        << "AllOperands() needs an op pattern";
    n.operands.reset();
    n.each_operand = std::move(each);
  });
}

Pattern Pattern::Where(std::string description,
                       std::function<bool(const CheckContext&)> test) const {
  return With([&](PatternNode& n) {
    n.checks.push_back([description, test](const CheckContext& c) -> std::optional<std::string> {
      if (test(c)) return std::nullopt;
      return absl::StrCat("expected ", description);
    });
  });
}

Pattern Pattern::Check(CheckFn check) const {
  return With([&](PatternNode& n) { n.checks.push_back(std::move(check)); });
}

Pattern Pattern::WhereMatched(std::string description,
                              std::function<bool(const CheckContext&)> test) const {
  return With([&](PatternNode& n) {
    n.post_checks.push_back(
        [description, test](const CheckContext& c) -> std::optional<std::string> {
          if (test(c)) return std::nullopt;
          return absl::StrCat("expected ", description);
        });
  });
}

Pattern Pattern::CheckMatched(CheckFn check) const {
  return With([&](PatternNode& n) { n.post_checks.push_back(std::move(check)); });
}

Pattern Pattern::Through(LookThrough through) const {
  return With([&](PatternNode& n) { n.through = std::move(through); });
}

std::vector<std::string> Pattern::RootOps() const {
  switch (node_->kind) {
    case PatternNode::Kind::kOp:
      return node_->ops;
    case PatternNode::Kind::kConstScalar:
      return {"broadcast_to", "constant", "fill", "reshape"};
    case PatternNode::Kind::kAnyOf: {
      std::vector<std::string> out;
      for (const Pattern& alt : node_->alternatives) {
        std::vector<std::string> ops = alt.RootOps();
        if (ops.empty()) return {};
        for (std::string& op : ops) {
          if (std::find(out.begin(), out.end(), op) == out.end()) out.push_back(op);
        }
      }
      return out;
    }
    case PatternNode::Kind::kAny:
      break;
  }
  return {};
}

int Pattern::RootOutput() const {
  return node_->kind == PatternNode::Kind::kOp && node_->output > 0 ? node_->output : 0;
}

std::string Pattern::ToString() const {
  const PatternNode& n = *node_;
  std::string head = n.capture.empty() ? "" : absl::StrCat(n.capture, "=");
  switch (n.kind) {
    case PatternNode::Kind::kAny:
      return n.capture.empty() ? "_" : n.capture;
    case PatternNode::Kind::kConstScalar:
      return absl::StrCat(head, "const(", n.scalar ? n.scalar->description : "_", ")");
    case PatternNode::Kind::kAnyOf:
      return absl::StrCat(head, "anyof(",
                          absl::StrJoin(n.alternatives, ", ",
                                        [](std::string* s, const Pattern& p) {
                                          s->append(p.ToString());
                                        }),
                          ")");
    case PatternNode::Kind::kOp:
      break;
  }
  std::string op = n.ops.empty()     ? "*"
                   : n.ops.size() == 1 ? n.ops[0]
                                       : absl::StrCat("{", absl::StrJoin(n.ops, "|"), "}");
  std::string args;
  if (n.operands.has_value()) {
    args = absl::StrJoin(*n.operands, ", ", [](std::string* s, const Pattern& p) {
      s->append(p.ToString());
    });
  } else if (n.each_operand.has_value()) {
    args = absl::StrCat(n.each_operand->ToString(), "...");
  } else {
    args = "...";
  }
  return absl::StrCat(head, op, "(", args, ")");
}

Pattern Op(std::string op) { return OpIn({std::move(op)}); }
Pattern Op(std::string op, std::vector<Pattern> operands) {
  return OpIn({std::move(op)}, std::move(operands));
}
Pattern OpIn(std::vector<std::string> ops) {
  PatternNode n;
  n.kind = PatternNode::Kind::kOp;
  n.ops = std::move(ops);
  return Make(std::move(n));
}
Pattern OpIn(std::vector<std::string> ops, std::vector<Pattern> operands) {
  PatternNode n;
  n.kind = PatternNode::Kind::kOp;
  n.ops = std::move(ops);
  n.operands = std::move(operands);
  return Make(std::move(n));
}
Pattern AnyOp() { return OpIn({}); }
Pattern AnyOp(std::vector<Pattern> operands) { return OpIn({}, std::move(operands)); }
Pattern Any() { return Make(PatternNode{}); }
Pattern Any(std::string capture) { return Any().Capture(std::move(capture)); }
Pattern ConstScalar() {
  PatternNode n;
  n.kind = PatternNode::Kind::kConstScalar;
  return Make(std::move(n));
}
Pattern ConstScalar(ScalarPredicate pred) {
  PatternNode n;
  n.kind = PatternNode::Kind::kConstScalar;
  n.scalar = std::move(pred);
  return Make(std::move(n));
}
Pattern AnyOf(std::vector<Pattern> alternatives) {
  SUBQUAD_CHECK(!alternatives.empty()) << "AnyOf() needs at least one alternative";
  PatternNode n;
  n.kind = PatternNode::Kind::kAnyOf;
  n.alternatives = std::move(alternatives);
  return Make(std::move(n));
}

std::string DescribeValue(const Graph& graph, Value v) {
  const Node* n = graph.node(v.node);
  if (n == nullptr) return absl::StrCat("value ", v.ToString(), " (removed)");
  return absl::StrCat("node ", v.ToString(), " (", n->op(), ")");
}

// ---- Matcher -----------------------------------------------------------------------

// Continuation-passing backtracking: each Match* call matches one pattern
// node and then calls `k` to match the rest; it returns true only when the
// whole match succeeded, and undoes its captures otherwise.
class Matcher {
 public:
  Matcher(const Graph& graph, const Match* seed, const UseIndex* uses)
      : graph_(graph), uses_(uses) {
    state_.graph_ = &graph;
    if (seed != nullptr) state_.bindings_ = seed->bindings_;
  }

  MatchResult Run(const Pattern& pattern, Value value) {
    MatchResult r;
    state_.root_ = value;
    if (graph_.node(value.node) == nullptr) {
      r.reason = absl::StrCat("value ", value.ToString(), " names no live node");
      return r;
    }
    r.ok = MatchValue(pattern.node(), value, [] { return true; });
    if (r.ok) {
      std::vector<NodeId> unique;
      for (NodeId id : state_.nodes_) {
        if (std::find(unique.begin(), unique.end(), id) == unique.end()) unique.push_back(id);
      }
      state_.nodes_ = std::move(unique);
      r.match = std::move(state_);
    } else {
      r.reason = std::move(best_reason_);
      r.depth = best_depth_;
    }
    return r;
  }

 private:
  using Cont = absl::FunctionRef<bool()>;

  const UseIndex& uses() {
    if (uses_ == nullptr) {
      owned_uses_.emplace(graph_);
      uses_ = &*owned_uses_;
    }
    return *uses_;
  }

  // How far a failure got: the pattern nodes fully matched, and whether the
  // failing node was of the expected kind (right op, constraint broken)
  // rather than the wrong kind altogether.
  enum Stage { kWrongKind = 0, kConstraint = 1 };

  // Records a failure when it is the deepest so far (the first among
  // equals); `detail` is only formatted then.
  template <typename F>
  void Fail(Value v, Stage stage, F&& detail) {
    const int score = 2 * progress_ + stage;
    if (score <= best_score_) return;
    best_score_ = score;
    best_depth_ = progress_;
    best_reason_ = absl::StrCat(DescribeValue(graph_, v), ": ", detail());
  }

  bool RunChecks(const std::vector<CheckFn>& checks, Value v, const Node& n) {
    const CheckContext ctx{graph_, v, n, state_};
    for (const CheckFn& check : checks) {
      std::optional<std::string> why = check(ctx);
      if (why.has_value()) {
        Fail(v, kConstraint, [&] { return *std::move(why); });
        return false;
      }
    }
    return true;
  }

  bool MatchValue(const PatternNode& p, Value v, Cont k) {
    if (MatchAt(p, v, k)) return true;
    if (p.through.has_value()) {
      for (Value e : p.through->Equivalents(graph_, v)) {
        if (MatchAt(p, e, k)) return true;
      }
    }
    return false;
  }

  bool MatchAt(const PatternNode& p, Value v, Cont k) {
    const Node& n = *graph_.node(v.node);
    if (!p.capture.empty()) {
      if (const Match::Binding* b = state_.Find(p.capture); b != nullptr && b->value != v) {
        Fail(v, kWrongKind, [&] {
          return absl::StrCat("expected the value of capture '", p.capture, "' (",
                              b->value.ToString(), ")");
        });
        return false;
      }
    }
    switch (p.kind) {
      case PatternNode::Kind::kAny:
        if (!RunChecks(p.checks, v, n)) return false;
        return Descend(std::nullopt, [&] { return Finish(p, v, n, {}, k); });
      case PatternNode::Kind::kConstScalar:
        return MatchConstScalar(p, v, n, k);
      case PatternNode::Kind::kAnyOf: {
        if (!RunChecks(p.checks, v, n)) return false;
        for (const Pattern& alt : p.alternatives) {
          if (MatchValue(alt.node(), v, [&] { return Finish(p, v, n, {}, k); })) return true;
        }
        return false;
      }
      case PatternNode::Kind::kOp:
        return MatchOp(p, v, n, k);
    }
    return false;
  }

  // Counts `n` as matched (progress and the node list) around `body`.
  bool Descend(std::optional<NodeId> node, absl::FunctionRef<bool()> body) {
    ++progress_;
    if (node.has_value()) state_.nodes_.push_back(*node);
    const bool ok = body();
    if (!ok) {
      --progress_;
      if (node.has_value()) state_.nodes_.pop_back();
    }
    return ok;
  }

  bool MatchOp(const PatternNode& p, Value v, const Node& n, Cont k) {
    if (!p.ops.empty() && std::find(p.ops.begin(), p.ops.end(), n.op()) == p.ops.end()) {
      Fail(v, kWrongKind,
           [&] { return absl::StrCat("op is ", n.op(), ", expected ", JoinOps(p.ops)); });
      return false;
    }
    if (p.output >= 0 && v.output != p.output) {
      Fail(v, kConstraint, [&] {
        return absl::StrCat("is output ", v.output, " of the node, expected output ", p.output);
      });
      return false;
    }
    if (p.operands.has_value() && n.num_inputs() != static_cast<int>(p.operands->size())) {
      Fail(v, kConstraint, [&] {
        return absl::StrCat("has ", n.num_inputs(), " operand", n.num_inputs() == 1 ? "" : "s",
                            ", expected ", p.operands->size());
      });
      return false;
    }
    if (p.single_use) {
      const int count = uses().count(v);
      if (count != 1) {
        Fail(v, kConstraint, [&] {
          return count == 0 ? std::string("has no uses, expected a single use")
                            : absl::StrCat("has ", count, " uses (", uses().Describe(v),
                                           "), expected a single use");
        });
        return false;
      }
    }
    if (!RunChecks(p.checks, v, n)) return false;
    return Descend(n.id(), [&] {
      auto rest = [&] { return Finish(p, v, n, {}, k); };
      if (p.each_operand.has_value()) {
        return MatchEach(p.each_operand->node(), n, 0, rest);
      }
      if (!p.operands.has_value()) return rest();
      std::vector<int> order(p.operands->size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
      if (MatchOperands(*p.operands, n, order, 0, rest)) return true;
      if (!p.commutative) return false;
      std::swap(order[0], order[1]);
      return MatchOperands(*p.operands, n, order, 0, rest);
    });
  }

  bool MatchOperands(const std::vector<Pattern>& operands, const Node& n,
                     absl::Span<const int> order, size_t i, Cont k) {
    if (i == operands.size()) return k();
    return MatchValue(operands[i].node(), n.input(order[i]),
                      [&] { return MatchOperands(operands, n, order, i + 1, k); });
  }

  bool MatchEach(const PatternNode& each, const Node& n, int i, Cont k) {
    if (i == n.num_inputs()) return k();
    return MatchValue(each, n.input(i), [&] { return MatchEach(each, n, i + 1, k); });
  }

  bool MatchConstScalar(const PatternNode& p, Value v, const Node& n, Cont k) {
    // Through broadcasts and reshapes down to the fill or constant.
    Value cur = v;
    const Node* c = &n;
    while (c->op() == "broadcast_to" || c->op() == "reshape") {
      cur = c->input(0);
      c = graph_.node(cur.node);
    }
    double value = 0;
    if (c->op() == "fill") {
      value = c->GetFloat("value");
    } else if (c->op() == "constant") {
      const Tensor& t = c->GetTensor("value");
      if (t.num_elements() == 0) {
        Fail(cur, kConstraint,
             [&] { return std::string("holds no elements, expected a single value"); });
        return false;
      }
      bool splat = true;
      DispatchDType(t.dtype(), [&](auto zero) {
        using T = decltype(zero);
        absl::Span<const T> s = t.span<T>();
        value = static_cast<double>(s[0]);
        for (const T& x : s) {
          if (!(x == s[0] || (x != x && s[0] != s[0]))) {
            splat = false;
            break;
          }
        }
      });
      if (!splat) {
        Fail(cur, kConstraint, [&] {
          return absl::StrCat("tensor ", t.DebugString(8),
                              " holds several values, expected one value repeated");
        });
        return false;
      }
    } else {
      Fail(cur, kWrongKind, [&] {
        return absl::StrCat("op is ", c->op(),
                            ", expected a constant scalar (constant or fill, or a "
                            "broadcast_to or reshape of one)");
      });
      return false;
    }
    if (p.scalar.has_value() && !p.scalar->test(value)) {
      Fail(cur, kConstraint, [&] {
        return absl::StrCat("value is ", FormatDouble(value), ", expected ",
                            p.scalar->description);
      });
      return false;
    }
    if (!RunChecks(p.checks, v, n)) return false;
    return Descend(n.id(), [&] { return Finish(p, v, n, value, k); });
  }

  // Checks after the operands, then the capture, then the rest of the match.
  bool Finish(const PatternNode& p, Value v, const Node& n, std::optional<double> scalar,
              Cont k) {
    if (!RunChecks(p.post_checks, v, n)) return false;
    const bool bind = !p.capture.empty() && !state_.has(p.capture);
    if (bind) state_.bindings_.push_back({p.capture, v, scalar});
    if (k()) return true;
    if (bind) state_.bindings_.pop_back();
    return false;
  }

  const Graph& graph_;
  const UseIndex* uses_;
  std::optional<UseIndex> owned_uses_;
  Match state_;
  int progress_ = 0;
  int best_score_ = -1;
  int best_depth_ = 0;
  std::string best_reason_;
};

MatchResult MatchPattern(const Graph& graph, const Pattern& pattern, Value value,
                         const Match* seed, const UseIndex* uses) {
  return Matcher(graph, seed, uses).Run(pattern, value);
}

}  // namespace subquad::pattern
