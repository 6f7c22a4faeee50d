#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/builder.h"
#include "core/graph.h"
#include "core/op_schema.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/ops.h"
#include "passes/autodiff.h"
#include "tests/ops/op_test_util.h"

namespace subquad {
namespace {

using ::subquad::testing::RandomTensor;
using ::subquad::testing::RunOp;
using ::subquad::testing::SpawningRunner;
using ::subquad::testing::StatusIs;
using ::testing::Eq;
using Ints = std::vector<int64_t>;

// ---- Scalar references --------------------------------------------------------

Ints Unravel(int64_t flat, const Shape& s) {
  Ints idx(s.rank());
  for (int d = s.rank() - 1; d >= 0; --d) {
    idx[d] = flat % s[d];
    flat /= s[d];
  }
  return idx;
}

int64_t Ravel(const Ints& idx, const Shape& s) {
  int64_t flat = 0;
  for (int d = 0; d < s.rank(); ++d) flat = flat * s[d] + idx[d];
  return flat;
}

void CopyElement(const Tensor& src, int64_t si, Tensor& dst, int64_t di) {
  const size_t size = DTypeSize(src.dtype());
  std::memcpy(static_cast<char*>(dst.raw_data()) + di * size,
              static_cast<const char*>(src.raw_data()) + si * size, size);
}

// Values that differ in every bit pattern, for any dtype.
Tensor Random(DType t, Shape s, uint64_t seed) {
  return IsFloating(t) ? RandomTensor(t, std::move(s), seed)
                       : RandomTensor(t, std::move(s), seed, -1e6, 1e6);
}

Tensor RefTranspose(const Tensor& x, const Ints& perm) {
  Shape out;
  for (int64_t p : perm) out.push_back(x.shape()[p]);
  Tensor y(x.dtype(), out);
  for (int64_t o = 0; o < y.num_elements(); ++o) {
    const Ints oi = Unravel(o, out);
    Ints ii(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) ii[perm[i]] = oi[i];
    CopyElement(x, Ravel(ii, x.shape()), y, o);
  }
  return y;
}

Tensor RefSlice(const Tensor& x, const Ints& starts, const Ints& limits) {
  Shape out;
  for (size_t d = 0; d < starts.size(); ++d) out.push_back(limits[d] - starts[d]);
  Tensor y(x.dtype(), out);
  for (int64_t o = 0; o < y.num_elements(); ++o) {
    Ints idx = Unravel(o, out);
    for (size_t d = 0; d < idx.size(); ++d) idx[d] += starts[d];
    CopyElement(x, Ravel(idx, x.shape()), y, o);
  }
  return y;
}

Tensor RefPad(const Tensor& x, const Ints& low, const Ints& high) {
  Shape out;
  for (size_t d = 0; d < low.size(); ++d) {
    out.push_back(low[d] + x.shape()[d] + high[d]);
  }
  Tensor y(x.dtype(), out);  // zeros
  for (int64_t i = 0; i < x.num_elements(); ++i) {
    Ints idx = Unravel(i, x.shape());
    for (size_t d = 0; d < idx.size(); ++d) idx[d] += low[d];
    CopyElement(x, i, y, Ravel(idx, out));
  }
  return y;
}

Tensor RefConcat(const std::vector<Tensor>& xs, int axis) {
  Shape out = xs[0].shape();
  int64_t total = 0;
  for (const Tensor& x : xs) total += x.shape()[axis];
  out.set_dim(axis, total);
  Tensor y(xs[0].dtype(), out);
  for (int64_t o = 0; o < y.num_elements(); ++o) {
    Ints idx = Unravel(o, out);
    size_t i = 0;
    while (idx[axis] >= xs[i].shape()[axis]) idx[axis] -= xs[i++].shape()[axis];
    CopyElement(xs[i], Ravel(idx, xs[i].shape()), y, o);
  }
  return y;
}

Tensor RefBroadcastTo(const Tensor& x, const Shape& out) {
  Tensor y(x.dtype(), out);
  const Shape& xs = x.shape();
  for (int64_t o = 0; o < y.num_elements(); ++o) {
    const Ints oi = Unravel(o, out);
    Ints ii(xs.rank());
    for (int d = 0; d < xs.rank(); ++d) {
      ii[d] = xs[d] == 1 ? 0 : oi[out.rank() - xs.rank() + d];
    }
    CopyElement(x, Ravel(ii, xs), y, o);
  }
  return y;
}

Tensor RefGather(const Tensor& table, const Tensor& indices) {
  Shape out = indices.shape();
  int64_t row = 1;
  for (int d = 1; d < table.shape().rank(); ++d) {
    out.push_back(table.shape()[d]);
    row *= table.shape()[d];
  }
  Tensor y(table.dtype(), out);
  for (int64_t o = 0; o < y.num_elements(); ++o) {
    const int64_t p = o / row;
    const auto index =
        static_cast<int64_t>(testing::ElementAsDouble(indices, p));
    CopyElement(table, index * row + o % row, y, o);
  }
  return y;
}

// gather_grad with plain loops: rows of zeros, each dy row added into the
// row its index names, in increasing position (the kernel's order).
template <typename T>
Tensor RefGatherGrad(const Tensor& dy, const Tensor& indices, int64_t rows) {
  Shape out = {rows};
  for (int d = indices.shape().rank(); d < dy.shape().rank(); ++d) {
    out.push_back(dy.shape()[d]);
  }
  Tensor y(dy.dtype(), out);
  for (int64_t i = 0; i < y.num_elements(); ++i) y.data<T>()[i] = T{0};
  const int64_t n = indices.num_elements();
  const int64_t row = n == 0 ? 0 : dy.num_elements() / n;
  for (int64_t p = 0; p < n; ++p) {
    const auto v = static_cast<int64_t>(testing::ElementAsDouble(indices, p));
    for (int64_t c = 0; c < row; ++c) {
      y.data<T>()[v * row + c] += dy.data<T>()[p * row + c];
    }
  }
  return y;
}

// Runs `op` serially and on two threads; both must equal `expected` bit for
// bit.
void ExpectOp(absl::string_view op, const std::vector<Tensor>& inputs,
              const AttrMap& attrs, const Tensor& expected) {
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> serial, RunOp(op, inputs, attrs));
  ASSERT_EQ(serial.size(), 1u);
  EXPECT_TRUE(serial[0].BitwiseEquals(expected))
      << "serial " << serial[0].type().ToString() << " vs expected "
      << expected.type().ToString() << "\n"
      << serial[0].DebugString() << "\n"
      << expected.DebugString();
  SpawningRunner two(2);
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> parallel,
                       RunOp(op, inputs, attrs, &two));
  EXPECT_TRUE(parallel[0].BitwiseEquals(expected)) << "2 threads";
}

