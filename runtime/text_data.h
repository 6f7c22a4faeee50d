// Byte-level text data for language-model training: a corpus split into
// training and validation text, and a seeded sampler of random contiguous
// windows. Tokens are bytes (vocabulary 256).
#ifndef SUBQUAD_RUNTIME_TEXT_DATA_H_
#define SUBQUAD_RUNTIME_TEXT_DATA_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tensor.h"

namespace subquad {

// Where Debian's `fortunes` package puts its text files.
inline constexpr char kFortunesDir[] = "/usr/share/games/fortunes";

class TextCorpus {
 public:
  // The whole file at `path`.
  static absl::StatusOr<TextCorpus> FromFile(const std::string& path,
                                             double valid_fraction = 0.05);
  // The fortunes corpus: every text file directly in `dir` (no extension;
  // the .dat indexes and .u8 links are skipped), in name order, with the
  // "%" separator lines dropped.
  static absl::StatusOr<TextCorpus> FromFortunes(
      const std::string& dir = kFortunesDir, double valid_fraction = 0.05);
  static TextCorpus FromText(std::string text, double valid_fraction = 0.05);

  // The last `valid_fraction` of the text is held out for validation.
  absl::string_view train() const { return absl::string_view(text_).substr(0, split_); }
  absl::string_view valid() const { return absl::string_view(text_).substr(split_); }
  int64_t size() const { return static_cast<int64_t>(text_.size()); }

 private:
  TextCorpus(std::string text, double valid_fraction);
  std::string text_;
  size_t split_ = 0;
};

// Samples `batch` windows of seq_len + 1 bytes at random offsets: tokens are
// the first seq_len bytes, targets the next-byte shift. The offsets of batch
// number k depend only on (seed, k), so a resumed run continues exactly.
class WindowSampler {
 public:
  // InvalidArgument when the text is shorter than one window.
  static absl::StatusOr<WindowSampler> Create(absl::string_view text,
                                              int64_t batch, int64_t seq_len,
                                              uint64_t seed);
  // Fills i32 tensors [batch, seq_len].
  void Sample(int64_t k, Tensor* tokens, Tensor* targets) const;
  int64_t batch() const { return batch_; }
  int64_t seq_len() const { return seq_len_; }

 private:
  WindowSampler(absl::string_view text, int64_t batch, int64_t seq_len, uint64_t seed)
      : text_(text), batch_(batch), seq_len_(seq_len), seed_(seed) {}
  absl::string_view text_;
  int64_t batch_, seq_len_;
  uint64_t seed_;
};

}  // namespace subquad

#endif  // SUBQUAD_RUNTIME_TEXT_DATA_H_
