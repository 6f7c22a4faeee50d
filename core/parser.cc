#include "core/parser.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/op_schema.h"
#include "core/status.h"

namespace subquad {
namespace {

// A cursor over one line.
class Cursor {
 public:
  Cursor(absl::string_view line, int line_no) : s_(line), line_no_(line_no) {}

  void SkipSpace() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool AtEnd() {
    SkipSpace();
    return i_ >= s_.size();
  }
  char Peek() {
    SkipSpace();
    return i_ < s_.size() ? s_[i_] : '\0';
  }
  bool Consume(absl::string_view tok) {
    SkipSpace();
    if (s_.substr(i_, tok.size()) == tok) {
      i_ += tok.size();
      return true;
    }
    return false;
  }
  absl::Status Expect(absl::string_view tok) {
    if (Consume(tok)) return absl::OkStatus();
    return Error(absl::StrCat("expected '", tok, "'"));
  }
  // Letters, digits and _ . / - : (names, ops, dtypes, scopes).
  std::string Word() {
    SkipSpace();
    const size_t start = i_;
    while (i_ < s_.size() &&
           (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_' ||
            s_[i_] == '.' || s_[i_] == '/' || s_[i_] == '-' || s_[i_] == '+')) {
      ++i_;
    }
    return std::string(s_.substr(start, i_ - start));
  }
  absl::StatusOr<std::string> Quoted() {
    SkipSpace();
    if (i_ >= s_.size() || s_[i_] != '"') return Error("expected a quoted string");
    const size_t start = ++i_;
    while (i_ < s_.size() && s_[i_] != '"') ++i_;
    if (i_ >= s_.size()) return Error("unterminated string");
    return std::string(s_.substr(start, i_++ - start));
  }
  absl::StatusOr<int64_t> Int() {
    std::string w = Word();
    int64_t v;
    if (!absl::SimpleAtoi(w, &v)) return Error(absl::StrCat("expected an integer, found '", w, "'"));
    return v;
  }
  absl::StatusOr<double> Number() {
    std::string w = Word();
    if (w == "inf" || w == "+inf") return std::numeric_limits<double>::infinity();
    if (w == "-inf") return -std::numeric_limits<double>::infinity();
    if (w == "nan") return std::numeric_limits<double>::quiet_NaN();
    char* end = nullptr;
    const double v = std::strtod(w.c_str(), &end);
    if (w.empty() || end != w.c_str() + w.size()) {
      return Error(absl::StrCat("expected a number, found '", w, "'"));
    }
    return v;
  }
  // "%12" or "%12:1".
  absl::StatusOr<std::pair<int64_t, int>> ValueRef() {
    RETURN_IF_ERROR(Expect("%"));
    ASSIGN_OR_RETURN(int64_t id, Int());
    int out = 0;
    if (Consume(":")) {
      ASSIGN_OR_RETURN(int64_t o, Int());
      out = static_cast<int>(o);
    }
    return std::make_pair(id, out);
  }
  absl::Status Error(absl::string_view msg) const {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", line_no_, ", column ", i_ + 1, ": ", msg));
  }