AttrMap IntsAttr(const std::string& name, Ints v) {
  return AttrMap{{name, AttrValue(std::move(v))}};
}

Shape RandomShape(std::mt19937_64& rng, int rank, int64_t max_dim) {
  Shape s;
  for (int d = 0; d < rank; ++d) {
    s.push_back(std::uniform_int_distribution<int64_t>(1, max_dim)(rng));
  }
  return s;
}

class DataMovementTest : public ::testing::TestWithParam<DType> {};

// ---- reshape -------------------------------------------------------------------

TEST_P(DataMovementTest, Reshape) {
  const DType t = GetParam();
  const Tensor x = Random(t, {4, 6}, 1);
  Tensor expected = x;
  for (const Shape& s : {Shape{24}, Shape{2, 3, 4}, Shape{1, 24, 1}}) {
    Tensor e(t, s);
    std::memcpy(e.raw_data(), x.raw_data(), x.byte_size());
    ExpectOp("reshape", {x}, {{"shape", AttrValue(s)}}, e);
  }
  // Big enough for the parallel copy.
  const Tensor big = Random(t, {512, 1024}, 2);
  Tensor e(t, {1024, 512});
  std::memcpy(e.raw_data(), big.raw_data(), big.byte_size());
  ExpectOp("reshape", {big}, {{"shape", AttrValue(Shape{1024, 512})}}, e);
}

TEST_P(DataMovementTest, ReshapeAliasedIsANoOp) {
  const DType t = GetParam();
  Graph g;
  GraphBuilder b(&g);
  const Value x = b.Input("x", t, {4, 6});
  ASSERT_OK_AND_ASSIGN(
      std::vector<Value> out,
      b.AddNode("reshape", {x}, {{"shape", AttrValue(Shape{3, 8})}}));
  const Node& node = *g.node(out[0].node);
  EXPECT_EQ(node.schema()->alias_input, 0);
  Tensor data = Random(t, {4, 6}, 3);
  const Tensor before = data;
  const TensorView in = data.view();
  const TensorView outv(node.output_type(), data.raw_data());
  KernelContext ctx{node, {&in, 1}, {&outv, 1}, SerialRunner::Get()};
  ASSERT_OK((*node.schema()->FindKernel(t))(ctx));
  EXPECT_TRUE(data.BitwiseEquals(before));
}

