// One MLA decode step in the absorbed form (models/mla_layer.cpp attend_absorbed; NoPE: the rope
// slice enters the scores unrotated), over the bf16 latent cache:
//   append:  row = [rmsnorm(c_kv) * kv_norm, k_rope] at position lengths[slot]
//   absorb:  qa_h = [W_k,h^T q_nope,h ; q_rope,h] * scale       (W_k,h: kv_b rows of head h)
//   attend:  p = softmax_t(qa_h . row_t), o_lat,h = sum_t p_t c_t  (split over t, flash-decoding:
//            each block keeps a running max and sum per head, a second kernel merges the splits)
//   up:      out_h = W_v,h o_lat,h
// Every head reads the same rows, so a block loads a tile of rows once for all heads.
// Two attend kernels: the tensor-core one (mla_attend_tc.cu: bf16 mma, fp32 softmax) wherever
// its shape limits allow (H 16 or 32, rank a multiple of 128 up to 512, rope a multiple of 16:
// the 48B model's 32 / 512 / 64), and this file's fp32 CUDA-core kernel otherwise (the small
// test configs) or when KIMI_ENGINE_MLA_KERNEL=old. The fp32 one is compute-bound at long
// contexts (about 35 kFMA per cached row and step for 32 heads); it stays as the oracle.
#include <cfloat>
#include <cstdlib>
#include <cstring>

#include "core/cuda/runtime/check.h"
#include "inference/engine/cuda/engine_common.cuh"

