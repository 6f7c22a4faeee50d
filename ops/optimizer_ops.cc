// Optimizer ops: the learning-rate schedule, global-norm gradient clipping,
// and the SGD-with-momentum and AdamW parameter updates. The update ops
// write the parameter and its optimizer state in place (mutates_inputs), so
// one executor run of a training graph is one training step, with no copies
// of the parameters; each returns the squared norm of its update for
// monitoring.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/op_schema.h"
#include "core/status.h"
#include "ops/internal/eigen.h"
#include "ops/internal/parallel_range.h"

namespace subquad {
namespace {

using ops_internal::ParallelRange;

using ops_internal::ConstVecMap;
using ops_internal::VecMap;

// A scalar input of any floating or integer dtype, as double.
double ScalarAsDouble(const TensorView& t) {
  return DispatchDType(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    return static_cast<double>(*t.data<T>());
  });
}

absl::Status RequireScalar(const ShapeContext& c, int i, absl::string_view what) {
  if (c.input(i).num_elements() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " (input ", i, ") must be a scalar, got ", c.input(i).ToString()));
  }
  return absl::OkStatus();
}

// ---- learning_rate ---------------------------------------------------------

double LearningRate(const Node& n, int64_t step) {
  const double base = n.GetFloat("base_lr"), min_lr = n.GetFloat("min_lr");
  const int64_t warmup = n.GetInt("warmup_steps"), total = n.GetInt("total_steps");
  const std::string& schedule = n.GetString("schedule");
  if (step < warmup) return base * static_cast<double>(step + 1) / warmup;
  if (schedule == "constant" || total <= warmup) return base;
  const double progress =
      std::clamp(static_cast<double>(step - warmup) / static_cast<double>(total - warmup), 0.0, 1.0);
  if (schedule == "linear") return base + (min_lr - base) * progress;
  return min_lr + 0.5 * (base - min_lr) * (1.0 + std::cos(M_PI * progress));
}

OpSchema MakeLearningRateSchema() {
  OpSchema s;
  s.name = "learning_rate";
  s.doc = "The learning rate at a step: linear warm-up, then cosine, linear or constant.";
  s.inputs = {{"step", DTypeSet::Integer(), false, "0-based step (scalar)"}};
  s.outputs = {"lr"};
  s.attrs = {
      {"base_lr", AttrKind::kFloat, std::nullopt, "peak learning rate"},
      {"warmup_steps", AttrKind::kInt, AttrValue(int64_t{0}), "linear warm-up steps"},
      {"total_steps", AttrKind::kInt, AttrValue(int64_t{0}),
       "steps at which the decay ends (0: no decay)"},
      {"min_lr", AttrKind::kFloat, AttrValue(0.0), "learning rate at the end of the decay"},
      {"schedule", AttrKind::kString, AttrValue("cosine"), "cosine | linear | constant"},
      {"dtype", AttrKind::kDType, AttrValue(DType::kF32), "output dtype"}};
  s.shape_fn = [](const ShapeContext& c) -> absl::StatusOr<std::vector<TensorType>> {
    RETURN_IF_ERROR(RequireScalar(c, 0, "step"));
    const std::string& sched = c.GetString("schedule");
    if (sched != "cosine" && sched != "linear" && sched != "constant") {
      return absl::InvalidArgumentError(absl::StrCat(
          "schedule \"", sched, "\" is not one of cosine, linear, constant"));
    }
    if (c.GetInt("warmup_steps") < 0 || c.GetInt("total_steps") < 0) {
      return absl::InvalidArgumentError("warmup_steps and total_steps must be >= 0");
    }
    if (!IsFloating(c.GetDType("dtype"))) {
      return absl::InvalidArgumentError("dtype must be f32 or f64");
    }
    return std::vector<TensorType>{{c.GetDType("dtype"), Shape{}}};
  };
  s.differentiable = false;
  for (DType t : {DType::kF32, DType::kF64}) {
    s.kernels[t] = [](const KernelContext& ctx) {
      const double lr = LearningRate(ctx.node, static_cast<int64_t>(ScalarAsDouble(ctx.inputs[0])));
      DispatchDType(ctx.outputs[0].dtype(), [&](auto zero) {
        using T = decltype(zero);
        *ctx.outputs[0].data<T>() = static_cast<T>(lr);
      });
      return absl::OkStatus();
    };
  }
  s.examples = {{{{DType::kI64, Shape{}}},
                 {{"base_lr", 0.1}, {"warmup_steps", int64_t{10}}, {"total_steps", int64_t{100}}},
                 {{0, 200}}}};
  return s;
}