 private:
  absl::string_view s_;
  int line_no_;
  size_t i_ = 0;
};

absl::StatusOr<std::vector<int64_t>> IntList(Cursor& c) {
  RETURN_IF_ERROR(c.Expect("["));
  std::vector<int64_t> v;
  if (c.Consume("]")) return v;
  do {
    ASSIGN_OR_RETURN(int64_t x, c.Int());
    v.push_back(x);
  } while (c.Consume(","));
  RETURN_IF_ERROR(c.Expect("]"));
  return v;
}

absl::StatusOr<TensorType> ParseType(Cursor& c) {
  const std::string dt = c.Word();
  auto dtype = ParseDType(dt);
  if (!dtype) return c.Error(absl::StrCat("unknown dtype '", dt, "'"));
  ASSIGN_OR_RETURN(std::vector<int64_t> dims, IntList(c));
  Shape shape(dims);
  if (absl::Status s = ValidateShape(shape); !s.ok()) return c.Error(s.message());
  return TensorType{*dtype, shape};
}

absl::StatusOr<Tensor> ParseTensor(Cursor& c) {
  RETURN_IF_ERROR(c.Expect("tensor<"));
  ASSIGN_OR_RETURN(TensorType type, ParseType(c));
  if (!c.Consume("{")) {
    return c.Error(absl::StrCat("the values of ", type.ToString(),
                                " are not in the text (tensors over ",
                                kMaxPrintedTensorElements, " elements print their type only)"));
  }
  Tensor t(type);
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    if (i > 0) RETURN_IF_ERROR(c.Expect(","));
    ASSIGN_OR_RETURN(double v, c.Number());
    DispatchDType(type.dtype, [&](auto zero) {
      using T = decltype(zero);
      t.data<T>()[i] = static_cast<T>(v);
    });
  }
  RETURN_IF_ERROR(c.Expect("}"));
  RETURN_IF_ERROR(c.Expect(">"));
  return t;
}

absl::StatusOr<AttrValue> ParseAttr(Cursor& c, AttrKind kind) {
  switch (kind) {
    case AttrKind::kInt: {
      ASSIGN_OR_RETURN(int64_t v, c.Int());
      return AttrValue(v);
    }
    case AttrKind::kFloat: {
      ASSIGN_OR_RETURN(double v, c.Number());
      return AttrValue(v);
    }
    case AttrKind::kString: {
      ASSIGN_OR_RETURN(std::string v, c.Quoted());
      return AttrValue(v);
    }
    case AttrKind::kBool: {
      const std::string w = c.Word();
      if (w == "true") return AttrValue(true);
      if (w == "false") return AttrValue(false);
      return c.Error(absl::StrCat("expected true or false, found '", w, "'"));
    }
    case AttrKind::kIntList: {
      ASSIGN_OR_RETURN(std::vector<int64_t> v, IntList(c));
      return AttrValue(std::move(v));
    }
    case AttrKind::kFloatList: {
      RETURN_IF_ERROR(c.Expect("["));
      std::vector<double> v;
      if (!c.Consume("]")) {
        do {
          ASSIGN_OR_RETURN(double x, c.Number());
          v.push_back(x);
        } while (c.Consume(","));
        RETURN_IF_ERROR(c.Expect("]"));
      }
      return AttrValue(std::move(v));
    }
    case AttrKind::kShape: {
      ASSIGN_OR_RETURN(std::vector<int64_t> v, IntList(c));
      return AttrValue(Shape(v));
    }
    case AttrKind::kDType: {
      const std::string w = c.Word();
      auto t = ParseDType(w);
      if (!t) return c.Error(absl::StrCat("unknown dtype '", w, "'"));
      return AttrValue(*t);
    }
    case AttrKind::kTensor: {
      ASSIGN_OR_RETURN(Tensor t, ParseTensor(c));
      return AttrValue(std::move(t));
    }
  }
  return c.Error("unsupported attribute kind");
}

struct ParsedNode {
  int64_t id;
  std::vector<TensorType> types;
  std::string op;
  std::vector<std::pair<int64_t, int>> inputs;
  AttrMap attrs;
  std::string name;
  Role role = Role::kForward;
  int64_t origin = -1;
  std::string scope;
  int line;
};

absl::StatusOr<ParsedNode> ParseNodeLine(Cursor& c, int line_no) {
  ParsedNode n;
  n.line = line_no;
  RETURN_IF_ERROR(c.Expect("%"));
  ASSIGN_OR_RETURN(n.id, c.Int());
  if (c.Consume("(")) {
    do {
      ASSIGN_OR_RETURN(TensorType t, ParseType(c));
      n.types.push_back(t);
    } while (c.Consume(","));
    RETURN_IF_ERROR(c.Expect(")"));
  } else {
    ASSIGN_OR_RETURN(TensorType t, ParseType(c));
    n.types.push_back(t);
  }
  RETURN_IF_ERROR(c.Expect("="));
  n.op = c.Word();
  const OpSchema* schema = OpRegistry::Global().Find(n.op);
  if (schema == nullptr) return c.Error(absl::StrCat("unknown op '", n.op, "'"));
  RETURN_IF_ERROR(c.Expect("("));
  if (!c.Consume(")")) {
    do {
      ASSIGN_OR_RETURN(auto ref, c.ValueRef());
      n.inputs.push_back(ref);
    } while (c.Consume(","));
    RETURN_IF_ERROR(c.Expect(")"));
  }
  if (c.Consume("{")) {
    do {
      const std::string key = c.Word();
      const AttrDef* def = schema->FindAttr(key);
      if (def == nullptr) {
        return c.Error(absl::StrCat("op '", n.op, "' has no attribute '", key, "'"));
      }
      RETURN_IF_ERROR(c.Expect("="));
      ASSIGN_OR_RETURN(AttrValue v, ParseAttr(c, def->kind));
      n.attrs[key] = std::move(v);
    } while (c.Consume(","));
    RETURN_IF_ERROR(c.Expect("}"));
  }
  if (c.Peek() == '"') {
    ASSIGN_OR_RETURN(n.name, c.Quoted());
  }
  if (c.Consume("!")) {
    const std::string role = c.Word();
    if (role == "forward") {
      n.role = Role::kForward;
    } else if (role == "backward") {
      n.role = Role::kBackward;
    } else if (role == "optimizer") {
      n.role = Role::kOptimizer;
    } else {
      return c.Error(absl::StrCat("unknown role '", role, "'"));
    }
  }
  if (c.Consume("<")) {
    RETURN_IF_ERROR(c.Expect("%"));
    ASSIGN_OR_RETURN(n.origin, c.Int());
  }
  if (c.Consume("@")) n.scope = c.Word();
  if (!c.AtEnd()) return c.Error("unexpected text at the end of the line");
  if ((n.op == "input" || n.op == "parameter") && n.types.size() == 1) {
    n.attrs["dtype"] = n.types[0].dtype;
    n.attrs["shape"] = n.types[0].shape;
  }
  return n;
}

}  // namespace

