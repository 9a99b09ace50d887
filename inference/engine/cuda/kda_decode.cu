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

constexpr int kMaxK = 128;

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

}  // namespace

void kda_decode(const KdaStep& a, cudaStream_t s) {
  KIMI_CUDA_REQUIRE(a.K >= 1 && a.K <= kMaxK && a.W >= 1, "kda_decode: head_dim in [1, 128]");
  const int threads = (a.K + 31) / 32 * 32;
  kda_decode_kernel<<<dim3(a.B, a.H), threads, 0, s>>>(a);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::inference::engine::cuda
