// Passes: graph transformations with a name, typed options and a stage,
// registered by name so pipelines can be written as text:
//
//   autodiff{loss=loss},cse,dce,optimizer{kind=adamw,lr=0.003}
//
// A pass's Run returns whether it changed the graph (the pass manager then
// runs the verifier). Statistics, the --explain sink and the seed of
// stochastic passes travel in the PassContext.
#ifndef SUBQUAD_PASSES_PASS_H_
#define SUBQUAD_PASSES_PASS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/attribute.h"
#include "core/graph.h"

namespace subquad {

// When a pass makes sense: on the forward graph (before autodiff), on the
// joint graph (after autodiff), or either.
enum class PassStage : uint8_t { kAny, kForward, kJoint };
absl::string_view PassStageName(PassStage s);  // "any", "forward", "joint"

struct PassOptionDef {
  std::string name;
  // kInt, kFloat, kBool, kString, kIntList or kFloatList.
  AttrKind kind;
  AttrValue default_value;
  std::string help;
  // Inclusive bounds for numbers (and for every element of number lists).
  std::optional<double> min, max;
};

// A pass's option values, defaults filled in.
class PassOptions {
 public:
  PassOptions() = default;
  explicit PassOptions(AttrMap values) : values_(std::move(values)) {}
  int64_t GetInt(absl::string_view name) const { return Get(name).i(); }
  double GetFloat(absl::string_view name) const { return Get(name).f(); }
  bool GetBool(absl::string_view name) const { return Get(name).b(); }
  const std::string& GetString(absl::string_view name) const { return Get(name).s(); }
  const std::vector<int64_t>& GetInts(absl::string_view name) const {
    return Get(name).ints();
  }
  const std::vector<double>& GetFloats(absl::string_view name) const {
    return Get(name).floats();
  }
  const AttrValue& Get(absl::string_view name) const;
  const AttrMap& values() const { return values_; }
  // "{k=v, ...}" for printing, only the options given (all when `all`).
  std::string ToString() const;

 private:
  AttrMap values_;
};

class PassContext {
 public:
  explicit PassContext(uint64_t seed = 0) : seed_(seed) {}

  // Named counters ("nodes removed"), summed over a pipeline, per pass.
  void Count(absl::string_view pass, absl::string_view counter, int64_t delta = 1);
  const absl::btree_map<std::string, absl::btree_map<std::string, int64_t>>&
  statistics() const {
    return stats_;
  }

  // Reasons for what a pass did or did not do ("node %41 softmax: axis is
  // 1, expected the last axis"), collected when explaining is on.
  bool explaining() const { return explain_; }
  void set_explain(bool on) { explain_ = on; }
  void Explain(absl::string_view pass, std::string message);
  const std::vector<std::string>& explanations() const { return explanations_; }

  uint64_t seed() const { return seed_; }

 private:
  uint64_t seed_;
  bool explain_ = false;
  absl::btree_map<std::string, absl::btree_map<std::string, int64_t>> stats_;
  std::vector<std::string> explanations_;
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual absl::string_view name() const = 0;
  // True when the graph changed.
  virtual absl::StatusOr<bool> Run(Graph& graph, PassContext& ctx) = 0;
};

struct PassInfo {
  std::string name;  // kebab-case, as typed in pipelines
  std::string help;  // one sentence
  PassStage stage = PassStage::kAny;
  std::vector<PassOptionDef> options;
  std::function<absl::StatusOr<std::unique_ptr<Pass>>(const PassOptions&)> create;

  const PassOptionDef* FindOption(absl::string_view option) const;
};

class PassRegistry {
 public:
  static PassRegistry& Global();
  // AlreadyExists "pass 'x' is already registered"; InvalidArgument for an
  // empty name, no factory, or a default of the wrong kind.
  absl::Status Register(PassInfo info);
  const PassInfo* Find(absl::string_view name) const;
  std::vector<const PassInfo*> List() const;  // by name

 private:
  absl::btree_map<std::string, std::unique_ptr<PassInfo>, std::less<>> passes_;
};

// Checks `given` option values (names, kinds, ranges) against `info` and
// fills defaults. Errors name the pass and the option.
absl::StatusOr<PassOptions> ResolvePassOptions(const PassInfo& info,
                                               const AttrMap& given);

namespace internal {
struct PassRegistrar {
  explicit PassRegistrar(PassInfo info);
};
}  // namespace internal

// At namespace scope: SUBQUAD_REGISTER_PASS(MakeDcePassInfo());
#define SUBQUAD_REGISTER_PASS(info_expr) \
  SUBQUAD_REGISTER_PASS_IMPL_(__COUNTER__, info_expr)
#define SUBQUAD_REGISTER_PASS_IMPL_(ctr, info_expr) \
  SUBQUAD_REGISTER_PASS_IMPL2_(ctr, info_expr)
#define SUBQUAD_REGISTER_PASS_IMPL2_(ctr, info_expr)                     \
  static ::subquad::internal::PassRegistrar subquad_pass_registrar_##ctr \
      [[maybe_unused]] (info_expr)

}  // namespace subquad

#endif  // SUBQUAD_PASSES_PASS_H_
