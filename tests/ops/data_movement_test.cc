#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/builder.h"
#include "core/graph.h"
#include "core/op_schema.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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