// ---- global_norm_scale ------------------------------------------------------

OpSchema MakeGlobalNormScaleSchema() {
  OpSchema s;
  s.name = "global_norm_scale";
  s.doc = "The global L2 norm of all gradients and the factor min(1, max_norm/norm) that clips it.";
  s.inputs = {{"grads", DTypeSet::Floating(), false, "every gradient"}};
  s.variadic_last_input = true;
  s.outputs = {"scale", "norm"};
  s.attrs = {{"max_norm", AttrKind::kFloat, std::nullopt,
              "largest allowed global norm (<= 0: never clip)"}};
  s.shape_fn = [](const ShapeContext& c) -> absl::StatusOr<std::vector<TensorType>> {
    const DType t = c.input(0).dtype;
    for (int i = 1; i < c.num_inputs(); ++i) {
      if (c.input(i).dtype != t) {
        return absl::InvalidArgumentError(absl::StrCat(
            "gradients have different dtypes: ", c.input(0).ToString(), " vs ",
            c.input(i).ToString(), " (input ", i, ")"));
      }
    }
    return std::vector<TensorType>{{t, Shape{}}, {t, Shape{}}};
  };
  s.differentiable = false;
  s.flops = [](const Node&, absl::Span<const TensorType> in) {
    int64_t n = 0;
    for (const TensorType& t : in) n += 2 * t.num_elements();
    return n;
  };
  for (DType t : {DType::kF32, DType::kF64}) {
    s.kernels[t] = [](const KernelContext& ctx) {
      double sum = 0;
      DispatchDType(ctx.outputs[0].dtype(), [&](auto zero) {
        using T = decltype(zero);
        if constexpr (std::is_floating_point_v<T>) {
          for (const TensorView& g : ctx.inputs) {
            const int64_t n = g.num_elements();
            constexpr int64_t kBlock = 1 << 16;
            const int64_t blocks = (n + kBlock - 1) / kBlock;
            std::vector<double> partial(blocks, 0.0);
            ParallelRange(ctx.pool, blocks, 1, [&](int64_t b, int64_t e) {
              for (int64_t k = b; k < e; ++k) {
                const int64_t lo = k * kBlock, len = std::min(kBlock, n - lo);
                partial[k] = ConstVecMap<T>(g.data<T>() + lo, len)
                                 .template cast<double>().square().sum();
              }
            });
            for (double p : partial) sum += p;  // fixed order: deterministic
          }
          const double norm = std::sqrt(sum);
          const double max_norm = ctx.node.GetFloat("max_norm");
          const double scale = (max_norm > 0 && norm > max_norm) ? max_norm / (norm + 1e-6) : 1.0;
          *ctx.outputs[0].data<T>() = static_cast<T>(scale);
          *ctx.outputs[1].data<T>() = static_cast<T>(norm);
        }
      });
      return absl::OkStatus();
    };
  }
  s.examples = {{{{DType::kF32, Shape{3, 4}}, {DType::kF32, Shape{5}}}, {{"max_norm", 1.0}}},
                {{{DType::kF32, Shape{7}}}, {{"max_norm", 0.0}}}};
  return s;
}

// ---- Parameter updates -----------------------------------------------------

// Checks the tensors that must have the parameter's type.
absl::Status SameAsParam(const ShapeContext& c, std::initializer_list<int> inputs) {
  for (int i : inputs) {
    if (c.input(i) != c.input(0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input ", i, " ('", c.schema().input_def(i).name, "') is ",
          c.input(i).ToString(), ", the parameter is ", c.input(0).ToString()));
    }
  }
  return absl::OkStatus();
}

// Runs body(begin, end) over the parameter's elements across the pool and
// returns the sum of the per-block squared update norms, in a fixed order.
template <typename Body>
double BlockedUpdate(ParallelRunner* pool, int64_t n, const Body& body) {
  constexpr int64_t kBlock = 1 << 14;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(blocks, 0.0);
  ParallelRange(pool, blocks, 2, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t lo = k * kBlock;
      partial[k] = body(lo, std::min(kBlock, n - lo));
    }
  });
  double sum = 0;
  for (double p : partial) sum += p;
  return sum;
}

