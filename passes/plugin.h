// Out-of-tree extensions: shared libraries loaded at run time that register
// passes and ops into this process's registries, as LLVM pass plugins do.
//
// A plugin exports one versioned C entry point, written with the macro:
//
//   #include "passes/plugin.h"
//   SUBQUAD_PLUGIN(registrar) {
//     RETURN_IF_ERROR(registrar.AddOp(MakeSiluSchema()));
//     return registrar.AddPass(MakeFuseSiluPassInfo());
//   }
//
// and is loaded with LoadPlugin(path) (or `subquad opt --load-plugin`).
// A plugin must be built against the same subquad (headers and shared
// libraries) as the program that loads it; the API version catches
// mismatched builds.
#ifndef SUBQUAD_PASSES_PLUGIN_H_
#define SUBQUAD_PASSES_PLUGIN_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/op_schema.h"
#include "passes/pass.h"

// Bumped whenever the plugin-facing ABI changes.
#define SUBQUAD_PLUGIN_API_VERSION 1

namespace subquad {

// Handed to a plugin's entry point; records what it registered.
class PluginRegistrar {
 public:
  explicit PluginRegistrar(std::string plugin) : plugin_(std::move(plugin)) {}
  // AlreadyExists when the name is taken (by subquad or another plugin).
  absl::Status AddPass(PassInfo info);
  absl::Status AddOp(OpSchema schema);
  const std::vector<std::string>& passes() const { return passes_; }
  const std::vector<std::string>& ops() const { return ops_; }

 private:
  std::string plugin_;
  std::vector<std::string> passes_, ops_;
};

struct LoadedPlugin {
  std::string path;
  std::vector<std::string> passes, ops;
};

// Loads the shared library at `path` and runs its entry point. Errors:
// NotFound (no such file), InvalidArgument (not a loadable library, the
// entry point missing, an API version mismatch), AlreadyExists (a pass or op
// name already taken), or whatever the plugin's entry point returns; each
// names the plugin. Loading the same path twice is an error too.
absl::StatusOr<LoadedPlugin> LoadPlugin(const std::string& path);

}  // namespace subquad

#define SUBQUAD_PLUGIN(registrar_var)                                          \
  static ::absl::Status SubquadPluginRegister(::subquad::PluginRegistrar&);    \
  extern "C" __attribute__((visibility("default"))) const int                  \
      subquad_plugin_api_version = SUBQUAD_PLUGIN_API_VERSION;                 \
  extern "C" __attribute__((visibility("default"))) ::absl::Status*           \
  subquad_plugin_register_v1(::subquad::PluginRegistrar* r) {                  \
    return new ::absl::Status(SubquadPluginRegister(*r));                      \
  }                                                                            \
  static ::absl::Status SubquadPluginRegister(::subquad::PluginRegistrar& registrar_var)

#endif  // SUBQUAD_PASSES_PLUGIN_H_