// ---- transpose ---------------------------------------------------------------

TEST_P(DataMovementTest, TransposeRandom) {
  const DType t = GetParam();
  std::mt19937_64 rng(42);
  for (int iter = 0; iter < 60; ++iter) {
    const int rank = iter % 6;
    const Shape s = RandomShape(rng, rank, iter % 2 == 0 ? 3 : 9);
    Ints perm(rank);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    SCOPED_TRACE(absl::StrCat(s.ToString(), " perm ", perm.size()));
    const Tensor x = Random(t, s, iter);
    ExpectOp("transpose", {x}, IntsAttr("perm", perm), RefTranspose(x, perm));
  }
}

TEST_P(DataMovementTest, TransposeFastPaths) {
  const DType t = GetParam();
  struct Case {
    Shape shape;
    Ints perm;
  };
  const std::vector<Case> cases = {
      {{5, 7}, {1, 0}},
      {{33, 47}, {1, 0}},
      {{1, 9, 1}, {2, 1, 0}},
      {{0, 3}, {1, 0}},
      {{2, 3, 4}, {0, 1, 2}},
      // Short preserved rows (2 or 4 elements) move as wide words.
      {{50, 64, 2}, {1, 0, 2}},
      {{31, 17, 4}, {1, 0, 2}},
      {{13, 11, 3}, {1, 0, 2}},
      // Attention head split and merge, and the key transpose; big enough for
      // the parallel paths.
      {{2, 128, 8, 64}, {0, 2, 1, 3}},
      {{2, 8, 128, 64}, {0, 2, 1, 3}},
      {{2, 8, 128, 64}, {0, 1, 3, 2}},
      {{517, 389}, {1, 0}},
      {{3, 200, 5, 70}, {3, 1, 0, 2}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.shape.ToString());
    const Tensor x = Random(t, c.shape, 7);
    ExpectOp("transpose", {x}, IntsAttr("perm", c.perm),
             RefTranspose(x, c.perm));
  }
}

// ---- slice --------------------------------------------------------------------------

TEST_P(DataMovementTest, SliceRandom) {
  const DType t = GetParam();
  std::mt19937_64 rng(43);
  for (int iter = 0; iter < 60; ++iter) {
    const int rank = iter % 5;
    const Shape s = RandomShape(rng, rank, 7);
    Ints starts(rank), limits(rank);
    for (int d = 0; d < rank; ++d) {
      int64_t lo = std::uniform_int_distribution<int64_t>(0, s[d])(rng);
      int64_t hi = std::uniform_int_distribution<int64_t>(0, s[d])(rng);
      if (iter % 3 == 0) lo = 0, hi = s[d];  // whole dims
      starts[d] = std::min(lo, hi);
      limits[d] = std::max(lo, hi);
    }
    const Tensor x = Random(t, s, iter);
    AttrMap attrs = {{"starts", AttrValue(starts)},
                     {"limits", AttrValue(limits)}};
    ExpectOp("slice", {x}, attrs, RefSlice(x, starts, limits));
  }
}

TEST_P(DataMovementTest, SliceLarge) {
  const DType t = GetParam();
  const Tensor x = Random(t, {64, 300, 40}, 5);
  for (auto [starts, limits] : std::vector<std::pair<Ints, Ints>>{
           {{0, 10, 0}, {64, 290, 40}},
           {{3, 0, 1}, {60, 300, 39}},
           {{0, 0, 0}, {64, 300, 40}},
           {{10, 0, 0}, {50, 300, 40}}}) {
    AttrMap attrs = {{"starts", AttrValue(starts)},
                     {"limits", AttrValue(limits)}};
    ExpectOp("slice", {x}, attrs, RefSlice(x, starts, limits));
  }
}

// ---- pad ------------------------------------------------------------------------------

TEST_P(DataMovementTest, PadRandom) {
  const DType t = GetParam();
  std::mt19937_64 rng(45);
  for (int iter = 0; iter < 60; ++iter) {
    const int rank = iter % 5;
    const Shape s = RandomShape(rng, rank, 6);
    Ints low(rank), high(rank);
    for (int d = 0; d < rank; ++d) {
      low[d] = static_cast<int64_t>(rng() % 3);
      high[d] = static_cast<int64_t>(rng() % 3);
      if (iter % 3 == 0 && d % 2 == 0) low[d] = high[d] = 0;  // whole dims
    }
    SCOPED_TRACE(absl::StrCat(s.ToString(), " iter ", iter));
    const Tensor x = Random(t, s, iter);
    AttrMap attrs = {{"low", AttrValue(low)}, {"high", AttrValue(high)}};
    ExpectOp("pad", {x}, attrs, RefPad(x, low, high));
  }
}

