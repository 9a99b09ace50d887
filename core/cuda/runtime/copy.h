// Raw strided copies and fills on the device (any of kimi's element types, converting between
// them), on kimi::cuda::stream(). device_memory.cpp builds the Tensor hooks on these.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kimi::cuda {

// Same order and values as kimi::DType (core/tensor/dtype.h; device_memory.cpp static_asserts it).
enum class ElemType : uint8_t { kF32, kF64, kBF16, kF16, kI32, kI64 };
size_t elem_size(ElemType t);

constexpr int kMaxDims = 8;
// A strided view of device memory: `data` points at the first element, strides in elements.
struct StridedView {
  void* data = nullptr;
  ElemType type = ElemType::kF32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
  int64_t numel() const;
  bool contiguous() const;
};

// dst <- src elementwise (same shape, both on the device), converting the element type.
// Contiguous same-type copies are one cudaMemcpyAsync; the rest run a strided kernel.
void copy_strided(const StridedView& dst, const StridedView& src);
// dst <- value (converted to dst's type).
void fill_strided(const StridedView& dst, double value);
// Host <-> device copies of contiguous bytes; both return once the copy is complete.
void copy_to_device(void* dst, const void* src, size_t nbytes);
void copy_to_host(void* dst, const void* src, size_t nbytes);

}  // namespace kimi::cuda
