// One KDA decode step after the projections, fused per (batch row, head) (FLA's
// fused_recurrent_kda with its pre- and post-processing; models/kda_layer.cpp's math):
//   short convs: y = sum_j w[c, j] [tail; x][j], silu; the tails shift in place (raw inputs)
//   q, k l2-normalised per head (x * rsqrt(sum x^2 + 1e-6)), q scaled by K^-1/2
//   g = -exp(A_log[h]) softplus(f + dt_bias), beta = sigmoid(b)
//   S <- diag(exp g) S;  S <- S + beta k (v - S^T k)^T;  o = S^T q      (S fp32 [K, V])
//   out = rmsnorm(o) * o_norm * sigmoid(z + g_bias)
// Thread j owns channel j of q/k/v (prologue) and column j of S (its K values in registers).
#include "core/cuda/runtime/check.h"
#include "inference/engine/cuda/engine_common.cuh"

namespace kimi::inference::engine::cuda {
namespace {

constexpr int kMaxK = 128, kMaxRows = kMaxK / 2;

// The short convolution of channel c of one of q/k/v (which = 0, 1, 2), tail updated in place.
__device__ float conv_step(float x, const bf16* w, float* tail, int W, int64_t HK) {
  float y = __bfloat162float(w[W - 1]) * x;
  for (int t = 0; t < W - 1; ++t) {
    const float old = tail[t * HK];
    y = fmaf(__bfloat162float(w[t]), old, y);
    if (t > 0) tail[(t - 1) * HK] = old;
  }
  if (W > 1) tail[(W - 2) * HK] = x;
  return silu_f(y);
}

__device__ __forceinline__ float softplus_f(float x) { return x > 20.f ? x : log1pf(__expf(x)); }

__global__ void __launch_bounds__(kMaxK) kda_decode_kernel(KdaStep a) {
  __shared__ float q_s[kMaxK], k_s[kMaxK], decay_s[kMaxK], scratch[33];
  const int b = blockIdx.x, h = blockIdx.y, j = threadIdx.x, K = a.K;
  const int64_t HK = static_cast<int64_t>(a.H) * K, slot = a.slots[b];
  const int64_t c = static_cast<int64_t>(h) * K + j;
  const float* p = a.proj + b * a.proj_stride;
  float q = 0.f, k = 0.f, v = 0.f;
  if (j < K) {
    float* tails = a.tails + slot * 3 * (a.W - 1) * HK + c;
    const int64_t tail_stride = (a.W - 1) * HK;
    q = conv_step(p[c], a.conv_q + c * a.W, tails, a.W, HK);
    k = conv_step(p[HK + c], a.conv_k + c * a.W, tails + tail_stride, a.W, HK);
    v = conv_step(p[2 * HK + c], a.conv_v + c * a.W, tails + 2 * tail_stride, a.W, HK);
    const float f = softplus_f(a.f[b * HK + c] + a.dt_bias[c]);
    decay_s[j] = __expf(-__expf(a.a_log[h]) * f);
  }
  const float qn = rsqrtf(block_sum(q * q, scratch) + 1e-6f);
  const float kn = rsqrtf(block_sum(k * k, scratch) + 1e-6f);
  if (j < K) q_s[j] = q * qn * rsqrtf(static_cast<float>(K)), k_s[j] = k * kn;
  const float beta = sigmoid_f(p[3 * HK + 2 * K + h]);
  __syncthreads();
  float o = 0.f;
  if (j < K) {
    float* S = a.state + (slot * a.H + h) * static_cast<int64_t>(K) * K + j;
    float s[kMaxK];
    float u = 0.f;
#pragma unroll
    for (int i = 0; i < kMaxK; ++i)
      if (i < K) {
        s[i] = S[static_cast<int64_t>(i) * K] * decay_s[i];
        u = fmaf(k_s[i], s[i], u);
      }
    const float delta = beta * (v - u);
#pragma unroll
    for (int i = 0; i < kMaxK; ++i)
      if (i < K) {
        s[i] = fmaf(k_s[i], delta, s[i]);
        o = fmaf(q_s[i], s[i], o);
        S[static_cast<int64_t>(i) * K] = s[i];
      }
  }
  const float r = rsqrtf(block_sum(o * o, scratch) / K + a.norm_eps);
  if (j < K) {
    const float z = a.z[b * HK + c] + __bfloat162float(a.g_bias[c]);
    a.out[b * HK + c] = __float2bfloat16(o * r * __bfloat162float(a.o_norm[j]) * sigmoid_f(z));
  }
}

// The short convolution's output without touching the tail (the split kernel's blocks all read
// the tails; the last one shifts them, shift_tail).
__device__ float conv_read(float x, const bf16* w, const float* tail, int W, int64_t HK) {
  float y = __bfloat162float(w[W - 1]) * x;
  for (int t = 0; t < W - 1; ++t) y = fmaf(__bfloat162float(w[t]), tail[t * HK], y);
  return silu_f(y);
}
__device__ void shift_tail(float x, float* tail, int W, int64_t HK) {
  for (int t = 1; t < W - 1; ++t) tail[(t - 1) * HK] = tail[t * HK];
  if (W > 1) tail[(W - 2) * HK] = x;
}

// The same step with the value columns split over gridDim.z blocks per (row, head): at B = 1
// the 32 heads were 32 blocks each walking 128-deep columns of S (latency-bound, 0.77 ms a
// step). Block z owns columns [z Vz, (z + 1) Vz); its threads are (row group, column) pairs,
// each holding ceil(K / groups) state values, reduced through shared memory. Every block
// computes q, k (all channels: the l2 norms) and v from the untouched tails; the output norm
// spans all columns, so each block leaves its o columns and sum of squares in a.o_part /
// a.ss_part and the last block of the (row, head) (a ticket, left zero) normalises, gates,
// and shifts the tails.
__global__ void __launch_bounds__(kMaxK) kda_split_kernel(KdaStep a) {
  __shared__ float q_s[kMaxK], k_s[kMaxK], v_s[kMaxK], decay_s[kMaxK], scratch[33];
  __shared__ float red[kMaxK];
  __shared__ bool last;
  const int b = blockIdx.x, h = blockIdx.y, z = blockIdx.z, Z = gridDim.z, tid = threadIdx.x;
  const int K = a.K, T = blockDim.x;
  const int64_t HK = static_cast<int64_t>(a.H) * K, slot = a.slots[b];
  const float* p = a.proj + b * a.proj_stride;
  const int64_t tail_stride = (a.W - 1) * HK;
  float* tails = a.tails + slot * 3 * tail_stride;
  float q = 0.f, k = 0.f;
  if (tid < K) {
    const int64_t c = static_cast<int64_t>(h) * K + tid;
    q = conv_read(p[c], a.conv_q + c * a.W, tails + c, a.W, HK);
    k = conv_read(p[HK + c], a.conv_k + c * a.W, tails + tail_stride + c, a.W, HK);
    v_s[tid] = conv_read(p[2 * HK + c], a.conv_v + c * a.W, tails + 2 * tail_stride + c, a.W, HK);
    decay_s[tid] = __expf(-__expf(a.a_log[h]) * softplus_f(a.f[b * HK + c] + a.dt_bias[c]));
  }
  const float qn = rsqrtf(block_sum(q * q, scratch) + 1e-6f);
  const float kn = rsqrtf(block_sum(k * k, scratch) + 1e-6f);
  if (tid < K) q_s[tid] = q * qn * rsqrtf(static_cast<float>(K)), k_s[tid] = k * kn;
  const float beta = sigmoid_f(p[3 * HK + 2 * K + h]);
  __syncthreads();
  const int Vz = (K + Z - 1) / Z, v0 = z * Vz, nv = max(0, min(Vz, K - v0));
  const int groups = max(1, T / max(nv, 1)), rows = (K + groups - 1) / groups;
  const int g = tid / max(nv, 1), col = tid % max(nv, 1);
  const bool active = nv > 0 && g < groups;
  const int i0 = g * rows, i1 = min(K, i0 + rows);
  // At vsplit >= 2 a thread's rows are at most kMaxK / 2: there are >= 2 row groups (the
  // block's threads, K rounded up to 32, are >= 2 ceil(K / vsplit)).
  float s[kMaxRows];
  float u = 0.f;
  float* S = a.state + (slot * a.H + h) * static_cast<int64_t>(K) * K + v0 + col;
  if (active) {
#pragma unroll
    for (int ii = 0; ii < kMaxRows; ++ii)
      if (i0 + ii < i1) {
        const int i = i0 + ii;
        s[ii] = S[static_cast<int64_t>(i) * K] * decay_s[i];
        u = fmaf(k_s[i], s[ii], u);
      }
    red[g * nv + col] = u;
  }
  __syncthreads();
  float o = 0.f;
  if (active) {
    float ut = 0.f;
    for (int q2 = 0; q2 < groups; ++q2) ut += red[q2 * nv + col];
    const float delta = beta * (v_s[v0 + col] - ut);
#pragma unroll
    for (int ii = 0; ii < kMaxRows; ++ii)
      if (i0 + ii < i1) {
        const int i = i0 + ii;
        s[ii] = fmaf(k_s[i], delta, s[ii]);
        o = fmaf(q_s[i], s[ii], o);
        S[static_cast<int64_t>(i) * K] = s[ii];
      }
  }
  __syncthreads();  // red's u sums are read
  if (active) red[g * nv + col] = o;
  __syncthreads();
  float ot = 0.f;
  if (active && g == 0) {
    for (int q2 = 0; q2 < groups; ++q2) ot += red[q2 * nv + col];
    a.o_part[b * HK + h * K + v0 + col] = ot;
  }
  const float ss = block_sum(ot * ot, scratch);
  if (tid == 0) a.ss_part[(static_cast<int64_t>(b) * a.H + h) * Z + z] = ss;
  __threadfence();
  __syncthreads();
  unsigned* ticket = a.tickets + static_cast<int64_t>(b) * a.H + h;
  if (tid == 0) last = atomicAdd(ticket, 1u) == static_cast<unsigned>(Z - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  float sum = 0.f;
  for (int z2 = 0; z2 < Z; ++z2)
    sum += __ldcg(a.ss_part + (static_cast<int64_t>(b) * a.H + h) * Z + z2);
  const float r = rsqrtf(sum / K + a.norm_eps);
  if (tid < K) {
    const int64_t c = static_cast<int64_t>(h) * K + tid;
    const float oc = __ldcg(a.o_part + b * HK + c);
    const float zg = a.z[b * HK + c] + __bfloat162float(a.g_bias[c]);
    a.out[b * HK + c] = __float2bfloat16(oc * r * __bfloat162float(a.o_norm[tid]) * sigmoid_f(zg));
    shift_tail(p[c], tails + c, a.W, HK);
    shift_tail(p[HK + c], tails + tail_stride + c, a.W, HK);
    shift_tail(p[2 * HK + c], tails + 2 * tail_stride + c, a.W, HK);
  }
  if (tid == 0) *ticket = 0;
}

}  // namespace

void kda_decode(const KdaStep& a, cudaStream_t s) {
  KIMI_CUDA_REQUIRE(a.K >= 1 && a.K <= kMaxK && a.W >= 1, "kda_decode: head_dim in [1, 128]");
  const int threads = (a.K + 31) / 32 * 32;
  if (a.vsplit > 1) {  // >= 2: see kMaxRows
    KIMI_CUDA_REQUIRE(a.o_part && a.ss_part && a.tickets, "kda_decode: vsplit needs workspaces");
    kda_split_kernel<<<dim3(a.B, a.H, a.vsplit), threads, 0, s>>>(a);
  } else {
    kda_decode_kernel<<<dim3(a.B, a.H), threads, 0, s>>>(a);
  }
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::inference::engine::cuda
