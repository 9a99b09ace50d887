// Tensor-core backward of causal attention (FlashAttention-2): one block per (kBk keys, kv
// head); K and V stay in shared memory while the block walks every query head of its group
// and every query block of 32 that sees those keys (Q, dO and lse/D_i double-buffered by
// cp.async when they fit, so step s+1 loads during step s). Each warp owns 16 key rows (with
// D + Dv > 256, two warps share the rows and split the dK / dV columns, recomputing S^T and
// dP^T, so that the accumulators fit in registers):
//   S^T = K Q^T, dP^T = V dO^T              (mma, rows = keys)
//   P^T = exp2(S^T scale log2e - lse log2e) (masked on diagonal tiles)
//   dS^T = P^T (dP^T - D_i) scale
//   dV += P^T dO, dK += dS^T Q              (registers, summed over the group's heads)
//   dQ += dS K                              (dS^T through shared memory, fp32 atomics)
// dK and dV need no atomics: one block owns their rows. dQ's atomics (Tq x D per key block)
// were the bottleneck of v1 (64 keys, scalar atomics): 128-key blocks where registers allow,
// and float4 atomics (lane pairs swap halves so each lane holds 4 adjacent columns).
#include <cuda_bf16.h>

#include <cmath>

#include "core/cuda/attention/attention_kernels.cuh"
#include "core/cuda/attention/attention_mma.cuh"

