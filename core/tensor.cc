#include "core/tensor.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

#include "core/check.h"
#include "absl/strings/str_cat.h"

namespace subquad {

std::string TensorType::ToString() const {
  return absl::StrCat(DTypeName(dtype), shape.ToString());
}

void TensorView::CheckType(DType t) const {
#ifndef NDEBUG
  SUBQUAD_CHECK(t == type_.dtype) << "TensorView of " << type_.ToString()
                          << " accessed as " << DTypeName(t);
#endif
}

void* AllocateAligned(size_t bytes) {
  const size_t rounded =
      std::max<size_t>(kTensorAlignment,
                       (bytes + kTensorAlignment - 1) / kTensorAlignment *
                           kTensorAlignment);
  constexpr size_t kHuge = size_t{2} << 20;
  if (rounded >= kHuge) {
    // 2 MiB alignment lets the kernel back the block with huge pages, which
    // avoids a page-fault storm when a large buffer is first touched.
    const size_t huge_rounded = (rounded + kHuge - 1) / kHuge * kHuge;
    void* p = std::aligned_alloc(kHuge, huge_rounded);
    if (p != nullptr) madvise(p, huge_rounded, MADV_HUGEPAGE);
    return p;
  }
  return std::aligned_alloc(kTensorAlignment, rounded);
}

void FreeAligned(void* p) { std::free(p); }

void Tensor::AlignedFree::operator()(void* p) const { FreeAligned(p); }

Tensor::Tensor(TensorType type) : type_(std::move(type)) {
  const size_t bytes = static_cast<size_t>(type_.byte_size());
  data_.reset(AllocateAligned(bytes));
  SUBQUAD_CHECK(data_ != nullptr) << "out of memory allocating " << bytes
                          << " bytes for " << type_.ToString();
  std::memset(data_.get(), 0, bytes);
}

Tensor::Tensor(const Tensor& other) : type_(other.type_) {
  if (other.data_ != nullptr) {
    const size_t bytes = static_cast<size_t>(type_.byte_size());
    data_.reset(AllocateAligned(bytes));
    SUBQUAD_CHECK(data_ != nullptr) << "out of memory copying " << type_.ToString();
    std::memcpy(data_.get(), other.data_.get(), bytes);
  }
}

Tensor& Tensor::operator=(const Tensor& other) {
  if (this != &other) *this = Tensor(other);
  return *this;
}

Tensor Tensor::CopyOf(const TensorView& v) {
  Tensor t(v.type());
  std::memcpy(t.raw_data(), v.raw_data(), static_cast<size_t>(v.byte_size()));
  return t;
}

bool Tensor::BitwiseEquals(const Tensor& other) const {
  if (type_ != other.type_) return false;
  if (byte_size() == 0) return true;
  return std::memcmp(raw_data(), other.raw_data(),
                     static_cast<size_t>(byte_size())) == 0;
}

std::string Tensor::DebugString(int64_t max_elements) const {
  std::string out = absl::StrCat(type_.ToString(), " {");
  const int64_t n = num_elements();
  DispatchDType(dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = data<T>();
    for (int64_t i = 0; i < n && i < max_elements; ++i) {
      absl::StrAppend(&out, i ? ", " : "", p[i]);
    }
  });
  if (n > max_elements) absl::StrAppend(&out, ", ...");
  return out + "}";
}

}  // namespace subquad
