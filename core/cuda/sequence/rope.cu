// Kernels of core/cuda/sequence/rope.h. A first kernel tabulates cos / sin for every (t, i) from
// angles computed in double, as the CPU kernel does (positions reach 1e6, where float angles lose
// digits), rounded to the compute type; the second rotates every pair with one thread each.
#include <cuda_bf16.h>

#include <algorithm>
#include <type_traits>

#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"
#include "core/cuda/runtime/elem_access.cuh"
#include "core/cuda/sequence/rope.h"

namespace kimi::cuda {
namespace {

using namespace elem;

// cs[t * half + i] = cos(a), sn[...] = sign * sin(a), a = (pos0 + t) * theta^(-2i/D).
template <class A>
__global__ void rope_table_kernel(int64_t Tn, int64_t half, int64_t D, int64_t pos0, double theta,
                                  double sign, A* cs, A* sn) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < Tn * half;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / half, i = idx % half;
    const double a = static_cast<double>(pos0 + t) *
                     pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(D));
    cs[idx] = static_cast<A>(cos(a));
    sn[idx] = static_cast<A>(sign * sin(a));
  }
}

// One thread per pair (row, i), row = (b * T + t) * H + h.
template <class T>
__global__ void rope_apply_kernel(int64_t rows, int64_t Tn, int64_t H, int64_t half,
                                  const acc_t<T>* cs, const acc_t<T>* sn, const T* x, T* y) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < rows * half;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, row = idx / half, t = (row / H) % Tn;
    const acc_t<T> c = cs[t * half + i], s = sn[t * half + i];
    const T* xr = x + row * 2 * half;
    T* yr = y + row * 2 * half;
    const acc_t<T> x1 = ld(xr + i), x2 = ld(xr + i + half);
    st(yr + i, x1 * c - x2 * s);
    st(yr + i + half, x2 * c + x1 * s);
  }
}

}  // namespace

void rope(ElemType t, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0, double theta,
          bool inverse, const void* x, void* y) {
  KIMI_CUDA_REQUIRE(D > 0 && D % 2 == 0, "rope: head dim must be even and positive");
  KIMI_CUDA_REQUIRE(theta > 0, "rope: theta must be positive");
  const int64_t half = D / 2, rows = B * T * H;
  if (rows == 0) return;
  auto run = [&](auto tag) {
    using E = decltype(tag);
    using A = acc_t<E>;
    Buffer table(static_cast<size_t>(2 * T * half) * sizeof(A));
    A* cs = table.as<A>();
    A* sn = cs + T * half;
    rope_table_kernel<A><<<grid_for(T * half), kThreads, 0, stream()>>>(
        T, half, D, pos0, theta, inverse ? -1.0 : 1.0, cs, sn);
    KIMI_CUDA_CHECK_LAUNCH();
    rope_apply_kernel<E><<<grid_for(rows * half), kThreads, 0, stream()>>>(
        rows, T, H, half, cs, sn, static_cast<const E*>(x), static_cast<E*>(y));
    KIMI_CUDA_CHECK_LAUNCH();
  };
  switch (t) {
    case ElemType::kF32: run(float{}); break;
    case ElemType::kBF16: run(__nv_bfloat16{}); break;
    case ElemType::kF64: run(double{}); break;
    default: KIMI_CUDA_REQUIRE(false, "rope: F32, BF16 or F64");
  }
}

}  // namespace kimi::cuda
