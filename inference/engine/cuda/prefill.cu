// The chunked prefill's own kernels (cuda_engine_prefill.cpp runs them): the per-row pre- and
// post-processing around the chunk delta rule (KDA) and the GEMM-form latent attention (MLA),
// and the gather / combine of the MoE experts' sorted rows. The math is the decode kernels'
// (kda_decode.cu, mla_decode.cu, moe.cu), row by row; only the order of the rows differs.
#include <cfloat>

#include "core/cuda/runtime/check.h"
#include "inference/engine/cuda/engine_common.cuh"

namespace kimi::inference::engine::cuda {
namespace {

constexpr int kMaxK = 128;

__device__ __forceinline__ float softplus_f(float x) { return x > 20.f ? x : log1pf(__expf(x)); }

// Input x_r of the short convolution of channel c of q/k/v (which = 0, 1, 2) for chunk row r,
// r >= -(W-1): the chunk's raw projection for r >= 0, else the slot's tail (oldest first).
__device__ __forceinline__ float conv_input(const KdaPrefill& a, int which, int r, int64_t c) {
  const int64_t HK = static_cast<int64_t>(a.H) * a.K;
  if (r >= 0) return a.proj[r * a.proj_stride + which * HK + c];
  return a.tails[(static_cast<int64_t>(which) * (a.W - 1) + (r + a.W - 1)) * HK + c];
}

// Block (row i, head h), thread j = channel j of the head: conv (over [tail, rows]), silu,
// l2norm of q and k, the log decay g and beta, as the chunk kernels want them (fp32 [n, H, K];
// beta [n, H]). q is left unscaled: the chunk kernel applies K^-1/2.
__global__ void __launch_bounds__(kMaxK) kda_prep_kernel(KdaPrefill a) {
  __shared__ float scratch[33];
  const int i = blockIdx.x, h = blockIdx.y, j = threadIdx.x, K = a.K, W = a.W;
  const int64_t HK = static_cast<int64_t>(a.H) * K, c = static_cast<int64_t>(h) * K + j;
  float y[3] = {0.f, 0.f, 0.f};
  if (j < K) {
    for (int which = 0; which < 3; ++which) {
      const bf16* w = (which == 0 ? a.conv_q : which == 1 ? a.conv_k : a.conv_v) + c * W;
      float acc = 0.f;
      for (int t = 0; t < W; ++t)
        acc = fmaf(__bfloat162float(w[t]), conv_input(a, which, i - (W - 1) + t, c), acc);
      y[which] = silu_f(acc);
    }
  }
  const float qn = rsqrtf(block_sum(y[0] * y[0], scratch) + 1e-6f);
  const float kn = rsqrtf(block_sum(y[1] * y[1], scratch) + 1e-6f);
  const int64_t at = static_cast<int64_t>(i) * HK + c;
  if (j < K) {
    a.q[at] = y[0] * qn;
    a.k[at] = y[1] * kn;
    a.v[at] = y[2];
    const float f = softplus_f(a.f[at] + a.dt_bias[c]);
    a.g[at] = -__expf(a.a_log[h]) * f;
  }
  if (j == 0) {
    const float b = a.proj[i * a.proj_stride + 3 * HK + 2 * K + h];
    a.beta[static_cast<int64_t>(i) * a.H + h] = sigmoid_f(b);
  }
}

// One thread per (which, channel): the new tail = the last W-1 inputs of [old tail, rows],
// written oldest first. Slot t reads old slot n + t > t, so walking t upwards in one thread
// never reads a slot it already overwrote.
__global__ void kda_tails_kernel(KdaPrefill a) {
  const int64_t HK = static_cast<int64_t>(a.H) * a.K;
  const int64_t id = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (id >= 3 * HK) return;
  const int which = static_cast<int>(id / HK);
  const int64_t c = id % HK;
  float* tail = a.tails + static_cast<int64_t>(which) * (a.W - 1) * HK + c;
  for (int t = 0; t < a.W - 1; ++t) tail[t * HK] = conv_input(a, which, a.n - (a.W - 1) + t, c);
}

// Block (row i, head h): out = rmsnorm(o) * o_norm * sigmoid(z + g_bias), o from the chunk kernel.
__global__ void __launch_bounds__(kMaxK) kda_out_kernel(KdaPrefill a) {
  __shared__ float scratch[33];
  const int i = blockIdx.x, h = blockIdx.y, j = threadIdx.x, K = a.K;
  const int64_t HK = static_cast<int64_t>(a.H) * K, c = static_cast<int64_t>(h) * K + j;
  const int64_t at = static_cast<int64_t>(i) * HK + c;
  const float o = j < K ? a.o[at] : 0.f;
  const float r = rsqrtf(block_sum(o * o, scratch) / K + a.norm_eps);
  if (j < K) {
    const float z = a.z[at] + __bfloat162float(a.g_bias[c]);
    a.out[at] = __float2bfloat16(o * r * __bfloat162float(a.o_norm[j]) * sigmoid_f(z));
  }
}

// Block i: chunk row i's latent row [rmsnorm(c_kv) * kv_norm, k_rope] at position L + i.
__global__ void mla_append_kernel(const float* proj, int64_t proj_stride, int64_t kv_col, int rank,
                                  int rope, const bf16* kv_norm, float eps, bf16* rows) {
  __shared__ float scratch[33];
  const int i = blockIdx.x, D = rank + rope;
  const float* kv = proj + i * proj_stride + kv_col;
  float ss = 0.f;
  for (int r = threadIdx.x; r < rank; r += blockDim.x) ss += kv[r] * kv[r];
  const float inv = rsqrtf(block_sum(ss, scratch) / rank + eps);
  bf16* row = rows + static_cast<int64_t>(i) * D;
  for (int r = threadIdx.x; r < D; r += blockDim.x)
    row[r] = __float2bfloat16(r < rank ? kv[r] * inv * __bfloat162float(kv_norm[r]) : kv[r]);
}

__global__ void bf16_to_f32_kernel(const bf16* x, int64_t n, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __bfloat162float(x[i]);
}

__global__ void f32_to_bf16_kernel(const float* x, int64_t n, bf16* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16(x[i]);
}

// Block i: qa[i, h, rank + j] = scale * proj[i, h * (nope + rope) + nope + j].
__global__ void mla_rope_kernel(const float* proj, int64_t proj_stride, int H, int nope, int rope,
                                int rank, float scale, float* qa) {
  const int i = blockIdx.x, D = rank + rope;
  for (int e = threadIdx.x; e < H * rope; e += blockDim.x) {
    const int h = e / rope, j = e % rope;
    qa[(static_cast<int64_t>(i) * H + h) * D + rank + j] =
        scale * proj[i * proj_stride + static_cast<int64_t>(h) * (nope + rope) + nope + j];
  }
}

// Block r: row r of the scores (query q0 + r / heads) sees columns [0, first + q0 + r / heads],
// softmax over them in place, zeros after.
__global__ void causal_softmax_kernel(float* s, int64_t cols, int heads, int64_t first, int q0) {
  __shared__ float scratch[33];
  float* row = s + blockIdx.x * cols;
  const int64_t valid = first + q0 + blockIdx.x / heads + 1;
  float mx = -FLT_MAX;
  for (int64_t t = threadIdx.x; t < valid; t += blockDim.x) mx = fmaxf(mx, row[t]);
  // block max through block_sum's scratch layout: a max instead of a sum
  mx = warp_max(mx);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = mx;
  __syncthreads();
  if (warp == 0) {
    float t = lane < nw ? scratch[lane] : -FLT_MAX;
    t = warp_max(t);
    if (lane == 0) scratch[32] = t;
  }
  __syncthreads();
  mx = scratch[32];
  float sum = 0.f;
  for (int64_t t = threadIdx.x; t < valid; t += blockDim.x) sum += __expf(row[t] - mx);
  const float inv = 1.f / block_sum(sum, scratch);
  for (int64_t t = threadIdx.x; t < cols; t += blockDim.x)
    row[t] = t < valid ? __expf(row[t] - mx) * inv : 0.f;
}

__global__ void sigmoid_kernel(float* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = sigmoid_f(x[i]);
}

// Block j (sorted slot j): xs[j] = x[sorted[j] / top_k]; inv[sorted[j]] = j.
__global__ void moe_gather_kernel(const bf16* x, int d, int top_k, const int* sorted, bf16* xs,
                                  int* inv) {
  const int j = blockIdx.x, slot = sorted[j];
  const bf16* src = x + static_cast<int64_t>(slot / top_k) * d;
  bf16* dst = xs + static_cast<int64_t>(j) * d;
  for (int n = threadIdx.x; n < d; n += blockDim.x) dst[n] = src[n];
  if (threadIdx.x == 0) inv[slot] = j;
}

// Block b: h[b] += sum_k weights[b, k] ys[inv[b * top_k + k]] (moe.cu's combine, sorted rows).
__global__ void moe_combine_sorted_kernel(const float* ys, const int* inv, const float* weights,
                                          int top_k, int d, float* h) {
  const int b = blockIdx.x;
  for (int n = threadIdx.x; n < d; n += blockDim.x) {
    float acc = 0.f;
    for (int k = 0; k < top_k; ++k)
      acc += weights[b * top_k + k] * ys[static_cast<int64_t>(inv[b * top_k + k]) * d + n];
    h[static_cast<int64_t>(b) * d + n] += acc;
  }
}

}  // namespace

void kda_prefill_prep(const KdaPrefill& a, cudaStream_t s) {
  KIMI_CUDA_REQUIRE(a.K >= 1 && a.K <= kMaxK && a.W >= 1, "kda prefill: head_dim in [1, 128]");
  if (a.n <= 0) return;
  const int threads = (a.K + 31) / 32 * 32;
  kda_prep_kernel<<<dim3(a.n, a.H), threads, 0, s>>>(a);
  KIMI_CUDA_CHECK_LAUNCH();
}

void kda_prefill_tails(const KdaPrefill& a, cudaStream_t s) {
  if (a.n <= 0 || a.W <= 1) return;
  const int64_t n = 3 * static_cast<int64_t>(a.H) * a.K;
  kda_tails_kernel<<<blocks_for(n, 256), 256, 0, s>>>(a);
  KIMI_CUDA_CHECK_LAUNCH();
}

void kda_prefill_out(const KdaPrefill& a, cudaStream_t s) {
  if (a.n <= 0) return;
  const int threads = (a.K + 31) / 32 * 32;
  kda_out_kernel<<<dim3(a.n, a.H), threads, 0, s>>>(a);
  KIMI_CUDA_CHECK_LAUNCH();
}

void mla_prefill_append(const float* proj, int64_t proj_stride, int64_t kv_col, int n, int rank,
                        int rope, const bf16* kv_norm, float eps, bf16* rows, cudaStream_t s) {
  if (n <= 0) return;
  mla_append_kernel<<<n, 256, 0, s>>>(proj, proj_stride, kv_col, rank, rope, kv_norm, eps, rows);
  KIMI_CUDA_CHECK_LAUNCH();
}

void bf16_to_f32(const bf16* x, int64_t n, float* y, cudaStream_t s) {
  if (n <= 0) return;
  bf16_to_f32_kernel<<<blocks_for(n, 256), 256, 0, s>>>(x, n, y);
  KIMI_CUDA_CHECK_LAUNCH();
}

void f32_to_bf16(const float* x, int64_t n, bf16* y, cudaStream_t s) {
  if (n <= 0) return;
  f32_to_bf16_kernel<<<blocks_for(n, 256), 256, 0, s>>>(x, n, y);
  KIMI_CUDA_CHECK_LAUNCH();
}

void mla_prefill_rope(const float* proj, int64_t proj_stride, int n, int H, int nope, int rope,
                      int rank, float scale, float* qa, cudaStream_t s) {
  if (n <= 0 || rope <= 0) return;
  mla_rope_kernel<<<n, 128, 0, s>>>(proj, proj_stride, H, nope, rope, rank, scale, qa);
  KIMI_CUDA_CHECK_LAUNCH();
}

void causal_softmax(float* scores, int rows, int64_t cols, int heads, int64_t first, int q0,
                    cudaStream_t s) {
  if (rows <= 0) return;
  causal_softmax_kernel<<<rows, 256, 0, s>>>(scores, cols, heads, first, q0);
  KIMI_CUDA_CHECK_LAUNCH();
}

void sigmoid_inplace(float* x, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  sigmoid_kernel<<<blocks_for(n, 256), 256, 0, s>>>(x, n);
  KIMI_CUDA_CHECK_LAUNCH();
}

void moe_gather(const bf16* x, int d, int top_k, const int* sorted, int slots_n, bf16* xs, int* inv,
                cudaStream_t s) {
  if (slots_n <= 0) return;
  moe_gather_kernel<<<slots_n, 256, 0, s>>>(x, d, top_k, sorted, xs, inv);
  KIMI_CUDA_CHECK_LAUNCH();
}

void moe_combine_sorted(const float* ys, const int* inv, const float* weights, int B, int top_k,
                        int d, float* h, cudaStream_t s) {
  if (B <= 0) return;
  moe_combine_sorted_kernel<<<B, 256, 0, s>>>(ys, inv, weights, top_k, d, h);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::inference::engine::cuda
