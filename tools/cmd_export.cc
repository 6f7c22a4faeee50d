// `subquad export-example`: writes the example TransformerLM graph.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "core/builder.h"
#include "core/status.h"
#include "ops/nn/layers.h"
#include "passes/autodiff.h"
#include "passes/optimizer.h"
#include "serialize/graph_io.h"
#include "tools/args.h"
#include "tools/cmd_common.h"
#include "tools/commands.h"

namespace subquad::cli {
namespace {

absl::StatusOr<nn::TransformerLMConfig> ReadModel(const Args& a) {
  nn::TransformerLMConfig c;
  ASSIGN_OR_RETURN(c.layers, a.GetInt("layers"));
  ASSIGN_OR_RETURN(c.d_model, a.GetInt("d-model"));
  ASSIGN_OR_RETURN(c.heads, a.GetInt("heads"));
  ASSIGN_OR_RETURN(c.seq_len, a.GetInt("seq-len"));
  ASSIGN_OR_RETURN(c.vocab, a.GetInt("vocab"));
  ASSIGN_OR_RETURN(c.batch, a.GetInt("batch"));
  if (c.layers < 0 || c.d_model <= 0 || c.heads <= 0 || c.seq_len <= 0 ||
      c.vocab <= 0 || c.batch <= 0) {
    return absl::InvalidArgumentError(
        "--d-model, --heads, --seq-len, --vocab and --batch must be positive, "
        "--layers non-negative");
  }
  if (c.d_model % c.heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--d-model=", c.d_model, " is not divisible by --heads=", c.heads));
  }
  return c;
}

}  // namespace

int RunExportExample(const std::vector<std::string>& argv) {
  Args a("export-example",
         "Writes the example byte-level TransformerLM graph (the model `subquad "
         "train` trains) to a graph file: forward only, or with the backward "
         "graph and the optimizer update (--train). Inputs: tokens, targets (and "
         "step with --train); outputs: logits, loss (and grad/<parameter>, lr, "
         "grad_norm, update_norm with --train). The format follows the "
         "extension: .sqg binary, .sqtxt text.");
  a.Flag("output", "", "-o, the graph file to write (required)")
      .Flag("layers", "2", "transformer blocks")
      .Flag("d-model", "128", "model width")
      .Flag("heads", "4", "attention heads")
      .Flag("seq-len", "128", "tokens per sequence")
      .Flag("vocab", "256", "vocabulary size")
      .Flag("batch", "16", "sequences per batch")
      .BoolFlag("train", "add autodiff and the optimizer update")
      .Flag("optimizer", "adamw", "with --train: adamw | sgd")
      .Flag("lr", "3e-3", "with --train: peak learning rate");
  if (auto done = ParseArgs(a, argv)) return *done;
  const std::string out = a.GetString("output");
  if (out.empty()) return UsageError(a, "export-example", "-o FILE is required");
  absl::StatusOr<nn::TransformerLMConfig> config = ReadModel(a);
  if (!config.ok()) {
    return UsageError(a, "export-example", config.status().message());
  }
  absl::StatusOr<double> lr = a.GetDouble("lr");
  if (!lr.ok()) return UsageError(a, "export-example", lr.status().message());
  const std::string kind = a.GetString("optimizer");
  if (kind != "adamw" && kind != "sgd") {
    return UsageError(a, "export-example",
                      absl::StrCat("--optimizer=", kind, " is not adamw or sgd"));
  }
  if (!GraphFormatFromPath(out).ok()) {
    return UsageError(a, "export-example",
                      GraphFormatFromPath(out).status().message());
  }

  Graph g;
  GraphBuilder b(&g);
  nn::BuildTransformerLM(b, *config);
  if (!b.ok()) return BadInput("export-example", b.status());
  if (a.GetBool("train")) {
    if (auto ad = Autodiff(g, {.loss = "loss", .wrt = {}}); !ad.ok()) {
      return BadInput("export-example", ad.status());
    }
    OptimizerOptions opt;
    opt.kind = kind;
    opt.lr = *lr;
    if (auto r = AddOptimizer(g, opt); !r.ok()) {
      return BadInput("export-example", r.status());
    }
  }
  if (absl::Status s = SaveGraph(g, out); !s.ok()) {
    return BadInput("export-example", s);
  }
  int by_role[3] = {0, 0, 0};
  for (const Node* n : g.nodes()) ++by_role[static_cast<int>(n->role())];
  std::printf("wrote %s: %d nodes (%d forward, %d backward, %d optimizer), %zu "
              "outputs\n",
              out.c_str(), g.num_nodes(), by_role[0], by_role[1], by_role[2],
              g.outputs().size());
  return kExitOk;
}

}  // namespace subquad::cli
