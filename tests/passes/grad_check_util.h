// Finite-difference gradient checks for tests: compares the gradients that
// autodiff appends to a graph against central differences of the loss along
// random directions, one parameter at a time.
#ifndef SUBQUAD_TESTS_PASSES_GRAD_CHECK_UTIL_H_
#define SUBQUAD_TESTS_PASSES_GRAD_CHECK_UTIL_H_

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/graph.h"
#include "core/status.h"
#include "passes/autodiff.h"
#include "runtime/executor.h"
#include "runtime/parameter_store.h"

namespace subquad::testing {

struct GradCheckReport {
  double max_rel_error = 0;
  std::string worst;  // "param: analytic vs numeric"
};

// Differentiates `graph` (f64) w.r.t. every parameter in `params` (which must
// hold their values), then for each parameter p and `directions` random unit
// directions u compares <grad_p, u> with the fourth-order central difference
// of L along u.
// The relative error is |a − n| / max(|a|, |n|, floor).
inline absl::StatusOr<GradCheckReport> CheckGradients(
    Graph graph, ParameterStore& params, const FeedMap& feeds,
    const std::string& loss = "loss", int directions = 2, double eps = 1e-3,
    double floor = 1e-9, uint64_t seed = 7) {
  ASSIGN_OR_RETURN(AutodiffResult ad, Autodiff(graph, {loss, {}}));
  std::vector<std::string> fetches = {loss};
  for (const auto& [name, g] : ad.gradients) fetches.push_back("grad/" + name);
  ASSIGN_OR_RETURN(auto exec, Executor::Create(graph, fetches, &params));
  ASSIGN_OR_RETURN(auto loss_only, Executor::Create(graph, {loss}, &params));
  ASSIGN_OR_RETURN(std::vector<Tensor> base, exec->Run(feeds));
  auto eval = [&]() -> absl::StatusOr<double> {
    ASSIGN_OR_RETURN(std::vector<Tensor> out, loss_only->Run(feeds));
    return out[0].data<double>()[0];
  };
  GradCheckReport report;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  for (size_t k = 0; k < ad.gradients.size(); ++k) {
    const std::string& name = ad.gradients[k].first;
    Tensor& p = *params.Find(name);
    const Tensor& grad = base[k + 1];
    if (p.dtype() != DType::kF64) {
      return absl::InvalidArgumentError(
          absl::StrCat("CheckGradients needs f64 parameters; '", name, "' is ",
                       p.type().ToString()));
    }
    const int64_t n = p.num_elements();
    for (int d = 0; d < directions; ++d) {
      std::vector<double> u(n);
      double norm = 0;
      for (double& x : u) {
        x = normal(rng);
        norm += x * x;
      }
      norm = std::sqrt(norm);
      double analytic = 0;
      for (int64_t i = 0; i < n; ++i) {
        u[i] /= norm;
        analytic += grad.data<double>()[i] * u[i];
      }
      double* v = p.data<double>();
      const std::vector<double> saved(v, v + n);
      auto at = [&](double t) -> absl::StatusOr<double> {
        for (int64_t i = 0; i < n; ++i) v[i] = saved[i] + t * u[i];
        return eval();
      };
      // Fourth-order central difference: truncation O(ε⁴), so ε can be
      // large enough that rounding in the loss does not dominate.
      ASSIGN_OR_RETURN(double p1, at(eps));
      ASSIGN_OR_RETURN(double m1, at(-eps));
      ASSIGN_OR_RETURN(double p2, at(2 * eps));
      ASSIGN_OR_RETURN(double m2, at(-2 * eps));
      std::copy(saved.begin(), saved.end(), v);
      const double numeric = (8 * (p1 - m1) - (p2 - m2)) / (12 * eps);
      const double rel = std::abs(analytic - numeric) /
                         std::max({std::abs(analytic), std::abs(numeric), floor});
      if (rel > report.max_rel_error || report.worst.empty()) {
        report.max_rel_error = std::max(rel, report.max_rel_error);
        if (rel >= report.max_rel_error) {
          report.worst = absl::StrCat(name, ": analytic ", analytic,
                                      " vs numeric ", numeric);
        }
      }
    }
  }
  return report;
}

}  // namespace subquad::testing

#endif  // SUBQUAD_TESTS_PASSES_GRAD_CHECK_UTIL_H_
