#include "runtime/parameter_store.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/rng.h"

namespace subquad {
namespace {

template <typename T>
void Fill(const Node& node, uint64_t seed, Tensor& t) {
  T* p = t.data<T>();
  const int64_t n = t.num_elements();
  const std::string& init = node.GetString("init");
  const Shape& s = t.shape();
  RandomStream rng(seed, /*step=*/0, StableHash(node.name()));
  if (init == "zeros" || init == "ones") {
    const T v = init == "ones" ? T(1) : T(0);
    for (int64_t i = 0; i < n; ++i) p[i] = v;
  } else if (init == "normal") {
    const double sd = node.GetFloat("stddev");
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(sd * rng.Normal());
  } else {  // xavier
    const int64_t fan_out = s.rank() >= 1 ? s.dim(s.rank() - 1) : 1;
    const int64_t fan_in = s.rank() >= 2 ? s.dim(s.rank() - 2) : fan_out;
    const double a = std::sqrt(6.0 / static_cast<double>(std::max<int64_t>(1, fan_in + fan_out)));
    for (int64_t i = 0; i < n; ++i) {
      p[i] = static_cast<T>(a * (2.0 * rng.UniformDouble() - 1.0));
    }
  }
}

}  // namespace

absl::Status ParameterStore::Initialize(const Graph& graph, uint64_t seed) {
  for (const Node* node : graph.ParameterNodes()) {
    const TensorType& type = node->output_type(0);
    if (const Tensor* existing = Find(node->name())) {
      if (existing->type() != type) {
        return absl::InvalidArgumentError(absl::StrCat(
            "parameter '", node->name(), "': the store holds ",
            existing->type().ToString(), " but the graph declares ",
            type.ToString()));
      }
      continue;
    }
    Tensor t(type);
    if (type.dtype == DType::kF32) {
      Fill<float>(*node, seed, t);
    } else if (type.dtype == DType::kF64) {
      Fill<double>(*node, seed, t);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "parameter '", node->name(), "' has non-floating type ",
          type.ToString()));
    }
    tensors_.emplace(node->name(), std::move(t));
  }
  return absl::OkStatus();
}

Tensor* ParameterStore::Find(absl::string_view name) {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const Tensor* ParameterStore::Find(absl::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

void ParameterStore::Set(std::string name, Tensor value) {
  tensors_.insert_or_assign(std::move(name), std::move(value));
}

std::vector<std::string> ParameterStore::Names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : tensors_) out.push_back(k);
  return out;
}

int64_t ParameterStore::total_elements() const {
  int64_t n = 0;
  for (const auto& [k, v] : tensors_) n += v.num_elements();
  return n;
}

int64_t ParameterStore::total_bytes() const {
  int64_t n = 0;
  for (const auto& [k, v] : tensors_) n += v.byte_size();
  return n;
}

}  // namespace subquad
