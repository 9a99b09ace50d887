// Device helpers shared by the engine's kernels: reductions, the counter-based hash.
#pragma once

#include <cuda_bf16.h>

#include <cfloat>
#include <cstdint>

#include "inference/engine/cuda/engine_kernels.h"

namespace kimi::inference::engine::cuda {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
// `scratch` holds 33 floats; it may be reused after the call returns.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < nw ? scratch[lane] : 0.f;
    t = warp_sum(t);
    if (lane == 0) scratch[32] = t;
  }
  __syncthreads();
  return scratch[32];
}

// splitmix64: counter-based, so any element's value depends only on (seed, tensor, index).
__device__ __forceinline__ uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__device__ __forceinline__ float silu_f(float x) { return x / (1.f + __expf(-x)); }
__device__ __forceinline__ float sigmoid_f(float x) { return 1.f / (1.f + __expf(-x)); }

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(bf16 v) { return __bfloat162float(v); }

inline unsigned blocks_for(int64_t n, int threads, int64_t cap = 65535 * 16) {
  int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > cap ? cap : b));
}

// Eight bf16 (one 16-byte load) or eight floats into f: the GEMVs' operand loads.
__device__ __forceinline__ void unpack8(const uint4& v, float* f) {
  const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __bfloat1622float2(p[i]);
    f[2 * i] = t.x, f[2 * i + 1] = t.y;
  }
}

__device__ __forceinline__ void load8(const bf16* p, float* f) {
  unpack8(*reinterpret_cast<const uint4*>(p), f);
}
__device__ __forceinline__ void load8(const float* p, float* f) {
  const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

// This warp's top_k of token b over the biased scores s (+ bias): top_k rounds of a warp arg-max
// (ties to the lower id), weights the unbiased scores, renormalised and scaled. `choice` is this
// warp's E floats of shared memory. __ldcg: in the fused routing other blocks wrote s.
__device__ inline void warp_topk(const float* s, const float* bias, int E, int top_k, bool renorm,
                                 float scale, int b, float* choice, int* ids, float* weights) {
  const int lane = threadIdx.x & 31;
  for (int e = lane; e < E; e += 32) choice[e] = __ldcg(s + e) + bias[e];  // other blocks' writes
  __syncwarp();
  float sum = 0.f;
  for (int k = 0; k < top_k; ++k) {
    float best = -FLT_MAX;
    int arg = E;
    for (int e = lane; e < E; e += 32)
      if (choice[e] > best) best = choice[e], arg = e;  // lanes scan ids upwards: first wins
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best, o);
      const int oa = __shfl_xor_sync(0xffffffffu, arg, o);
      if (ob > best || (ob == best && oa < arg)) best = ob, arg = oa;
    }
    if (lane == 0) {
      ids[b * top_k + k] = arg;
      weights[b * top_k + k] = __ldcg(s + arg);
      choice[arg] = -FLT_MAX;
    }
    sum += __ldcg(s + arg);
    __syncwarp();
  }
  if (lane == 0) {
    const float norm = (renorm && top_k > 1) ? sum + 1e-20f : 1.f;
    for (int k = 0; k < top_k; ++k) weights[b * top_k + k] = weights[b * top_k + k] / norm * scale;
  }
}

}  // namespace kimi::inference::engine::cuda
