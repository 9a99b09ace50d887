// Element access shared by the simple CUDA op kernels (sequence, rope, optimizer): the
// accumulator type of an element type, loads and stores that convert through it, and the
// grid of a grid-stride loop. (op_common.cuh has the elementwise/reduction family's helpers.)
#pragma once

#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace kimi::cuda::elem {

constexpr int kThreads = 256;

// fp32 for F32 and BF16, fp64 for F64.
template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
__device__ __forceinline__ acc_t<T> ld(const T* p) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(*p);
  else
    return *p;
}
template <class T, class A>
__device__ __forceinline__ void st(T* p, A v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    *p = __float2bfloat16(static_cast<float>(v));
  else
    *p = static_cast<T>(v);
}

// Blocks of kThreads for n elements, at most `cap` (grid-stride loops cover the rest).
inline unsigned grid_for(int64_t n, int64_t cap = int64_t{1} << 20) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, cap));
}

}  // namespace kimi::cuda::elem

#define KIMI_GRID_STRIDE(i, n)                                                           \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