namespace kimi::inference::engine::cuda {
namespace {

constexpr int kThreads = 256, kTile = 32;

__global__ void append_kernel(MlaStep a) {
  __shared__ float scratch[33];
  const int b = blockIdx.x, D = a.rank + a.rope;
  const int64_t slot = a.slots[b];
  const float* kv = a.proj + b * a.proj_stride + static_cast<int64_t>(a.H) * (a.nope + a.rope);
  float ss = 0.f;
  for (int r = threadIdx.x; r < a.rank; r += blockDim.x) ss += kv[r] * kv[r];
  const float inv = rsqrtf(block_sum(ss, scratch) / a.rank + a.norm_eps);
  bf16* row = a.cache + (slot * a.max_tokens + a.lengths[slot]) * D;
  for (int r = threadIdx.x; r < D; r += blockDim.x)
    row[r] = __float2bfloat16(r < a.rank ? kv[r] * inv * __bfloat162float(a.kv_norm[r]) : kv[r]);
}

// Block (b, h): qa[r] = scale * sum_n q_nope[n] kv_b[h (nope + vd) + n, r]; the rope part copied.
__global__ void absorb_kernel(MlaStep a) {
  extern __shared__ float qn[];
  const int b = blockIdx.x, h = blockIdx.y, D = a.rank + a.rope;
  const float* q = a.proj + b * a.proj_stride + static_cast<int64_t>(h) * (a.nope + a.rope);
  for (int n = threadIdx.x; n < a.nope; n += blockDim.x) qn[n] = q[n];
  __syncthreads();
  float* out = a.qa + (static_cast<int64_t>(b) * a.H + h) * D;
  const bf16* w = a.kv_b + static_cast<int64_t>(h) * (a.nope + a.vd) * a.rank;
  for (int r = threadIdx.x; r < a.rank; r += blockDim.x) {
    float acc = 0.f;
    for (int n = 0; n < a.nope; ++n)
      acc = fmaf(qn[n], __bfloat162float(w[static_cast<int64_t>(n) * a.rank + r]), acc);
    out[r] = acc * a.scale;
  }
  for (int i = threadIdx.x; i < a.rope; i += blockDim.x) out[a.rank + i] = q[a.nope + i] * a.scale;
}

// Block (b, split): rows [t0, t1) of slot b's cache (its length after this step's append).
__global__ void __launch_bounds__(kThreads) attend_kernel(MlaStep a) {
  extern __shared__ float sm[];
  const int b = blockIdx.x, split = blockIdx.y, H = a.H, R = a.rank, D = a.rank + a.rope;
  const int Dp = D + 1;           // padded rows: the score loop's lanes read different banks
  float* q_s = sm;                // [H, D]
  float* c_s = q_s + H * D;       // [kTile, Dp]
  float* p_s = c_s + kTile * Dp;  // [H, kTile]
  float* m_s = p_s + H * kTile;   // [H]
  float* l_s = m_s + H;           // [H]
  float* alpha_s = l_s + H;       // [H]
  const int64_t slot = a.slots[b];
  const int n = a.lengths[slot] + 1;
  const int chunk = ((n + a.splits - 1) / a.splits + kTile - 1) / kTile * kTile;
  const int t0 = split * chunk, t1 = min(n, t0 + chunk);
  for (int i = threadIdx.x; i < H * D; i += kThreads)
    q_s[i] = a.qa[static_cast<int64_t>(b) * H * D + i];
  for (int h = threadIdx.x; h < H; h += kThreads) m_s[h] = -FLT_MAX, l_s[h] = 0.f;
  float acc[kMlaMaxAccPerThread];
#pragma unroll
  for (int j = 0; j < kMlaMaxAccPerThread; ++j) acc[j] = 0.f;
  const bf16* rows = a.cache + slot * a.max_tokens * D;
  for (int t = t0; t < t1; t += kTile) {
    const int nt = min(kTile, t1 - t);
    __syncthreads();
    for (int i = threadIdx.x; i < kTile * D; i += kThreads) {
      const int r = i / D, col = i % D;
      c_s[r * Dp + col] =
          r < nt ? __bfloat162float(rows[static_cast<int64_t>(t + r) * D + col]) : 0.f;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < H * kTile; i += kThreads) {
      const int h = i / kTile, r = i % kTile;
      float s = -FLT_MAX;
      if (r < nt) {
        s = 0.f;
        const float* qh = q_s + h * D;
        const float* cr = c_s + r * Dp;
        for (int e = 0; e < D; ++e) s = fmaf(qh[e], cr[e], s);
      }
      p_s[i] = s;
    }
    __syncthreads();
    for (int h = threadIdx.x; h < H; h += kThreads) {
      float mx = m_s[h];
      for (int r = 0; r < nt; ++r) mx = fmaxf(mx, p_s[h * kTile + r]);
      const float alpha = __expf(m_s[h] - mx);
      float sum = 0.f;
      for (int r = 0; r < kTile; ++r) {
        const float e = r < nt ? __expf(p_s[h * kTile + r] - mx) : 0.f;
        p_s[h * kTile + r] = e;
        sum += e;
      }
      l_s[h] = l_s[h] * alpha + sum, m_s[h] = mx, alpha_s[h] = alpha;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kMlaMaxAccPerThread; ++j) {
      const int idx = threadIdx.x + j * kThreads;
      if (idx < H * R) {
        const int h = idx / R, r = idx % R;
        float v = acc[j] * alpha_s[h];
        for (int tt = 0; tt < nt; ++tt) v = fmaf(p_s[h * kTile + tt], c_s[tt * Dp + r], v);
        acc[j] = v;
      }
    }
  }
  __syncthreads();
  const int64_t base = (static_cast<int64_t>(b) * a.splits + split) * H;
#pragma unroll
  for (int j = 0; j < kMlaMaxAccPerThread; ++j) {
    const int idx = threadIdx.x + j * kThreads;
    if (idx < H * R) a.part_o[base * R + idx] = acc[j];
  }
  for (int h = threadIdx.x; h < H; h += kThreads) {
    a.part_ml[(base + h) * 2] = m_s[h];
    a.part_ml[(base + h) * 2 + 1] = l_s[h];
  }
}

// Block (b, h): the splits merged by their maxima and sums.
__global__ void merge_kernel(MlaStep a) {
  const int b = blockIdx.x, h = blockIdx.y, R = a.rank;
  const int64_t base = static_cast<int64_t>(b) * a.splits * a.H;
  float M = -FLT_MAX;
  for (int s = 0; s < a.splits; ++s) M = fmaxf(M, a.part_ml[((base + s * a.H) + h) * 2]);
  float L = 0.f;
  for (int s = 0; s < a.splits; ++s) {
    const float* ml = a.part_ml + ((base + s * a.H) + h) * 2;
    if (ml[1] > 0.f) L += __expf(ml[0] - M) * ml[1];
  }
  for (int r = threadIdx.x; r < R; r += blockDim.x) {
    float o = 0.f;
    for (int s = 0; s < a.splits; ++s) {
      const float* ml = a.part_ml + ((base + s * a.H) + h) * 2;
      if (ml[1] > 0.f) o += __expf(ml[0] - M) * a.part_o[((base + s * a.H) + h) * R + r];
    }
    a.o_lat[(static_cast<int64_t>(b) * a.H + h) * R + r] = o / L;
  }
}

// One warp per (b, h, v): out = W_v,h[v, :] . o_lat,h.
__global__ void up_kernel(MlaStep a) {
  const int64_t w_id = blockIdx.x * 8 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (w_id >= static_cast<int64_t>(a.B) * a.H * a.vd) return;
  const int v = w_id % a.vd, h = (w_id / a.vd) % a.H, b = w_id / (a.vd * a.H);
  const bf16* w = a.kv_b + (static_cast<int64_t>(h) * (a.nope + a.vd) + a.nope + v) * a.rank;
  const float* o = a.o_lat + (static_cast<int64_t>(b) * a.H + h) * a.rank;
  float acc = 0.f;
  for (int r = lane; r < a.rank; r += 32) acc = fmaf(__bfloat162float(w[r]), o[r], acc);
  acc = warp_sum(acc);
  if (lane == 0) a.out[(static_cast<int64_t>(b) * a.H + h) * a.vd + v] = __float2bfloat16(acc);
}

}  // namespace

int64_t mla_smem_bytes(int H, int rank, int rope) {
  const int64_t D = rank + rope;
  return (H * D + kTile * (D + 1) + H * kTile + 3 * H) * sizeof(float);
}

MlaKernel mla_kernel_from_env() {
  static const MlaKernel k = [] {
    const char* v = std::getenv("KIMI_ENGINE_MLA_KERNEL");
    return v && std::strcmp(v, "old") == 0 ? MlaKernel::kOld : MlaKernel::kAuto;
  }();
  return k;
}

void mla_attend(const MlaStep& a, MlaKernel kernel, cudaStream_t s) {
  if (kernel == MlaKernel::kAuto && mla_attend_tc_fits(a.H, a.rank, a.rope))
    kernel = MlaKernel::kTensorCore;
  if (kernel == MlaKernel::kTensorCore) {
    mla_attend_tc(a, s);
  } else {
    KIMI_CUDA_REQUIRE(a.H * a.rank <= kMlaMaxAccPerThread * kThreads,
                      "mla_decode: num_heads * kv_lora_rank <= 16384");
    const int64_t smem = mla_smem_bytes(a.H, a.rank, a.rope);
    static int64_t configured = 0;  // the attribute is per function; set it once it grows
    if (smem > 48 * 1024 && smem > configured) {
      KIMI_CUDA_CHECK(cudaFuncSetAttribute(
          attend_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
      configured = smem;
    }
    attend_kernel<<<dim3(a.B, a.splits), kThreads, smem, s>>>(a);
    KIMI_CUDA_CHECK_LAUNCH();
  }
  merge_kernel<<<dim3(a.B, a.H), 128, 0, s>>>(a);
  KIMI_CUDA_CHECK_LAUNCH();
}

void mla_decode(const MlaStep& a, cudaStream_t s) {
  append_kernel<<<a.B, 256, 0, s>>>(a);
  KIMI_CUDA_CHECK_LAUNCH();
  // q_nope's shared copy, padded to 4 floats: nvcc may read the unrolled loop's tail as one
  // 12/16-byte load past nope (unused values, but memcheck flags them and they may leave the
  // allocation).
  absorb_kernel<<<dim3(a.B, a.H), 256, (a.nope + 3) / 4 * 4 * sizeof(float), s>>>(a);
  KIMI_CUDA_CHECK_LAUNCH();
  mla_attend(a, mla_kernel_from_env(), s);
  const int64_t warps = static_cast<int64_t>(a.B) * a.H * a.vd;
  up_kernel<<<static_cast<unsigned>((warps + 7) / 8), 256, 0, s>>>(a);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::inference::engine::cuda
