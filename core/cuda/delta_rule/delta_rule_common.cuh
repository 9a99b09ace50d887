// Helpers shared by the delta-rule kernels (not a public API): element loads and stores in fp32
// whatever the storage type, warp sums, the kernel parameter block, and host-side device queries.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "core/cuda/delta_rule/delta_rule.cuh"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda::detail {

template <class T>
__device__ __forceinline__ float ld(const T* p) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(*p);
  else
    return static_cast<float>(*p);
}
template <class T>
__device__ __forceinline__ void st(T* p, float x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    *p = __float2bfloat16(x);
  else
    *p = x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Everything a delta-rule kernel needs; pointers that do not apply are nullptr.
template <class Ti>
struct Params {
  int B, T, H, K, V;
  GateKind gate;
  float scale;
  const Ti *q, *k, *v, *g, *beta;  // beta nullptr: the linear recurrence
  const float* h0;
  Ti* o;
  float* ht;
  // recurrent form: states at chunk boundaries (every `every` steps), [B,H,n_ckpt,K,V]
  float* ckpt;
  int every, n_ckpt;

  __device__ __forceinline__ int64_t qk(int b, int t, int h) const {
    return ((int64_t(b) * T + t) * H + h) * K;
  }
  __device__ __forceinline__ int64_t vo(int b, int t, int h) const {
    return ((int64_t(b) * T + t) * H + h) * V;
  }
  __device__ __forceinline__ int64_t tok(int b, int t, int h) const {
    return (int64_t(b) * T + t) * H + h;
  }
  // exp(g) of channel i at token t (1 without a gate).
  __device__ __forceinline__ float decay(int b, int t, int h, int i) const {
    if (gate == GateKind::kPerChannel) return expf(ld(g + qk(b, t, h) + i));
    if (gate == GateKind::kScalar) return expf(ld(g + tok(b, t, h)));
    return 1.f;
  }
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The parameter block of a call: the dimensions of d and the given pointers (no checks; the
// recurrent form's checkpoint fields are left zero).
template <class Ti>
Params<Ti> make_params(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v, const Ti* g,
                       const Ti* beta, const float* h0, Ti* o, float* ht) {
  Params<Ti> p{};
  p.B = int(d.B);
  p.T = int(d.T);
  p.H = int(d.H);
  p.K = int(d.K);
  p.V = int(d.V);
  p.gate = d.gate;
  p.scale = float(d.scale);
  p.q = q;
  p.k = k;
  p.v = v;
  p.g = g;
  p.beta = beta;
  p.h0 = h0;
  p.o = o;
  p.ht = ht;
  return p;
}

// Attributes of the current device.
inline int max_smem_optin() {
  int dev = 0, v = 0;
  KIMI_CUDA_CHECK(cudaGetDevice(&dev));
  KIMI_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return v;
}
inline int sm_count() {
  int dev = 0, v = 0;
  KIMI_CUDA_CHECK(cudaGetDevice(&dev));
  KIMI_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
  return v;
}

}  // namespace kimi::cuda::detail
