#include "serialize/npy.h"

#include <bit>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status.h"
#include "serialize/file_io.h"
#include "serialize/printable.h"

static_assert(std::endian::native == std::endian::little,
              ".npy data is read and written as little-endian bytes");

namespace subquad {
namespace {

constexpr absl::string_view kMagic("\x93NUMPY", 6);
// NumPy pads the header so that the data starts at a multiple of this.
constexpr size_t kAlign = 64;

absl::Status NpyError(absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("npy: ", message));
}

absl::string_view Descr(DType t) {
  switch (t) {
    case DType::kF32:
      return "<f4";
    case DType::kF64:
      return "<f8";
    case DType::kI32:
      return "<i4";
    case DType::kI64:
      return "<i8";
  }
  return "?";
}

struct Header {
  std::optional<std::string> descr;
  std::optional<bool> fortran_order;
  std::optional<std::vector<int64_t>> shape;
};

// The header is a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// This reads exactly that grammar: string keys, a string, a bool and a tuple
// of non-negative integers, in any order, with optional trailing commas.
class HeaderParser {
 public:
  explicit HeaderParser(absl::string_view text) : s_(text) {}

  absl::StatusOr<Header> Parse() {
    Header h;
    RETURN_IF_ERROR(Expect('{'));
    while (!Peek('}')) {
      ASSIGN_OR_RETURN(std::string key, String());
      RETURN_IF_ERROR(Expect(':'));
      if (key == "descr" && !h.descr) {
        ASSIGN_OR_RETURN(h.descr, String());
      } else if (key == "fortran_order" && !h.fortran_order) {
        ASSIGN_OR_RETURN(h.fortran_order, Bool());
      } else if (key == "shape" && !h.shape) {
        ASSIGN_OR_RETURN(h.shape, Tuple());
      } else if (key == "descr" || key == "fortran_order" || key == "shape") {
        return Error(absl::StrCat("key '", key, "' appears twice"));
      } else {
        return Error(absl::StrCat("unexpected key '", Printable(key),
                                  "' (a .npy header has descr, fortran_order "
                                  "and shape)"));
      }
      if (!Peek('}')) RETURN_IF_ERROR(Expect(','));
    }
    RETURN_IF_ERROR(Expect('}'));
    SkipSpace();
    if (pos_ != s_.size()) return Error("text after the closing '}'");
    if (!h.descr || !h.fortran_order || !h.shape) {
      return Error(absl::StrCat(
          "missing key '",
          !h.descr ? "descr" : !h.fortran_order ? "fortran_order" : "shape",
          "'"),
          /*at=*/false);
    }
    return h;
  }

 private:
  // "at character 12 of "{...}"", or "in "{...}"" without a position.
  absl::Status Error(absl::string_view what, bool at = true) const {
    constexpr size_t kShown = 120;
    std::string shown = Printable(s_.substr(0, kShown));
    if (s_.size() > kShown) shown += "...";
    return NpyError(absl::StrCat("header: ", what,
                                 at ? absl::StrCat(" at character ", pos_, " of")
                                    : " in",
                                 " \"", shown, "\""));
  }
  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' ||
                                s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Peek(char c) {
    SkipSpace();
    return pos_ < s_.size() && s_[pos_] == c;
  }
  absl::Status Expect(char c) {
    if (!Peek(c)) return Error(absl::StrCat("expected '", std::string(1, c), "'"));
    ++pos_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> String() {
    SkipSpace();
    if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) {
      return Error("expected a quoted string");
    }
    const char quote = s_[pos_++];
    const size_t end = s_.find(quote, pos_);
    if (end == absl::string_view::npos) return Error("unterminated string");
    std::string out(s_.substr(pos_, end - pos_));
    if (out.find('\\') != std::string::npos) return Error("escapes in a string");
    pos_ = end + 1;
    return out;
  }
  absl::StatusOr<bool> Bool() {
    SkipSpace();
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    return Error("expected True or False");
  }
  absl::StatusOr<std::vector<int64_t>> Tuple() {
    RETURN_IF_ERROR(Expect('('));
    std::vector<int64_t> dims;
    while (!Peek(')')) {
      if (static_cast<int>(dims.size()) == kMaxRank) {
        return Error(absl::StrCat("the shape has more than ", kMaxRank, " dims"));
      }
      int64_t v = 0;
      const size_t start = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        if (v > kMaxDim) return Error("a dim larger than 2^40");
        v = v * 10 + (s_[pos_++] - '0');
      }
      if (pos_ == start) return Error("expected a non-negative integer");
      if (pos_ < s_.size() && s_[pos_] == 'L') ++pos_;  // Python 2 longs
      dims.push_back(v);
      if (!Peek(')')) RETURN_IF_ERROR(Expect(','));
    }
    RETURN_IF_ERROR(Expect(')'));
    return dims;
  }

  absl::string_view s_;
  size_t pos_ = 0;
};

