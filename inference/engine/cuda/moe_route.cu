// The decode step's MoE routing in one launch (issue 10): moe_router + moe_topk + moe_plan were
// three kernels of a few microseconds' work each, ~35 us a layer when timed one by one. The
// scores use the router kernel's exact sequence of operations (so the same experts win), the
// top-k and the plan the same rules as moe.cu; the last block to finish its scores does the
// top-k and the plan (threadfence + ticket, the CUDA reduction sample's pattern).
#include <cfloat>

#include "core/cuda/runtime/check.h"
#include "inference/engine/cuda/engine_common.cuh"

namespace kimi::inference::engine::cuda {
namespace {

constexpr int kThreads = 256, kWarpsPerBlock = kThreads / 32, kRows = 8;

__global__ void __launch_bounds__(kThreads)
    route_kernel(const float* x, const float* router, const float* bias, int B, int d, int E,
                 int top_k, bool renorm, float scale, float* scores, int* ids, float* weights,
                 MoePlan plan, unsigned* ticket) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // Phase 1, every block: one warp per expert row, rows of x over grid.y (router_kernel's sums).
  const int e = blockIdx.x * kWarpsPerBlock + warp;
  if (e < E) {
    const float* w = router + static_cast<int64_t>(e) * d;
    const int b_end = min(B, static_cast<int>(blockIdx.y + 1) * kRows);
    for (int b = blockIdx.y * kRows; b < b_end; ++b) {
      const float* xr = x + static_cast<int64_t>(b) * d;
      float acc = 0.f;
#pragma unroll 8
      for (int k = lane; k < d; k += 32) acc = fmaf(w[k], xr[k], acc);
      acc = warp_sum(acc);
      if (lane == 0) scores[static_cast<int64_t>(b) * E + e] = sigmoid_f(acc);
    }
  }
  __threadfence();  // this block's scores before its ticket
  __shared__ bool last;
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(ticket, 1u) == gridDim.x * gridDim.y - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  // Phase 2, the last block: each warp a token's top_k, then the plan (plan_kernel's rule, the
  // serial scan over experts replaced by a warp scan).
  extern __shared__ float sm[];
  float* choice = sm + warp * E;                                 // [8][E]
  int* count = reinterpret_cast<int*>(sm + kWarpsPerBlock * E);  // [E]
  int* start = count + E;                                        // [E]
  int* fill = start + E;                                         // [E]
  for (int b = warp; b < B; b += kWarpsPerBlock)
    warp_topk(scores + static_cast<int64_t>(b) * E, bias, E, top_k, renorm, scale, b, choice, ids,
              weights);
  for (int i = threadIdx.x; i < E; i += kThreads) count[i] = 0, fill[i] = 0;
  __syncthreads();
  const int n = B * top_k;
  for (int i = threadIdx.x; i < n; i += kThreads) atomicAdd(&count[ids[i]], 1);
  __syncthreads();
  if (warp == 0) {
    // Lane l owns experts [l * per, (l + 1) * per): its counts and active experts, scanned.
    const int per = (E + 31) / 32, e0 = min(E, lane * per), e1 = min(E, e0 + per);
    int slots = 0, act = 0;
    for (int i = e0; i < e1; ++i) slots += count[i], act += count[i] > 0;
    int slots_before = slots, act_before = act;
    for (int o = 1; o < 32; o <<= 1) {
      const int s2 = __shfl_up_sync(0xffffffffu, slots_before, o);
      const int a2 = __shfl_up_sync(0xffffffffu, act_before, o);
      if (lane >= o) slots_before += s2, act_before += a2;
    }
    slots_before -= slots, act_before -= act;  // exclusive
    for (int i = e0; i < e1; ++i) {
      start[i] = slots_before;
      if (count[i] > 0) {
        plan.active[act_before] = i;
        plan.offsets[act_before] = slots_before;
        ++act_before;
      }
      slots_before += count[i];
    }
    if (lane == 31) {
      plan.offsets[act_before] = slots_before;
      *plan.n_active = act_before;
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const int ex = ids[i];
    plan.sorted[start[ex] + atomicAdd(&fill[ex], 1)] = i;
  }
  if (threadIdx.x == 0) *ticket = 0;  // ready for the next launch (kernel order on the stream)
}

}  // namespace

void moe_route_fused(const float* x, const float* router, const float* bias, int B, int d, int E,
                     int top_k, bool renorm, float scale, float* scores, int* ids, float* weights,
                     const MoePlan& plan, unsigned* ticket, cudaStream_t s) {
  if (B <= 0 || E <= 0) return;
  const dim3 grid((E + kWarpsPerBlock - 1) / kWarpsPerBlock, (B + kRows - 1) / kRows);
  const size_t smem = (static_cast<size_t>(kWarpsPerBlock) + 3) * E * sizeof(float);
  if (smem > 48 * 1024) {  // E > 1117: past the default shared memory, the three kernels
    moe_router(x, router, B, d, E, scores, s);
    moe_topk(scores, bias, B, E, top_k, renorm, scale, ids, weights, s);
    moe_plan(ids, B * top_k, E, plan, s);
    return;
  }
  route_kernel<<<grid, kThreads, smem, s>>>(x, router, bias, B, d, E, top_k, renorm, scale, scores,
                                            ids, weights, plan, ticket);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::inference::engine::cuda
