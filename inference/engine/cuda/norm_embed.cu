// The engine's small per-row ops: embedding gather, RMSNorm to bf16, SwiGLU, length update.
#include "core/cuda/runtime/check.h"
#include "inference/engine/cuda/engine_common.cuh"

namespace kimi::inference::engine::cuda {
namespace {

__global__ void embed_kernel(const int* tokens, const bf16* table, int d, float* h) {
  const bf16* row = table + static_cast<int64_t>(tokens[blockIdx.x]) * d;
  for (int j = threadIdx.x; j < d; j += blockDim.x)
    h[static_cast<int64_t>(blockIdx.x) * d + j] = __bfloat162float(row[j]);
}

// One block per row: the sum of squares in fp32, then the scaled row.
__global__ void rms_norm_kernel(const float* x, int64_t stride, const bf16* w, int d, float eps,
                                bf16* out, float* out_f32) {
  __shared__ float scratch[33];
  const float* xr = x + blockIdx.x * stride;
  float ss = 0.f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) ss += xr[j] * xr[j];
  const float r = rsqrtf(block_sum(ss, scratch) / d + eps);
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const float v = xr[j] * r * to_f(w[j]);
    out[static_cast<int64_t>(blockIdx.x) * d + j] = __float2bfloat16(v);
    if (out_f32) out_f32[static_cast<int64_t>(blockIdx.x) * d + j] = v;
  }
}

__global__ void swiglu_kernel(const float* gu, int64_t n, int h, bf16* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / h, j = i % h;
    out[i] = __float2bfloat16(silu_f(gu[r * 2 * h + j]) * gu[r * 2 * h + h + j]);
  }
}

__global__ void advance_kernel(const int* slots, int B, int* lengths) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b < B) lengths[slots[b]] += 1;
}

}  // namespace

void embed(const int* tokens, const bf16* table, int B, int d, float* h, cudaStream_t s) {
  embed_kernel<<<B, 256, 0, s>>>(tokens, table, d, h);
  KIMI_CUDA_CHECK_LAUNCH();
}

void rms_norm(const float* x, int64_t stride, const bf16* w, int B, int d, float eps, bf16* out,
              float* out_f32, cudaStream_t s) {
  rms_norm_kernel<<<B, 256, 0, s>>>(x, stride, w, d, eps, out, out_f32);
  KIMI_CUDA_CHECK_LAUNCH();
}

void swiglu(const float* gu, int rows, int h, bf16* out, cudaStream_t s) {
  const int64_t n = static_cast<int64_t>(rows) * h;
  if (n == 0) return;
  swiglu_kernel<<<blocks_for(n, 256), 256, 0, s>>>(gu, n, h, out);
  KIMI_CUDA_CHECK_LAUNCH();
}

void advance_lengths(const int* slots, int B, int* lengths, cudaStream_t s) {
  advance_kernel<<<blocks_for(B, 128), 128, 0, s>>>(slots, B, lengths);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::inference::engine::cuda
