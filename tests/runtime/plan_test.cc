// Tests of runtime::Plan: a property test over random DAGs of f32 ops (memory
// safety of the arena assignment, lifetimes, schedule order, and that a
// planned run computes what an unshared, copy-everything run computes), small
// deterministic plans (in-place chains, reshape aliasing, fetched
// intermediates, DebugString), and the exact error messages of Plan::Create
// and of Executor feeds, fetches and parameters.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/attribute.h"
#include "core/builder.h"
#include "core/graph.h"
#include "core/op_schema.h"
#include "core/tensor.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/ops.h"
#include "runtime/executor.h"
#include "runtime/parameter_store.h"
#include "runtime/plan.h"
#include "tests/ops/op_test_util.h"

namespace subquad {
namespace {

using ::subquad::testing::RandomTensor;
using ::subquad::testing::StatusIs;
using ::testing::Eq;
using ::testing::HasSubstr;

// ---- Plan invariants -----------------------------------------------------------

// Checks everything a plan promises about `graph` and `fetches`; failures are
// reported through gtest with `label` (the random graph's seed).
void CheckPlanInvariants(const Graph& graph, const std::vector<Value>& fetches,
                         const Plan& plan, const PlanOptions& options,
                         const std::string& label) {
  SCOPED_TRACE(label);
  const std::vector<NodeId>& schedule = plan.schedule();
  const int end = static_cast<int>(schedule.size());

  // The schedule holds exactly the nodes the fetches need, each once, every
  // node after the producers of its inputs.
  absl::flat_hash_set<NodeId> needed;
  std::vector<NodeId> stack;
  for (const Value& v : fetches) stack.push_back(v.node);
  while (!stack.empty()) {
    const NodeId id = stack.back();
    stack.pop_back();
    if (!needed.insert(id).second) continue;
    for (const Value& in : graph.node(id)->inputs()) stack.push_back(in.node);
  }
  absl::flat_hash_map<NodeId, int> pos;
  for (int i = 0; i < end; ++i) {
    EXPECT_TRUE(pos.emplace(schedule[i], i).second)
        << "node " << schedule[i] << " scheduled twice";
  }
  EXPECT_EQ(pos.size(), needed.size());
  for (NodeId id : needed) {
    EXPECT_TRUE(pos.contains(id)) << "needed node " << id << " not scheduled";
  }
  for (int i = 0; i < end; ++i) {
    const Node& n = *graph.node(schedule[i]);
    if (n.schema()->is_source) {
      EXPECT_EQ(n.num_inputs(), 0);
      continue;
    }
    for (const Value& in : n.inputs()) {
      ASSERT_TRUE(pos.contains(in.node))
          << NodeLabel(n) << " reads unscheduled " << in.ToString();
      EXPECT_LT(pos.at(in.node), i)
          << NodeLabel(n) << " scheduled before its input " << in.ToString();
    }
  }

  // The last reader of every value (fetches: the end of the run).
  absl::flat_hash_map<Value, int> last_read;
  for (int i = 0; i < end; ++i) {
    const Node& n = *graph.node(schedule[i]);
    for (int o = 0; o < n.num_outputs(); ++o) last_read[n.output(o)] = i;
    for (const Value& in : n.inputs()) {
      last_read[in] = std::max(last_read[in], i);
    }
  }
  for (const Value& v : fetches) last_read[v] = end;

  // Every value has a location; arena values are listed in their buffer,
  // which covers the value's whole lifetime and is big enough.
  const std::vector<PlannedBuffer>& buffers = plan.buffers();
  for (int i = 0; i < end; ++i) {
    const Node& n = *graph.node(schedule[i]);
    for (int o = 0; o < n.num_outputs(); ++o) {
      const Value v = n.output(o);
      ASSERT_TRUE(plan.has_location(v)) << v.ToString() << " has no location";
      const ValueLocation& loc = plan.location(v);
      if (n.op() == "input") {
        EXPECT_EQ(loc.storage, Storage::kFeed);
      } else if (n.op() == "parameter") {
        EXPECT_EQ(loc.storage, Storage::kParameter);
      } else if (n.op() == "constant") {
        EXPECT_EQ(loc.storage, Storage::kConstant);
      }
      if (loc.storage != Storage::kArena) {
        EXPECT_TRUE(n.schema()->is_source || n.schema()->alias_input >= 0)
            << NodeLabel(n) << " computed outside the arena";
        continue;
      }
      ASSERT_GE(loc.buffer, 0);
      ASSERT_LT(loc.buffer, static_cast<int>(buffers.size()));
      const PlannedBuffer& b = buffers[loc.buffer];
      EXPECT_NE(std::find(b.values.begin(), b.values.end(), v), b.values.end())
          << v.ToString() << " missing from buffer " << loc.buffer;
      EXPECT_LE(b.first_use, i) << v.ToString();
      EXPECT_GE(b.last_use, last_read.at(v)) << v.ToString();
      EXPECT_GE(b.size, graph.type(v).byte_size()) << v.ToString();
    }
  }

  // Buffers: aligned, inside [0, peak), and disjoint in memory whenever their
  // lifetimes ([first_use, last_use], inclusive) overlap.
  int64_t sum = 0;
  for (size_t i = 0; i < buffers.size(); ++i) {
    const PlannedBuffer& b = buffers[i];
    sum += b.size;
    EXPECT_GT(b.size, 0) << "buffer " << i;
    EXPECT_EQ(b.size % 64, 0) << "buffer " << i;
    EXPECT_EQ(b.offset % 64, 0) << "buffer " << i;
    EXPECT_GE(b.offset, 0) << "buffer " << i;
    EXPECT_LE(b.offset + b.size, plan.peak_bytes()) << "buffer " << i;
    EXPECT_LE(b.first_use, b.last_use) << "buffer " << i;
    EXPECT_FALSE(b.values.empty()) << "buffer " << i;
    for (size_t j = i + 1; j < buffers.size(); ++j) {
      const PlannedBuffer& c = buffers[j];
      const bool live_together =
          b.first_use <= c.last_use && c.first_use <= b.last_use;
      const bool share_bytes =
          b.offset < c.offset + c.size && c.offset < b.offset + b.size;
      EXPECT_FALSE(live_together && share_bytes)
          << "buffers " << i << " and " << j << " overlap:\n"
          << plan.DebugString(graph);
      if (!options.share_memory) {
        EXPECT_FALSE(share_bytes) << "buffers " << i << " and " << j;
      }
    }
  }
  EXPECT_EQ(plan.unshared_bytes(), sum);
  EXPECT_LE(plan.peak_bytes(), plan.unshared_bytes());
  if (!options.share_memory) {
    EXPECT_EQ(plan.peak_bytes(), sum);
  }

  // Within one buffer, a value computed there (not a reshape alias) is only
  // written once every value already there has been read for the last time.
  for (size_t bi = 0; bi < buffers.size(); ++bi) {
    std::vector<Value> values = buffers[bi].values;
    std::sort(values.begin(), values.end(), [&](Value a, Value b) {
      return pos.at(a.node) < pos.at(b.node);
    });
    for (size_t k = 0; k < values.size(); ++k) {
      const Node& producer = *graph.node(values[k].node);
      const int p = pos.at(values[k].node);
      if (k > 0 && producer.schema()->alias_input >= 0) {
        // A reshape sharing its input's bytes: the input must be here too.
        EXPECT_TRUE(options.allow_alias);
        const Value src = producer.input(producer.schema()->alias_input);
        EXPECT_NE(std::find(values.begin(), values.begin() + k, src),
                  values.begin() + k)
            << values[k].ToString() << " aliases " << src.ToString()
            << " but shares buffer " << bi << " with other values";
        continue;
      }
      if (k > 0) {
        EXPECT_TRUE(options.allow_inplace);
      }
      for (size_t j = 0; j < k; ++j) {
        EXPECT_LE(last_read.at(values[j]), p)
            << values[k].ToString() << " overwrites " << values[j].ToString()
            << " in buffer " << bi << " while it is still read:\n"
            << plan.DebugString(graph);
      }
    }
  }
}

// ---- Random graphs ---------------------------------------------------------------

struct RandomGraph {
  Graph graph;
  std::vector<std::string> fetch_names;
  std::vector<Value> fetches;
  std::vector<std::pair<std::string, Tensor>> feeds;
};

// A random DAG of f32 ops on three inputs and three parameters. `big` picks
// dimensions large enough for kernels' parallel paths.
RandomGraph MakeRandomGraph(uint32_t seed, bool big,
                            bool allow_reshape_of_source) {
  RandomGraph rg;
  std::mt19937 rng(seed);
  auto uniform = [&](int n) {
    return std::uniform_int_distribution<int>(0, n - 1)(rng);
  };
  const int64_t a = big ? 64 : 4, c = big ? 128 : 8, k = 2;
  GraphBuilder b(&rg.graph);
  std::vector<Value> pool;
  std::vector<Value> sources;
  auto input = [&](const std::string& name, Shape s) {
    Value v = b.Input(name, DType::kF32, s);
    rg.feeds.emplace_back(
        name, RandomTensor(DType::kF32, s, seed * 31u + rg.feeds.size()));
    pool.push_back(v);
    sources.push_back(v);
  };
  input("x0", {a, c});
  input("x1", {c, a});
  input("x2", {k, a, c});
  for (auto& [name, shape] : std::vector<std::pair<std::string, Shape>>{
           {"p0", {c}}, {"p1", {a, c}}, {"p2", {c, c}}}) {
    Value v = b.Parameter(name, DType::kF32, shape, Init::Normal(0.5));
    pool.push_back(v);
    sources.push_back(v);
  }
  int next_param = 3;

  // Operands: often one of the last few values (long chains and values that
  // die soon), else any value.
  auto pick = [&]() {
    const int n = static_cast<int>(pool.size());
    if (uniform(3) != 0) return pool[n - 1 - uniform(std::min(n, 4))];
    return pool[uniform(n)];
  };
  // Candidate reshape targets for `s`.
  auto reshape_targets = [&](const Shape& s) {
    const int64_t n = s.num_elements();
    std::vector<std::vector<int64_t>> t = {{n}, {n, 1}, {1, n}};
    if (n % a == 0) t.push_back({a, n / a});
    if (n % c == 0) t.push_back({n / c, c});
    if (n % (k * a) == 0) t.push_back({k, a, n / (k * a)});
    return t;
  };

  const int num_ops = 16 + uniform(24);
  for (int added = 0; added < num_ops;) {
    const int kind = uniform(12);
    absl::StatusOr<std::vector<Value>> r =
        absl::InvalidArgumentError("no candidate");
    for (int attempt = 0; attempt < 12 && !r.ok(); ++attempt) {
      Value x = pick();
      const Shape& xs = b.shape(x);
      switch (kind) {
        case 0:
        case 1:
        case 2: {  // binary ops, broadcasting among the pool's shapes
          static constexpr const char* kBinary[] = {"add", "mul", "sub"};
          Value y = attempt == 11 ? x : pick();
          if (uniform(2) == 0) std::swap(x, y);
          r = b.AddNode(kBinary[kind], {x, y});
          break;
        }
        case 3:
          r = b.AddNode("exp", {x});
          break;
        case 4:
          r = b.AddNode("tanh", {x});
          break;
        case 5:
          r = b.AddNode("scale", {x},
                        {{"factor", 0.25 + 0.5 * uniform(4)}});
          break;
        case 6: {
          if (!allow_reshape_of_source &&
              std::find(sources.begin(), sources.end(), x) != sources.end()) {
            break;
          }
          auto targets = reshape_targets(xs);
          const auto& t = targets[uniform(static_cast<int>(targets.size()))];
          r = b.AddNode("reshape", {x}, {{"shape", Shape(t)}});
          break;
        }
        case 7: {
          std::vector<int64_t> perm(xs.rank());
          std::iota(perm.begin(), perm.end(), 0);
          std::shuffle(perm.begin(), perm.end(), rng);
          r = b.AddNode("transpose", {x}, {{"perm", perm}});
          break;
        }
        case 8: {
          if (xs.rank() == 0) break;
          std::vector<int64_t> axes = {uniform(xs.rank())};
          if (xs.rank() > 1 && uniform(3) == 0) {
            const int64_t other = uniform(xs.rank());
            if (other != axes[0]) axes.push_back(other - xs.rank());
          }
          r = b.AddNode("reduce_sum", {x},
                        {{"axes", axes}, {"keepdims", true}});
          break;
        }
        case 9:
          if (xs.rank() == 0) break;
          r = b.AddNode("softmax", {x},
                        {{"axis", int64_t{-1 - uniform(xs.rank())}}});
          break;
        case 10:
        case 11: {  // matmul with a pool value, else a fresh parameter
          if (xs.rank() < 2) break;
          const int64_t kdim = xs[xs.rank() - 1];
          Value y = pick();
          const bool transpose_y = uniform(2) == 0;
          AttrMap attrs;
          if (transpose_y) attrs["transpose_b"] = true;
          r = b.AddNode("matmul", {x, y}, attrs);
          if (!r.ok() && attempt >= 8) {
            const int64_t n = uniform(2) == 0 ? a : c;
            Value w = b.Parameter(absl::StrCat("p", next_param++), DType::kF32,
                                  {kdim, n}, Init::Normal(0.3));
            pool.push_back(w);
            sources.push_back(w);
            r = b.AddNode("matmul", {x, w});
          }
          break;
        }
      }
    }
    if (!r.ok()) continue;
    pool.push_back((*r)[0]);
    ++added;
  }
  EXPECT_TRUE(b.ok()) << b.status();

  // Fetch 1-4 values: mostly computed ones, sometimes a source, often the
  // last value.
  const int num_fetches = 1 + uniform(4);
  for (int i = 0; i < num_fetches; ++i) {
    Value v;
    if (i == 0 && uniform(2) == 0) {
      v = pool.back();
    } else if (uniform(10) == 0) {
      v = sources[uniform(static_cast<int>(sources.size()))];
    } else {
      v = pool[sources.size() +
               uniform(static_cast<int>(pool.size() - sources.size()))];
      if (rg.graph.node(v.node)->schema()->is_source) v = pool.back();
    }
    rg.fetches.push_back(v);
    rg.fetch_names.push_back(rg.graph.node(v.node)->name());
  }
  return rg;
}

FeedMap Feeds(const RandomGraph& rg) {
  FeedMap feeds;
  for (const auto& [name, t] : rg.feeds) feeds[name] = t.view();
  return feeds;
}

constexpr PlanOptions kUnplanned = {/*allow_inplace=*/false,
                                    /*allow_alias=*/false,
                                    /*share_memory=*/false};

// What the default plans of the random graphs did, so the property test can
// check that it exercised in-place writes, aliases and sharing.
struct PlanStats {
  int graphs = 0;
  int nodes = 0;
  int inplace = 0;  // values written into a dying input's buffer
  int aliases = 0;  // reshapes sharing their input's buffer
  int shared = 0;   // plans whose peak is below their unshared bytes
  int matmuls = 0;
};

void CheckRandomGraph(uint32_t seed, bool big, bool allow_reshape_of_source,
                      PlanStats* stats) {
  const std::string label =
      absl::StrCat("random graph seed ", seed, big ? " (big)" : "");
  SCOPED_TRACE(label);
  RandomGraph rg = MakeRandomGraph(seed, big, allow_reshape_of_source);
  ASSERT_FALSE(rg.fetches.empty());

  for (const PlanOptions& options :
       {PlanOptions{}, kUnplanned, PlanOptions{true, false, true},
        PlanOptions{false, true, true}, PlanOptions{true, true, false}}) {
    ASSERT_OK_AND_ASSIGN(Plan plan,
                         Plan::Create(rg.graph, rg.fetches, options));
    CheckPlanInvariants(rg.graph, rg.fetches, plan, options, label);
    if (::testing::Test::HasFailure()) return;
  }
  {
    ASSERT_OK_AND_ASSIGN(Plan plan, Plan::Create(rg.graph, rg.fetches));
    ++stats->graphs;
    stats->nodes += static_cast<int>(plan.schedule().size());
    if (plan.peak_bytes() < plan.unshared_bytes()) ++stats->shared;
    for (NodeId id : plan.schedule()) {
      if (rg.graph.node(id)->op() == "matmul") ++stats->matmuls;
    }
    for (const PlannedBuffer& buf : plan.buffers()) {
      for (size_t k = 1; k < buf.values.size(); ++k) {
        const Node& n = *rg.graph.node(buf.values[k].node);
        ++(n.schema()->alias_input >= 0 ? stats->aliases : stats->inplace);
      }
    }
  }

  ParameterStore params;
  ASSERT_OK(params.Initialize(rg.graph, seed));
  ExecutorOptions planned_options;
  planned_options.num_threads = 2;
  ExecutorOptions unplanned_options = planned_options;
  unplanned_options.plan = kUnplanned;
  ASSERT_OK_AND_ASSIGN(
      auto planned,
      Executor::Create(rg.graph, rg.fetch_names, &params, planned_options));
  ASSERT_OK_AND_ASSIGN(
      auto unplanned,
      Executor::Create(rg.graph, rg.fetch_names, &params, unplanned_options));
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> got, planned->Run(Feeds(rg)));
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> want, unplanned->Run(Feeds(rg)));
  // A second run on the same arena gives the same bytes.
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> again, planned->Run(Feeds(rg)));
  ASSERT_EQ(got.size(), rg.fetches.size());
  ASSERT_EQ(want.size(), rg.fetches.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].type(), rg.graph.type(rg.fetches[i]));
    EXPECT_TRUE(got[i].BitwiseEquals(want[i]))
        << "fetch " << rg.fetch_names[i] << ": planned " << got[i].DebugString()
        << " vs unplanned " << want[i].DebugString() << "\n"
        << planned->plan().DebugString(rg.graph);
    EXPECT_TRUE(again[i].BitwiseEquals(got[i])) << rg.fetch_names[i];
  }
}

