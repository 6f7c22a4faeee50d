#include "serialize/graph_proto.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "core/builder.h"
#include "core/op_schema.h"
#include "core/printer.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/ops.h"
#include "serialize/graph_io.h"
#include "tests/serialize/graph_test_util.h"

namespace subquad {
namespace {

using ::subquad::testing::FirstDifference;
using ::subquad::testing::IsOk;
using ::subquad::testing::StatusIs;
using ::subquad::testing::TinyLM;
using ::testing::HasSubstr;

// An op with one attribute of every kind, so every kind round-trips.
OpSchema MakeAllAttrsSchema() {
  OpSchema s;
  s.name = "serialize_test_all_attrs";
  s.doc = "identity with one attribute of every kind (serialize tests)";
  ArgDef x;
  x.name = "x";
  s.inputs = {x};
  s.outputs = {"y"};
  s.attrs = {{"i", AttrKind::kInt, std::nullopt, ""},
             {"f", AttrKind::kFloat, std::nullopt, ""},
             {"s", AttrKind::kString, std::nullopt, ""},
             {"b", AttrKind::kBool, std::nullopt, ""},
             {"ints", AttrKind::kIntList, std::nullopt, ""},
             {"floats", AttrKind::kFloatList, std::nullopt, ""},
             {"shape", AttrKind::kShape, std::nullopt, ""},
             {"dtype", AttrKind::kDType, std::nullopt, ""},
             {"t", AttrKind::kTensor, std::nullopt, ""},
             {"opt", AttrKind::kInt, AttrValue(int64_t{7}), ""}};
  s.shape_fn = [](const ShapeContext& c) -> absl::StatusOr<std::vector<TensorType>> {
    return std::vector<TensorType>{c.input(0)};
  };
  return s;
}
SUBQUAD_REGISTER_OP(MakeAllAttrsSchema());

void ExpectRoundTrips(const Graph& g) {
  for (GraphFormat f : {GraphFormat::kBinary, GraphFormat::kText}) {
    SCOPED_TRACE(GraphFormatName(f));
    ASSERT_OK_AND_ASSIGN(std::string bytes, SerializeGraph(g, f));
    ASSERT_OK_AND_ASSIGN(Graph back, ParseGraph(bytes, f));
    EXPECT_EQ(FirstDifference(g, back), "");
    EXPECT_EQ(PrintGraph(g), PrintGraph(back));
    // Saving again gives the same bytes.
    ASSERT_OK_AND_ASSIGN(std::string again, SerializeGraph(back, f));
    EXPECT_EQ(bytes, again);
  }
}

TEST(GraphProtoTest, ForwardLMRoundTrips) {
  ASSERT_OK_AND_ASSIGN(Graph g, TinyLM(0));
  ExpectRoundTrips(g);
}

TEST(GraphProtoTest, AutodiffLMRoundTrips) {
  ASSERT_OK_AND_ASSIGN(Graph g, TinyLM(1));
  int backward = 0, with_origin = 0;
  for (const Node* n : g.nodes()) {
    backward += n->role() == Role::kBackward;
    with_origin += n->origin() != kNoNode;
  }
  EXPECT_GT(backward, 50);
  EXPECT_GT(with_origin, 50);
  ExpectRoundTrips(g);
}

TEST(GraphProtoTest, OptimizerLMRoundTrips) {
  ASSERT_OK_AND_ASSIGN(Graph g, TinyLM(2));
  int optimizer = 0;
  for (const Node* n : g.nodes()) optimizer += n->role() == Role::kOptimizer;
  EXPECT_GT(optimizer, 10);
  ExpectRoundTrips(g);
}

// Every attribute kind, constants of every dtype with awkward bits (NaN
// payloads, -0, infinities, denormals, extremes), empty and scalar tensors,
// holes left by removed nodes, origins and scopes.
TEST(GraphProtoTest, EveryAttributeKindAndConstantBitsRoundTrip) {
  Graph g;
  GraphBuilder b(&g);
  const float nan_payload = std::bit_cast<float>(uint32_t{0x7fc01234});
  const double dnan = std::bit_cast<double>(uint64_t{0x7ff8000000abcdefULL});
  // Text files print float attributes as decimals: NaN stays NaN but loses
  // its payload there, so attributes use the plain quiet NaN.
  const double qnan = std::numeric_limits<double>::quiet_NaN();
  Value cf = b.Constant(Tensor::FromVector<float>(
      {2, 3}, std::vector<float>{nan_payload, -0.0f,
                                 std::numeric_limits<float>::infinity(),
                                 std::numeric_limits<float>::denorm_min(),
                                 std::numeric_limits<float>::max(), 1.5f}),
                        "cf");
  b.Constant(Tensor::FromVector<double>({2}, std::vector<double>{dnan, -0.0}),
             "cd");
  b.Constant(Tensor::FromVector<int32_t>(
                 {3}, std::vector<int32_t>{std::numeric_limits<int32_t>::min(),
                                           -1, 0x7fffffff}),
             "ci");
  b.Constant(Tensor::FromVector<int64_t>(
                 {1, 1}, std::vector<int64_t>{std::numeric_limits<int64_t>::min()}),
             "cl");
  b.Constant(Tensor(DType::kF32, Shape{0, 4}), "empty");
  b.ScalarConstant(3.25, "scalar");
  Value dead = ops::Neg(b, cf);
  Value y;
  {
    auto s = b.Scope("block0");
    auto t = b.Scope("attn");
    b.set_role(Role::kBackward);
    b.set_origin(cf.node);
    y = b.Add("serialize_test_all_attrs", {cf},
              {{"i", AttrValue(int64_t{-5})},
               {"f", AttrValue(qnan)},
               {"s", AttrValue("héllo \"quoted\"\n")},
               {"b", AttrValue(true)},
               {"ints", AttrValue(std::vector<int64_t>{})},
               {"floats", AttrValue(std::vector<double>{-0.0, 1e-300, qnan, 0.1,
                                                         -1.0 / 3})},
               {"shape", AttrValue(Shape({0, 7}))},
               {"dtype", AttrValue(DType::kI64)},
               {"t", AttrValue(Tensor::Scalar<int64_t>(-9))}});
    b.set_role(Role::kForward);
    b.set_origin(kNoNode);
  }
  Value z = ops::Relu(b, y);
  b.Output("z", z);
  b.Output("first", y);
  ASSERT_OK(b.status());
  ASSERT_OK(g.RemoveNode(dead.node));  // a hole in the ids
  ExpectRoundTrips(g);
  ASSERT_OK_AND_ASSIGN(std::string bytes, SerializeGraph(g, GraphFormat::kText));
  ASSERT_OK_AND_ASSIGN(Graph back, ParseGraph(bytes, GraphFormat::kText));
  EXPECT_EQ(back.node(dead.node), nullptr);
  EXPECT_EQ(back.node(y.node)->scope(), "block0/attn");
  EXPECT_EQ(back.node(y.node)->origin(), cf.node);
  EXPECT_EQ(back.node(y.node)->role(), Role::kBackward);
}

TEST(GraphProtoTest, RefusesToSaveAGraphThatDoesNotVerify) {
  Graph g;
  NodeSpec spec;
  spec.name = "x";
  spec.op = "no_such_op";
  g.AddNode(spec);
  EXPECT_THAT(GraphToProto(g),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "cannot save a graph that does not verify: node 'x' "
                       "(no_such_op) %0: op: no op with this name is registered"));
}

// ---- untrusted input: one test per failure class ---------------------------------

//   %0 x = input f32[2,3]; %1 w = parameter f32[3,4]; %2 matmul(x, w);
//   %3 two = constant f32[]; %4 mul(%2, %3); output y = %4
proto::GraphProto SmallProto() {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {2, 3});
  Value w = b.Parameter("w", DType::kF32, {3, 4});
  Value mm = ops::MatMul(b, x, w);
  Value c = b.ScalarConstant(2.0f, "two");
  b.Output("y", ops::Mul(b, mm, c));
  EXPECT_OK(b.status());
  auto p = GraphToProto(g);
  EXPECT_OK(p.status());
  return *p;
}

