// Graphs and comparisons shared by the serialize tests.
#ifndef SUBQUAD_TESTS_SERIALIZE_GRAPH_TEST_UTIL_H_
#define SUBQUAD_TESTS_SERIALIZE_GRAPH_TEST_UTIL_H_

#include <bit>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/graph.h"
#include "ops/nn/layers.h"
#include "passes/autodiff.h"
#include "passes/optimizer.h"

namespace subquad::testing {

inline nn::TransformerLMConfig TinyLMConfig() {
  nn::TransformerLMConfig c;
  c.vocab = 32;
  c.d_model = 16;
  c.heads = 2;
  c.layers = 2;
  c.batch = 2;
  c.seq_len = 8;
  return c;
}

// Stage 0: forward only; 1: after Autodiff; 2: after AddOptimizer too.
inline absl::StatusOr<Graph> TinyLM(int stage) {
  Graph g;
  GraphBuilder b(&g);
  nn::BuildTransformerLM(b, TinyLMConfig());
  if (!b.ok()) return b.status();
  if (stage >= 1) {
    auto ad = Autodiff(g, {.loss = "loss", .wrt = {}});
    if (!ad.ok()) return ad.status();
  }
  if (stage >= 2) {
    auto opt = AddOptimizer(g, {.kind = "adamw", .lr = 1e-3});
    if (!opt.ok()) return opt.status();
  }
  return g;
}

// Bitwise equality of attributes (floats by bits, so NaN == NaN).
inline bool AttrBitsEqual(const AttrValue& a, const AttrValue& b) {
  if (a.kind() != b.kind()) return false;
  if (a.kind() == AttrKind::kFloat) {
    return std::bit_cast<uint64_t>(a.f()) == std::bit_cast<uint64_t>(b.f());
  }
  if (a.kind() == AttrKind::kFloatList) {
    if (a.floats().size() != b.floats().size()) return false;
    for (size_t i = 0; i < a.floats().size(); ++i) {
      if (std::bit_cast<uint64_t>(a.floats()[i]) !=
          std::bit_cast<uint64_t>(b.floats()[i])) {
        return false;
      }
    }
    return true;
  }
  return a == b;
}

// The first difference between two graphs (ids, names, ops, inputs,
// attributes bit for bit, output types, roles, origins, scopes, outputs), or
// "" when they are identical.
inline std::string FirstDifference(const Graph& a, const Graph& b) {
  if (a.num_nodes() != b.num_nodes()) {
    return absl::StrCat("node counts ", a.num_nodes(), " vs ", b.num_nodes());
  }
  for (const Node* n : a.nodes()) {
    const Node* m = b.node(n->id());
    const std::string at = absl::StrCat("%", n->id(), " '", n->name(), "': ");
    if (m == nullptr) return absl::StrCat(at, "missing");
    if (n->name() != m->name()) return absl::StrCat(at, "name ", m->name());
    if (n->op() != m->op()) return absl::StrCat(at, "op ", m->op());
    if (n->num_inputs() != m->num_inputs()) return absl::StrCat(at, "inputs");
    for (int i = 0; i < n->num_inputs(); ++i) {
      if (n->input(i) != m->input(i)) return absl::StrCat(at, "input ", i);
    }
    if (n->attrs().size() != m->attrs().size()) return absl::StrCat(at, "attrs");
    for (const auto& [k, v] : n->attrs()) {
      const AttrValue* w = m->FindAttr(k);
      if (w == nullptr || !AttrBitsEqual(v, *w)) {
        return absl::StrCat(at, "attr ", k);
      }
    }
    if (n->num_outputs() != m->num_outputs()) return absl::StrCat(at, "outputs");
    for (int i = 0; i < n->num_outputs(); ++i) {
      if (n->output_type(i) != m->output_type(i)) {
        return absl::StrCat(at, "output type ", i);
      }
    }
    if (n->role() != m->role()) return absl::StrCat(at, "role");
    if (n->origin() != m->origin()) return absl::StrCat(at, "origin");
    if (n->scope() != m->scope()) return absl::StrCat(at, "scope");
  }
  if (a.outputs() != b.outputs()) return "graph outputs";
  return "";
}

}  // namespace subquad::testing

#endif  // SUBQUAD_TESTS_SERIALIZE_GRAPH_TEST_UTIL_H_