void ExpectCoverage(const PlanStats& stats, int graphs) {
  EXPECT_EQ(stats.graphs, graphs);
  EXPECT_GT(stats.inplace, 0);
  EXPECT_GT(stats.aliases, 0);
  EXPECT_GT(stats.shared, graphs / 4);
  EXPECT_GT(stats.matmuls, 0);
  std::printf(
      "[   INFO   ] %d graphs, %d scheduled nodes, %d in-place, %d aliases, "
      "%d matmuls, %d plans sharing memory\n",
      stats.graphs, stats.nodes, stats.inplace, stats.aliases, stats.matmuls,
      stats.shared);
}

TEST(PlanPropertyTest, RandomGraphsSmall) {
  PlanStats stats;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    CheckRandomGraph(seed, /*big=*/false, /*allow_reshape_of_source=*/false,
                     &stats);
    if (HasFailure()) return;
  }
  ExpectCoverage(stats, 40);
}

TEST(PlanPropertyTest, RandomGraphsBig) {
  PlanStats stats;
  for (uint32_t seed = 101; seed <= 112; ++seed) {
    CheckRandomGraph(seed, /*big=*/true, /*allow_reshape_of_source=*/false,
                     &stats);
    if (HasFailure()) return;
  }
  ExpectCoverage(stats, 12);
}

