// ParseGraph: reads the text form that core/printer.h writes, so graphs can
// be written by hand in tests and tools (as HLO and MLIR text are):
//
//   %0 f32[4,8] = input() "x"
//   %1 f32[8,8] = parameter() {init="normal", stddev=0.02} "w"
//   %2 f32[4,8] = matmul(%0, %1) @layer
//   %3 f32[4,8] = scale(%2) {factor=0.5} !backward <%2 @layer
//   output y = %3
//
// Blank lines and lines starting with "//" are skipped. Attribute values are
// read by the kinds the op's schema declares; input and parameter nodes take
// dtype and shape from their type. Nodes that are not sources get the name
// the builder would give them ("<scope>/<op>", made unique). Ids are kept
// when they increase down the text, else renumbered in text order.
// Every node is type-checked against its op's shape rule; errors give the
// line number.
#ifndef SUBQUAD_CORE_PARSER_H_
#define SUBQUAD_CORE_PARSER_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/graph.h"

namespace subquad {

absl::StatusOr<Graph> ParseGraph(absl::string_view text);

}  // namespace subquad

#endif  // SUBQUAD_CORE_PARSER_H_
