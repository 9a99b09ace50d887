// MoE routing on the device (models/moe.h's rule, as route_tokens): sigmoid router scores in
// fp32, top-k by score + correction bias with ties to the lower expert id, weights = the unbiased
// scores renormalised (top_k > 1) times routed_scaling_factor; then the plan that groups the
// chosen (token, k) slots by expert for the grouped GEMV, and the weighted sum back into h.
#include <cfloat>

#include "core/cuda/runtime/check.h"
#include "inference/engine/cuda/engine_common.cuh"

namespace kimi::inference::engine::cuda {
namespace {

// One warp per expert row; the row is read once, for every token.
constexpr int kRouterRows = 8;

__global__ void router_kernel(const float* x, const float* router, int B, int d, int E,
                              float* scores) {
  const int e = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (e >= E) return;
  const float* w = router + static_cast<int64_t>(e) * d;
  // Rows split over grid.y (kRouterRows each): at batch 640 one warp per expert walking every
  // row took ~1 ms a layer. Each score's sum is the same sequence of operations either way.
  const int b_end = min(B, static_cast<int>(blockIdx.y + 1) * kRouterRows);
  for (int b = blockIdx.y * kRouterRows; b < b_end; ++b) {
    const float* xr = x + static_cast<int64_t>(b) * d;
    float acc = 0.f;
    for (int k = lane; k < d; k += 32) acc = fmaf(w[k], xr[k], acc);
    acc = warp_sum(acc);
    if (lane == 0) scores[static_cast<int64_t>(b) * E + e] = sigmoid_f(acc);
  }
}

// One warp per token (warp_topk).
__global__ void topk_kernel(const float* scores, const float* bias, int E, int top_k, bool renorm,
                            float scale, int* ids, float* weights) {
  extern __shared__ float choice[];
  const int b = blockIdx.x;
  warp_topk(scores + static_cast<int64_t>(b) * E, bias, E, top_k, renorm, scale, b, choice, ids,
            weights);
}

// One block: counts per expert, the active experts in id order, their slot lists.
__global__ void plan_kernel(const int* ids, int n, int E, MoePlan plan) {
  extern __shared__ int sm[];
  int* count = sm;         // [E]
  int* start = sm + E;     // [E] offset of each expert's list (active ones)
  int* fill = sm + 2 * E;  // [E]
  for (int e = threadIdx.x; e < E; e += blockDim.x) count[e] = 0, fill[e] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) atomicAdd(&count[ids[i]], 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    int a = 0, off = 0;
    for (int e = 0; e < E; ++e) {
      start[e] = off;
      if (count[e] == 0) continue;
      plan.active[a] = e;
      plan.offsets[a] = off;
      off += count[e];
      ++a;
    }
    plan.offsets[a] = off;
    *plan.n_active = a;
  }
  __syncthreads();
  // Within an expert the order is arbitrary: each slot's output depends on its row alone.
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int e = ids[i];
    plan.sorted[start[e] + atomicAdd(&fill[e], 1)] = i;
  }
}

__global__ void combine_kernel(const float* y, const float* weights, int top_k, int d, float* h) {
  const int b = blockIdx.x;
  for (int n = threadIdx.x; n < d; n += blockDim.x) {
    float acc = 0.f;
    for (int k = 0; k < top_k; ++k)
      acc += weights[b * top_k + k] * y[(static_cast<int64_t>(b) * top_k + k) * d + n];
    h[static_cast<int64_t>(b) * d + n] += acc;
  }
}

// combine_kernel's sum, then the row's RMSNorm (rms_norm_kernel's) from the values just written.
__global__ void combine_norm_kernel(const float* y, const float* weights, int top_k, int d,
                                    float* h, const bf16* norm_w, float eps, bf16* out) {
  __shared__ float scratch[33];
  const int b = blockIdx.x;
  float* hr = h + static_cast<int64_t>(b) * d;
  float ss = 0.f;
  for (int n = threadIdx.x; n < d; n += blockDim.x) {
    float acc = 0.f;
    for (int k = 0; k < top_k; ++k)
      acc += weights[b * top_k + k] * y[(static_cast<int64_t>(b) * top_k + k) * d + n];
    const float v = hr[n] + acc;
    hr[n] = v;
    ss += v * v;
  }
  const float r = rsqrtf(block_sum(ss, scratch) / d + eps);
  for (int n = threadIdx.x; n < d; n += blockDim.x)
    out[static_cast<int64_t>(b) * d + n] = __float2bfloat16(hr[n] * r * to_f(norm_w[n]));
}

}  // namespace

void moe_combine_norm(const float* y, const float* weights, int B, int top_k, int d, float* h,
                      const bf16* norm_w, float eps, bf16* out, cudaStream_t s) {
  combine_norm_kernel<<<B, 256, 0, s>>>(y, weights, top_k, d, h, norm_w, eps, out);
  KIMI_CUDA_CHECK_LAUNCH();
}

void moe_router(const float* x, const float* router, int B, int d, int E, float* scores,
                cudaStream_t s) {
  router_kernel<<<dim3((E + 7) / 8, (B + kRouterRows - 1) / kRouterRows), 256, 0, s>>>(
      x, router, B, d, E, scores);
  KIMI_CUDA_CHECK_LAUNCH();
}

void moe_topk(const float* scores, const float* bias, int B, int E, int top_k, bool renorm,
              float scale, int* ids, float* weights, cudaStream_t s) {
  topk_kernel<<<B, 32, E * sizeof(float), s>>>(scores, bias, E, top_k, renorm, scale, ids, weights);
  KIMI_CUDA_CHECK_LAUNCH();
}

void moe_plan(const int* ids, int slots_n, int E, const MoePlan& plan, cudaStream_t s) {
  plan_kernel<<<1, 1024, 3 * E * sizeof(int), s>>>(ids, slots_n, E, plan);
  KIMI_CUDA_CHECK_LAUNCH();
}

void moe_combine(const float* y, const float* weights, int B, int top_k, int d, float* h,
                 cudaStream_t s) {
  combine_kernel<<<B, 256, 0, s>>>(y, weights, top_k, d, h);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::inference::engine::cuda