// As above, with reshapes applied directly to feeds and parameters.
TEST(PlanPropertyTest, RandomGraphsWithReshapeOfSources) {
  PlanStats stats;
  for (uint32_t seed = 201; seed <= 220; ++seed) {
    CheckRandomGraph(seed, /*big=*/false, /*allow_reshape_of_source=*/true,
                     &stats);
    if (HasFailure()) return;
  }
  ExpectCoverage(stats, 20);
}

// ---- Small deterministic plans ---------------------------------------------------

TEST(PlanTest, InPlaceChainUsesOneBuffer) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {3, 5});
  Value e1 = ops::Exp(b, x);
  Value t = ops::Tanh(b, e1);
  Value e2 = ops::Exp(b, t);
  ASSERT_OK(b.status());
  ASSERT_OK_AND_ASSIGN(Plan plan, Plan::Create(g, {e2}));
  EXPECT_THAT(plan.schedule(),
              ::testing::ElementsAre(x.node, e1.node, t.node, e2.node));
  ASSERT_EQ(plan.buffers().size(), 1u) << plan.DebugString(g);
  EXPECT_EQ(plan.location(x).storage, Storage::kFeed);
  EXPECT_EQ(plan.location(x).source, x.node);
  for (Value v : {e1, t, e2}) {
    EXPECT_EQ(plan.location(v).storage, Storage::kArena) << v.ToString();
    EXPECT_EQ(plan.location(v).buffer, 0) << v.ToString();
  }
  const PlannedBuffer& buf = plan.buffers()[0];
  EXPECT_THAT(buf.values, ::testing::ElementsAre(e1, t, e2));
  EXPECT_EQ(buf.offset, 0);
  EXPECT_EQ(buf.size, 64);  // 15 floats = 60 bytes, rounded up to 64
  EXPECT_EQ(buf.first_use, 1);
  EXPECT_EQ(buf.last_use, 4);  // fetched: lives to the end of the run
  EXPECT_EQ(plan.peak_bytes(), 64);
  EXPECT_EQ(plan.unshared_bytes(), 64);

  // Without in-place, three buffers; exp and the second exp may share
  // memory (their lifetimes [1,2] and [3,4] do not overlap).
  ASSERT_OK_AND_ASSIGN(Plan no_inplace,
                       Plan::Create(g, {e2}, PlanOptions{false, true, true}));
  EXPECT_EQ(no_inplace.buffers().size(), 3u);
  EXPECT_EQ(no_inplace.unshared_bytes(), 3 * 64);
  EXPECT_EQ(no_inplace.peak_bytes(), 2 * 64) << no_inplace.DebugString(g);

  // And the values the plan computes in one buffer are right.
  Tensor xt = RandomTensor(DType::kF32, {3, 5}, 7);
  ASSERT_OK_AND_ASSIGN(
      auto exec, Executor::Create(g, {g.node(e2.node)->name()}, nullptr));
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out, exec->Run({{"x", xt.view()}}));
  ASSERT_EQ(out.size(), 1u);
  for (int i = 0; i < 15; ++i) {
    const float want = std::exp(std::tanh(std::exp(xt.data<float>()[i])));
    EXPECT_NEAR(out[0].data<float>()[i], want, 1e-6f * want) << i;
  }
}

