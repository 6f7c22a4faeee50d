// OpSchema: the one declaration of an op — inputs, outputs, attributes,
// shape rule, kernels per dtype, flop count and gradient rule — and the
// global OpRegistry that ops/ fills at load time (SUBQUAD_REGISTER_OP).
#ifndef SUBQUAD_CORE_OP_SCHEMA_H_
#define SUBQUAD_CORE_OP_SCHEMA_H_

#include <functional>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/attribute.h"
#include "core/dtype.h"
#include "core/graph.h"
#include "core/parallel.h"
#include "core/tensor.h"

namespace subquad {

struct ArgDef {
  std::string name;
  DTypeSet dtypes = DTypeSet::All();
  // False for inputs that never carry a gradient: gather indices, targets,
  // masks, integer inputs. Autodiff reads this table, not special cases.
  bool differentiable = true;
  std::string doc;
};

struct AttrDef {
  std::string name;
  AttrKind kind;
  std::optional<AttrValue> default_value;  // nullopt: the attribute is required
  std::string doc;
};

// What a shape rule sees: the input types and the node's attributes (with
// schema defaults filled in).
class ShapeContext {
 public:
  ShapeContext(const OpSchema& schema, absl::Span<const TensorType> inputs,
               const AttrMap& attrs)
      : schema_(schema), inputs_(inputs), attrs_(attrs) {}
  const OpSchema& schema() const { return schema_; }
  int num_inputs() const { return static_cast<int>(inputs_.size()); }
  const TensorType& input(int i) const { return inputs_[i]; }
  absl::Span<const TensorType> inputs() const { return inputs_; }
  const AttrValue& attr(absl::string_view name) const;
  int64_t GetInt(absl::string_view name) const { return attr(name).i(); }
  double GetFloat(absl::string_view name) const { return attr(name).f(); }
  bool GetBool(absl::string_view name) const { return attr(name).b(); }
  const std::string& GetString(absl::string_view name) const {
    return attr(name).s();
  }
  const std::vector<int64_t>& GetInts(absl::string_view name) const {
    return attr(name).ints();
  }
  const Shape& GetShape(absl::string_view name) const {
    return attr(name).shape();
  }
  DType GetDType(absl::string_view name) const { return attr(name).dtype(); }

 private:
  const OpSchema& schema_;
  absl::Span<const TensorType> inputs_;
  const AttrMap& attrs_;
};

// What a kernel sees: the node (attributes via node.Get*), input and output
// views (outputs are preallocated to their inferred types, contents
// undefined), and the thread pool.
struct KernelContext {
  const Node& node;
  absl::Span<const TensorView> inputs;
  absl::Span<const TensorView> outputs;
  ParallelRunner* pool;
};

class GradContext;  // core/grad.h

// A sample use of an op, declared next to it: input types, attributes and
// the range each input's values are drawn from. The registry-wide tests run
// every example (kernels in f32 and f64, gradients by finite differences in
// f64), so a new op is covered without new test code.
struct OpExample {
  std::vector<TensorType> inputs;
  AttrMap attrs = {};
  // Per input, [lo, hi): floating values uniform, integer values
  // floor(uniform). Inputs without an entry use [-1, 1).
  std::vector<std::pair<double, double>> ranges = {};
  // Relative error allowed between the rule's gradient and central finite
  // differences in f64.
  double grad_tolerance = 1e-6;
};

using ShapeFn =
    std::function<absl::StatusOr<std::vector<TensorType>>(const ShapeContext&)>;
using KernelFn = std::function<absl::Status(const KernelContext&)>;
using FlopsFn = std::function<int64_t(const Node&,
                                      absl::Span<const TensorType> inputs)>;
using GradFn = std::function<absl::Status(GradContext&)>;

class OpSchema {
 public:
  std::string name;  // snake_case, as typed in pipelines and the CLI
  std::string doc;
  std::vector<ArgDef> inputs;
  // The last input may repeat (at least once): concat's tensors.
  bool variadic_last_input = false;
  std::vector<std::string> outputs;
  std::vector<AttrDef> attrs;
  ShapeFn shape_fn;
  // Kernels by the dtype of output 0.
  absl::btree_map<DType, KernelFn> kernels;
  FlopsFn flops;  // empty: zero flops (data movement)
  GradFn grad;    // empty: no gradient rule
  // Sample uses for the registry-wide tests; every op with a kernel or a
  // gradient rule declares at least one.
  std::vector<OpExample> examples;
  // False for ops whose outputs never carry gradient (input, constant, fill,
  // comparisons, integer ops).
  bool differentiable = true;
  // Source ops have no kernel: the executor binds their outputs to feeds
  // (input), the ParameterStore (parameter) or the attribute (constant).
  bool is_source = false;
  // Output 0 may be written into the buffer of this input when the input is
  // not used afterwards and has the same byte size (elementwise ops).
  int inplace_input = -1;
  // Output 0 is this input's bytes reinterpreted (reshape): no copy.
  int alias_input = -1;
  // Inputs whose memory the kernel updates in place (optimizer updates of
  // parameters and their state). They must be parameters; the plan runs the
  // node after every other node that reads them.
  std::vector<int> mutates_inputs;

  const AttrDef* FindAttr(absl::string_view attr) const;
  // The ArgDef for input i, accounting for a variadic last input.
  const ArgDef& input_def(int i) const;
  // Attributes with defaults filled in, after checking names and kinds.
  // Errors name the op, the attribute, and the expected vs given kind.
  absl::StatusOr<AttrMap> ResolveAttrs(const AttrMap& given) const;
  // Checks input arity and dtypes, resolves attributes, runs the shape rule.
  absl::StatusOr<std::vector<TensorType>> InferTypes(
      absl::Span<const TensorType> inputs, const AttrMap& attrs) const;
  const KernelFn* FindKernel(DType output_dtype) const;
};

class OpRegistry {
 public:
  static OpRegistry& Global();

  // AlreadyExists when the name is taken; InvalidArgument for a schema
  // without a name or shape rule.
  absl::Status Register(OpSchema schema);
  const OpSchema* Find(absl::string_view name) const;
  // All schemas, ordered by name.
  std::vector<const OpSchema*> List() const;

 private:
  absl::btree_map<std::string, std::unique_ptr<OpSchema>, std::less<>> ops_;
};

namespace internal {
struct OpRegistrar {
  explicit OpRegistrar(OpSchema schema);
};
}  // namespace internal

// At namespace scope in an ops/ file:
//   SUBQUAD_REGISTER_OP(MakeMatMulSchema());
// A name clash aborts at load time with a message (a programming error).
#define SUBQUAD_REGISTER_OP(schema_expr) \
  SUBQUAD_REGISTER_OP_IMPL_(__COUNTER__, schema_expr)
#define SUBQUAD_REGISTER_OP_IMPL_(ctr, schema_expr) \
  SUBQUAD_REGISTER_OP_IMPL2_(ctr, schema_expr)
#define SUBQUAD_REGISTER_OP_IMPL2_(ctr, schema_expr)               \
  static ::subquad::internal::OpRegistrar subquad_op_registrar_##ctr \
      [[maybe_unused]] (schema_expr)

}  // namespace subquad

#endif  // SUBQUAD_CORE_OP_SCHEMA_H_
