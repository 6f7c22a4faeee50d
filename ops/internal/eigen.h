// Eigen for kernel translation units only (never include this from a public
// header): the Core module with GCC 12's spurious AVX-512 warnings silenced,
// and the array maps kernels use over raw tensor buffers.
#ifndef SUBQUAD_OPS_INTERNAL_EIGEN_H_
#define SUBQUAD_OPS_INTERNAL_EIGEN_H_

// GCC 12 reports (maybe-)uninitialized warnings inside its AVX-512
// intrinsics when inlining Eigen's packet math.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "Eigen/Core"
#pragma GCC diagnostic pop

namespace subquad::ops_internal {

template <typename T>
using Vec = Eigen::Array<T, Eigen::Dynamic, 1>;
template <typename T>
using VecMap = Eigen::Map<Vec<T>>;
template <typename T>
using ConstVecMap = Eigen::Map<const Vec<T>>;

}  // namespace subquad::ops_internal

#endif  // SUBQUAD_OPS_INTERNAL_EIGEN_H_
