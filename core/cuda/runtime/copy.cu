// Strided copy / convert / fill kernels (copy.h). One thread per element, grid-stride loop; the
// flat index is unravelled against the shape once per element (up to kMaxDims dims).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"
#include "core/cuda/runtime/copy.h"

namespace kimi::cuda {

size_t elem_size(ElemType t) {
  switch (t) {
    case ElemType::kF32: return 4;
    case ElemType::kF64: return 8;
    case ElemType::kBF16: return 2;
    case ElemType::kF16: return 2;
    case ElemType::kI32: return 4;
    case ElemType::kI64: return 8;
  }
  return 0;
}

int64_t StridedView::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

bool StridedView::contiguous() const {
  int64_t acc = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    if (shape[i] == 1) continue;
    if (strides[i] != acc) return false;
    acc *= shape[i];
  }
  return true;
}

namespace {

struct Layout {  // shape shared by both sides; strides of each
  int ndim;
  int64_t shape[kMaxDims], dst_strides[kMaxDims], src_strides[kMaxDims];
};

template <class T>
__device__ __forceinline__ double to_f64(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return static_cast<double>(__bfloat162float(x));
  else if constexpr (std::is_same_v<T, __half>)
    return static_cast<double>(__half2float(x));
  else
    return static_cast<double>(x);
}

template <class T>
__device__ __forceinline__ T from_f64(double x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __double2bfloat16(x);
  else if constexpr (std::is_same_v<T, __half>)
    return __double2half(x);
  else
    return static_cast<T>(x);
}

template <class D, class S>
__device__ __forceinline__ D convert(S x) {
  if constexpr (std::is_same_v<D, S>)
    return x;
  else if constexpr (std::is_integral_v<D> && std::is_integral_v<S>)
    return static_cast<D>(x);
  else
    return from_f64<D>(to_f64(x));
}

template <class D, class S>
__global__ void copy_kernel(D* __restrict__ dst, const S* __restrict__ src, Layout L, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rem = i, od = 0, os = 0;
    for (int d = L.ndim - 1; d >= 0; --d) {
      const int64_t c = rem % L.shape[d];
      rem /= L.shape[d];
      od += c * L.dst_strides[d];
      os += c * L.src_strides[d];
    }
    dst[od] = convert<D>(src[os]);
  }
}

template <class D>
__global__ void fill_kernel(D* __restrict__ dst, Layout L, int64_t n, double value) {
  const D v = from_f64<D>(value);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rem = i, od = 0;
    for (int d = L.ndim - 1; d >= 0; --d) {
      od += (rem % L.shape[d]) * L.dst_strides[d];
      rem /= L.shape[d];
    }
    dst[od] = v;
  }
}

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
}

// Calls f(type_tag) with a value of the C++ type of t.
template <class F>
void dispatch(ElemType t, F&& f) {
  switch (t) {
    case ElemType::kF32: f(float{}); break;
    case ElemType::kF64: f(double{}); break;
    case ElemType::kBF16: f(__nv_bfloat16{}); break;
    case ElemType::kF16: f(__half{}); break;
    case ElemType::kI32: f(int32_t{}); break;
    case ElemType::kI64: f(int64_t{}); break;
  }
}

}  // namespace

void copy_strided(const StridedView& dst, const StridedView& src) {
  KIMI_CUDA_REQUIRE(dst.ndim == src.ndim && dst.ndim <= kMaxDims, "copy_strided: rank mismatch");
  for (int d = 0; d < dst.ndim; ++d)
    KIMI_CUDA_REQUIRE(dst.shape[d] == src.shape[d], "copy_strided: shape mismatch");
  const int64_t n = dst.numel();
  if (n == 0) return;
  if (dst.type == src.type && dst.contiguous() && src.contiguous()) {
    KIMI_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, n * elem_size(dst.type),
                                    cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  Layout L{};
  L.ndim = dst.ndim;
  for (int d = 0; d < dst.ndim; ++d) {
    L.shape[d] = dst.shape[d];
    L.dst_strides[d] = dst.strides[d];
    L.src_strides[d] = src.strides[d];
  }
  dispatch(dst.type, [&](auto dtag) {
    using D = decltype(dtag);
    dispatch(src.type, [&](auto stag) {
      using S = decltype(stag);
      copy_kernel<D, S><<<grid_for(n), 256, 0, stream()>>>(static_cast<D*>(dst.data),
                                                           static_cast<const S*>(src.data), L, n);
    });
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

void fill_strided(const StridedView& dst, double value) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  Layout L{};
  L.ndim = dst.ndim;
  for (int d = 0; d < dst.ndim; ++d) {
    L.shape[d] = dst.shape[d];
    L.dst_strides[d] = dst.strides[d];
  }
  dispatch(dst.type, [&](auto dtag) {
    using D = decltype(dtag);
    fill_kernel<D><<<grid_for(n), 256, 0, stream()>>>(static_cast<D*>(dst.data), L, n, value);
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

void copy_to_device(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  KIMI_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, stream()));
  KIMI_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void copy_to_host(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  KIMI_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, stream()));
  KIMI_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

}  // namespace kimi::cuda
