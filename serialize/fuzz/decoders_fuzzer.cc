// libFuzzer target for the other decoders of untrusted files: .npy
// (serialize/npy.h, a hand-written header parser) and checkpoints
// (serialize/checkpoint.h). Decoding must never crash, hang, leak or
// allocate without bound; what decodes must encode and decode to the same.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "google/protobuf/stubs/logging.h"
#include "serialize/checkpoint.h"
#include "serialize/npy.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "decoders_fuzzer: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (absl::StatusOr<subquad::Tensor> t = subquad::DecodeNpy(bytes); t.ok()) {
    absl::StatusOr<subquad::Tensor> again =
        subquad::DecodeNpy(subquad::EncodeNpy(t->view()));
    if (!again.ok() || !again->BitwiseEquals(*t)) Fail("an .npy round trip differs");
  }
  if (absl::StatusOr<subquad::Checkpoint> c = subquad::DecodeCheckpoint(bytes);
      c.ok()) {
    absl::StatusOr<std::string> encoded = subquad::EncodeCheckpoint(*c);
    if (!encoded.ok()) Fail("a decoded checkpoint does not encode");
    absl::StatusOr<subquad::Checkpoint> again = subquad::DecodeCheckpoint(*encoded);
    if (!again.ok() || again->step != c->step ||
        again->tensors.size() != c->tensors.size()) {
      Fail("a checkpoint round trip differs");
    }
  }
  return 0;
}