absl::StatusOr<Graph> ParseGraph(absl::string_view text) {
  std::vector<ParsedNode> nodes;
  std::vector<std::pair<std::string, std::pair<int64_t, int>>> outputs;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    absl::string_view t = absl::StripAsciiWhitespace(line);
    if (t.empty() || absl::StartsWith(t, "//")) continue;
    Cursor c(t, line_no);
    if (c.Consume("output ")) {
      const std::string name = c.Word();
      RETURN_IF_ERROR(c.Expect("="));
      ASSIGN_OR_RETURN(auto ref, c.ValueRef());
      if (!c.AtEnd()) return c.Error("unexpected text at the end of the line");
      outputs.emplace_back(name, ref);
      continue;
    }
    ASSIGN_OR_RETURN(ParsedNode n, ParseNodeLine(c, line_no));
    nodes.push_back(std::move(n));
  }
  bool ascending = true;
  for (size_t i = 1; i < nodes.size(); ++i) ascending &= nodes[i].id > nodes[i - 1].id;
  if (!nodes.empty()) ascending &= nodes[0].id >= 0;
  absl::flat_hash_map<int64_t, NodeId> ids;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!ids.emplace(nodes[i].id, ascending ? static_cast<NodeId>(nodes[i].id)
                                            : static_cast<NodeId>(i)).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", nodes[i].line, ": %", nodes[i].id, " is defined twice"));
    }
  }
  auto resolve = [&](const ParsedNode& n, int64_t id) -> absl::StatusOr<NodeId> {
    auto it = ids.find(id);
    if (it == ids.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", n.line, ": %", id, " is not defined"));
    }
    return it->second;
  };
  Graph g;
  for (const ParsedNode& n : nodes) {
    NodeSpec spec;
    spec.op = n.op;
    spec.attrs = n.attrs;
    spec.output_types = n.types;
    spec.role = n.role;
    spec.scope = n.scope;
    for (const auto& [id, out] : n.inputs) {
      ASSIGN_OR_RETURN(NodeId nid, resolve(n, id));
      spec.inputs.push_back(Value{nid, out});
    }
    if (n.origin >= 0) {
      ASSIGN_OR_RETURN(spec.origin, resolve(n, n.origin));
    }
    if (!n.name.empty()) {
      if (g.FindNode(n.name) != nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", n.line, ": name \"", n.name, "\" is taken"));
      }
      spec.name = n.name;
    } else {
      spec.name = g.UniqueName(n.scope.empty() ? n.op : absl::StrCat(n.scope, "/", n.op));
    }
    if (ascending) {
      g.AddNodeWithId(static_cast<NodeId>(n.id), std::move(spec));
    } else {
      g.AddNode(std::move(spec));
    }
  }
  // Type-check every node now that all of them exist (inputs may be defined
  // later in the text than their users only when ids were renumbered).
  for (const ParsedNode& n : nodes) {
    const Node& node = *g.node(ids.at(n.id));
    std::vector<TensorType> in_types;
    for (const Value& v : node.inputs()) {
      const Node* p = g.node(v.node);
      if (v.output < 0 || v.output >= p->num_outputs()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "line ", n.line, ": ", v.ToString(), " names a missing output of ", NodeLabel(*p)));
      }
      in_types.push_back(p->output_type(v.output));
    }
    auto inferred = node.schema()->InferTypes(in_types, node.attrs());
    if (!inferred.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", n.line, ": ", n.op, ": ", inferred.status().message()));
    }
    if (*inferred != n.types) {
      std::string want;
      for (const TensorType& t : *inferred) absl::StrAppend(&want, want.empty() ? "" : ", ", t.ToString());
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", n.line, ": ", n.op, " produces ", want, ", the text says otherwise"));
    }
  }
  for (const auto& [name, ref] : outputs) {
    auto it = ids.find(ref.first);
    if (it == ids.end()) {
      return absl::InvalidArgumentError(absl::StrCat("output ", name, ": %", ref.first, " is not defined"));
    }
    g.SetOutput(name, Value{it->second, ref.second});
  }
  RETURN_IF_ERROR(g.TopologicalOrder().status());
  return g;
}

}  // namespace subquad
