// Element types of subquad tensors.
#ifndef SUBQUAD_CORE_DTYPE_H_
#define SUBQUAD_CORE_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include "absl/strings/string_view.h"

namespace subquad {

enum class DType : uint8_t { kF32 = 0, kF64 = 1, kI32 = 2, kI64 = 3 };

inline constexpr DType kAllDTypes[] = {DType::kF32, DType::kF64, DType::kI32,
                                       DType::kI64};

// "f32", "f64", "i32", "i64".
absl::string_view DTypeName(DType t);
std::optional<DType> ParseDType(absl::string_view name);
size_t DTypeSize(DType t);
// GoogleTest and streams print dtypes by name.
std::ostream& operator<<(std::ostream& os, DType t);
inline void PrintTo(DType t, std::ostream* os) { *os << t; }
inline bool IsFloating(DType t) { return t == DType::kF32 || t == DType::kF64; }
inline bool IsInteger(DType t) { return t == DType::kI32 || t == DType::kI64; }

// A set of dtypes, used by op schemas to constrain inputs.
class DTypeSet {
 public:
  constexpr DTypeSet() = default;
  constexpr DTypeSet(std::initializer_list<DType> ts) {
    for (DType t : ts) bits_ |= Bit(t);
  }
  static constexpr DTypeSet Floating() { return {DType::kF32, DType::kF64}; }
  static constexpr DTypeSet Integer() { return {DType::kI32, DType::kI64}; }
  static constexpr DTypeSet All() {
    return {DType::kF32, DType::kF64, DType::kI32, DType::kI64};
  }
  constexpr bool Contains(DType t) const { return (bits_ & Bit(t)) != 0; }
  constexpr bool empty() const { return bits_ == 0; }
  // "{f32,f64}".
  std::string ToString() const;

 private:
  static constexpr uint8_t Bit(DType t) {
    return static_cast<uint8_t>(1u << static_cast<uint8_t>(t));
  }
  uint8_t bits_ = 0;
};

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::kF32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::kF64;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::kI32;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType value = DType::kI64;
};

// Calls `f(T{})` with T the C++ type of `t`.
template <typename F>
decltype(auto) DispatchDType(DType t, F&& f) {
  switch (t) {
    case DType::kF32:
      return f(float{});
    case DType::kF64:
      return f(double{});
    case DType::kI32:
      return f(int32_t{});
    case DType::kI64:
      break;
  }
  return f(int64_t{});
}

}  // namespace subquad

#endif  // SUBQUAD_CORE_DTYPE_H_
