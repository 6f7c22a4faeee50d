#include "runtime/rng.h"

#include <cmath>

namespace subquad {

std::array<uint32_t, 4> Philox4x32(uint64_t key, std::array<uint32_t, 4> ctr) {
  constexpr uint32_t kM0 = 0xD2511F53, kM1 = 0xCD9E8D57;
  constexpr uint32_t kW0 = 0x9E3779B9, kW1 = 0xBB67AE85;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t{kM0} * ctr[0];
    const uint64_t p1 = uint64_t{kM1} * ctr[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = {hi1 ^ ctr[1] ^ k0, lo1, hi0 ^ ctr[3] ^ k1, lo0};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

uint64_t StableHash(absl::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

uint32_t RandomStream::NextU32() {
  if (!have_block_) {
    // Counter: (block index, step, stream) — 32 bits of block, 32 of step,
    // 64 of stream id, with the block's high bits folded into the step word.
    const uint32_t c0 = static_cast<uint32_t>(block_);
    const uint32_t c1 = static_cast<uint32_t>(step_) ^
                        (static_cast<uint32_t>(block_ >> 32) * 0x9E3779B9u);
    const uint32_t c2 = static_cast<uint32_t>(stream_);
    const uint32_t c3 = static_cast<uint32_t>(stream_ >> 32) ^
                        static_cast<uint32_t>(step_ >> 32);
    words_ = Philox4x32(key_, {c0, c1, c2, c3});
    have_block_ = true;
  }
  const uint32_t w = words_[lane_];
  if (++lane_ == 4) {
    lane_ = 0;
    ++block_;
    have_block_ = false;
  }
  return w;
}

float RandomStream::UniformFloat() {
  return static_cast<float>(NextU32() >> 8) * (1.0f / 16777216.0f);
}

double RandomStream::UniformDouble() {
  const uint64_t hi = NextU32() >> 5, lo = NextU32() >> 6;  // 27 + 26 bits
  return static_cast<double>((hi << 26) | lo) * (1.0 / 9007199254740992.0);
}

double RandomStream::Normal() {
  double u1 = UniformDouble();
  const double u2 = UniformDouble();
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

}  // namespace subquad