TEST_P(DataMovementTest, PadEdgeCases) {
  const DType t = GetParam();
  struct Case {
    Shape shape;
    Ints low, high;
  };
  for (const Case& c : std::vector<Case>{
           {{0, 3}, {1, 0}, {2, 0}},     // empty input, zeros out
           {{2, 0}, {0, 1}, {0, 1}},     // empty rows
           {{3, 4}, {0, 0}, {0, 0}},     // a copy
           {{}, {}, {}},                 // a scalar
           {{5}, {0}, {3}},              // one row
           {{0, 2}, {0, 0}, {0, 0}}}) {  // empty output
    SCOPED_TRACE(c.shape.ToString());
    const Tensor x = Random(t, c.shape, 3);
    AttrMap attrs = {{"low", AttrValue(c.low)}, {"high", AttrValue(c.high)}};
    ExpectOp("pad", {x}, attrs, RefPad(x, c.low, c.high));
  }
}

TEST_P(DataMovementTest, PadLarge) {
  const DType t = GetParam();
  // Many rows (the parallel path), rows padded on both sides, and one long
  // row (the parallel copy).
  for (auto [shape, low, high] : std::vector<std::tuple<Shape, Ints, Ints>>{
           {{64, 280, 40}, {0, 10, 0}, {0, 10, 0}},
           {{57, 300, 38}, {3, 0, 1}, {4, 0, 1}},
           {{10, 300, 40}, {10, 0, 0}, {44, 0, 0}},
           {{1, 200000}, {0, 7}, {0, 9}}}) {
    SCOPED_TRACE(shape.ToString());
    const Tensor x = Random(t, shape, 5);
    AttrMap attrs = {{"low", AttrValue(low)}, {"high", AttrValue(high)}};
    ExpectOp("pad", {x}, attrs, RefPad(x, low, high));
  }
}

// ---- concat --------------------------------------------------------------------------

TEST_P(DataMovementTest, Concat) {
  const DType t = GetParam();
  std::mt19937_64 rng(44);
  for (int iter = 0; iter < 40; ++iter) {
    const int rank = 1 + iter % 4;
    const Shape base = RandomShape(rng, rank, 5);
    const int axis = static_cast<int>(rng() % rank);
    const int n = 1 + static_cast<int>(rng() % 4);
    std::vector<Tensor> xs;
    for (int i = 0; i < n; ++i) {
      Shape s = base;
      s.set_dim(axis, static_cast<int64_t>(rng() % 4));  // 0 allowed
      xs.push_back(Random(t, s, iter * 10 + i));
    }
    const int64_t attr_axis = iter % 2 == 0 ? axis : axis - rank;
    ExpectOp("concat", xs, {{"axis", AttrValue(attr_axis)}},
             RefConcat(xs, axis));
  }
  // Big: rows along axis 1, and one outer row (axis 0).
  std::vector<Tensor> xs = {Random(t, {300, 100, 8}, 1),
                            Random(t, {300, 37, 8}, 2),
                            Random(t, {300, 1, 8}, 3)};
  ExpectOp("concat", xs, {{"axis", AttrValue(1)}}, RefConcat(xs, 1));
  xs = {Random(t, {100000}, 4), Random(t, {70001}, 5)};
  ExpectOp("concat", xs, {{"axis", AttrValue(0)}}, RefConcat(xs, 0));
}

// ---- broadcast_to ------------------------------------------------------------------

TEST_P(DataMovementTest, BroadcastTo) {
  const DType t = GetParam();
  struct Case {
    Shape from, to;
  };
  for (const Case& c : std::vector<Case>{
           {{}, {5}},
           {{3, 1}, {2, 3, 4}},
           {{1, 4}, {3, 4}},
           {{3, 1, 5}, {2, 3, 4, 5}},
           {{1}, {3, 1}},
           {{2, 3}, {2, 3}},
           {{1, 3}, {0, 3}},
           {{256, 1}, {8, 256, 300}},
           {{1, 1000}, {300, 1000}}}) {
    SCOPED_TRACE(absl::StrCat(c.from.ToString(), " -> ", c.to.ToString()));
    const Tensor x = Random(t, c.from, 9);
    ExpectOp("broadcast_to", {x}, {{"shape", AttrValue(c.to)}},
             RefBroadcastTo(x, c.to));
  }
}

// ---- gather --------------------------------------------------------------------------

