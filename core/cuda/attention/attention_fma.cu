// Plain fp32 (FMA) causal attention, the parity oracle of the GPU path (precision fp32): the
// same tiling and online softmax as the tensor-core kernels, but every tile product is a loop
// over shared memory and everything lives in fp32 shared memory, so any D, Dv <= 256 works
// without padding. Tiles of 32 queries x 32 keys, 256 threads.
// Row strides are odd (D | 1) so that 32 lanes reading 32 different rows hit 32 banks.
#include <cuda_bf16.h>

#include <cmath>

#include "core/cuda/attention/attention_kernels.cuh"

namespace kimi::cuda::attn {
namespace {

constexpr int kT = 32, kThreads = 256, kLdP = kT + 1;
constexpr float kNegInf = -INFINITY;

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// kT rows of `dim` values (rows `stride` apart, `valid` of them real) into s[row * lds + col].
template <class Ti>
__device__ void load_rows(float* s, int lds, const Ti* src, int64_t stride, int valid, int dim) {
  for (int idx = threadIdx.x; idx < kT * dim; idx += kThreads) {
    const int r = idx / dim, c = idx % dim;
    s[r * lds + c] = r < valid ? ld(src + r * stride + c) : 0.f;
  }
}

__device__ __forceinline__ float dot(const float* a, const float* b, int n) {
  float x = 0.f;
  for (int c = 0; c < n; ++c) x = fmaf(a[c], b[c], x);
  return x;
}

// grid: x = batch * q head, y = query block (last first), z = key split.
template <class Ti>
__global__ void __launch_bounds__(kThreads) fwd_fma_kernel(const Params<Ti> p) {
  extern __shared__ float sm[];
  const int ldq = p.D | 1, ldv = p.Dv | 1;
  float* sQ = sm;
  float* sK = sQ + kT * ldq;
  float* sV = sK + kT * ldq;
  float* sO = sV + kT * ldv;
  float* sP = sO + kT * ldv;
  float* sM = sP + kT * kLdP;  // running max, sum, and this tile's correction per row
  float* sL = sM + kT;
  float* sC = sL + kT;
  const int bh = blockIdx.x, b = bh / p.Hq, h = bh % p.Hq, hk = h / p.group;
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kT;
  const int kend = min(i0 + kT, p.Tq) + p.off;
  const int ntiles = (kend + kT - 1) / kT;
  const int t_begin = blockIdx.z * p.tiles_per_split;
  const int t_end = min(ntiles, t_begin + p.tiles_per_split);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  load_rows(sQ, ldq, p.q + p.q_row(b, i0, h), int64_t(p.Hq) * p.D, p.Tq - i0, p.D);
  for (int idx = threadIdx.x; idx < kT * ldv; idx += kThreads) sO[idx] = 0.f;
  if (threadIdx.x < kT) sM[threadIdx.x] = kNegInf, sL[threadIdx.x] = 0.f;
  for (int tile = t_begin; tile < t_end; ++tile) {
    const int j0 = tile * kT;
    __syncthreads();
    load_rows(sK, ldq, p.k + p.k_row(b, j0, hk), int64_t(p.Hkv) * p.D, p.Tk - j0, p.D);
    load_rows(sV, ldv, p.v + p.v_row(b, j0, hk), int64_t(p.Hkv) * p.Dv, p.Tk - j0, p.Dv);
    __syncthreads();
    for (int idx = threadIdx.x; idx < kT * kT; idx += kThreads) {
      const int r = idx / kT, j = idx % kT;
      const float s = dot(sQ + r * ldq, sK + j * ldq, p.D) * p.scale;
      sP[r * kLdP + j] = j0 + j > i0 + r + p.off ? kNegInf : s;  // future keys (and >= Tk)
    }
    __syncthreads();
    for (int r = warp * (kT / 8); r < (warp + 1) * (kT / 8); ++r) {
      const float s = sP[r * kLdP + lane], m_old = sM[r];
      const float m_new = fmaxf(m_old, warp_max(s));
      const float m_use = m_new == kNegInf ? 0.f : m_new;  // no visible key yet (key splits)
      const float pv = expf(s - m_use), sum = warp_sum(pv);
      sP[r * kLdP + lane] = pv;
      __syncwarp();
      if (lane == 0) {
        const float corr = expf(m_old - m_use);
        sM[r] = m_new;
        sL[r] = sL[r] * corr + sum;
        sC[r] = corr;
      }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < kT * p.Dv; idx += kThreads) {
      const int r = idx / p.Dv, c = idx % p.Dv;
      float a = sO[r * ldv + c] * sC[r];
      for (int j = 0; j < kT; ++j) a = fmaf(sP[r * kLdP + j], sV[j * ldv + c], a);
      sO[r * ldv + c] = a;
    }
  }
  __syncthreads();
  const bool split = p.n_split > 1;
  const int64_t part0 = (int64_t(blockIdx.z) * p.B * p.Hq + bh) * p.Tq + i0;
  for (int idx = threadIdx.x; idx < kT * p.Dv; idx += kThreads) {
    const int r = idx / p.Dv, c = idx % p.Dv;
    if (i0 + r >= p.Tq) continue;
    const float l = sL[r], o = l > 0.f ? sO[r * ldv + c] / l : 0.f;
    if (split)
      p.o_part[(part0 + r) * p.Dv + c] = o;
    else
      st(p.out + p.o_row(b, i0 + r, h) + c, o);
  }
  if (threadIdx.x < kT && i0 + int(threadIdx.x) < p.Tq) {
    const int r = threadIdx.x;
    const float lse = sL[r] > 0.f ? sM[r] + logf(sL[r]) : kNegInf;
    if (split)
      p.lse_part[part0 + r] = lse;
    else
      p.lse[p.lse_idx(b, h, i0 + r)] = lse;
  }
}

// grid: x = batch * kv head, y = key block. dK, dV accumulate in shared memory over the
// group's heads and the query blocks; dQ (scaled) goes to p.dq_acc with atomics.
template <class Ti>
__global__ void __launch_bounds__(kThreads) bwd_fma_kernel(const Params<Ti> p) {
  extern __shared__ float sm[];
  const int ldk = p.D | 1, ldv = p.Dv | 1;
  float* sK = sm;
  float* sdK = sK + kT * ldk;
  float* sQ = sdK + kT * ldk;
  float* sV = sQ + kT * ldk;
  float* sdV = sV + kT * ldv;
  float* sdO = sdV + kT * ldv;
  float* sP = sdO + kT * ldv;  // [query][key]
  float* sdS = sP + kT * kLdP;
  float* sLse = sdS + kT * kLdP;
  float* sDi = sLse + kT;
  const int b = blockIdx.x / p.Hkv, hk = blockIdx.x % p.Hkv, j0 = blockIdx.y * kT;
  load_rows(sK, ldk, p.k + p.k_row(b, j0, hk), int64_t(p.Hkv) * p.D, p.Tk - j0, p.D);
  load_rows(sV, ldv, p.v + p.v_row(b, j0, hk), int64_t(p.Hkv) * p.Dv, p.Tk - j0, p.Dv);
  for (int idx = threadIdx.x; idx < kT * ldk; idx += kThreads) sdK[idx] = 0.f;
  for (int idx = threadIdx.x; idx < kT * ldv; idx += kThreads) sdV[idx] = 0.f;
  const int first_q = max(0, j0 - p.off);
  for (int h = hk * p.group; h < (hk + 1) * p.group; ++h) {
    for (int i0 = first_q / kT * kT; i0 < p.Tq; i0 += kT) {
      __syncthreads();
      load_rows(sQ, ldk, p.q + p.q_row(b, i0, h), int64_t(p.Hq) * p.D, p.Tq - i0, p.D);
      load_rows(sdO, ldv, p.do_ + p.o_row(b, i0, h), int64_t(p.Hq) * p.Dv, p.Tq - i0, p.Dv);
      if (threadIdx.x < kT) {
        const int i = i0 + threadIdx.x;
        const bool ok = i < p.Tq;  // padding rows: lse = +inf gives P = 0
        sLse[threadIdx.x] = ok ? p.lse[p.lse_idx(b, h, i)] : INFINITY;
        sDi[threadIdx.x] = ok ? p.di[p.lse_idx(b, h, i)] : 0.f;
      }
      __syncthreads();
      for (int idx = threadIdx.x; idx < kT * kT; idx += kThreads) {
        const int r = idx / kT, j = idx % kT;
        float pv = expf(dot(sQ + r * ldk, sK + j * ldk, p.D) * p.scale - sLse[r]);
        if (j0 + j > i0 + r + p.off) pv = 0.f;
        const float dp = dot(sdO + r * ldv, sV + j * ldv, p.Dv);
        sP[r * kLdP + j] = pv;
        sdS[r * kLdP + j] = pv * (dp - sDi[r]) * p.scale;
      }
      __syncthreads();
      for (int idx = threadIdx.x; idx < kT * p.Dv; idx += kThreads) {
        const int j = idx / p.Dv, c = idx % p.Dv;
        float a = 0.f;
        for (int r = 0; r < kT; ++r) a = fmaf(sP[r * kLdP + j], sdO[r * ldv + c], a);
        sdV[j * ldv + c] += a;
      }
      for (int idx = threadIdx.x; idx < kT * p.D; idx += kThreads) {
        const int j = idx / p.D, c = idx % p.D;
        float a = 0.f;
        for (int r = 0; r < kT; ++r) a = fmaf(sdS[r * kLdP + j], sQ[r * ldk + c], a);
        sdK[j * ldk + c] += a;
      }
      for (int idx = threadIdx.x; idx < kT * p.D; idx += kThreads) {
        const int r = idx / p.D, c = idx % p.D;
        if (i0 + r >= p.Tq) continue;
        float a = 0.f;
        for (int j = 0; j < kT; ++j) a = fmaf(sdS[r * kLdP + j], sK[j * ldk + c], a);
        atomicAdd(p.dq_acc + p.q_row(b, i0 + r, h) + c, a);
      }
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < kT * p.D; idx += kThreads) {
    const int j = idx / p.D, c = idx % p.D;
    if (j0 + j < p.Tk) st(p.dk + p.k_row(b, j0 + j, hk) + c, sdK[j * ldk + c]);
  }
  for (int idx = threadIdx.x; idx < kT * p.Dv; idx += kThreads) {
    const int j = idx / p.Dv, c = idx % p.Dv;
    if (j0 + j < p.Tk) st(p.dv + p.v_row(b, j0 + j, hk) + c, sdV[j * ldv + c]);
  }
}

}  // namespace

template <class Ti>
void launch_fwd_fma(const Params<Ti>& p, cudaStream_t stream) {
  const size_t smem =
      (size_t(2 * kT) * (p.D | 1) + size_t(2 * kT) * (p.Dv | 1) + kT * kLdP + 3 * kT) *
      sizeof(float);
  allow_smem(fwd_fma_kernel<Ti>, smem);
  const dim3 grid(p.B * p.Hq, (p.Tq + kT - 1) / kT, p.n_split);
  fwd_fma_kernel<Ti><<<grid, kThreads, smem, stream>>>(p);
  KIMI_CUDA_CHECK_LAUNCH();
}

template <class Ti>
void launch_bwd_fma(const Params<Ti>& p, cudaStream_t stream) {
  const size_t smem =
      (size_t(3 * kT) * (p.D | 1) + size_t(3 * kT) * (p.Dv | 1) + 2 * kT * kLdP + 2 * kT) *
      sizeof(float);
  allow_smem(bwd_fma_kernel<Ti>, smem);
  const dim3 grid(p.B * p.Hkv, (p.Tk + kT - 1) / kT);
  bwd_fma_kernel<Ti><<<grid, kThreads, smem, stream>>>(p);
  KIMI_CUDA_CHECK_LAUNCH();
}

template void launch_fwd_fma<float>(const Params<float>&, cudaStream_t);
template void launch_fwd_fma<bf16>(const Params<bf16>&, cudaStream_t);
template void launch_bwd_fma<float>(const Params<float>&, cudaStream_t);
template void launch_bwd_fma<bf16>(const Params<bf16>&, cudaStream_t);

}  // namespace kimi::cuda::attn