uint32_t ReadLE(const unsigned char* p, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string ShapeTuple(const Shape& s) {
  if (s.rank() == 1) return absl::StrCat("(", s.dim(0), ",)");
  return absl::StrCat("(", absl::StrJoin(s.dims(), ", "), ")");
}

}  // namespace

std::string EncodeNpy(const TensorView& t) {
  std::string dict = absl::StrCat("{'descr': '", Descr(t.dtype()),
                                  "', 'fortran_order': False, 'shape': ",
                                  ShapeTuple(t.shape()), ", }");
  // Version 1.0 stores the header length in 2 bytes, 2.0 in 4.
  int version = 1;
  size_t prefix = kMagic.size() + 2 + 2;
  if (dict.size() + 1 + prefix > 65535) {
    version = 2;
    prefix += 2;
  }
  const size_t total = (prefix + dict.size() + 1 + kAlign - 1) / kAlign * kAlign;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict.push_back('\n');
  const size_t header_len = dict.size();
  std::string out(kMagic);
  out.push_back(static_cast<char>(version));
  out.push_back('\0');
  for (size_t i = 0; i < prefix - kMagic.size() - 2; ++i) {
    out.push_back(static_cast<char>((header_len >> (8 * i)) & 0xff));
  }
  out += dict;
  out.append(static_cast<const char*>(t.raw_data()),
             static_cast<size_t>(t.byte_size()));
  return out;
}

absl::StatusOr<Tensor> DecodeNpy(absl::string_view bytes) {
  if (bytes.size() < kMagic.size() + 4) {
    return NpyError(absl::StrCat(bytes.size(),
                                 " bytes is too short for a .npy file"));
  }
  if (bytes.substr(0, kMagic.size()) != kMagic) {
    return NpyError("not a .npy file (it does not start with \\x93NUMPY)");
  }
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const int major = p[6], minor = p[7];
  int len_bytes = 0;
  if (major == 1 && minor == 0) len_bytes = 2;
  if (major == 2 && minor == 0) len_bytes = 4;
  if (len_bytes == 0) {
    return NpyError(absl::StrCat("format version ", major, ".", minor,
                                 " is not supported (1.0 and 2.0 are)"));
  }
  const size_t prefix = kMagic.size() + 2 + len_bytes;
  if (bytes.size() < prefix) {
    return NpyError(absl::StrCat(bytes.size(),
                                 " bytes is too short for a version ", major,
                                 ".0 header"));
  }
  const uint64_t header_len = ReadLE(p + 8, len_bytes);
  if (header_len > bytes.size() - prefix) {
    return NpyError(absl::StrCat("header length ", header_len,
                                 " runs past the end of the ", bytes.size(),
                                 "-byte file"));
  }
  ASSIGN_OR_RETURN(Header h,
                   HeaderParser(bytes.substr(prefix, header_len)).Parse());
  DType dtype;
  if (*h.descr == "<f4") {
    dtype = DType::kF32;
  } else if (*h.descr == "<f8") {
    dtype = DType::kF64;
  } else if (*h.descr == "<i4") {
    dtype = DType::kI32;
  } else if (*h.descr == "<i8") {
    dtype = DType::kI64;
  } else if (!h.descr->empty() && (*h.descr)[0] == '>') {
    return NpyError(absl::StrCat("dtype '", Printable(*h.descr),
                                 "' is big-endian; only little-endian ('<') "
                                 "data is supported"));
  } else {
    return NpyError(absl::StrCat("dtype '", Printable(*h.descr),
                                 "' is not supported (use '<f4', '<f8', '<i4' "
                                 "or '<i8')"));
  }
  if (*h.fortran_order) {
    return NpyError(
        "fortran_order is True; only C order is supported (save "
        "np.ascontiguousarray(a))");
  }
  Shape shape(absl::MakeConstSpan(*h.shape));
  if (absl::Status s = ValidateShape(shape); !s.ok()) {
    return NpyError(s.message());
  }
  const TensorType type{dtype, shape};
  const uint64_t data = bytes.size() - prefix - header_len;
  if (data != static_cast<uint64_t>(type.byte_size())) {
    return NpyError(absl::StrCat("data is ", data, " bytes; ", type.ToString(),
                                 " needs ", type.byte_size()));
  }
  Tensor t(type);
  if (data > 0) std::memcpy(t.raw_data(), p + prefix + header_len, data);
  return t;
}

absl::Status WriteNpy(const std::string& path, const TensorView& t) {
  return WriteFileAtomically(path, EncodeNpy(t));
}

absl::StatusOr<Tensor> ReadNpy(const std::string& path, int64_t max_bytes) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path, max_bytes));
  absl::StatusOr<Tensor> t = DecodeNpy(bytes);
  if (!t.ok()) {
    return absl::Status(t.status().code(),
                        absl::StrCat(path, ": ", t.status().message()));
  }
  return t;
}

}  // namespace subquad