TEST_P(DataMovementTest, Gather) {
  const DType t = GetParam();
  for (DType it : {DType::kI32, DType::kI64}) {
    for (const Shape& table_shape :
         {Shape{7}, Shape{7, 3}, Shape{7, 2, 5}, Shape{1, 1}}) {
      for (const Shape& index_shape : {Shape{}, Shape{4}, Shape{3, 5}}) {
        const Tensor table = Random(t, table_shape, 1);
        const Tensor indices =
            RandomTensor(it, index_shape, 2, 0, table_shape[0]);
        ExpectOp("gather", {table, indices}, {}, RefGather(table, indices));
      }
    }
    // Big: many rows of an embedding table.
    const Tensor table = Random(t, {256, 64}, 3);
    const Tensor indices = RandomTensor(it, {8, 512}, 4, 0, 256);
    ExpectOp("gather", {table, indices}, {}, RefGather(table, indices));
  }
}

TEST_P(DataMovementTest, GatherIndexOutOfRange) {
  const DType t = GetParam();
  const Tensor table = Random(t, {256, 4}, 1);
  for (DType it : {DType::kI32, DType::kI64}) {
    Tensor indices = RandomTensor(it, {2, 10}, 2, 0, 256);
    DispatchDType(it, [&](auto zero) {
      using I = decltype(zero);
      indices.data<I>()[17] = 300;
      indices.data<I>()[19] = -1;
    });
    EXPECT_THAT(RunOp("gather", {table, indices}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         Eq("node 'gather' (gather): index 300 at position 17 "
                            "is outside [0, 256)")));
    DispatchDType(it, [&](auto zero) {
      using I = decltype(zero);
      indices.data<I>()[17] = 0;
    });
    EXPECT_THAT(RunOp("gather", {table, indices}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         Eq("node 'gather' (gather): index -1 at position 19 "
                            "is outside [0, 256)")));
  }
}

// ---- gather_grad -----------------------------------------------------------------------

class GatherGradTest : public ::testing::TestWithParam<DType> {};

TEST_P(GatherGradTest, MatchesPlainLoops) {
  const DType t = GetParam();
  for (DType it : {DType::kI32, DType::kI64}) {
    struct Case {
      Shape indices;
      Shape row;
      int64_t rows;
    };
    for (const Case& c : std::vector<Case>{{{}, {3}, 4},
                                           {{5}, {}, 3},
                                           {{4}, {3}, 7},
                                           {{3, 5}, {2, 3}, 4},
                                           {{0}, {3}, 2},
                                           {{6}, {0}, 2},
                                           {{6}, {17}, 1},
                                           // The main case: an embedding
                                           // table, and a wide row.
                                           {{8, 1024}, {256}, 256},
                                           {{2, 300}, {1000}, 50},
                                           // Narrow rows: split by rows.
                                           {{4096}, {3}, 97}}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(it), c.indices.ToString(),
                                c.row.ToString(), " rows ", c.rows));
      Shape dy_shape = c.indices;
      for (int64_t d : c.row.dims()) dy_shape.push_back(d);
      const Tensor dy = RandomTensor(t, dy_shape, 1);
      const Tensor indices = RandomTensor(it, c.indices, 2, 0, c.rows);
      const Tensor expected =
          t == DType::kF32 ? RefGatherGrad<float>(dy, indices, c.rows)
                           : RefGatherGrad<double>(dy, indices, c.rows);
      ExpectOp("gather_grad", {dy, indices}, {{"rows", AttrValue(c.rows)}},
               expected);
      SpawningRunner many(7);
      ASSERT_OK_AND_ASSIGN(
          std::vector<Tensor> out,
          RunOp("gather_grad", {dy, indices}, {{"rows", AttrValue(c.rows)}},
                &many));
      EXPECT_TRUE(out[0].BitwiseEquals(expected)) << "7 threads";
    }
  }
}

TEST_P(GatherGradTest, SkewedIndices) {
  // Most positions name one row (a frequent token): still exact.
  const DType t = GetParam();
  const Tensor dy = RandomTensor(t, {2048, 64}, 3);
  Tensor indices = RandomTensor(DType::kI64, {2048}, 4, 0, 100);
  for (int64_t p = 0; p < 2048; p += 1 + p % 3) indices.data<int64_t>()[p] = 7;
  const Tensor expected = t == DType::kF32
                              ? RefGatherGrad<float>(dy, indices, 100)
                              : RefGatherGrad<double>(dy, indices, 100);
  ExpectOp("gather_grad", {dy, indices}, {{"rows", AttrValue(100)}}, expected);
  // Enough threads that the heavy row is split by columns.
  SpawningRunner many(7);
  ASSERT_OK_AND_ASSIGN(
      std::vector<Tensor> out,
      RunOp("gather_grad", {dy, indices}, {{"rows", AttrValue(100)}}, &many));
  EXPECT_TRUE(out[0].BitwiseEquals(expected)) << "7 threads";
}

