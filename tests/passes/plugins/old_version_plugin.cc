// A test plugin built for another plugin API version.
#include "absl/status/status.h"

namespace subquad {
class PluginRegistrar;
}

extern "C" __attribute__((visibility("default"))) const int subquad_plugin_api_version = 999;
extern "C" __attribute__((visibility("default"))) absl::Status* subquad_plugin_register_v1(
    subquad::PluginRegistrar*) {
  return new absl::Status();
}