TEST(PlanTest, InPlaceNeedsTheInputToDie) {
  // exp(x) is read by both tanh and the final add: tanh must not overwrite it.
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {16});
  Value e = ops::Exp(b, x);
  Value t = ops::Tanh(b, e);
  Value s = ops::Add(b, t, e);
  ASSERT_OK(b.status());
  ASSERT_OK_AND_ASSIGN(Plan plan, Plan::Create(g, {s}));
  EXPECT_NE(plan.location(t).buffer, plan.location(e).buffer)
      << plan.DebugString(g);
  // The add may overwrite t (input 0), which dies there.
  EXPECT_EQ(plan.location(s).buffer, plan.location(t).buffer)
      << plan.DebugString(g);
  CheckPlanInvariants(g, {s}, plan, PlanOptions{}, "InPlaceNeedsTheInputToDie");
}

TEST(PlanTest, ReshapeAliasesItsInput) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {4, 6});
  Value e = ops::Exp(b, x);
  Value r = ops::Reshape(b, e, {2, 12});
  Value t = ops::Transpose(b, r, {1, 0});
  ASSERT_OK(b.status());
  ASSERT_OK_AND_ASSIGN(Plan plan, Plan::Create(g, {t, r}));
  const ValueLocation& le = plan.location(e);
  const ValueLocation& lr = plan.location(r);
  EXPECT_EQ(lr.storage, Storage::kArena);
  EXPECT_EQ(lr.buffer, le.buffer) << plan.DebugString(g);
  EXPECT_THAT(plan.buffers()[le.buffer].values, ::testing::ElementsAre(e, r));
  // r is fetched: the shared buffer lives to the end.
  EXPECT_EQ(plan.buffers()[le.buffer].last_use,
            static_cast<int>(plan.schedule().size()));
  EXPECT_NE(plan.location(t).buffer, le.buffer);

  ASSERT_OK_AND_ASSIGN(Plan no_alias,
                       Plan::Create(g, {t, r}, PlanOptions{true, false, true}));
  EXPECT_NE(no_alias.location(r).buffer, no_alias.location(e).buffer);
  EXPECT_EQ(no_alias.buffers().size(), 3u);
  CheckPlanInvariants(g, {t, r}, plan, PlanOptions{}, "alias");
  CheckPlanInvariants(g, {t, r}, no_alias, PlanOptions{true, false, true},
                      "no alias");

  // Results agree with and without aliasing.
  Tensor xt = RandomTensor(DType::kF32, {4, 6}, 3);
  const std::vector<std::string> fetches = {g.node(t.node)->name(),
                                            g.node(r.node)->name()};
  ASSERT_OK_AND_ASSIGN(auto ex1, Executor::Create(g, fetches, nullptr));
  ExecutorOptions opts;
  opts.plan = kUnplanned;
  ASSERT_OK_AND_ASSIGN(auto ex2, Executor::Create(g, fetches, nullptr, opts));
  ASSERT_OK_AND_ASSIGN(auto o1, ex1->Run({{"x", xt.view()}}));
  ASSERT_OK_AND_ASSIGN(auto o2, ex2->Run({{"x", xt.view()}}));
  ASSERT_EQ(o1.size(), 2u);
  EXPECT_TRUE(o1[0].BitwiseEquals(o2[0]));
  EXPECT_TRUE(o1[1].BitwiseEquals(o2[1]));
  EXPECT_EQ(o1[1].shape(), Shape({2, 12}));
  for (int i = 0; i < 24; ++i) {
    const float want = std::exp(xt.data<float>()[i]);
    EXPECT_NEAR(o1[1].data<float>()[i], want, 1e-6f * want) << i;
  }
  // t[j][i] = r[i][j]
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 12; ++j) {
      EXPECT_EQ(o1[0].data<float>()[j * 2 + i], o1[1].data<float>()[i * 12 + j]);
    }
  }
}

