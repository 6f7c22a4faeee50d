// `subquad run`: executes a graph file with .npy feeds and writes the
// fetches as .npy.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status.h"
#include "runtime/executor.h"
#include "runtime/parameter_store.h"
#include "runtime/plan.h"
#include "serialize/checkpoint.h"
#include "serialize/npy.h"
#include "tools/args.h"
#include "tools/cmd_common.h"
#include "tools/commands.h"

namespace subquad::cli {
namespace {

// A fetch name as a file name: characters other than [A-Za-z0-9._-]
// become '_' ("grad/block0/attn/q_proj/weight" -> "grad_block0_attn_...").
std::string FileNameFor(const std::string& fetch) {
  std::string out = fetch;
  for (char& c : out) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) c = '_';
  }
  if (out.empty() || out[0] == '.') out = absl::StrCat("_", out);
  return out + ".npy";
}

// Every parameter of the graph from the checkpoint (with its type).
absl::Status LoadParameters(const Graph& g, const std::string& path,
                            ParameterStore* params) {
  ASSIGN_OR_RETURN(Checkpoint c, LoadCheckpoint(path));
  for (const Node* n : g.ParameterNodes()) {
    auto it = c.tensors.find(n->name());
    if (it == c.tensors.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": has no tensor for parameter '", n->name(), "'"));
    }
    if (it->second.type() != n->output_type(0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor '", n->name(), "' is ", it->second.type().ToString(),
          " but the graph's parameter is ", n->output_type(0).ToString()));
    }
    params->Set(n->name(), std::move(it->second));
  }
  return absl::OkStatus();
}

absl::Status Run(const Args& a, const std::vector<std::string>& feeds,
                 std::vector<std::string> fetches, uint64_t seed,
                 int64_t max_memory, int threads, const std::string& out_dir) {
  const std::string path = a.positionals()[0];
  ASSIGN_OR_RETURN(Graph g, LoadGraphFile(path));
  if (fetches.empty()) {
    for (const auto& [name, v] : g.outputs()) fetches.push_back(name);
  }
  if (fetches.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the graph has no outputs; name values with --fetch"));
  }
  absl::flat_hash_map<std::string, std::string> files;  // file -> fetch
  for (const std::string& f : fetches) {
    auto [it, fresh] = files.emplace(FileNameFor(f), f);
    if (!fresh) {
      return absl::InvalidArgumentError(absl::StrCat(
          "fetches '", it->second, "' and '", f, "' would both be written to ",
          out_dir, "/", it->first));
    }
  }
  // Refuse a graph whose memory would not fit before allocating any of it.
  std::vector<Value> values;
  for (const std::string& f : fetches) {
    ASSIGN_OR_RETURN(Value v, ResolveFetch(g, f));
    values.push_back(v);
  }
  ASSIGN_OR_RETURN(Plan plan, Plan::Create(g, values));
  int64_t param_bytes = 0;
  for (const Node* n : g.ParameterNodes()) param_bytes += n->output_type(0).byte_size();
  if (plan.peak_bytes() > max_memory || param_bytes > max_memory - plan.peak_bytes()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        path, ": running it needs ", HumanBytes(plan.peak_bytes()),
        " of intermediates and ", HumanBytes(param_bytes),
        " of parameters; --max-memory is ", HumanBytes(max_memory)));
  }

  ParameterStore params;
  const std::string checkpoint = a.GetString("checkpoint");
  if (!checkpoint.empty()) {
    RETURN_IF_ERROR(LoadParameters(g, checkpoint, &params));
  } else {
    RETURN_IF_ERROR(params.Initialize(g, seed));
  }
  std::vector<Tensor> feed_tensors;
  feed_tensors.reserve(feeds.size());
  FeedMap feed_map;
  for (const std::string& f : feeds) {
    const size_t eq = f.find('=');
    const std::string name = f.substr(0, eq), file = f.substr(eq + 1);
    ASSIGN_OR_RETURN(Tensor t, ReadNpy(file));
    feed_tensors.push_back(std::move(t));
    feed_map[name] = feed_tensors.back().view();
  }
  ExecutorOptions options;
  options.num_threads = threads;
  ASSIGN_OR_RETURN(auto exec, Executor::Create(g, fetches, &params, options));
  ASSIGN_OR_RETURN(std::vector<Tensor> out, exec->Run(feed_map));
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot create directory '",
                                               out_dir, "': ", ec.message()));
  }
  for (size_t i = 0; i < fetches.size(); ++i) {
    const std::string file = absl::StrCat(out_dir, "/", FileNameFor(fetches[i]));
    RETURN_IF_ERROR(WriteNpy(file, out[i].view()));
    std::printf("%s %s -> %s\n", fetches[i].c_str(),
                out[i].type().ToString().c_str(), file.c_str());
  }
  return absl::OkStatus();
}

}  // namespace

int RunRun(const std::vector<std::string>& argv_in) {
  Args a("run",
         "Runs a graph file once: feeds inputs from .npy files, initialises the "
         "parameters from --seed (as `subquad train` does) or loads them from a "
         "checkpoint, and writes each fetched value to DIR/<name>.npy (characters "
         "other than letters, digits, '.', '_' and '-' in the name become '_').");
  a.Positional("FILE", "a graph file (.sqg or .sqtxt)")
      .Flag("feed", "", "NAME=FILE.npy: the value of input NAME (repeat per input)")
      .Flag("fetch", "", "a graph output, node name or node:k to write (repeat; "
                         "default: every graph output)")
      .Flag("out", "", "directory for the fetched .npy files (required)")
      .Flag("seed", "1", "seed of the parameter initialisation")
      .Flag("checkpoint", "", "load every parameter from this checkpoint instead")
      .Flag("threads", "0", "worker threads (0: all cores)")
      .Flag("max-memory", "17179869184",
            "refuse graphs needing more bytes of parameters and intermediates");
  std::vector<std::string> argv = argv_in;
  absl::StatusOr<std::vector<std::string>> feeds = TakeRepeatedFlag(argv, "feed");
  absl::StatusOr<std::vector<std::string>> fetches =
      feeds.ok() ? TakeRepeatedFlag(argv, "fetch") : feeds;
  if (auto done = ParseArgs(a, argv)) return *done;
  if (!fetches.ok()) return UsageError(a, "run", fetches.status().message());
  for (const std::string& f : *feeds) {
    const size_t eq = f.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == f.size()) {
      return UsageError(a, "run",
                        absl::StrCat("--feed ", f, " is not NAME=FILE.npy"));
    }
  }
  const std::string out_dir = a.GetString("out");
  if (out_dir.empty()) return UsageError(a, "run", "--out DIR is required");
  absl::StatusOr<int64_t> seed = a.GetInt("seed");
  absl::StatusOr<int64_t> threads = a.GetInt("threads");
  absl::StatusOr<int64_t> max_memory = a.GetInt("max-memory");
  for (const auto* s : {&seed, &threads, &max_memory}) {
    if (!s->ok()) return UsageError(a, "run", s->status().message());
  }
  if (!a.GetString("checkpoint").empty() && FlagGiven(argv, "seed")) {
    return UsageError(a, "run", "give --seed or --checkpoint, not both");
  }
  absl::Status s = Run(a, *feeds, *fetches, static_cast<uint64_t>(*seed),
                       *max_memory, static_cast<int>(*threads), out_dir);
  if (!s.ok()) return BadInput("run", s);
  return kExitOk;
}

}  // namespace subquad::cli