void ExpectInvalid(const proto::GraphProto& p, const std::string& message,
                   const LoadLimits& limits = {}) {
  EXPECT_THAT(GraphFromProto(p, limits),
              StatusIs(absl::StatusCode::kInvalidArgument, message));
}

TEST(GraphValidationTest, TheSmallGraphLoads) {
  proto::GraphProto p = SmallProto();
  ASSERT_EQ(p.nodes_size(), 5);
  EXPECT_EQ(p.nodes(2).name(), "matmul");
  EXPECT_EQ(p.nodes(4).name(), "mul");
  EXPECT_THAT(GraphFromProto(p), IsOk());
}

TEST(GraphValidationTest, Versions) {
  proto::GraphProto p = SmallProto();
  p.set_producer_version(0);
  ExpectInvalid(p,
                "producer_version: 0 is not a graph format version (they start "
                "at 1; is this a subquad graph?)");
  p.set_producer_version(3);
  p.set_min_consumer_version(2);
  ExpectInvalid(p,
                "min_consumer_version: the file needs a reader of graph format "
                "version 2 or newer; this subquad reads version 1");
  p.set_min_consumer_version(4);
  ExpectInvalid(p, "min_consumer_version: 4 is outside [1, producer_version 3]");
  // A newer producer that old readers can still read loads.
  p.set_min_consumer_version(1);
  EXPECT_THAT(GraphFromProto(p), IsOk());
}

