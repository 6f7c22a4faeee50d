#include "core/builder.h"

#include "absl/strings/str_cat.h"
#include "core/op_schema.h"
#include "core/status.h"

namespace subquad {

std::string GraphBuilder::ScopedName(absl::string_view base) const {
  const std::string& prefix = name_prefix_.empty() ? scope_ : name_prefix_;
  return prefix.empty() ? std::string(base) : absl::StrCat(prefix, "/", base);
}

GraphBuilder::ScopeGuard GraphBuilder::SetScope(absl::string_view absolute) {
  std::string prev = scope_;
  scope_ = std::string(absolute);
  return ScopeGuard(this, std::move(prev));
}

GraphBuilder::ScopeGuard GraphBuilder::Scope(absl::string_view name) {
  std::string prev = scope_;
  scope_ = scope_.empty() ? std::string(name) : absl::StrCat(scope_, "/", name);
  return ScopeGuard(this, std::move(prev));
}

void GraphBuilder::RecordError(absl::Status s) {
  if (status_.ok() && !s.ok()) status_ = std::move(s);
}

absl::StatusOr<std::vector<Value>> GraphBuilder::AddNode(
    absl::string_view op, std::vector<Value> inputs, AttrMap attrs,
    absl::string_view name) {
  const std::string node_name =
      graph_->UniqueName(ScopedName(name.empty() ? op : name));
  auto fail = [&](absl::string_view msg) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": building node '", node_name, "': ", msg));
  };
  const OpSchema* schema = OpRegistry::Global().Find(op);
  if (schema == nullptr) return fail("no op with this name is registered");
  std::vector<TensorType> input_types;
  input_types.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Value& v = inputs[i];
    const Node* producer = graph_->node(v.node);
    if (producer == nullptr || v.output < 0 ||
        v.output >= producer->num_outputs()) {
      return fail(absl::StrCat("input ", i, " (", v.ToString(),
                               ") is not a value of this graph"));
    }
    input_types.push_back(producer->output_type(v.output));
  }
  auto types = schema->InferTypes(input_types, attrs);
  if (!types.ok()) {
    return absl::Status(types.status().code(),
                        absl::StrCat(op, ": building node '", node_name,
                                     "': ", types.status().message()));
  }
  const int num_outputs = static_cast<int>(types->size());
  NodeSpec spec;
  spec.name = node_name;
  spec.op = std::string(op);
  spec.inputs = std::move(inputs);
  spec.attrs = std::move(attrs);
  spec.output_types = *std::move(types);
  spec.role = role_;
  spec.origin = origin_;
  spec.scope = scope_;
  const NodeId id = graph_->AddNode(std::move(spec));
  std::vector<Value> outs;
  outs.reserve(num_outputs);
  for (int i = 0; i < num_outputs; ++i) outs.push_back(Value{id, i});
  return outs;
}

Value GraphBuilder::Add(absl::string_view op, std::vector<Value> inputs,
                        AttrMap attrs, absl::string_view name) {
  if (!status_.ok()) return Value{};
  auto outs = AddNode(op, std::move(inputs), std::move(attrs), name);
  if (!outs.ok()) {
    RecordError(outs.status());
    return Value{};
  }
  return outs->empty() ? Value{} : outs->front();
}

std::vector<Value> GraphBuilder::AddMulti(absl::string_view op,
                                          std::vector<Value> inputs,
                                          AttrMap attrs, int num_outputs,
                                          absl::string_view name) {
  if (!status_.ok()) return std::vector<Value>(num_outputs);
  auto outs = AddNode(op, std::move(inputs), std::move(attrs), name);
  if (!outs.ok()) {
    RecordError(outs.status());
    return std::vector<Value>(num_outputs);
  }
  if (static_cast<int>(outs->size()) != num_outputs) {
    RecordError(absl::InternalError(absl::StrCat(
        op, " has ", outs->size(), " outputs, caller expected ", num_outputs)));
    return std::vector<Value>(num_outputs);
  }
  return *std::move(outs);
}

Value GraphBuilder::AddSource(absl::string_view op, absl::string_view name,
                              AttrMap attrs) {
  if (!status_.ok()) return Value{};
  const std::string full = ScopedName(name);
  if (graph_->FindNode(full) != nullptr) {
    RecordError(absl::AlreadyExistsError(absl::StrCat(
        op, ": building node '", full, "': the name is already taken")));
    return Value{};
  }
  // Build without the scope prefix: AddNode adds it.
  return Add(op, {}, std::move(attrs), name);
}

Value GraphBuilder::Input(absl::string_view name, DType dtype, Shape shape) {
  return AddSource("input", name, {{"dtype", dtype}, {"shape", std::move(shape)}});
}

Value GraphBuilder::Parameter(absl::string_view name, DType dtype, Shape shape,
                              Init init, bool trainable) {
  AttrMap attrs = {{"dtype", dtype},
                   {"shape", std::move(shape)},
                   {"init", init.kind},
                   {"stddev", init.stddev}};
  if (!trainable) attrs["trainable"] = false;
  return AddSource("parameter", name, std::move(attrs));
}

Value GraphBuilder::Constant(Tensor value, absl::string_view name) {
  if (name.empty()) return Add("constant", {}, {{"value", std::move(value)}});
  return AddSource("constant", name, {{"value", std::move(value)}});
}

void GraphBuilder::Output(std::string name, Value v) {
  if (!status_.ok()) return;
  const Node* n = graph_->node(v.node);
  if (n == nullptr || v.output < 0 || v.output >= n->num_outputs()) {
    RecordError(absl::InvalidArgumentError(absl::StrCat(
        "output '", name, "': ", v.ToString(), " is not a value of this graph")));
    return;
  }
  graph_->SetOutput(std::move(name), v);
}

}  // namespace subquad