TEST_P(GatherGradTest, IndexOutOfRange) {
  const DType t = GetParam();
  const Tensor dy = RandomTensor(t, {2, 10, 4}, 1);
  for (DType it : {DType::kI32, DType::kI64}) {
    Tensor indices = RandomTensor(it, {2, 10}, 2, 0, 256);
    DispatchDType(it, [&](auto zero) {
      using I = decltype(zero);
      indices.data<I>()[17] = 256;
    });
    EXPECT_THAT(RunOp("gather_grad", {dy, indices}, {{"rows", AttrValue(256)}}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         Eq("node 'gather_grad' (gather_grad): index 256 at "
                            "position 17 is outside [0, 256)")));
    DispatchDType(it, [&](auto zero) {
      using I = decltype(zero);
      indices.data<I>()[17] = 0;
      indices.data<I>()[3] = -2;
    });
    EXPECT_THAT(RunOp("gather_grad", {dy, indices}, {{"rows", AttrValue(256)}}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         Eq("node 'gather_grad' (gather_grad): index -2 at "
                            "position 3 is outside [0, 256)")));
  }
}

INSTANTIATE_TEST_SUITE_P(Floats, GatherGradTest,
                         ::testing::Values(DType::kF32, DType::kF64),
                         [](const auto& info) {
                           return std::string(DTypeName(info.param));
                         });

INSTANTIATE_TEST_SUITE_P(AllDTypes, DataMovementTest,
                         ::testing::ValuesIn(kAllDTypes),
                         [](const auto& info) {
                           return std::string(DTypeName(info.param));
                         });

// ---- shape rules -------------------------------------------------------------------

absl::Status Build(absl::string_view op, std::vector<TensorType> inputs,
                   AttrMap attrs) {
  Graph g;
  GraphBuilder b(&g);
  std::vector<Value> in;
  for (size_t i = 0; i < inputs.size(); ++i) {
    in.push_back(b.Input(absl::StrCat("x", i), inputs[i].dtype,
                         inputs[i].shape));
  }
  return b.AddNode(op, in, std::move(attrs)).status();
}

TensorType F32(const Shape& s) { return {DType::kF32, s}; }

TEST(DataMovementShapeTest, Reshape) {
  EXPECT_THAT(
      Build("reshape", {F32({4, 6})}, {{"shape", AttrValue(Shape{5, 5})}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("reshape: building node 'reshape': reshape of f32[4,6] to "
                  "[5,5] changes the element count (24 vs 25)")));
  EXPECT_THAT(
      Build("reshape", {F32({4, 6})}, {{"shape", AttrValue(Shape{-1, 6})}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("reshape: building node 'reshape': reshape of f32[4,6] to "
                  "[-1,6]: dim 0 is negative (the node stores the resolved "
                  "shape)")));
  EXPECT_THAT(Build("reshape", {F32({4, 6})}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(DataMovementShapeTest, Transpose) {
  EXPECT_THAT(Build("transpose", {F32({2, 3})}, IntsAttr("perm", {0, 0})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("transpose: building node 'transpose': perm [0,0] "
                          "is not a permutation of 0..1 for f32[2,3]")));
  EXPECT_THAT(Build("transpose", {F32({2, 3})}, IntsAttr("perm", {1, 2})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("transpose: building node 'transpose': perm [1,2] "
                          "is not a permutation of 0..1 for f32[2,3]")));
  EXPECT_THAT(Build("transpose", {F32({2, 3})}, IntsAttr("perm", {0})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("transpose: building node 'transpose': perm [0] has "
                          "1 entries for f32[2,3] of rank 2")));
}

TEST(DataMovementShapeTest, Slice) {
  AttrMap attrs = {{"starts", AttrValue(Ints{0, 1})},
                   {"limits", AttrValue(Ints{2, 4})}};
  EXPECT_THAT(
      Build("slice", {F32({2, 3})}, attrs),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("slice: building node 'slice': slice 1:4 of dim 1 of "
                  "f32[2,3] is not within 0 <= start <= limit <= 3")));
  attrs = {{"starts", AttrValue(Ints{2, 0})}, {"limits", AttrValue(Ints{1, 3})}};
  EXPECT_THAT(
      Build("slice", {F32({2, 3})}, attrs),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("slice: building node 'slice': slice 2:1 of dim 0 of "
                  "f32[2,3] is not within 0 <= start <= limit <= 2")));
  attrs = {{"starts", AttrValue(Ints{0})}, {"limits", AttrValue(Ints{1})}};
  EXPECT_THAT(Build("slice", {F32({2, 3})}, attrs),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("slice: building node 'slice': starts [0] and "
                          "limits [1] need one entry per dim of f32[2,3]")));
}

TEST(DataMovementShapeTest, Pad) {
  AttrMap attrs = {{"low", AttrValue(Ints{0, 1})},
                   {"high", AttrValue(Ints{2, -1})}};
  EXPECT_THAT(Build("pad", {F32({2, 3})}, attrs),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("pad: building node 'pad': padding 1, -1 of dim 1 "
                          "of f32[2,3] is negative or too large")));
  attrs = {{"low", AttrValue(Ints{0})}, {"high", AttrValue(Ints{1, 1})}};
  EXPECT_THAT(Build("pad", {F32({2, 3})}, attrs),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("pad: building node 'pad': low [0] and high [1,1] "
                          "need one entry per dim of f32[2,3]")));
  attrs = {{"low", AttrValue(Ints{1, 0})}, {"high", AttrValue(Ints{2, 3})}};
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out,
                       RunOp("pad", {Tensor(DType::kI32, {2, 3})}, attrs));
  EXPECT_EQ(out[0].type().ToString(), "i32[5,6]");
}

