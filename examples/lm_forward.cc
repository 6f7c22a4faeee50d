// Builds a small byte-level transformer language model with the C++ builder
// API, plans it, and runs forward passes on real text: prints the graph's
// size, the shapes of inputs and outputs, the loss, the planned peak memory
// and the time per forward pass.
//
//   build/bin/lm_forward [text-file]
//
// Without an argument it reads the fortunes corpus (Debian's `fortunes`
// package) and falls back to a built-in paragraph.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/builder.h"
#include "core/graph.h"
#include "core/status.h"
#include "core/verifier.h"
#include "ops/nn/layers.h"
#include "runtime/executor.h"
#include "runtime/parameter_store.h"

namespace {

using namespace subquad;

std::string ReadCorpus(const char* path) {
  std::string text;
  auto read = [&](const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    text += ss.str();
  };
  if (path != nullptr) {
    read(path);
    return text;
  }
  const std::filesystem::path dir = "/usr/share/games/fortunes";
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      if (e.is_regular_file() && !e.path().has_extension()) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& p : files) read(p);
  }
  if (text.empty()) {
    text =
        "It was the best of times, it was the worst of times, it was the age "
        "of wisdom, it was the age of foolishness, it was the epoch of belief, "
        "it was the epoch of incredulity, it was the season of Light, it was "
        "the season of Darkness.\n";
  }
  return text;
}

absl::Status Main(int argc, char** argv) {
  nn::TransformerLMConfig config;
  config.vocab = 256;
  config.d_model = 128;
  config.heads = 4;
  config.layers = 2;
  config.batch = 8;
  config.seq_len = 256;

  Graph graph;
  GraphBuilder builder(&graph);
  nn::TransformerLM lm = nn::BuildTransformerLM(builder, config);
  RETURN_IF_ERROR(builder.status());
  RETURN_IF_ERROR(Verify(graph));

  ParameterStore params;
  RETURN_IF_ERROR(params.Initialize(graph, /*seed=*/1));
  ASSIGN_OR_RETURN(std::unique_ptr<Executor> exec,
                   Executor::Create(graph, {"logits", "loss"}, &params));

  // Tokens are bytes; targets are the next byte.
  const std::string text = ReadCorpus(argc > 1 ? argv[1] : nullptr);
  const int64_t n = config.batch * config.seq_len;
  Tensor tokens(DType::kI32, {config.batch, config.seq_len});
  Tensor targets(DType::kI32, {config.batch, config.seq_len});
  for (int64_t i = 0; i < n; ++i) {
    const size_t at = static_cast<size_t>(i * 7919) % (text.size() - 1);
    tokens.data<int32_t>()[i] = static_cast<unsigned char>(text[at]);
    targets.data<int32_t>()[i] = static_cast<unsigned char>(text[at + 1]);
  }

  std::vector<double> times;
  std::vector<Tensor> out;
  for (int run = 0; run < 6; ++run) {
    const auto t0 = std::chrono::steady_clock::now();
    ASSIGN_OR_RETURN(out, exec->Run({{"tokens", tokens.view()},
                                     {"targets", targets.view()}}));
    times.push_back(std::chrono::duration<double>(
                        std::chrono::steady_clock::now() - t0).count());
  }
  times.erase(times.begin());  // the first run touches the arena's pages
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];

  std::printf("subquad example: byte-level TransformerLM forward pass\n");
  std::printf("  corpus            %zu bytes\n", text.size());
  std::printf("  model             %lld layers, d_model %lld, %lld heads, vocab %lld\n",
              (long long)config.layers, (long long)config.d_model,
              (long long)config.heads, (long long)config.vocab);
  std::printf("  graph             %d nodes, %d parameters tensors, %lld parameters (%.1f MiB)\n",
              graph.num_nodes(), params.size(), (long long)params.total_elements(),
              params.total_bytes() / 1048576.0);
  std::printf("  tokens            %s\n", graph.type(lm.tokens).ToString().c_str());
  std::printf("  logits            %s\n", out[0].type().ToString().c_str());
  std::printf("  loss              %.4f nats/byte (uniform would be %.4f)\n",
              out[1].data<float>()[0], std::log(256.0));
  std::printf("  planned peak      %.1f MiB (%.1f MiB without buffer sharing)\n",
              exec->plan().peak_bytes() / 1048576.0,
              exec->plan().unshared_bytes() / 1048576.0);
  std::printf("  forward time      %.2f ms (median of %zu), %.0f tokens/s\n",
              median * 1e3, times.size(), n / median);
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::Status s = Main(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "lm_forward: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
