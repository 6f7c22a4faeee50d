// Plan: how one run of a graph executes and where every value lives.
//
// Given the values to fetch, the plan keeps only the nodes they need, orders
// them topologically, computes each value's lifetime (its producer's
// position to its last reader's; fetched values live to the end), and
// assigns arena offsets so that values whose lifetimes do not overlap share
// memory (greedy by size, best-fit gap, 64-byte aligned). Elementwise ops
// write into a dying input's buffer (the op's `inplace_input`) and reshape
// reuses its input's bytes (`alias_input`). Inputs, parameters and
// constants live outside the arena (feeds, ParameterStore, attributes).
#ifndef SUBQUAD_RUNTIME_PLAN_H_
#define SUBQUAD_RUNTIME_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "core/graph.h"

namespace subquad {

// Where a value's bytes are.
enum class Storage : uint8_t {
  kArena,      // [offset, offset + size) of the executor's arena
  kFeed,       // the feed for an input node
  kParameter,  // the ParameterStore tensor of a parameter node
  kConstant,   // the constant node's tensor attribute
};

struct ValueLocation {
  Storage storage = Storage::kArena;
  int buffer = -1;         // kArena: index into Plan::buffers()
  NodeId source = kNoNode; // other storages: the input/parameter/constant node
};

struct PlannedBuffer {
  int64_t offset = 0;
  int64_t size = 0;       // bytes, rounded up to 64
  int first_use = 0;      // schedule position of the producer
  int last_use = 0;       // schedule position of the last reader (inclusive)
  std::vector<Value> values;  // values stored here (aliases and in-place)
};

struct PlanOptions {
  bool allow_inplace = true;
  bool allow_alias = true;
  // Give every buffer its own memory (for tests that compare against a
  // planned run).
  bool share_memory = true;
};

class Plan {
 public:
  // InvalidArgument when a fetch is not a value of the graph;
  // FailedPrecondition for a cyclic graph or a node without kernel.
  static absl::StatusOr<Plan> Create(const Graph& graph,
                                     std::vector<Value> fetches,
                                     PlanOptions options = {});

  const std::vector<NodeId>& schedule() const { return schedule_; }
  const std::vector<Value>& fetches() const { return fetches_; }
  const std::vector<PlannedBuffer>& buffers() const { return buffers_; }
  const ValueLocation& location(Value v) const { return locations_.at(v); }
  bool has_location(Value v) const { return locations_.contains(v); }

  // Arena bytes needed: the planned peak of intermediate memory.
  int64_t peak_bytes() const { return peak_bytes_; }
  // Bytes if every buffer had its own memory (what planning saves against).
  int64_t unshared_bytes() const { return unshared_bytes_; }
  // One line per buffer: offset, size, lifetime and values.
  std::string DebugString(const Graph& graph) const;

 private:
  std::vector<NodeId> schedule_;
  std::vector<Value> fetches_;
  std::vector<PlannedBuffer> buffers_;
  absl::flat_hash_map<Value, ValueLocation> locations_;
  int64_t peak_bytes_ = 0;
  int64_t unshared_bytes_ = 0;
};

}  // namespace subquad

#endif  // SUBQUAD_RUNTIME_PLAN_H_