// A reshape applied directly to a feed or a parameter aliases that external
// storage: its location is the feed/parameter, not the arena, and the
// executor runs no kernel for it (a regression test: the reshape's step once
// wrote through a null output view).
TEST(PlanTest, ReshapeOfFeedOrParameter) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {4, 6});
  Value w = b.Parameter("w", DType::kF32, {6, 4});
  Value rx = ops::Reshape(b, x, {6, 4});
  Value rw = ops::Reshape(b, w, {4, 6});
  Value s = ops::Add(b, rx, ops::Transpose(b, rw, {1, 0}));
  ASSERT_OK(b.status());
  ASSERT_OK_AND_ASSIGN(Plan plan, Plan::Create(g, {s, rx}));
  EXPECT_EQ(plan.location(rx).storage, Storage::kFeed);
  EXPECT_EQ(plan.location(rx).source, x.node);
  EXPECT_EQ(plan.location(rw).storage, Storage::kParameter);
  EXPECT_EQ(plan.location(rw).source, w.node);
  CheckPlanInvariants(g, {s, rx}, plan, PlanOptions{}, "reshape of sources");

  ParameterStore params;
  ASSERT_OK(params.Initialize(g, 5));
  Tensor xt = RandomTensor(DType::kF32, {4, 6}, 9);
  const std::vector<std::string> fetches = {g.node(s.node)->name(),
                                            g.node(rx.node)->name()};
  ASSERT_OK_AND_ASSIGN(auto exec, Executor::Create(g, fetches, &params));
  ASSERT_OK_AND_ASSIGN(auto out, exec->Run({{"x", xt.view()}}));
  ASSERT_EQ(out.size(), 2u);
  const float* wp = params.Find("w")->data<float>();
  for (int i = 0; i < 24; ++i) {
    EXPECT_EQ(out[1].data<float>()[i], xt.data<float>()[i]);
    // s[i][j] = x.flat[i*4+j] + rw[j][i] = x.flat[i*4+j] + w.flat[j*6+i]
    const int r = i / 4, c = i % 4;
    EXPECT_EQ(out[0].data<float>()[i], xt.data<float>()[i] + wp[c * 6 + r]);
  }
}