OpSchema MakeSgdUpdateSchema() {
  OpSchema s;
  s.name = "sgd_update";
  s.doc = "SGD with momentum, in place: v = μ·v + (g·scale + λ·p); p -= lr·v (or lr·(g' + μ·v), Nesterov).";
  s.inputs = {{"param", DTypeSet::Floating(), false, "updated in place"},
              {"grad", DTypeSet::Floating(), false, ""},
              {"velocity", DTypeSet::Floating(), false, "momentum buffer, updated in place"},
              {"lr", DTypeSet::Floating(), false, "learning rate (scalar)"},
              {"scale", DTypeSet::Floating(), false, "gradient clipping factor (scalar)"}};
  s.outputs = {"update_sq_norm"};
  s.attrs = {{"momentum", AttrKind::kFloat, AttrValue(0.9), "μ"},
             {"weight_decay", AttrKind::kFloat, AttrValue(0.0), "λ (L2, coupled)"},
             {"nesterov", AttrKind::kBool, AttrValue(false), "Nesterov momentum"}};
  s.mutates_inputs = {0, 2};
  s.differentiable = false;
  s.shape_fn = [](const ShapeContext& c) -> absl::StatusOr<std::vector<TensorType>> {
    RETURN_IF_ERROR(SameAsParam(c, {1, 2}));
    RETURN_IF_ERROR(RequireScalar(c, 3, "lr"));
    RETURN_IF_ERROR(RequireScalar(c, 4, "scale"));
    return std::vector<TensorType>{{c.input(0).dtype, Shape{}}};
  };
  s.flops = [](const Node&, absl::Span<const TensorType> in) { return 6 * in[0].num_elements(); };
  for (DType t : {DType::kF32, DType::kF64}) {
    s.kernels[t] = [](const KernelContext& ctx) {
      DispatchDType(ctx.inputs[0].dtype(), [&](auto zero) {
        using T = decltype(zero);
        if constexpr (std::is_floating_point_v<T>) {
          const T lr = static_cast<T>(ScalarAsDouble(ctx.inputs[3]));
          const T scale = static_cast<T>(ScalarAsDouble(ctx.inputs[4]));
          const T mu = static_cast<T>(ctx.node.GetFloat("momentum"));
          const T wd = static_cast<T>(ctx.node.GetFloat("weight_decay"));
          const bool nesterov = ctx.node.GetBool("nesterov");
          T* p = ctx.inputs[0].data<T>();
          const T* g = ctx.inputs[1].data<T>();
          T* v = ctx.inputs[2].data<T>();
          const double sq = BlockedUpdate(ctx.pool, ctx.inputs[0].num_elements(),
                                          [&](int64_t lo, int64_t len) {
            VecMap<T> P(p + lo, len), V(v + lo, len);
            ConstVecMap<T> G(g + lo, len);
            const auto gg = (G * scale + wd * P).eval();
            V = mu * V + gg;
            const auto step = (nesterov ? (gg + mu * V).eval() : V.eval()) * lr;
            P -= step;
            return static_cast<double>(step.square().sum());
          });
          *ctx.outputs[0].data<T>() = static_cast<T>(sq);
        }
      });
      return absl::OkStatus();
    };
  }
  const TensorType p{DType::kF32, Shape{6, 5}}, sc{DType::kF32, Shape{}};
  s.examples = {{{p, p, p, sc, sc}, {{"momentum", 0.9}, {"weight_decay", 0.01}},
                 {{-1, 1}, {-1, 1}, {-1, 1}, {0.01, 0.1}, {0.5, 1}}},
                {{p, p, p, sc, sc}, {{"nesterov", true}},
                 {{-1, 1}, {-1, 1}, {-1, 1}, {0.01, 0.1}, {0.5, 1}}}};
  return s;
}