TEST(GraphValidationTest, Ids) {
  proto::GraphProto p = SmallProto();
  p.mutable_nodes(2)->set_id(-1);
  ExpectInvalid(p, "node 'matmul' (matmul) %-1: id: -1 is outside [0, 4194303]");
  p.mutable_nodes(2)->set_id(1 << 22);
  ExpectInvalid(p,
                "node 'matmul' (matmul) %4194304: id: 4194304 is outside [0, "
                "4194303]");
  p.mutable_nodes(2)->set_id(1);
  ExpectInvalid(p, "node 'matmul' (matmul) %1: id: also the id of node 'w'");
  // Holes and large ids within the limit are fine.
  p = SmallProto();
  p.mutable_nodes(4)->set_id(1000);
  p.mutable_outputs(0)->mutable_value()->set_node(1000);
  ASSERT_OK_AND_ASSIGN(Graph g, GraphFromProto(p));
  EXPECT_EQ(g.node(1000)->name(), "mul");
  EXPECT_EQ(g.id_bound(), 1001);
  ExpectInvalid(p, "node 'mul' (mul) %1000: id: 1000 is outside [0, 999]",
                {.max_node_id = 999});
  ExpectInvalid(p, "nodes: 5 nodes, but ids are limited to [0, 3]",
                {.max_node_id = 3});
}

TEST(GraphValidationTest, Names) {
  proto::GraphProto p = SmallProto();
  p.mutable_nodes(4)->set_name("matmul");
  ExpectInvalid(p, "node 'matmul' (mul) %4: name: also the name of %2");
  p.mutable_nodes(4)->set_name("");
  ExpectInvalid(p, "node '' (mul) %4: name: empty");
  p.mutable_nodes(4)->set_name("bad\x01name");
  p.mutable_nodes(4)->set_op("frobnicate");
  ExpectInvalid(p,
                "node 'bad\\x01name' (frobnicate) %4: op: 'frobnicate' is not a "
                "registered op (see 'subquad ops')");
}

TEST(GraphValidationTest, UnknownOp) {
  proto::GraphProto p = SmallProto();
  p.mutable_nodes(4)->set_op("mull");
  ExpectInvalid(p,
                "node 'mul' (mull) %4: op: 'mull' is not a registered op (see "
                "'subquad ops')");
}

TEST(GraphValidationTest, Roles) {
  proto::GraphProto p = SmallProto();
  p.mutable_nodes(4)->set_role(static_cast<proto::Role>(7));
  ExpectInvalid(p,
                "node 'mul' (mul) %4: role: 7 is not one of forward (0), "
                "backward (1), optimizer (2)");
}

