// Graph ↔ GraphProto (serialize/graph.proto), with the validation that makes
// loading a file from someone else safe.
//
// GraphToProto writes nodes in topological order with their ids, names,
// attributes (constants as raw little-endian bytes), output types, roles,
// origins and scopes, then the graph outputs; GraphFromProto of that proto
// rebuilds an identical graph (the same live ids, holes included).
//
// GraphFromProto trusts nothing. Before it builds anything it checks the
// versions; every id, name, op, role, dtype and shape (dims bounded by
// kMaxDim, element counts that cannot overflow, tensor bytes equal to dtype
// size × elements); references (to nodes that exist, listed earlier, with
// that output); cycles; attributes against the op's schema; output types
// against the op's shape rule; origins; graph outputs. The first problem is
// returned as InvalidArgument naming the node, the field and the values:
//
//   node 'h' (matmul) %7: output 0 type: recorded f32[2,3], op rule infers
//   f32[2,4]
//
// Then it runs Verify() on the built graph. Allocation is bounded by the
// size of the proto and LoadLimits::max_node_id (and, for files, by
// LoadLimits::max_bytes and max_fields before the proto is parsed).
#ifndef SUBQUAD_SERIALIZE_GRAPH_PROTO_H_
#define SUBQUAD_SERIALIZE_GRAPH_PROTO_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "core/graph.h"
#include "serialize/graph.pb.h"

namespace subquad {

// The format version this code writes (producer_version) and reads: a file
// whose min_consumer_version is larger is refused.
inline constexpr int32_t kGraphFormatVersion = 1;
// The min_consumer_version this code writes.
inline constexpr int32_t kGraphMinConsumerVersion = 1;

struct LoadLimits {
  // Files larger than this are refused before they are read (1 GiB).
  int64_t max_bytes = int64_t{1} << 30;
  // Node ids above this are refused: a graph's node table has one slot per
  // id up to the largest, holes included.
  NodeId max_node_id = (NodeId{1} << 22) - 1;
  // Files with more protobuf fields than this are refused before they are
  // parsed: the parser allocates tens of bytes per field, whatever the
  // file's size (see serialize/field_budget.h).
  int64_t max_fields = int64_t{1} << 24;
};

// FailedPrecondition when the graph does not pass Verify() (a file that
// would not load is never written).
absl::StatusOr<proto::GraphProto> GraphToProto(const Graph& graph);

absl::StatusOr<Graph> GraphFromProto(const proto::GraphProto& proto,
                                     const LoadLimits& limits = {});

}  // namespace subquad

#endif  // SUBQUAD_SERIALIZE_GRAPH_PROTO_H_
