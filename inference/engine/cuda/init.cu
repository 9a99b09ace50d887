// Weight init and synthetic cache contents from a counter-based hash (engine_kernels.h): the
// same seed gives the same model on any device and for any launch shape.
#include <cmath>

#include "core/cuda/runtime/check.h"
#include "inference/engine/cuda/engine_common.cuh"

namespace kimi::inference::engine::cuda {
namespace {

// Two 24-bit uniforms in (0, 1) from one hash.
__device__ __forceinline__ void uniforms(uint64_t h, float& u1, float& u2) {
  u1 = (static_cast<float>(h >> 40) + 0.5f) * (1.f / 16777216.f);
  u2 = (static_cast<float>(h & 0xffffffull) + 0.5f) * (1.f / 16777216.f);
}

// Kinds as weight_layout.h InitKind: normal, uniform, constant, A_log, dt_bias.
__device__ float init_value(int kind, float a, float b, uint64_t h) {
  float u1, u2;
  uniforms(h, u1, u2);
  switch (kind) {
    case 0: return a * sqrtf(-2.f * logf(u1)) * cospif(2.f * u2);
    case 1: return a + (b - a) * u1;
    case 2: return a;
    case 3: return logf(1.f + 15.f * u1);  // A = U(1, 16)
    default: {
      const float lo = logf(1e-3f), hi = logf(1e-1f);
      const float dt = fmaxf(expf(lo + (hi - lo) * u1), 1e-4f);
      return dt + logf(-expm1f(-dt));  // softplus(b) = dt
    }
  }
}

template <class T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ bf16 from_f<bf16>(float v) {
  return __float2bfloat16(v);
}

template <class T>
__global__ void init_kernel(T* dst, int64_t n, int kind, float a, float b, uint64_t key) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_f<T>(init_value(kind, a, b, mix64(key ^ mix64(static_cast<uint64_t>(i)))));
}

template <class T>
__global__ void convert_kernel(T* dst, const float* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_f<T>(src[i]);
}

__global__ void set_lengths_kernel(int* lengths, int n, int value) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) lengths[i] = value;
}

}  // namespace

void init_tensor(void* dst, bool f32, int64_t n, int kind, float a, float b, uint64_t seed,
                 uint64_t tensor_id, cudaStream_t s) {
  if (n <= 0) return;
  const uint64_t key = seed * 0xd1b54a32d192ed03ull ^ (tensor_id + 1) * 0x8cb92ba72f3d8dd7ull;
  const unsigned g = blocks_for(n, 256, 132 * 64);
  if (f32)
    init_kernel<<<g, 256, 0, s>>>(static_cast<float*>(dst), n, kind, a, b, key);
  else
    init_kernel<<<g, 256, 0, s>>>(static_cast<bf16*>(dst), n, kind, a, b, key);
  KIMI_CUDA_CHECK_LAUNCH();
}

void fill_uniform(void* dst, bool f32, int64_t n, float scale, uint64_t seed, cudaStream_t s) {
  init_tensor(dst, f32, n, 1, -scale, scale, seed, 0x5eed, s);
}

void convert_f32(void* dst, bool f32, const float* src, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  const unsigned g = blocks_for(n, 256, 132 * 64);
  if (f32)
    convert_kernel<<<g, 256, 0, s>>>(static_cast<float*>(dst), src, n);
  else
    convert_kernel<<<g, 256, 0, s>>>(static_cast<bf16*>(dst), src, n);
  KIMI_CUDA_CHECK_LAUNCH();
}

void set_lengths(int* lengths, int n, int value, cudaStream_t s) {
  if (n <= 0) return;
  set_lengths_kernel<<<blocks_for(n, 256), 256, 0, s>>>(lengths, n, value);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::inference::engine::cuda
