// Tensor: an owning, 64-byte aligned, dense row-major array with a dtype and
// a static shape. TensorView: a non-owning window onto such memory (arena
// buffers, parameters, feeds) that kernels read and write.
#ifndef SUBQUAD_CORE_TENSOR_H_
#define SUBQUAD_CORE_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/types/span.h"
#include "core/dtype.h"
#include "core/shape.h"

namespace subquad {

inline constexpr size_t kTensorAlignment = 64;

struct TensorType {
  DType dtype = DType::kF32;
  Shape shape;

  int64_t num_elements() const { return shape.num_elements(); }
  int64_t byte_size() const {
    return shape.num_elements() * static_cast<int64_t>(DTypeSize(dtype));
  }
  // "f32[4,256,128]".
  std::string ToString() const;
  friend bool operator==(const TensorType& a, const TensorType& b) {
    return a.dtype == b.dtype && a.shape == b.shape;
  }
  friend bool operator!=(const TensorType& a, const TensorType& b) {
    return !(a == b);
  }
};

class TensorView {
 public:
  TensorView() = default;
  TensorView(TensorType type, void* data) : type_(std::move(type)), data_(data) {}

  const TensorType& type() const { return type_; }
  DType dtype() const { return type_.dtype; }
  const Shape& shape() const { return type_.shape; }
  int64_t num_elements() const { return type_.num_elements(); }
  int64_t byte_size() const { return type_.byte_size(); }

  void* raw_data() const { return data_; }
  // Typed access; T must match dtype() (checked in debug builds).
  template <typename T>
  T* data() const {
    CheckType(DTypeOf<T>::value);
    return static_cast<T*>(data_);
  }
  template <typename T>
  absl::Span<T> span() const {
    return {data<T>(), static_cast<size_t>(num_elements())};
  }

 private:
  void CheckType(DType t) const;
  TensorType type_;
  void* data_ = nullptr;
};

class Tensor {
 public:
  Tensor() = default;
  // Zero-initialised storage of the given type.
  explicit Tensor(TensorType type);
  Tensor(DType dtype, const Shape& shape) : Tensor(TensorType{dtype, shape}) {}

  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  // A tensor holding a copy of `values`, shaped `shape`.
  template <typename T>
  static Tensor FromVector(Shape shape, absl::Span<const T> values) {
    Tensor t(DTypeOf<T>::value, std::move(shape));
    T* p = t.data<T>();
    for (size_t i = 0; i < values.size() && i < static_cast<size_t>(t.num_elements()); ++i) p[i] = values[i];
    return t;
  }
  template <typename T>
  static Tensor Scalar(T value) {
    Tensor t(DTypeOf<T>::value, Shape{});
    *t.data<T>() = value;
    return t;
  }
  // A copy of the memory a view points at.
  static Tensor CopyOf(const TensorView& v);

  const TensorType& type() const { return type_; }
  DType dtype() const { return type_.dtype; }
  const Shape& shape() const { return type_.shape; }
  int64_t num_elements() const { return type_.num_elements(); }
  int64_t byte_size() const { return type_.byte_size(); }
  bool empty() const { return data_ == nullptr; }

  void* raw_data() { return data_.get(); }
  const void* raw_data() const { return data_.get(); }
  template <typename T>
  T* data() {
    return view().data<T>();
  }
  template <typename T>
  const T* data() const {
    return view().data<T>();
  }
  template <typename T>
  absl::Span<T> span() {
    return view().span<T>();
  }
  template <typename T>
  absl::Span<const T> span() const {
    auto s = view().span<T>();
    return {s.data(), s.size()};
  }

  // A view onto this tensor's storage (valid while the tensor lives).
  TensorView view() const {
    return TensorView(type_, const_cast<void*>(static_cast<const void*>(data_.get())));
  }

  // Bit-for-bit equality of type and contents.
  bool BitwiseEquals(const Tensor& other) const;
  // Element-by-element rendering, truncated after `max_elements`.
  std::string DebugString(int64_t max_elements = 16) const;

 private:
  struct AlignedFree {
    void operator()(void* p) const;
  };
  TensorType type_;
  std::unique_ptr<void, AlignedFree> data_;
};

// Allocates `bytes` (rounded up to kTensorAlignment) aligned to
// kTensorAlignment; released with FreeAligned. Large blocks are marked for
// transparent huge pages.
void* AllocateAligned(size_t bytes);
void FreeAligned(void* p);

}  // namespace subquad

#endif  // SUBQUAD_CORE_TENSOR_H_
