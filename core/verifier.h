// Verify(): the invariants every graph must satisfy. Run in tests and by the
// pass manager after each pass that changed the graph.
//
// Checks: every node's op is registered; every input names a live node's
// existing output; the graph is acyclic; attributes match the schema (known
// names, right kinds, required ones present); output types equal what the
// op's shape rule infers from the input types; names are unique and
// non-empty; origins name nodes the graph has had (a rewrite may have
// removed them since); graph outputs name live values.
// The first violation is returned as FailedPrecondition naming the node,
// its op and the field.
#ifndef SUBQUAD_CORE_VERIFIER_H_
#define SUBQUAD_CORE_VERIFIER_H_

#include "absl/status/status.h"
#include "core/graph.h"

namespace subquad {

absl::Status Verify(const Graph& graph);

}  // namespace subquad

#endif  // SUBQUAD_CORE_VERIFIER_H_
