#include "passes/plugin.h"

#include <dlfcn.h>

#include <filesystem>
#include <memory>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace subquad {

absl::Status PluginRegistrar::AddPass(PassInfo info) {
  std::string name = info.name;
  absl::Status s = PassRegistry::Global().Register(std::move(info));
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("plugin '", plugin_, "': ", s.message()));
  }
  passes_.push_back(std::move(name));
  return absl::OkStatus();
}

absl::Status PluginRegistrar::AddOp(OpSchema schema) {
  std::string name = schema.name;
  absl::Status s = OpRegistry::Global().Register(std::move(schema));
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("plugin '", plugin_, "': ", s.message()));
  }
  ops_.push_back(std::move(name));
  return absl::OkStatus();
}

absl::StatusOr<LoadedPlugin> LoadPlugin(const std::string& path) {
  static absl::flat_hash_set<std::string>* loaded = new absl::flat_hash_set<std::string>();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat("plugin '", path, "': no such file"));
  }
  const std::string canonical = std::filesystem::canonical(path, ec).string();
  if (loaded->contains(canonical)) {
    return absl::AlreadyExistsError(absl::StrCat("plugin '", path, "' is already loaded"));
  }
  // RTLD_GLOBAL is unnecessary: the plugin links subquad's shared libraries
  // and so shares this process's registries.
  void* handle = dlopen(canonical.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("plugin '", path, "' cannot be loaded: ", dlerror()));
  }
  const auto* version =
      static_cast<const int*>(dlsym(handle, "subquad_plugin_api_version"));
  using RegisterFn = absl::Status* (*)(PluginRegistrar*);
  auto register_fn = reinterpret_cast<RegisterFn>(dlsym(handle, "subquad_plugin_register_v1"));
  if (version == nullptr || register_fn == nullptr) {
    dlclose(handle);
    return absl::InvalidArgumentError(absl::StrCat(
        "plugin '", path, "' does not export subquad_plugin_api_version and "
        "subquad_plugin_register_v1 (write its entry point with SUBQUAD_PLUGIN)"));
  }
  if (const int v = *version; v != SUBQUAD_PLUGIN_API_VERSION) {
    dlclose(handle);  // `version` points into the library: read it first
    return absl::InvalidArgumentError(absl::StrCat(
        "plugin '", path, "' was built for plugin API version ", v,
        "; this subquad loads version ", SUBQUAD_PLUGIN_API_VERSION));
  }
  PluginRegistrar registrar(path);
  std::unique_ptr<absl::Status> status(register_fn(&registrar));
  // The library stays loaded: what it registered points into it.
  loaded->insert(canonical);
  if (!status->ok()) return *status;
  return LoadedPlugin{path, registrar.passes(), registrar.ops()};
}

}  // namespace subquad
