// A test plugin whose pass name is already taken by a built-in pass.
#include <memory>

#include "passes/plugin.h"

SUBQUAD_PLUGIN(registrar) {
  subquad::PassInfo p;
  p.name = "dce";
  p.help = "A second dce.";
  p.create = [](const subquad::PassOptions&)
      -> absl::StatusOr<std::unique_ptr<subquad::Pass>> {
    return absl::InternalError("never created");
  };
  return registrar.AddPass(std::move(p));
}