OpSchema MakeAdamWUpdateSchema() {
  OpSchema s;
  s.name = "adamw_update";
  s.doc =
      "AdamW, in place (as PyTorch): p *= 1 − lr·λ; m, v moments of g·scale; "
      "p -= lr·m̂/(√v̂ + ε) with bias correction at step t = step + 1.";
  s.inputs = {{"param", DTypeSet::Floating(), false, "updated in place"},
              {"grad", DTypeSet::Floating(), false, ""},
              {"m", DTypeSet::Floating(), false, "first moment, updated in place"},
              {"v", DTypeSet::Floating(), false, "second moment, updated in place"},
              {"lr", DTypeSet::Floating(), false, "learning rate (scalar)"},
              {"step", DTypeSet::Integer(), false, "0-based step (scalar)"},
              {"scale", DTypeSet::Floating(), false, "gradient clipping factor (scalar)"}};
  s.outputs = {"update_sq_norm"};
  s.attrs = {{"beta1", AttrKind::kFloat, AttrValue(0.9), "β₁"},
             {"beta2", AttrKind::kFloat, AttrValue(0.999), "β₂"},
             {"epsilon", AttrKind::kFloat, AttrValue(1e-8), "ε"},
             {"weight_decay", AttrKind::kFloat, AttrValue(0.01), "decoupled weight decay λ"}};
  s.mutates_inputs = {0, 2, 3};
  s.differentiable = false;
  s.shape_fn = [](const ShapeContext& c) -> absl::StatusOr<std::vector<TensorType>> {
    RETURN_IF_ERROR(SameAsParam(c, {1, 2, 3}));
    RETURN_IF_ERROR(RequireScalar(c, 4, "lr"));
    RETURN_IF_ERROR(RequireScalar(c, 5, "step"));
    RETURN_IF_ERROR(RequireScalar(c, 6, "scale"));
    return std::vector<TensorType>{{c.input(0).dtype, Shape{}}};
  };
  s.flops = [](const Node&, absl::Span<const TensorType> in) { return 14 * in[0].num_elements(); };
  for (DType t : {DType::kF32, DType::kF64}) {
    s.kernels[t] = [](const KernelContext& ctx) {
      DispatchDType(ctx.inputs[0].dtype(), [&](auto zero) {
        using T = decltype(zero);
        if constexpr (std::is_floating_point_v<T>) {
          const double lr = ScalarAsDouble(ctx.inputs[4]);
          const double t = ScalarAsDouble(ctx.inputs[5]) + 1.0;
          const T scale = static_cast<T>(ScalarAsDouble(ctx.inputs[6]));
          const double b1 = ctx.node.GetFloat("beta1"), b2 = ctx.node.GetFloat("beta2");
          const T eps = static_cast<T>(ctx.node.GetFloat("epsilon"));
          const T decay = static_cast<T>(1.0 - lr * ctx.node.GetFloat("weight_decay"));
          // p -= lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)
          const T step_size = static_cast<T>(lr / (1.0 - std::pow(b1, t)));
          const T inv_bc2 = static_cast<T>(1.0 / std::sqrt(1.0 - std::pow(b2, t)));
          const T tb1 = static_cast<T>(b1), tb2 = static_cast<T>(b2);
          T* p = ctx.inputs[0].data<T>();
          const T* g = ctx.inputs[1].data<T>();
          T* m = ctx.inputs[2].data<T>();
          T* v = ctx.inputs[3].data<T>();
          const double sq = BlockedUpdate(ctx.pool, ctx.inputs[0].num_elements(),
                                          [&](int64_t lo, int64_t len) {
            VecMap<T> P(p + lo, len), M(m + lo, len), V(v + lo, len);
            const auto G = (ConstVecMap<T>(g + lo, len) * scale).eval();
            M = tb1 * M + (T(1) - tb1) * G;
            V = tb2 * V + (T(1) - tb2) * G.square();
            const auto old = P.eval();
            P = P * decay - step_size * M / (V.sqrt() * inv_bc2 + eps);
            return static_cast<double>((P - old).square().sum());
          });
          *ctx.outputs[0].data<T>() = static_cast<T>(sq);
        }
      });
      return absl::OkStatus();
    };
  }
  const TensorType p{DType::kF32, Shape{4, 9}}, sc{DType::kF32, Shape{}},
      step{DType::kI64, Shape{}};
  s.examples = {{{p, p, p, p, sc, step, sc}, {},
                 {{-1, 1}, {-1, 1}, {-1, 1}, {0, 1}, {0.001, 0.01}, {0, 50}, {0.5, 1}}}};
  return s;
}

SUBQUAD_REGISTER_OP(MakeLearningRateSchema());
SUBQUAD_REGISTER_OP(MakeGlobalNormScaleSchema());
SUBQUAD_REGISTER_OP(MakeSgdUpdateSchema());
SUBQUAD_REGISTER_OP(MakeAdamWUpdateSchema());

}  // namespace
}  // namespace subquad