namespace kimi::cuda::attn {
namespace {

constexpr int kBq = 32;

template <class Op, int kD, int kDv>
struct BwdShape {
  static constexpr int kSplit = kD + kDv > 256 ? 2 : 1;  // warps per 16 key rows
  static constexpr int kRowWarps = kSplit == 1 && kD >= 64 ? 8 : 4;
  static constexpr int kBk = 16 * kRowWarps;  // keys per block
  static constexpr int kWarps = kRowWarps * kSplit, kThreads = 32 * kWarps;
  static constexpr int kPad = OpTraits<Op>::kPad;
  static constexpr int kLdK = kD + kPad, kLdV = kDv + kPad, kLdS = kBq + kPad;
  static constexpr int kDh = kD / kSplit, kDvh = kDv / kSplit;  // dK / dV columns per warp
  static constexpr int kNG = kWarps / 2, kDq = kD / kNG;  // dQ: 2 row tiles x kNG column groups
  static constexpr size_t smem(int stages) {
    return size_t(kBk * kLdK + kBk * kLdV + stages * (kBq * kLdK + kBq * kLdV) + kBk * kLdS) *
               sizeof(Op) +
           2 * stages * kBq * sizeof(float);
  }
  static constexpr int kStages = smem(2) <= 227 * 1024 ? 2 : 1;
  static constexpr size_t kSmem = smem(kStages);
};

// grid: x = batch * kv head, y = key block (the first ones see the most queries: run first).
template <class Ti, class Op, int kD, int kDv>
__global__ void __launch_bounds__(BwdShape<Op, kD, kDv>::kThreads)
    bwd_mma_kernel(const Params<Ti> p) {
  using S = BwdShape<Op, kD, kDv>;
  constexpr int kThreads = S::kThreads, kBk = S::kBk;
  extern __shared__ __align__(16) unsigned char smem[];
  Op* sK = reinterpret_cast<Op*>(smem);
  Op* sV = sK + kBk * S::kLdK;
  Op* sQ = sV + kBk * S::kLdV;                                  // [stage][kBq][kLdK]
  Op* sdO = sQ + S::kStages * kBq * S::kLdK;                    // [stage][kBq][kLdV]
  Op* sdS = sdO + S::kStages * kBq * S::kLdV;                   // dS^T [key][query]
  float* sLse = reinterpret_cast<float*>(sdS + kBk * S::kLdS);  // [stage][kBq], log2 units
  float* sDi = sLse + S::kStages * kBq;
  const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  const int rw = warp % S::kRowWarps, half = warp / S::kRowWarps;
  const int b = blockIdx.x / p.Hkv, hk = blockIdx.x % p.Hkv, j0 = blockIdx.y * kBk;
  const int64_t q_stride = int64_t(p.Hq) * p.D, o_stride = int64_t(p.Hq) * p.Dv;
  load_tile<kBk, kD, kThreads>(sK, S::kLdK, p.k + p.k_row(b, j0, hk), int64_t(p.Hkv) * p.D,
                               p.Tk - j0, p.D, p.vec_qk);
  load_tile<kBk, kDv, kThreads>(sV, S::kLdV, p.v + p.v_row(b, j0, hk), int64_t(p.Hkv) * p.Dv,
                                p.Tk - j0, p.Dv, p.vec_v);
  cp_async_commit();

  // Steps: (query head, query block) pairs, the blocks from the first that sees key j0.
  const int qb0 = max(0, j0 - p.off) / kBq, nqb = (p.Tq + kBq - 1) / kBq - qb0;
  const int nsteps = p.group * nqb;
  const float log2e = 1.4426950408889634f;
  auto issue = [&](int step, int stage) {  // Q, dO, lse, D_i of one step into `stage`
    const int h = hk * p.group + step / nqb, i0 = (qb0 + step % nqb) * kBq;
    load_tile<kBq, kD, kThreads>(sQ + stage * kBq * S::kLdK, S::kLdK, p.q + p.q_row(b, i0, h),
                                 q_stride, p.Tq - i0, p.D, p.vec_qk);
    load_tile<kBq, kDv, kThreads>(sdO + stage * kBq * S::kLdV, S::kLdV, p.do_ + p.o_row(b, i0, h),
                                  o_stride, p.Tq - i0, p.Dv, p.vec_v);
    cp_async_commit();
    if (threadIdx.x < kBq) {
      const int i = i0 + threadIdx.x;
      const bool ok = i < p.Tq;  // padding rows: lse = +inf gives P = 0
      sLse[stage * kBq + threadIdx.x] = ok ? p.lse[p.lse_idx(b, h, i)] * log2e : INFINITY;
      sDi[stage * kBq + threadIdx.x] = ok ? p.di[p.lse_idx(b, h, i)] : 0.f;
    }
  };

  float dk[S::kDh / 8][4] = {}, dv[S::kDvh / 8][4] = {};
  const int key_g = j0 + rw * 16 + g;  // key of fragment row g (row g + 8: key_g + 8)
  const bool vec4 = p.D % 4 == 0;      // dQ rows 16-byte aligned: float4 atomics
  if (S::kStages == 2) issue(0, 0);
  for (int step = 0; step < nsteps; ++step) {
    const int stage = S::kStages == 2 ? step & 1 : 0;
    if (S::kStages == 1) {
      __syncthreads();  // the previous step's readers are done
      issue(step, 0);
    }
    cp_async_wait_all();
    __syncthreads();  // this step's tiles landed; every warp is done with the previous step
    if (S::kStages == 2 && step + 1 < nsteps) issue(step + 1, stage ^ 1);
    const int h = hk * p.group + step / nqb, i0 = (qb0 + step % nqb) * kBq;
    const Op* cQ = sQ + stage * kBq * S::kLdK;
    const Op* cdO = sdO + stage * kBq * S::kLdV;
    const float* cLse = sLse + stage * kBq;
    const float* cDi = sDi + stage * kBq;
    float s[kBq / 8][4] = {}, dp[kBq / 8][4] = {};
    warp_nt<kBq, kD>(s, sK + rw * 16 * S::kLdK, S::kLdK, cQ, S::kLdK);
    warp_nt<kBq, kDv>(dp, sV + rw * 16 * S::kLdV, S::kLdV, cdO, S::kLdV);
    const bool diag = j0 + kBk - 1 > i0 + p.off;
#pragma unroll
    for (int n = 0; n < kBq / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int qc = n * 8 + 2 * t + (e & 1);  // query column within the block
        float pv = exp2f(s[n][e] * p.scale_log2 - cLse[qc]);
        if (diag && key_g + (e >> 1) * 8 > i0 + qc + p.off) pv = 0.f;
        s[n][e] = pv;
        dp[n][e] = pv * (dp[n][e] - cDi[qc]) * p.scale;
      }
    warp_rn<S::kDvh, kBq>(dv, s, cdO + half * S::kDvh, S::kLdV);
    warp_rn<S::kDh, kBq>(dk, dp, cQ + half * S::kDh, S::kLdK);
    if (half == 0) {
#pragma unroll
      for (int n = 0; n < kBq / 8; ++n)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          Op* dst = sdS + (rw * 16 + g + r * 8) * S::kLdS + n * 8 + 2 * t;
          if constexpr (sizeof(Op) == 2) {
            *reinterpret_cast<uint32_t*>(dst) = pack_bf16(dp[n][2 * r], dp[n][2 * r + 1]);
          } else {
            *reinterpret_cast<float2*>(dst) = make_float2(dp[n][2 * r], dp[n][2 * r + 1]);
          }
        }
    }
    __syncthreads();
    // dQ [32 x D] += dS [32 x kBk keys] K [kBk x D]: warp = (row tile mt, column group ng).
    const int mt = warp & 1, ng = warp >> 1;
    float dq[S::kDq / 8][4] = {};
    warp_tn<S::kDq, kBk>(dq, sdS + mt * 16, S::kLdS, sK + ng * S::kDq, S::kLdK);
    // Lanes t, t^1 swap halves: even t takes row g, columns 4(t/2)..+3; odd t row g + 8.
    const bool odd = t & 1;
    const int i = i0 + mt * 16 + g + (odd ? 8 : 0);
    float* dst = p.dq_acc + p.q_row(b, min(i, p.Tq - 1), h) + ng * S::kDq + 4 * (t >> 1);
#pragma unroll
    for (int n = 0; n < S::kDq / 8; ++n) {
      const float ra = __shfl_xor_sync(0xffffffffu, odd ? dq[n][0] : dq[n][2], 1);
      const float rb = __shfl_xor_sync(0xffffffffu, odd ? dq[n][1] : dq[n][3], 1);
      const float4 val =
          odd ? make_float4(ra, rb, dq[n][2], dq[n][3]) : make_float4(dq[n][0], dq[n][1], ra, rb);
      const int col = ng * S::kDq + n * 8 + 4 * (t >> 1);
      if (i >= p.Tq || col >= p.D) continue;
      if (vec4) {
        atomicAdd(reinterpret_cast<float4*>(dst + n * 8), val);
      } else {
        const float v4[4] = {val.x, val.y, val.z, val.w};
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (col + e < p.D) atomicAdd(dst + n * 8 + e, v4[e]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = key_g + r * 8;
    if (key >= p.Tk) continue;
    Ti* dkr = p.dk + p.k_row(b, key, hk) + half * S::kDh + 2 * t;
    Ti* dvr = p.dv + p.v_row(b, key, hk) + half * S::kDvh + 2 * t;
#pragma unroll
    for (int n = 0; n < S::kDh / 8; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e)
        if (half * S::kDh + n * 8 + 2 * t + e < p.D) st(dkr + n * 8 + e, dk[n][2 * r + e]);
#pragma unroll
    for (int n = 0; n < S::kDvh / 8; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e)
        if (half * S::kDvh + n * 8 + 2 * t + e < p.Dv) st(dvr + n * 8 + e, dv[n][2 * r + e]);
  }
}

template <class Ti, class Op, int kD, int kDv>
void launch(const Params<Ti>& p, cudaStream_t stream) {
  using S = BwdShape<Op, kD, kDv>;
  static_assert(S::kSmem <= 227 * 1024, "backward tile does not fit in shared memory");
  static_assert(S::kDq % 16 == 0 && S::kDh % 16 == 0 && S::kDvh % 16 == 0, "tile split");
  auto kernel = bwd_mma_kernel<Ti, Op, kD, kDv>;
  allow_smem(kernel, S::kSmem);
  const dim3 grid(p.B * p.Hkv, (p.Tk + S::kBk - 1) / S::kBk);
  kernel<<<grid, S::kThreads, S::kSmem, stream>>>(p);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <class Ti, class Op>
void launch_bwd_mma(const Params<Ti>& p, cudaStream_t stream) {
  with_head_tile(p.D, p.Dv, [&](auto kD, auto kDv) {
    launch<Ti, Op, decltype(kD)::value, decltype(kDv)::value>(p, stream);
  });
}

template void launch_bwd_mma<bf16, bf16>(const Params<bf16>&, cudaStream_t);
template void launch_bwd_mma<float, float>(const Params<float>&, cudaStream_t);

}  // namespace kimi::cuda::attn