TEST(DataMovementShapeTest, GatherGrad) {
  const TensorType i32 = {DType::kI32, {2, 3}};
  EXPECT_THAT(Build("gather_grad", {F32({2, 4, 5}), i32},
                    {{"rows", AttrValue(7)}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("gather_grad: building node 'gather_grad': dy "
                          "f32[2,4,5] does not start with the shape of "
                          "indices i32[2,3]")));
  EXPECT_THAT(Build("gather_grad", {F32({2, 3, 5}), i32},
                    {{"rows", AttrValue(-1)}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("gather_grad: building node 'gather_grad': rows is "
                          "-1; it must be >= 0")));
  EXPECT_THAT(Build("gather_grad", {F32({2, 3, 5}), F32({2, 3})},
                    {{"rows", AttrValue(7)}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Build("gather_grad", {F32({2, 3, 5}), i32}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  Graph g;
  GraphBuilder b(&g);
  const Value dy = b.Input("dy", DType::kF64, {2, 3, 5});
  const Value idx = b.Input("idx", DType::kI64, {2, 3});
  ASSERT_OK_AND_ASSIGN(
      std::vector<Value> out,
      b.AddNode("gather_grad", {dy, idx}, {{"rows", AttrValue(7)}}));
  const Node& node = *g.node(out[0].node);
  EXPECT_EQ(node.output_type().ToString(), "f64[7,5]");
  EXPECT_EQ(node.schema()->flops(node, {b.type(dy), b.type(idx)}), 30);
  EXPECT_FALSE(node.schema()->differentiable);
  EXPECT_FALSE(node.schema()->inputs[1].differentiable);
}

// ---- gradient rules -----------------------------------------------------------------
// (Their values are checked against finite differences by the registry test,
// on each op's examples; these check which ops the rules emit.)

// The ops of the backward nodes that autodiff emits for `loss`.
std::vector<std::string> BackwardOps(Graph& g) {
  const absl::StatusOr<AutodiffResult> ad = Autodiff(g, {"loss", {}});
  EXPECT_TRUE(ad.ok()) << ad.status();
  std::vector<std::string> ops;
  for (const Node* n : g.nodes()) {
    if (n->role() == Role::kBackward && n->op() != "fill") {
      ops.push_back(n->op());
    }
  }
  return ops;
}

TEST(DataMovementGradTest, SliceIsPaddedBack) {
  Graph g;
  GraphBuilder b(&g);
  const Value x = b.Parameter("x", DType::kF32, {4, 5});
  b.Output("loss", ops::ReduceSumAll(b, ops::Slice(b, x, {1, 0}, {3, 4})));
  ASSERT_OK(b.status());
  EXPECT_THAT(BackwardOps(g), ::testing::Contains("pad"));
  const Node* pad = nullptr;
  for (const Node* n : g.nodes()) {
    if (n->op() == "pad") pad = n;
  }
  ASSERT_NE(pad, nullptr);
  EXPECT_EQ(pad->GetInts("low"), (Ints{1, 0}));
  EXPECT_EQ(pad->GetInts("high"), (Ints{1, 1}));
  EXPECT_EQ(pad->name(), "slice/grad/pad");
}

TEST(DataMovementGradTest, GatherScattersIntoTheTable) {
  Graph g;
  GraphBuilder b(&g);
  const Value table = b.Parameter("table", DType::kF32, {256, 16});
  const Value tokens = b.Input("tokens", DType::kI32, {4, 8});
  b.Output("loss", ops::ReduceSumAll(b, ops::Gather(b, table, tokens)));
  ASSERT_OK(b.status());
  EXPECT_THAT(BackwardOps(g), ::testing::Contains("gather_grad"));
  for (const Node* n : g.nodes()) {
    if (n->op() != "gather_grad") continue;
    EXPECT_EQ(n->GetInt("rows"), 256);
    EXPECT_EQ(n->output_type().ToString(), "f32[256,16]");
    EXPECT_EQ(n->input(1), tokens);
  }
}

TEST(DataMovementGradTest, ConcatSlicesOnlyWhatIsNeeded) {
  Graph g;
  GraphBuilder b(&g);
  const Value x = b.Parameter("x", DType::kF32, {2, 3});
  const Value c = b.Input("c", DType::kF32, {2, 4});
  const Value y = b.Parameter("y", DType::kF32, {2, 1});
  b.Output("loss", ops::ReduceSumAll(b, ops::Concat(b, {x, c, y}, -1)));
  ASSERT_OK(b.status());
  BackwardOps(g);
  std::vector<std::pair<Ints, Ints>> slices;
  for (const Node* n : g.nodes()) {
    if (n->op() == "slice") {
      slices.emplace_back(n->GetInts("starts"), n->GetInts("limits"));
    }
  }
  EXPECT_THAT(slices, ::testing::UnorderedElementsAre(
                          std::pair<Ints, Ints>{{0, 0}, {2, 3}},
                          std::pair<Ints, Ints>{{0, 7}, {2, 8}}));
}

TEST(DataMovementShapeTest, Concat) {
  EXPECT_THAT(
      Build("concat", {F32({2, 3}), F32({3, 3})}, {{"axis", AttrValue(1)}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("concat: building node 'concat': input 1 does not match "
                  "input 0 outside axis 1: f32[3,3] vs f32[2,3]")));
  EXPECT_THAT(Build("concat", {F32({2, 3}), {DType::kF64, {2, 3}}},
                    {{"axis", AttrValue(0)}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("concat: building node 'concat': input 1 does not "
                          "match input 0 outside axis 0: f64[2,3] vs "
                          "f32[2,3]")));
  EXPECT_THAT(
      Build("concat", {F32({2, 3}), F32({2, 3})}, {{"axis", AttrValue(2)}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("concat: building node 'concat': axis 2 is out of range "
                  "for rank 2: f32[2,3]")));
  EXPECT_THAT(Build("concat", {F32(Shape()), F32(Shape())}, {{"axis", AttrValue(0)}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("concat: building node 'concat': cannot concatenate "
                          "scalars: f32[]")));
  ASSERT_OK_AND_ASSIGN(
      std::vector<Tensor> out,
      RunOp("concat", {Tensor(DType::kF32, {2, 3}), Tensor(DType::kF32, {2, 4})},
            {{"axis", AttrValue(-1)}}));
  EXPECT_EQ(out[0].shape(), Shape({2, 7}));
}

TEST(DataMovementShapeTest, BroadcastTo) {
  EXPECT_THAT(
      Build("broadcast_to", {F32({3, 4})}, {{"shape", AttrValue(Shape{5, 4})}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("broadcast_to: building node 'broadcast_to': f32[3,4] does "
                  "not broadcast to [5,4]")));
  EXPECT_THAT(
      Build("broadcast_to", {F32({3, 4})}, {{"shape", AttrValue(Shape{4})}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("broadcast_to: building node 'broadcast_to': f32[3,4] does "
                  "not broadcast to [4]")));
}

TEST(DataMovementShapeTest, Gather) {
  EXPECT_THAT(Build("gather", {F32(Shape()), {DType::kI32, {3}}}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("gather: building node 'gather': table must have "
                          "rank >= 1: f32[] with indices i32[3]")));
  EXPECT_THAT(Build("gather", {F32({4, 2}), F32({3})}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  const OpSchema* schema = OpRegistry::Global().Find("gather");
  ASSERT_NE(schema, nullptr);
  EXPECT_FALSE(schema->inputs[1].differentiable);
}

}  // namespace
}  // namespace subquad