TEST(GraphValidationTest, AttributeValues) {
  proto::GraphProto p = SmallProto();
  proto::NodeProto* mm = p.mutable_nodes(2);
  mm->add_attrs()->set_name("transpose_b");
  ExpectInvalid(p, "node 'matmul' (matmul) %2: attribute 'transpose_b': no value is set");
  mm->mutable_attrs(0)->set_b(true);
  mm->add_attrs()->set_name("");
  ExpectInvalid(p, "node 'matmul' (matmul) %2: attrs[1]: empty name");
  mm->mutable_attrs(1)->set_name("transpose_b");
  mm->mutable_attrs(1)->set_b(false);
  ExpectInvalid(p, "node 'matmul' (matmul) %2: attribute 'transpose_b': set twice");
}

TEST(GraphValidationTest, AttributesAgainstTheSchema) {
  proto::GraphProto p = SmallProto();
  proto::NodeProto* mm = p.mutable_nodes(2);
  proto::AttrProto* a = mm->add_attrs();
  a->set_name("transpose_b");
  a->set_i(1);
  ExpectInvalid(p,
                "node 'matmul' (matmul) %2: attributes: attribute 'transpose_b' "
                "must be bool, got int 1");
  a->set_name("transpose_c");
  a->set_b(true);
  ExpectInvalid(p,
                "node 'matmul' (matmul) %2: attributes: unknown attribute "
                "'transpose_c' (matmul has: transpose_a, transpose_b)");
  p = SmallProto();
  proto::NodeProto* x = p.mutable_nodes(0);
  ASSERT_EQ(x->attrs(1).name(), "shape");
  x->mutable_attrs()->DeleteSubrange(1, 1);
  ExpectInvalid(p,
                "node 'x' (input) %0: attributes: missing required attribute "
                "'shape' (shape)");
}

TEST(GraphValidationTest, ShapesAreBounded) {
  proto::GraphProto p = SmallProto();
  proto::ShapeProto* shape = p.mutable_nodes(0)->mutable_attrs(1)->mutable_shape();
  shape->set_dims(0, int64_t{1} << 41);
  ExpectInvalid(p,
                "node 'x' (input) %0: attribute 'shape': shape [2199023255552,3]: "
                "dim 0 = 2199023255552 is outside [0, 1099511627776]");
  shape->set_dims(0, -2);
  ExpectInvalid(p,
                "node 'x' (input) %0: attribute 'shape': shape [-2,3]: dim 0 = -2 "
                "is outside [0, 1099511627776]");
  // Each dim in range, the product overflowing.
  shape->Clear();
  for (int i = 0; i < 4; ++i) shape->add_dims(int64_t{1} << 20);
  ExpectInvalid(p,
                "node 'x' (input) %0: attribute 'shape': shape "
                "[1048576,1048576,1048576,1048576] has more than 1099511627776 "
                "elements");
  shape->Clear();
  for (int i = 0; i < 1000; ++i) shape->add_dims(1);
  ExpectInvalid(p, "node 'x' (input) %0: attribute 'shape': rank 1000 > 8");
  p = SmallProto();
  p.mutable_nodes(0)->mutable_output_types(0)->add_dims(int64_t{1} << 62);
  ExpectInvalid(p,
                "node 'x' (input) %0: output 0 type: shape "
                "[2,3,4611686018427387904]: dim 2 = 4611686018427387904 is outside "
                "[0, 1099511627776]");
}

TEST(GraphValidationTest, DTypes) {
  proto::GraphProto p = SmallProto();
  p.mutable_nodes(0)->mutable_output_types(0)->set_dtype(
      static_cast<proto::DType>(9));
  ExpectInvalid(p,
                "node 'x' (input) %0: output 0 type: dtype 9 is not one of f32 "
                "(1), f64 (2), i32 (3), i64 (4)");
  p = SmallProto();
  p.mutable_nodes(0)->mutable_attrs(0)->set_dtype(proto::DTYPE_UNSPECIFIED);
  ExpectInvalid(p,
                "node 'x' (input) %0: attribute 'dtype': dtype 0 is not one of "
                "f32 (1), f64 (2), i32 (3), i64 (4)");
}