// The same graph without aliasing: the reshapes copy into the arena.
TEST(PlanTest, ReshapeOfFeedOrParameterWithoutAlias) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {4, 6});
  Value w = b.Parameter("w", DType::kF32, {6, 4});
  Value rx = ops::Reshape(b, x, {6, 4});
  Value rw = ops::Reshape(b, w, {4, 6});
  Value s = ops::Add(b, rx, ops::Transpose(b, rw, {1, 0}));
  ASSERT_OK(b.status());
  const PlanOptions no_alias{true, false, true};
  ASSERT_OK_AND_ASSIGN(Plan plan, Plan::Create(g, {s, rx}, no_alias));
  EXPECT_EQ(plan.location(rx).storage, Storage::kArena);
  EXPECT_EQ(plan.location(rw).storage, Storage::kArena);
  CheckPlanInvariants(g, {s, rx}, plan, no_alias, "reshape of sources");

  ParameterStore params;
  ASSERT_OK(params.Initialize(g, 5));
  Tensor xt = RandomTensor(DType::kF32, {4, 6}, 9);
  ExecutorOptions options;
  options.plan = no_alias;
  ASSERT_OK_AND_ASSIGN(
      auto exec, Executor::Create(g, {g.node(s.node)->name(),
                                      g.node(rx.node)->name()},
                                  &params, options));
  ASSERT_OK_AND_ASSIGN(auto out, exec->Run({{"x", xt.view()}}));
  ASSERT_EQ(out.size(), 2u);
  const float* wp = params.Find("w")->data<float>();
  for (int i = 0; i < 24; ++i) {
    EXPECT_EQ(out[1].data<float>()[i], xt.data<float>()[i]);
    const int r = i / 4, c = i % 4;
    EXPECT_EQ(out[0].data<float>()[i], xt.data<float>()[i] + wp[c * 6 + r]);
  }
}

TEST(PlanTest, FetchedIntermediateSurvivesToTheEnd) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {8, 8});
  Value e = ops::Exp(b, x);      // fetched
  Value t = ops::Tanh(b, e);     // may not overwrite e
  Value s = ops::Scale(b, t, 3.0);
  Value m = ops::MatMul(b, s, s);
  Value u = ops::Tanh(b, m);
  ASSERT_OK(b.status());
  ASSERT_OK_AND_ASSIGN(Plan plan, Plan::Create(g, {u, e}));
  const int end = static_cast<int>(plan.schedule().size());
  const PlannedBuffer& eb = plan.buffers()[plan.location(e).buffer];
  EXPECT_EQ(eb.last_use, end);
  EXPECT_THAT(eb.values, ::testing::ElementsAre(e)) << plan.DebugString(g);
  for (Value v : {t, s, m, u}) {
    EXPECT_NE(plan.location(v).buffer, plan.location(e).buffer) << v.ToString();
  }
  CheckPlanInvariants(g, {u, e}, plan, PlanOptions{}, "fetched intermediate");

  Tensor xt = RandomTensor(DType::kF32, {8, 8}, 11);
  ASSERT_OK_AND_ASSIGN(
      auto exec, Executor::Create(g, {g.node(u.node)->name(),
                                      g.node(e.node)->name()}, nullptr));
  ASSERT_OK_AND_ASSIGN(auto out, exec->Run({{"x", xt.view()}}));
  ASSERT_EQ(out.size(), 2u);
  for (int i = 0; i < 64; ++i) {
    const float want = std::exp(xt.data<float>()[i]);
    EXPECT_NEAR(out[1].data<float>()[i], want, 1e-6f * want) << i;
  }
}

