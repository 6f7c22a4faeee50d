// ParameterStore: the tensors of a model's parameters (and, later, optimizer
// state), by name. Graphs name parameters; the store holds their values, so
// one store serves every graph built from the same model (forward, training
// step, evaluation).
#ifndef SUBQUAD_RUNTIME_PARAMETER_STORE_H_
#define SUBQUAD_RUNTIME_PARAMETER_STORE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/graph.h"
#include "core/tensor.h"

namespace subquad {

class ParameterStore {
 public:
  // Creates every parameter of `graph` not yet in the store, initialised by
  // its node's `init` attribute (normal: N(0, stddev²); xavier: uniform
  // ±√(6/(fan_in+fan_out)) with fan_in = dim[-2], fan_out = dim[-1] (both the
  // dim for rank 1); zeros; ones). Values depend only on (seed, parameter
  // name), not on graph order. A parameter already present must have the
  // node's type, else InvalidArgument naming both.
  absl::Status Initialize(const Graph& graph, uint64_t seed);

  // nullptr when absent.
  Tensor* Find(absl::string_view name);
  const Tensor* Find(absl::string_view name) const;
  // Inserts or replaces.
  void Set(std::string name, Tensor value);
  bool Contains(absl::string_view name) const { return Find(name) != nullptr; }

  std::vector<std::string> Names() const;
  int size() const { return static_cast<int>(tensors_.size()); }
  int64_t total_elements() const;
  int64_t total_bytes() const;

 private:
  absl::btree_map<std::string, Tensor> tensors_;
};

}  // namespace subquad

#endif  // SUBQUAD_RUNTIME_PARAMETER_STORE_H_
