#include "runtime/plan.h"

#include <algorithm>
#include <queue>

#include "absl/strings/str_cat.h"
#include "core/op_schema.h"
#include "core/status.h"

namespace subquad {
namespace {

int64_t RoundUp64(int64_t bytes) { return std::max<int64_t>(64, (bytes + 63) / 64 * 64); }

}  // namespace

absl::StatusOr<Plan> Plan::Create(const Graph& graph, std::vector<Value> fetches,
                                  PlanOptions options) {
  Plan plan;
  for (const Value& v : fetches) {
    const Node* n = graph.node(v.node);
    if (n == nullptr || v.output < 0 || v.output >= n->num_outputs()) {
      return absl::InvalidArgumentError(
          absl::StrCat("fetch ", v.ToString(), " is not a value of the graph"));
    }
  }
  plan.fetches_ = fetches;

  // Nodes the fetches need.
  std::vector<char> needed(graph.id_bound(), 0);
  std::vector<NodeId> stack;
  for (const Value& v : fetches) stack.push_back(v.node);
  while (!stack.empty()) {
    const NodeId id = stack.back();
    stack.pop_back();
    if (needed[id]) continue;
    needed[id] = 1;
    for (const Value& in : graph.node(id)->inputs()) {
      if (graph.node(in.node) == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat(
            NodeLabel(*graph.node(id)), " uses undefined value ", in.ToString()));
      }
      if (!needed[in.node]) stack.push_back(in.node);
    }
  }
  // The node whose storage a value occupies: through reshape-like aliases
  // back to the producer.
  auto storage_root = [&](Value v) {
    while (true) {
      const Node& n = *graph.node(v.node);
      const int a = n.schema() != nullptr ? n.schema()->alias_input : -1;
      if (a < 0 || v.output != 0 || a >= n.num_inputs()) return v.node;
      v = n.input(a);
    }
  };
  // Data edges, plus control edges that run a node updating a parameter in
  // place after every other reader of that parameter's storage.
  const NodeId bound = graph.id_bound();
  std::vector<std::vector<NodeId>> succ(bound);
  std::vector<int> pending(bound, 0);
  auto add_edge = [&](NodeId from, NodeId to) {
    succ[from].push_back(to);
    ++pending[to];
  };
  absl::flat_hash_map<NodeId, std::vector<NodeId>> readers;  // root -> nodes
  for (NodeId id = 0; id < bound; ++id) {
    if (!needed[id]) continue;
    const Node& n = *graph.node(id);
    if (n.schema() == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(NodeLabel(n), ": no op with this name is registered"));
    }
    absl::flat_hash_map<NodeId, bool> seen;
    for (const Value& in : n.inputs()) {
      if (seen.emplace(in.node, true).second) add_edge(in.node, id);
      readers[storage_root(in)].push_back(id);
    }
  }
  for (NodeId id = 0; id < bound; ++id) {
    if (!needed[id]) continue;
    const Node& n = *graph.node(id);
    for (int i : n.schema()->mutates_inputs) {
      const NodeId root = storage_root(n.input(i));
      if (graph.node(root)->op() != "parameter") {
        return absl::FailedPreconditionError(absl::StrCat(
            NodeLabel(n), " updates input ", i, " in place, but it is ",
            NodeLabel(*graph.node(root)), ", not a parameter"));
      }
      for (NodeId r : readers[root]) {
        if (r != id) add_edge(r, id);
      }
    }
  }
  // Kahn's algorithm, smallest id first among ready nodes.
  std::priority_queue<NodeId, std::vector<NodeId>, std::greater<>> ready;
  int needed_count = 0;
  for (NodeId id = 0; id < bound; ++id) {
    if (!needed[id]) continue;
    ++needed_count;
    if (pending[id] == 0) ready.push(id);
  }
  std::vector<int> pos(bound, -1);
  while (!ready.empty()) {
    const NodeId id = ready.top();
    ready.pop();
    const Node& n = *graph.node(id);
    if (!n.schema()->is_source &&
        n.schema()->FindKernel(n.output_type(0).dtype) == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          NodeLabel(n), ": no kernel for ", DTypeName(n.output_type(0).dtype)));
    }
    pos[id] = static_cast<int>(plan.schedule_.size());
    plan.schedule_.push_back(id);
    for (NodeId s : succ[id]) {
      if (--pending[s] == 0) ready.push(s);
    }
  }
  if (static_cast<int>(plan.schedule_.size()) != needed_count) {
    for (NodeId id = 0; id < bound; ++id) {
      if (needed[id] && pos[id] < 0 && pending[id] > 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cannot schedule ", NodeLabel(*graph.node(id)),
            ": it is on a cycle (a node that updates a parameter in place "
            "must not feed a reader of that parameter)"));
      }
    }
  }
  const int end = static_cast<int>(plan.schedule_.size());

  // Last reader of every value.
  absl::flat_hash_map<Value, int> last_use;
  for (NodeId id : plan.schedule_) {
    const Node& n = *graph.node(id);
    for (int o = 0; o < n.num_outputs(); ++o) last_use[n.output(o)] = pos[id];
    for (const Value& in : n.inputs()) {
      last_use[in] = std::max(last_use[in], pos[id]);
    }
  }
  for (const Value& v : fetches) last_use[v] = end;

  for (NodeId id : plan.schedule_) {
    const Node& n = *graph.node(id);
    const OpSchema& schema = *n.schema();
    const int p = pos[id];
    if (schema.is_source) {
      const Storage s = n.op() == "input"       ? Storage::kFeed
                        : n.op() == "parameter" ? Storage::kParameter
                                                : Storage::kConstant;
      for (int o = 0; o < n.num_outputs(); ++o) {
        plan.locations_[n.output(o)] = ValueLocation{s, -1, id};
      }
      continue;
    }
    for (int o = 0; o < n.num_outputs(); ++o) {
      const Value out = n.output(o);
      const int64_t bytes = n.output_type(o).byte_size();
      // Reshape-like ops reinterpret their input's bytes.
      if (o == 0 && options.allow_alias && schema.alias_input >= 0) {
        const Value src = n.input(schema.alias_input);
        if (graph.type(src).byte_size() == bytes) {
          ValueLocation loc = plan.locations_.at(src);
          plan.locations_[out] = loc;
          if (loc.storage == Storage::kArena) {
            PlannedBuffer& b = plan.buffers_[loc.buffer];
            b.values.push_back(out);
            b.last_use = std::max(b.last_use, last_use[out]);
          }
          continue;
        }
      }
      // Elementwise ops overwrite an input that nothing reads afterwards.
      if (o == 0 && options.allow_inplace && schema.inplace_input >= 0 &&
          schema.inplace_input < n.num_inputs()) {
        const Value src = n.input(schema.inplace_input);
        const ValueLocation& loc = plan.locations_.at(src);
        if (loc.storage == Storage::kArena &&
            graph.type(src).byte_size() == bytes &&
            plan.buffers_[loc.buffer].last_use == p) {
          bool shared_with_other_input = false;
          for (int i = 0; i < n.num_inputs(); ++i) {
            if (i == schema.inplace_input) continue;
            const ValueLocation& other = plan.locations_.at(n.input(i));
            if (other.storage == Storage::kArena && other.buffer == loc.buffer &&
                n.input(i) != src) {
              shared_with_other_input = true;
            }
          }
          if (!shared_with_other_input) {
            PlannedBuffer& b = plan.buffers_[loc.buffer];
            b.values.push_back(out);
            b.last_use = std::max(b.last_use, last_use[out]);
            plan.locations_[out] = ValueLocation{Storage::kArena, loc.buffer, kNoNode};
            continue;
          }
        }
      }
      PlannedBuffer b;
      b.size = RoundUp64(bytes);
      b.first_use = p;
      b.last_use = last_use[out];
      b.values.push_back(out);
      plan.locations_[out] =
          ValueLocation{Storage::kArena, static_cast<int>(plan.buffers_.size()), kNoNode};
      plan.buffers_.push_back(std::move(b));
    }
  }

  // Offsets: largest first, each into the best-fitting gap among the placed
  // buffers whose lifetimes overlap its own.
  std::vector<int> by_size(plan.buffers_.size());
  for (size_t i = 0; i < by_size.size(); ++i) by_size[i] = static_cast<int>(i);
  std::stable_sort(by_size.begin(), by_size.end(), [&](int a, int b) {
    return plan.buffers_[a].size > plan.buffers_[b].size;
  });
  std::vector<int> placed;
  for (int bi : by_size) {
    PlannedBuffer& b = plan.buffers_[bi];
    plan.unshared_bytes_ += b.size;
    if (!options.share_memory) {
      b.offset = plan.peak_bytes_;
      plan.peak_bytes_ += b.size;
      continue;
    }
    std::vector<std::pair<int64_t, int64_t>> busy;  // [begin, end)
    for (int pi : placed) {
      const PlannedBuffer& o = plan.buffers_[pi];
      if (o.first_use <= b.last_use && b.first_use <= o.last_use) {
        busy.emplace_back(o.offset, o.offset + o.size);
      }
    }
    std::sort(busy.begin(), busy.end());
    int64_t best = -1, best_gap = 0, cursor = 0;
    for (const auto& [begin, finish] : busy) {
      if (begin > cursor) {
        const int64_t gap = begin - cursor;
        if (gap >= b.size && (best < 0 || gap < best_gap)) {
          best = cursor;
          best_gap = gap;
        }
      }
      cursor = std::max(cursor, finish);
    }
    b.offset = best >= 0 ? best : cursor;
    plan.peak_bytes_ = std::max(plan.peak_bytes_, b.offset + b.size);
    placed.push_back(bi);
  }
  return plan;
}

std::string Plan::DebugString(const Graph& graph) const {
  std::string out = absl::StrCat("plan: ", schedule_.size(), " nodes, ",
                                 buffers_.size(), " buffers, peak ",
                                 peak_bytes_, " bytes (unshared ",
                                 unshared_bytes_, ")\n");
  for (size_t i = 0; i < buffers_.size(); ++i) {
    const PlannedBuffer& b = buffers_[i];
    absl::StrAppend(&out, "buffer ", i, ": offset ", b.offset, " size ", b.size,
                    " live [", b.first_use, ", ", b.last_use, "]");
    for (const Value& v : b.values) {
      absl::StrAppend(&out, " ", v.ToString(), " ", graph.type(v).ToString(),
                      " '", graph.node(v.node)->name(), "'");
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

}  // namespace subquad
