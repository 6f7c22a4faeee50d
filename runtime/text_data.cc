#include "runtime/text_data.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/rng.h"

namespace subquad {
namespace {

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot open '", p.string(), "'"));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TextCorpus::TextCorpus(std::string text, double valid_fraction)
    : text_(std::move(text)) {
  const double f = std::clamp(valid_fraction, 0.0, 0.5);
  split_ = text_.size() - static_cast<size_t>(static_cast<double>(text_.size()) * f);
}

TextCorpus TextCorpus::FromText(std::string text, double valid_fraction) {
  return TextCorpus(std::move(text), valid_fraction);
}

absl::StatusOr<TextCorpus> TextCorpus::FromFile(const std::string& path,
                                                double valid_fraction) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  if (text->empty()) {
    return absl::InvalidArgumentError(absl::StrCat("corpus '", path, "' is empty"));
  }
  return TextCorpus(*std::move(text), valid_fraction);
}

absl::StatusOr<TextCorpus> TextCorpus::FromFortunes(const std::string& dir,
                                                    double valid_fraction) {
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_regular_file(ec) && !e.is_symlink(ec) && !e.path().has_extension()) {
      files.push_back(e.path());
    }
  }
  if (ec || files.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "no fortunes corpus in '", dir,
        "' (install Debian's `fortunes` package: tools/setup.sh does)"));
  }
  std::sort(files.begin(), files.end());
  std::string text;
  for (const auto& p : files) {
    auto content = ReadFile(p);
    if (!content.ok()) return content.status();
    std::istringstream lines(*content);
    std::string line;
    while (std::getline(lines, line)) {
      if (line == "%") continue;
      text += line;
      text += '\n';
    }
  }
  return TextCorpus(std::move(text), valid_fraction);
}

absl::StatusOr<WindowSampler> WindowSampler::Create(absl::string_view text,
                                                    int64_t batch, int64_t seq_len,
                                                    uint64_t seed) {
  if (batch <= 0 || seq_len <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch and seq_len must be positive, got ", batch, " and ", seq_len));
  }
  if (static_cast<int64_t>(text.size()) < seq_len + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "text of ", text.size(), " bytes is shorter than one window of ",
        seq_len + 1));
  }
  return WindowSampler(text, batch, seq_len, seed);
}

void WindowSampler::Sample(int64_t k, Tensor* tokens, Tensor* targets) const {
  RandomStream rng(seed_, static_cast<uint64_t>(k), StableHash("windows"));
  const uint64_t starts = text_.size() - static_cast<uint64_t>(seq_len_);
  int32_t* tok = tokens->data<int32_t>();
  int32_t* tgt = targets->data<int32_t>();
  for (int64_t b = 0; b < batch_; ++b) {
    const uint64_t r = (static_cast<uint64_t>(rng.NextU32()) << 32) | rng.NextU32();
    const size_t off = static_cast<size_t>(r % starts);
    for (int64_t t = 0; t < seq_len_; ++t) {
      tok[b * seq_len_ + t] = static_cast<unsigned char>(text_[off + t]);
      tgt[b * seq_len_ + t] = static_cast<unsigned char>(text_[off + t + 1]);
    }
  }
}

}  // namespace subquad
