// The compact text form of a graph, one line per node, HLO-like:
//
//   %0 i32[4,256] = input() "tokens"
//   %7 f32[4,256,128] = matmul(%3, %6) {transpose_b=true} @block0/attn
//   %9 (f32[4,256], f32[4], f32[4]) = layer_norm(%8, %1, %2) @block0/ln1
//   %31 f32[16,16] = matmul(%30, %3) !backward <%7 @block0/attn
//
// Source nodes show their name in quotes; non-forward nodes show their role
// after '!' and their origin after '<'; the scope follows '@'.
#ifndef SUBQUAD_CORE_PRINTER_H_
#define SUBQUAD_CORE_PRINTER_H_

#include <string>

#include "core/graph.h"

namespace subquad {

std::string PrintNode(const Graph& graph, const Node& node);
// Nodes in topological order (id order when the graph has a cycle), then one
// line per graph output: "output loss = %41".
std::string PrintGraph(const Graph& graph);

}  // namespace subquad

#endif  // SUBQUAD_CORE_PRINTER_H_