TEST(GraphValidationTest, TensorBytesMatchTheirType) {
  proto::GraphProto p = SmallProto();
  proto::TensorProto* t = p.mutable_nodes(3)->mutable_attrs(0)->mutable_tensor();
  ASSERT_EQ(t->data().size(), 4u);
  t->set_data("abc");
  ExpectInvalid(p,
                "node 'two' (constant) %3: attribute 'value': tensor data is 3 "
                "bytes; f32[] needs 4");
  // A huge declared shape with few bytes is refused before any allocation.
  t->add_dims(int64_t{1} << 40);
  ExpectInvalid(p,
                "node 'two' (constant) %3: attribute 'value': tensor data is 3 "
                "bytes; f32[1099511627776] needs 4398046511104");
  t->clear_dims();
  t->set_dtype(proto::DTYPE_F64);
  t->set_data(std::string(8, '\0'));
  ExpectInvalid(p,
                "node 'two' (constant) %3: output 0 type: recorded f32[], op rule "
                "infers f64[]");
}

TEST(GraphValidationTest, DanglingReferences) {
  proto::GraphProto p = SmallProto();
  p.mutable_nodes(2)->mutable_inputs(1)->set_node(42);
  ExpectInvalid(p, "node 'matmul' (matmul) %2: input 1: %42 names no node in the file");
  p = SmallProto();
  p.mutable_nodes(2)->mutable_inputs(1)->set_output(1);
  ExpectInvalid(p,
                "node 'matmul' (matmul) %2: input 1: %1:1: node 'w' (parameter) "
                "%1 has 1 output(s)");
  p.mutable_nodes(2)->mutable_inputs(1)->set_output(-1);
  ExpectInvalid(p,
                "node 'matmul' (matmul) %2: input 1: %1:-1: node 'w' (parameter) "
                "%1 has 1 output(s)");
}

TEST(GraphValidationTest, ForwardReferences) {
  proto::GraphProto p = SmallProto();
  // List the constant after its user: no cycle, but out of order.
  p.mutable_nodes()->SwapElements(3, 4);
  ExpectInvalid(p,
                "node 'mul' (mul) %4: input 1: %3 (node 'two' (constant) %3) is "
                "listed after it; nodes must be listed in a topological order");
}

TEST(GraphValidationTest, Cycles) {
  proto::GraphProto p = SmallProto();
  // matmul reads mul, which reads matmul.
  p.mutable_nodes(2)->mutable_inputs(0)->set_node(4);
  ExpectInvalid(p,
                "the graph has a cycle (each node feeds the next): node 'mul' "
                "(mul) %4 -> node 'matmul' (matmul) %2 -> node 'mul' (mul) %4");
  p = SmallProto();
  p.mutable_nodes(4)->mutable_inputs(0)->set_node(4);
  ExpectInvalid(p,
                "the graph has a cycle (each node feeds the next): node 'mul' "
                "(mul) %4 -> node 'mul' (mul) %4");
}

TEST(GraphValidationTest, OutputTypesFollowTheShapeRule) {
  proto::GraphProto p = SmallProto();
  p.mutable_nodes(2)->mutable_output_types(0)->set_dims(1, 5);
  ExpectInvalid(p,
                "node 'matmul' (matmul) %2: output 0 type: recorded f32[2,5], op "
                "rule infers f32[2,4]");
  p = SmallProto();
  *p.mutable_nodes(2)->add_output_types() = p.nodes(2).output_types(0);
  ExpectInvalid(p,
                "node 'matmul' (matmul) %2: output_types: 2 recorded, the op has 1");
  p = SmallProto();
  // The producer's recorded type is what the user's rule sees.
  p.mutable_nodes(1)->mutable_output_types(0)->set_dims(0, 5);
  ExpectInvalid(p,
                "node 'w' (parameter) %1: output 0 type: recorded f32[5,4], op rule "
                "infers f32[3,4]");
  p = SmallProto();
  p.mutable_nodes(2)->mutable_inputs()->RemoveLast();
  ExpectInvalid(p, "node 'matmul' (matmul) %2: op rule: expects 2 inputs, got 1");
}

