// Kernels of core/cuda/optim/optim.h. The steps are memory-bound, so each element is read and
// written once in fp32 (the CPU path's double arithmetic would change results only in the last
// bits). The sum of squares reduces within a block (warp shuffles) and adds one fp64 atomic per
// block.
#include <cuda_bf16.h>

#include <algorithm>
#include <type_traits>

#include "core/cuda/optim/optim.h"
#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"
#include "core/cuda/runtime/elem_access.cuh"

namespace kimi::cuda {
namespace {

using namespace elem;

__global__ void adamw_kernel(int64_t n, float* p, const float* g, float* m, float* v, AdamWStep s) {
  const float omb1 = 1.0f - s.beta1, omb2 = 1.0f - s.beta2;
  KIMI_GRID_STRIDE(i, n) {
    const float gi = g[i], pi = p[i];
    const float mi = s.beta1 * m[i] + omb1 * gi;
    const float vi = s.beta2 * v[i] + omb2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float update =
        (mi / s.bias_correction1) / (sqrtf(vi / s.bias_correction2) + s.eps) + s.weight_decay * pi;
    p[i] = pi - s.lr * update;
  }
}

__global__ void sgd_kernel(int64_t n, float* p, const float* g, float* buf, float lr,
                           float momentum, float wd) {
  KIMI_GRID_STRIDE(i, n) {
    const float pi = p[i];
    const float b = momentum * buf[i] + g[i] + wd * pi;
    buf[i] = b;
    p[i] = pi - lr * b;
  }
}

template <class T>
__global__ void sum_squares_kernel(int64_t n, const T* x, double* total) {
  __shared__ double warp_sums[kThreads / 32];
  acc_t<T> a = 0;
  KIMI_GRID_STRIDE(i, n) {
    const acc_t<T> xi = ld(x + i);
    a += xi * xi;
  }
  double s = static_cast<double>(a);
  for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = s;
  __syncthreads();
  if (threadIdx.x < 32) {
    s = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0;
    for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
    if (threadIdx.x == 0) atomicAdd(total, s);
  }
}

template <class F>
void dispatch(ElemType t, const char* what, F&& f) {
  switch (t) {
    case ElemType::kF32: f(float{}); break;
    case ElemType::kBF16: f(__nv_bfloat16{}); break;
    case ElemType::kF64: f(double{}); break;
    default: KIMI_CUDA_REQUIRE(false, what);
  }
}

}  // namespace

void adamw_step(int64_t n, float* p, const float* g, float* m, float* v, const AdamWStep& s) {
  if (n == 0) return;
  adamw_kernel<<<grid_for(n), kThreads, 0, stream()>>>(n, p, g, m, v, s);
  KIMI_CUDA_CHECK_LAUNCH();
}

void sgd_step(int64_t n, float* p, const float* g, float* buf, float lr, float momentum,
              float weight_decay) {
  if (n == 0) return;
  sgd_kernel<<<grid_for(n), kThreads, 0, stream()>>>(n, p, g, buf, lr, momentum, weight_decay);
  KIMI_CUDA_CHECK_LAUNCH();
}

double sum_of_squares(int count, const ElemType* types, const int64_t* sizes,
                      const void* const* data) {
  Buffer total(sizeof(double));
  KIMI_CUDA_CHECK(cudaMemsetAsync(total.get(), 0, sizeof(double), stream()));
  for (int k = 0; k < count; ++k) {
    if (sizes[k] == 0) continue;
    dispatch(types[k], "sum_of_squares: F32, BF16 or F64", [&](auto tag) {
      using E = decltype(tag);
      // Few blocks: each ends in one atomic on the same address.
      sum_squares_kernel<E><<<grid_for(sizes[k], 1024), kThreads, 0, stream()>>>(
          sizes[k], static_cast<const E*>(data[k]), total.as<double>());
      KIMI_CUDA_CHECK_LAUNCH();
    });
  }
  double host = 0;
  copy_to_host(&host, total.get(), sizeof(double));
  return host;
}

}  // namespace kimi::cuda
