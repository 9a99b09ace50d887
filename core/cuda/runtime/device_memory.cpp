// The device runtime of core/tensor/device_memory.h for the CUDA backend: allocation through the
// caching allocator (allocator.h), copies and fills through copy.h. Host <-> device copies make
// the host side contiguous (and of the destination's type) first, on the CPU; device-side
// strided or converting copies run the strided kernel. A .cpp, not a .cu: Tensor's headers use
// fmt, which nvcc 13 cannot compile. Registered by core/cuda/register.cpp.
#include "core/tensor/device_memory.h"

#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"
#include "core/cuda/runtime/copy.h"
#include "core/cuda/runtime/cuda_tensor.h"
#include "core/tensor/error.h"
#include "core/tensor/tensor.h"

namespace kimi {
namespace {

static_assert(static_cast<int>(cuda::ElemType::kF32) == static_cast<int>(DType::kF32) &&
                  static_cast<int>(cuda::ElemType::kF64) == static_cast<int>(DType::kF64) &&
                  static_cast<int>(cuda::ElemType::kBF16) == static_cast<int>(DType::kBF16) &&
                  static_cast<int>(cuda::ElemType::kF16) == static_cast<int>(DType::kF16) &&
                  static_cast<int>(cuda::ElemType::kI32) == static_cast<int>(DType::kI32) &&
                  static_cast<int>(cuda::ElemType::kI64) == static_cast<int>(DType::kI64),
              "cuda::ElemType must mirror kimi::DType");

// A contiguous view of `t`'s shape over `data` with element type `type`.
cuda::StridedView contiguous_view(const Tensor& t, void* data, DType type) {
  cuda::StridedView v = cuda_view(t);
  v.data = data;
  v.type = static_cast<cuda::ElemType>(type);
  int64_t acc = 1;
  for (int d = v.ndim - 1; d >= 0; --d) {
    v.strides[d] = acc;
    acc *= v.shape[d];
  }
  return v;
}

void host_to_device(const Tensor& dst, const Tensor& src) {
  const size_t nbytes = dst.numel() * dtype_size(dst.dtype());
  Tensor host = src;
  if (!src.is_contiguous() || src.dtype() != dst.dtype()) {
    host = Tensor::empty(dst.shape(), dst.dtype());
    host.copy_(src);  // CPU: strided gather + type conversion
  }
  if (dst.is_contiguous()) {
    cuda::copy_to_device(dst.raw_data(), host.raw_data(), nbytes);
    return;
  }
  cuda::Buffer staging(nbytes);
  cuda::copy_to_device(staging.get(), host.raw_data(), nbytes);
  cuda::copy_strided(cuda_view(dst), contiguous_view(dst, staging.get(), dst.dtype()));
}

void device_to_host(const Tensor& dst, const Tensor& src) {
  const size_t nbytes = src.numel() * dtype_size(src.dtype());
  cuda::Buffer staging;
  const void* from = src.raw_data();
  if (!src.is_contiguous()) {
    staging = cuda::Buffer(nbytes);
    cuda::copy_strided(contiguous_view(src, staging.get(), src.dtype()), cuda_view(src));
    from = staging.get();
  }
  if (dst.is_contiguous() && dst.dtype() == src.dtype()) {
    cuda::copy_to_host(dst.raw_data(), from, nbytes);
    return;
  }
  Tensor host = Tensor::empty(src.shape(), src.dtype());
  cuda::copy_to_host(host.raw_data(), from, nbytes);
  Tensor out = dst;  // a handle: copy_ writes dst's storage
  out.copy_(host);   // CPU: scatter + type conversion
}

}  // namespace

namespace cuda_runtime {

bool available() { return cuda::device_present(); }

void synchronize() {
  if (cuda::device_present()) KIMI_CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
}

double time_ms(const std::function<void()>& f) {
  cudaEvent_t start, stop;
  KIMI_CUDA_CHECK(cudaEventCreate(&start));
  KIMI_CUDA_CHECK(cudaEventCreate(&stop));
  KIMI_CUDA_CHECK(cudaEventRecord(start, cuda::stream()));
  f();
  KIMI_CUDA_CHECK(cudaEventRecord(stop, cuda::stream()));
  KIMI_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  KIMI_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  KIMI_CUDA_CHECK(cudaEventDestroy(start));
  KIMI_CUDA_CHECK(cudaEventDestroy(stop));
  return ms;
}

void* alloc(size_t nbytes) {
  KIMI_CHECK(cuda::device_present(), "a CUDA tensor was asked for but no CUDA device is present");
  return cuda::alloc(nbytes);
}

void free(void* ptr, size_t nbytes) { cuda::free(ptr, nbytes); }

void copy(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  const bool dst_dev = dst.device() == Device::kCUDA, src_dev = src.device() == Device::kCUDA;
  if (dst_dev && src_dev) {
    cuda::copy_strided(cuda_view(dst), cuda_view(src));
  } else if (dst_dev) {
    host_to_device(dst, src);
  } else if (src_dev) {
    device_to_host(dst, src);
  } else {
    Tensor out = dst;
    out.copy_(src);
  }
}

void fill(const Tensor& dst, double value) {
  KIMI_CHECK(dst.device() == Device::kCUDA, "device_fill on a {} tensor",
             device_name(dst.device()));
  cuda::fill_strided(cuda_view(dst), value);
}

}  // namespace cuda_runtime

void register_cuda_runtime() {
  DeviceRuntime r;
  r.available = cuda_runtime::available;
  r.alloc = cuda_runtime::alloc;
  r.free = cuda_runtime::free;
  r.copy = cuda_runtime::copy;
  r.fill = cuda_runtime::fill;
  r.synchronize = cuda_runtime::synchronize;
  r.time_ms = cuda_runtime::time_ms;
  register_device_runtime(Device::kCUDA, r);
}

}  // namespace kimi