TEST(PlanTest, SharesMemoryAcrossDisjointLifetimes) {
  // A long chain of same-sized non-elementwise ops: each transpose output dies
  // at the next step, so two buffers' worth of memory suffices.
  Graph g;
  GraphBuilder b(&g);
  Value v = b.Input("x", DType::kF32, {16, 16});
  for (int i = 0; i < 10; ++i) v = ops::Transpose(b, v, {1, 0});
  ASSERT_OK(b.status());
  ASSERT_OK_AND_ASSIGN(Plan plan, Plan::Create(g, {v}));
  EXPECT_EQ(plan.buffers().size(), 10u);
  EXPECT_EQ(plan.unshared_bytes(), 10 * 1024);
  EXPECT_EQ(plan.peak_bytes(), 2 * 1024) << plan.DebugString(g);
  CheckPlanInvariants(g, {v}, plan, PlanOptions{}, "chain");
}

TEST(PlanTest, DebugStringMentionsEveryBuffer) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {4, 8});
  Value e = ops::Exp(b, x);
  Value r = ops::Reshape(b, e, {8, 4});
  Value m = ops::MatMul(b, x, r);
  Value s = ops::Softmax(b, m);
  ASSERT_OK(b.status());
  ASSERT_OK_AND_ASSIGN(Plan plan, Plan::Create(g, {s}));
  const std::string text = plan.DebugString(g);
  EXPECT_THAT(text, HasSubstr(absl::StrCat(
                        "plan: ", plan.schedule().size(), " nodes, ",
                        plan.buffers().size(), " buffers, peak ",
                        plan.peak_bytes(), " bytes (unshared ",
                        plan.unshared_bytes(), ")")));
  ASSERT_GE(plan.buffers().size(), 2u);
  for (size_t i = 0; i < plan.buffers().size(); ++i) {
    const PlannedBuffer& buf = plan.buffers()[i];
    EXPECT_THAT(text, HasSubstr(absl::StrCat(
                          "buffer ", i, ": offset ", buf.offset, " size ",
                          buf.size, " live [", buf.first_use, ", ",
                          buf.last_use, "]")));
    for (const Value& v : buf.values) {
      EXPECT_THAT(text, HasSubstr(absl::StrCat(
                            v.ToString(), " ", g.type(v).ToString(), " '",
                            g.node(v.node)->name(), "'")));
    }
  }
  // The reshape shares exp's buffer line.
  EXPECT_THAT(text, HasSubstr("'exp' %" + std::to_string(r.node)));
}

