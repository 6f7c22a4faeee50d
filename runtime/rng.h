// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
//
// A stream is a pure function of its key (seed, step, node, lane): any
// element can be drawn without drawing the ones before it, runs are
// reproducible across thread counts, and stochastic passes draw from keys
// that name what they sample for (layer, head, row).
#ifndef SUBQUAD_RUNTIME_RNG_H_
#define SUBQUAD_RUNTIME_RNG_H_

#include <array>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace subquad {

// One Philox4x32-10 block: 4 random words from a 64-bit key and a 128-bit
// counter.
std::array<uint32_t, 4> Philox4x32(uint64_t key, std::array<uint32_t, 4> counter);

// A stable 64-bit hash (FNV-1a) of a name, identical on every platform and
// run; used to key streams by node or parameter name.
uint64_t StableHash(absl::string_view s);

class RandomStream {
 public:
  // The stream for (seed, step, stream_id); `stream_id` is typically
  // StableHash(node name) or a (layer, head, row) packing.
  RandomStream(uint64_t seed, uint64_t step, uint64_t stream_id)
      : key_(seed), step_(step), stream_(stream_id) {}

  // Moves to element `index` of the stream (each element is 32 bits).
  void Seek(uint64_t index) {
    block_ = index / 4;
    lane_ = static_cast<int>(index % 4);
    have_block_ = false;
  }

  uint32_t NextU32();
  // Uniform in [0, 1) with 24 (float) / 53 (double) random bits.
  float UniformFloat();
  double UniformDouble();
  // Standard normal (Box–Muller on two doubles).
  double Normal();

 private:
  uint64_t key_;
  uint64_t step_;
  uint64_t stream_;
  uint64_t block_ = 0;
  int lane_ = 0;
  bool have_block_ = false;
  std::array<uint32_t, 4> words_{};
};

}  // namespace subquad

#endif  // SUBQUAD_RUNTIME_RNG_H_
