// Source ops: input, parameter, constant (no kernel: the executor binds them
// to feeds, the ParameterStore and the attribute) and fill.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/op_schema.h"
#include "core/status.h"

namespace subquad {
namespace {

absl::StatusOr<std::vector<TensorType>> DeclaredType(const ShapeContext& c) {
  const Shape& shape = c.GetShape("shape");
  RETURN_IF_ERROR(ValidateShape(shape));
  return std::vector<TensorType>{{c.GetDType("dtype"), shape}};
}

OpSchema MakeInputSchema() {
  OpSchema s;
  s.name = "input";
  s.doc = "A tensor fed by name at each run.";
  s.outputs = {"value"};
  s.attrs = {{"dtype", AttrKind::kDType, std::nullopt, "element type"},
             {"shape", AttrKind::kShape, std::nullopt, "static shape"}};
  s.shape_fn = DeclaredType;
  s.is_source = true;
  s.differentiable = false;
  return s;
}

OpSchema MakeParameterSchema() {
  OpSchema s;
  s.name = "parameter";
  s.doc = "A trainable tensor held by the runtime's ParameterStore.";
  s.outputs = {"value"};
  s.attrs = {
      {"dtype", AttrKind::kDType, std::nullopt, "element type (f32 or f64)"},
      {"shape", AttrKind::kShape, std::nullopt, "static shape"},
      {"init", AttrKind::kString, AttrValue("normal"),
       "initialiser: normal | xavier | zeros | ones"},
      {"stddev", AttrKind::kFloat, AttrValue(0.02),
       "standard deviation of the normal initialiser"},
      {"trainable", AttrKind::kBool, AttrValue(true),
       "false for state that autodiff must not differentiate (optimizer moments)"}};
  s.shape_fn = [](const ShapeContext& c)
      -> absl::StatusOr<std::vector<TensorType>> {
    if (!IsFloating(c.GetDType("dtype"))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "parameters must be f32 or f64, got ", DTypeName(c.GetDType("dtype"))));
    }
    const std::string& init = c.GetString("init");
    if (init != "normal" && init != "xavier" && init != "zeros" &&
        init != "ones") {
      return absl::InvalidArgumentError(absl::StrCat(
          "init \"", init, "\" is not one of normal, xavier, zeros, ones"));
    }
    if (c.GetFloat("stddev") < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("stddev ", c.GetFloat("stddev"), " is negative"));
    }
    return DeclaredType(c);
  };
  s.is_source = true;
  return s;
}

OpSchema MakeConstantSchema() {
  OpSchema s;
  s.name = "constant";
  s.doc = "A tensor stored in the graph.";
  s.outputs = {"value"};
  s.attrs = {{"value", AttrKind::kTensor, std::nullopt, "the tensor"}};
  s.shape_fn = [](const ShapeContext& c)
      -> absl::StatusOr<std::vector<TensorType>> {
    const Tensor& t = c.attr("value").tensor();
    return std::vector<TensorType>{t.type()};
  };
  s.is_source = true;
  s.differentiable = false;
  return s;
}

OpSchema MakeFillSchema() {
  OpSchema s;
  s.name = "fill";
  s.doc = "A tensor with every element set to one value.";
  s.outputs = {"y"};
  s.attrs = {{"dtype", AttrKind::kDType, std::nullopt, "element type"},
             {"shape", AttrKind::kShape, std::nullopt, "static shape"},
             {"value", AttrKind::kFloat, std::nullopt,
              "the value (converted to dtype)"}};
  s.shape_fn = DeclaredType;
  s.differentiable = false;
  s.examples = {
      OpExample{{}, {{"dtype", DType::kF32}, {"shape", Shape{3, 4}},
                     {"value", 1.5}}},
      OpExample{{}, {{"dtype", DType::kF64}, {"shape", Shape{2, 1}},
                     {"value", -2.0}}},
      OpExample{{}, {{"dtype", DType::kI32}, {"shape", Shape{5}},
                     {"value", 7.0}}}};
  for (DType t : kAllDTypes) {
    s.kernels[t] = [](const KernelContext& ctx) {
      const TensorView& y = ctx.outputs[0];
      const double v = ctx.node.GetFloat("value");
      DispatchDType(y.dtype(), [&](auto zero) {
        using T = decltype(zero);
        T* p = y.data<T>();
        std::fill(p, p + y.num_elements(), static_cast<T>(v));
      });
      return absl::OkStatus();
    };
  }
  return s;
}

SUBQUAD_REGISTER_OP(MakeInputSchema());
SUBQUAD_REGISTER_OP(MakeParameterSchema());
SUBQUAD_REGISTER_OP(MakeConstantSchema());
SUBQUAD_REGISTER_OP(MakeFillSchema());

}  // namespace
}  // namespace subquad
