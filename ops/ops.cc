#include "ops/ops.h"

#include "absl/strings/str_cat.h"

namespace subquad::ops {

Value Fill(GraphBuilder& b, DType dtype, Shape shape, double value) {
  return b.Add("fill", {}, {{"dtype", dtype}, {"shape", std::move(shape)}, {"value", value}});
}

Value Add(GraphBuilder& b, Value x, Value y) { return b.Add("add", {x, y}); }
Value Sub(GraphBuilder& b, Value x, Value y) { return b.Add("sub", {x, y}); }
Value Mul(GraphBuilder& b, Value x, Value y) { return b.Add("mul", {x, y}); }
Value Div(GraphBuilder& b, Value x, Value y) { return b.Add("div", {x, y}); }
Value Neg(GraphBuilder& b, Value x) { return b.Add("neg", {x}); }
Value Exp(GraphBuilder& b, Value x) { return b.Add("exp", {x}); }
Value Log(GraphBuilder& b, Value x) { return b.Add("log", {x}); }
Value Sqrt(GraphBuilder& b, Value x) { return b.Add("sqrt", {x}); }
Value Rsqrt(GraphBuilder& b, Value x) { return b.Add("rsqrt", {x}); }
Value Tanh(GraphBuilder& b, Value x) { return b.Add("tanh", {x}); }
Value Relu(GraphBuilder& b, Value x) { return b.Add("relu", {x}); }
Value Gelu(GraphBuilder& b, Value x) { return b.Add("gelu", {x}); }
Value Scale(GraphBuilder& b, Value x, double factor) {
  return b.Add("scale", {x}, {{"factor", factor}});
}
Value Pow(GraphBuilder& b, Value x, double exponent) {
  return b.Add("pow", {x}, {{"exponent", exponent}});
}
Value Where(GraphBuilder& b, Value cond, Value x, Value y) {
  return b.Add("where", {cond, x, y});
}
Value CausalMask(GraphBuilder& b, Value scores, double fill) {
  return b.Add("causal_mask", {scores}, {{"fill", fill}});
}
Value Cast(GraphBuilder& b, Value x, DType dtype) {
  return b.Add("cast", {x}, {{"dtype", dtype}});
}

Value ReduceSum(GraphBuilder& b, Value x, std::vector<int64_t> axes,
                bool keepdims) {
  return b.Add("reduce_sum", {x}, {{"axes", std::move(axes)}, {"keepdims", keepdims}});
}
Value ReduceMean(GraphBuilder& b, Value x, std::vector<int64_t> axes,
                 bool keepdims) {
  return b.Add("reduce_mean", {x}, {{"axes", std::move(axes)}, {"keepdims", keepdims}});
}
Value ReduceMax(GraphBuilder& b, Value x, std::vector<int64_t> axes,
                bool keepdims) {
  return b.Add("reduce_max", {x}, {{"axes", std::move(axes)}, {"keepdims", keepdims}});
}
Value ReduceSumAll(GraphBuilder& b, Value x) {
  if (!b.ok()) return Value{};
  std::vector<int64_t> axes;
  for (int i = 0; i < b.shape(x).rank(); ++i) axes.push_back(i);
  if (axes.empty()) return x;
  return ReduceSum(b, x, std::move(axes));
}
Value Softmax(GraphBuilder& b, Value x, int64_t axis) {
  return b.Add("softmax", {x}, {{"axis", axis}});
}
Value LogSoftmax(GraphBuilder& b, Value x, int64_t axis) {
  return b.Add("log_softmax", {x}, {{"axis", axis}});
}

LayerNormOutputs LayerNorm(GraphBuilder& b, Value x, Value gamma, Value beta,
                           double epsilon) {
  std::vector<Value> o =
      b.AddMulti("layer_norm", {x, gamma, beta}, {{"epsilon", epsilon}}, 3);
  return {o[0], o[1], o[2]};
}

Value CrossEntropy(GraphBuilder& b, Value logits, Value targets) {
  return b.Add("cross_entropy", {logits, targets});
}

Value MatMul(GraphBuilder& b, Value x, Value y, bool transpose_x,
             bool transpose_y) {
  AttrMap attrs;
  if (transpose_x) attrs["transpose_a"] = true;
  if (transpose_y) attrs["transpose_b"] = true;
  return b.Add("matmul", {x, y}, std::move(attrs));
}

Value Reshape(GraphBuilder& b, Value x, std::vector<int64_t> shape) {
  if (!b.ok()) return Value{};
  const Shape& in = b.shape(x);
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) {
        b.RecordError(absl::InvalidArgumentError(absl::StrCat(
            "reshape: more than one -1 in target shape ",
            Shape(shape).ToString(), " for ", b.type(x).ToString())));
        return Value{};
      }
      infer = static_cast<int>(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || in.num_elements() % known != 0) {
      b.RecordError(absl::InvalidArgumentError(absl::StrCat(
          "reshape: cannot infer -1 in ", Shape(shape).ToString(), " for ",
          b.type(x).ToString())));
      return Value{};
    }
    shape[infer] = in.num_elements() / known;
  }
  return b.Add("reshape", {x}, {{"shape", Shape(shape)}});
}

Value Transpose(GraphBuilder& b, Value x, std::vector<int64_t> perm) {
  return b.Add("transpose", {x}, {{"perm", std::move(perm)}});
}

Value Slice(GraphBuilder& b, Value x, std::vector<int64_t> starts,
            std::vector<int64_t> limits) {
  return b.Add("slice", {x}, {{"starts", std::move(starts)}, {"limits", std::move(limits)}});
}

Value SliceAxis(GraphBuilder& b, Value x, int64_t axis, int64_t start,
                int64_t limit) {
  if (!b.ok()) return Value{};
  const Shape& s = b.shape(x);
  auto a = NormalizeAxis(axis, s.rank());
  if (!a.ok()) {
    b.RecordError(absl::InvalidArgumentError(
        absl::StrCat("slice: ", a.status().message(), " (", b.type(x).ToString(), ")")));
    return Value{};
  }
  std::vector<int64_t> starts(s.rank(), 0), limits = s.ToVector();
  starts[*a] = start;
  limits[*a] = limit;
  return Slice(b, x, std::move(starts), std::move(limits));
}

Value Concat(GraphBuilder& b, std::vector<Value> xs, int64_t axis) {
  return b.Add("concat", std::move(xs), {{"axis", axis}});
}

Value BroadcastTo(GraphBuilder& b, Value x, Shape shape) {
  return b.Add("broadcast_to", {x}, {{"shape", std::move(shape)}});
}

Value Gather(GraphBuilder& b, Value table, Value indices) {
  return b.Add("gather", {table, indices});
}

Value ReduceToShape(GraphBuilder& b, Value g, const Shape& shape) {
  if (!b.ok()) return Value{};
  const Shape& gs = b.shape(g);
  if (gs == shape) return g;
  const int lead = gs.rank() - shape.rank();
  if (lead < 0) {
    b.RecordError(absl::InvalidArgumentError(absl::StrCat(
        "ReduceToShape: ", b.type(g).ToString(), " has lower rank than ",
        shape.ToString())));
    return Value{};
  }
  std::vector<int64_t> axes;
  for (int i = 0; i < gs.rank(); ++i) {
    if (i < lead || (shape.dim(i - lead) == 1 && gs.dim(i) != 1)) axes.push_back(i);
  }
  Value r = axes.empty() ? g : ReduceSum(b, g, axes, /*keepdims=*/false);
  if (b.ok() && b.shape(r) != shape) r = Reshape(b, r, shape.ToVector());
  return r;
}

}  // namespace subquad::ops