TEST(PlanTest, FetchThatIsNotAValue) {
  Graph g;
  GraphBuilder b(&g);
  Value x = b.Input("x", DType::kF32, {4});
  Value e = ops::Exp(b, x);
  ASSERT_OK(b.status());
  EXPECT_THAT(Plan::Create(g, {Value{999, 0}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("fetch %999 is not a value of the graph")));
  EXPECT_THAT(Plan::Create(g, {e, Value{e.node, 2}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(absl::StrCat("fetch %", e.node,
                                       ":2 is not a value of the graph"))));
  EXPECT_THAT(Plan::Create(g, {Value{}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("fetch %-1 is not a value of the graph")));
}

TEST(PlanTest, EmptyFetchesPlanNothing) {
  Graph g;
  GraphBuilder b(&g);
  ops::Exp(b, b.Input("x", DType::kF32, {4}));
  ASSERT_OK(b.status());
  ASSERT_OK_AND_ASSIGN(Plan plan, Plan::Create(g, {}));
  EXPECT_TRUE(plan.schedule().empty());
  EXPECT_TRUE(plan.buffers().empty());
  EXPECT_EQ(plan.peak_bytes(), 0);
}

// ---- Executor errors -------------------------------------------------------------

class ExecutorErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GraphBuilder b(&g_);
    Value x = b.Input("x", DType::kF32, {2, 3});
    Value y = b.Input("y", DType::kF32, {3});
    Value w = b.Parameter("w", DType::kF32, {3, 3});
    b.Input("unused", DType::kF64, {1});
    b.Output("out", ops::MatMul(b, ops::Add(b, x, y), w));
    ASSERT_OK(b.status());
    x_ = RandomTensor(DType::kF32, {2, 3}, 1);
    y_ = RandomTensor(DType::kF32, {3}, 2);
  }

  Graph g_;
  Tensor x_, y_;
};

TEST_F(ExecutorErrorTest, Succeeds) {
  ParameterStore params;
  ASSERT_OK(params.Initialize(g_, 1));
  ASSERT_OK_AND_ASSIGN(auto exec, Executor::Create(g_, {"out"}, &params));
  EXPECT_OK(exec->Run({{"x", x_.view()}, {"y", y_.view()}}));
}

TEST_F(ExecutorErrorTest, UnknownFeed) {
  ParameterStore params;
  ASSERT_OK(params.Initialize(g_, 1));
  ASSERT_OK_AND_ASSIGN(auto exec, Executor::Create(g_, {"out"}, &params));
  EXPECT_THAT(
      exec->Run({{"x", x_.view()}, {"y", y_.view()}, {"z", y_.view()}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("feed 'z' names no input of the graph; inputs are: x, y, "
                  "unused")));
  // A node that exists but is not an input.
  EXPECT_THAT(exec->Run({{"w", y_.view()}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("feed 'w' names no input of the graph")));
}

TEST_F(ExecutorErrorTest, WrongDType) {
  ParameterStore params;
  ASSERT_OK(params.Initialize(g_, 1));
  ASSERT_OK_AND_ASSIGN(auto exec, Executor::Create(g_, {"out"}, &params));
  Tensor x64(DType::kF64, {2, 3});
  EXPECT_THAT(exec->Run({{"x", x64.view()}, {"y", y_.view()}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("feed 'x': input expects f32[2,3], got f64[2,3]")));
}

TEST_F(ExecutorErrorTest, WrongShape) {
  ParameterStore params;
  ASSERT_OK(params.Initialize(g_, 1));
  ASSERT_OK_AND_ASSIGN(auto exec, Executor::Create(g_, {"out"}, &params));
  Tensor x32(DType::kF32, {3, 2});
  EXPECT_THAT(exec->Run({{"x", x32.view()}, {"y", y_.view()}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("feed 'x': input expects f32[2,3], got f32[3,2]")));
}

TEST_F(ExecutorErrorTest, FeedWithoutData) {
  ParameterStore params;
  ASSERT_OK(params.Initialize(g_, 1));
  ASSERT_OK_AND_ASSIGN(auto exec, Executor::Create(g_, {"out"}, &params));
  TensorView empty(TensorType{DType::kF32, Shape{2, 3}}, nullptr);
  EXPECT_THAT(exec->Run({{"x", empty}, {"y", y_.view()}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("feed 'x' has no data")));
}

TEST_F(ExecutorErrorTest, MissingFeed) {
  ParameterStore params;
  ASSERT_OK(params.Initialize(g_, 1));
  ASSERT_OK_AND_ASSIGN(auto exec, Executor::Create(g_, {"out"}, &params));
  EXPECT_THAT(
      exec->Run({{"x", x_.view()}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("input 'y' (f32[3]) is needed by the fetches but was not "
                  "fed")));
  // An input the fetches do not need may be left out.
  EXPECT_OK(exec->Run({{"x", x_.view()}, {"y", y_.view()}}));
}

TEST_F(ExecutorErrorTest, MissingParameter) {
  ParameterStore params;
  ASSERT_OK_AND_ASSIGN(auto exec, Executor::Create(g_, {"out"}, &params));
  EXPECT_THAT(
      exec->Run({{"x", x_.view()}, {"y", y_.view()}}),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               Eq("parameter 'w' is not in the ParameterStore (initialise it "
                  "from the graph first)")));
  // No store at all reads the same.
  ASSERT_OK_AND_ASSIGN(auto no_store, Executor::Create(g_, {"out"}, nullptr));
  EXPECT_THAT(no_store->Run({{"x", x_.view()}, {"y", y_.view()}}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("parameter 'w' is not in the ParameterStore")));
}

TEST_F(ExecutorErrorTest, ParameterOfTheWrongType) {
  ParameterStore params;
  params.Set("w", Tensor(DType::kF64, {3, 3}));
  ASSERT_OK_AND_ASSIGN(auto exec, Executor::Create(g_, {"out"}, &params));
  EXPECT_THAT(exec->Run({{"x", x_.view()}, {"y", y_.view()}}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       Eq("parameter 'w': the store holds f64[3,3], the graph "
                          "declares f32[3,3]")));
}

TEST_F(ExecutorErrorTest, UnknownFetch) {
  ParameterStore params;
  EXPECT_THAT(Executor::Create(g_, {"nope"}, &params),
              StatusIs(absl::StatusCode::kNotFound,
                       Eq("fetch 'nope' is neither a graph output nor a node "
                          "name; graph outputs: out")));
  EXPECT_THAT(Executor::Create(g_, {"x:1"}, &params),
              StatusIs(absl::StatusCode::kNotFound,
                       Eq("fetch 'x:1': node 'x' (input) has 1 output(s)")));
}

TEST_F(ExecutorErrorTest, FetchesByNodeNameAndOutputIndex) {
  ParameterStore params;
  ASSERT_OK(params.Initialize(g_, 1));
  ASSERT_OK_AND_ASSIGN(auto exec,
                       Executor::Create(g_, {"out", "add", "x:0", "w"}, &params));
  ASSERT_OK_AND_ASSIGN(auto out, exec->Run({{"x", x_.view()}, {"y", y_.view()}}));
  ASSERT_EQ(out.size(), 4u);
  EXPECT_TRUE(out[2].BitwiseEquals(x_));
  EXPECT_TRUE(out[3].BitwiseEquals(*params.Find("w")));
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 3; ++j) {
      EXPECT_EQ(out[1].data<float>()[i * 3 + j],
                x_.data<float>()[i * 3 + j] + y_.data<float>()[j]);
    }
  }
}

}  // namespace
}  // namespace subquad