TEST(GraphValidationTest, Origins) {
  proto::GraphProto p = SmallProto();
  p.mutable_nodes(4)->set_origin(17);
  ExpectInvalid(p, "node 'mul' (mul) %4: origin: %17 names no node in the file");
  p.mutable_nodes(4)->set_origin(2);
  EXPECT_THAT(GraphFromProto(p), IsOk());
}

TEST(GraphValidationTest, GraphOutputs) {
  proto::GraphProto p = SmallProto();
  p.mutable_outputs(0)->mutable_value()->set_node(9);
  ExpectInvalid(p, "output 'y': value: %9 names no node in the file");
  p.mutable_outputs(0)->mutable_value()->set_node(4);
  p.mutable_outputs(0)->mutable_value()->set_output(2);
  ExpectInvalid(p, "output 'y': value: %4:2: node 'mul' (mul) %4 has 1 output(s)");
  p = SmallProto();
  p.mutable_outputs(0)->clear_value();
  ExpectInvalid(p, "output 'y': value: missing");
  p = SmallProto();
  *p.add_outputs() = p.outputs(0);
  ExpectInvalid(p, "output 'y': listed twice");
  p.mutable_outputs(1)->set_name("");
  ExpectInvalid(p, "outputs[1]: empty name");
}

TEST(GraphValidationTest, InterfaceListsMatchTheNodes) {
  proto::GraphProto p = SmallProto();
  p.add_inputs("tokens");
  ExpectInvalid(p, "inputs: lists [x, tokens] but the input nodes are [x]");
  p = SmallProto();
  p.set_parameters(0, "v");
  ExpectInvalid(p, "parameters: lists [v] but the parameter nodes are [w]");
  // The lists are optional.
  p.clear_parameters();
  p.clear_inputs();
  EXPECT_THAT(GraphFromProto(p), IsOk());
}

TEST(GraphValidationTest, UnparsableBytes) {
  EXPECT_THAT(ParseGraph("\xff\xff\xff", GraphFormat::kBinary),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "not a binary subquad graph: protobuf cannot parse it as "
                       "a GraphProto"));
  EXPECT_THAT(ParseGraph("producer_version: 1\nnodes { idd: 3 }\n",
                         GraphFormat::kText),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "not a text subquad graph: line 2, column 12: Message type "
                       "\"subquad.proto.NodeProto\" has no field named \"idd\"."));
  // Bytes that parse as an empty GraphProto are not a graph either.
  EXPECT_THAT(ParseGraph("", GraphFormat::kBinary),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("producer_version: 0 is not a graph format version")));
  EXPECT_THAT(ParseGraph(std::string(100, 'x'), GraphFormat::kBinary,
                         {.max_bytes = 99}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "graph is 100 bytes; the limit is 99"));
}

// Protobuf allocates per field, so a small file of empty messages could ask
// for many times its size: fields are counted before parsing.
TEST(GraphValidationTest, FieldBudget) {
  proto::GraphProto p = SmallProto();
  for (int i = 0; i < 1000; ++i) p.add_nodes()->add_inputs();
  const std::string binary = p.SerializeAsString();
  EXPECT_THAT(ParseGraph(binary, GraphFormat::kBinary, {.max_fields = 2000}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "the file holds more than 2000 protobuf fields (the limit)"));
  // Under the budget the parser runs and the validation speaks.
  EXPECT_THAT(ParseGraph(binary, GraphFormat::kBinary, {.max_fields = 3000}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "node '' () %0: id: also the id of node 'x'"));
  std::string text = "producer_version: 1\n";
  for (int i = 0; i < 1000; ++i) text += "nodes {}\n";
  EXPECT_THAT(ParseGraph(text, GraphFormat::kText, {.max_fields = 1000}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "the file holds more than 1000 protobuf fields (the limit)"));
  // Unknown fields count too.
  std::string unknown = binary;
  for (int i = 0; i < 3000; ++i) unknown += std::string("\xf8\x01\x00", 3);  // field 31
  EXPECT_THAT(ParseGraph(unknown, GraphFormat::kBinary, {.max_fields = 5000}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "the file holds more than 5000 protobuf fields (the limit)"));
}

}  // namespace
}  // namespace subquad
