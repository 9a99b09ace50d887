// Tensor-core forward of causal attention (FlashAttention-2): one block of 4 warps per (64 kMT
// queries, q head, key split); each warp owns kMT 16-row m-tiles (kMT = 2 when Dv <= 128: the
// K and V fragments, read from shared memory once per warp, then serve twice the rows, which
// halves the shared-memory traffic per FLOP, the limit of v1). Per key tile of 64: S = Q K^T
// in mma accumulators, causal mask only on tiles that cross the diagonal, online softmax in
// registers (exp2 of log2-scaled scores), then O += P V with P reused from the accumulators
// as the A operand. Q stays in shared memory; K and V each have one buffer, loaded with
// cp.async so that V(t) arrives while S(t) is computed and K(t+1) while P V(t) is.
#include <cuda_bf16.h>

#include <cmath>

#include "core/cuda/attention/attention_kernels.cuh"
#include "core/cuda/attention/attention_mma.cuh"

namespace kimi::cuda::attn {
namespace {

constexpr int kThreads = 128;
constexpr float kNegInf = -INFINITY;

template <class Op, int kD, int kDv, int kMT_>
struct FwdShape {
  static constexpr int kMT = kMT_;  // 16-row m-tiles per warp
  static constexpr int kBq = 4 * 16 * kMT, kBk = kMmaFwdBk;
  static constexpr int kLdQ = kD + OpTraits<Op>::kPad, kLdV = kDv + OpTraits<Op>::kPad;
  static constexpr size_t kSmem = size_t(kBq * kLdQ + kBk * kLdQ + kBk * kLdV) * sizeof(Op);
};

// grid: x = batch * q head, y = query block (heaviest, i.e. last, first), z = key split.
template <class Ti, class Op, int kD, int kDv, int kMT_>
__global__ void __launch_bounds__(kThreads) fwd_mma_kernel(const Params<Ti> p) {
  using S = FwdShape<Op, kD, kDv, kMT_>;
  constexpr int kMT = S::kMT, kBq = S::kBq, kBk = S::kBk;
  extern __shared__ __align__(16) unsigned char smem[];
  Op* sQ = reinterpret_cast<Op*>(smem);
  Op* sK = sQ + kBq * S::kLdQ;
  Op* sV = sK + kBk * S::kLdQ;
  const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  const int bh = blockIdx.x, b = bh / p.Hq, h = bh % p.Hq, hk = h / p.group;
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kBq;
  const int kend = min(i0 + kBq, p.Tq) + p.off;  // keys [0, kend) are visible to this block
  const int ntiles = (kend + kBk - 1) / kBk;
  const int t_begin = blockIdx.z * p.tiles_per_split;
  const int t_end = min(ntiles, t_begin + p.tiles_per_split);
  const int64_t q_stride = int64_t(p.Hq) * p.D, k_stride = int64_t(p.Hkv) * p.D,
                v_stride = int64_t(p.Hkv) * p.Dv;
  const int row_w = warp * 16 * kMT;  // the warp's first row in the block

  float acc[kMT][kDv / 8][4] = {};
  // Per row (m-tile mi, r: rows g and g + 8), log2 units.
  float m[kMT][2], l[kMT][2];
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi) m[mi][0] = m[mi][1] = kNegInf, l[mi][0] = l[mi][1] = 0.f;
  if (t_begin < t_end) {
    load_tile<kBq, kD, kThreads>(sQ, S::kLdQ, p.q + p.q_row(b, i0, h), q_stride, p.Tq - i0, p.D,
                                 p.vec_qk);
    load_tile<kBk, kD, kThreads>(sK, S::kLdQ, p.k + p.k_row(b, t_begin * kBk, hk), k_stride,
                                 p.Tk - t_begin * kBk, p.D, p.vec_qk);
    cp_async_commit();
    for (int tile = t_begin; tile < t_end; ++tile) {
      const int j0 = tile * kBk;
      cp_async_wait_all();
      __syncthreads();  // K(tile) landed; every warp is done with V(tile - 1)
      load_tile<kBk, kDv, kThreads>(sV, S::kLdV, p.v + p.v_row(b, j0, hk), v_stride, p.Tk - j0,
                                    p.Dv, p.vec_v);
      cp_async_commit();
      float s[kMT][kBk / 8][4] = {};
      warp_nt_m<kMT, kBk, kD>(s, sQ + row_w * S::kLdQ, S::kLdQ, sK, S::kLdQ);
      // Keys past a row's position (and past Tk) only occur on tiles crossing the diagonal.
      const bool diag = j0 + kBk - 1 > i0 + p.off;
#pragma unroll
      for (int mi = 0; mi < kMT; ++mi) {
        const int pos_g = i0 + row_w + mi * 16 + g + p.off;  // absolute position of row g
#pragma unroll
        for (int n = 0; n < kBk / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            s[mi][n][e] *= p.scale_log2;
            if (diag && j0 + n * 8 + 2 * t + (e & 1) > pos_g + (e >> 1) * 8) s[mi][n][e] = kNegInf;
          }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          float mx = kNegInf;
#pragma unroll
          for (int n = 0; n < kBk / 8; ++n)
            mx = fmaxf(mx, fmaxf(s[mi][n][2 * r], s[mi][n][2 * r + 1]));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));  // the 4 lanes of a row
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
          const float m_new = fmaxf(m[mi][r], mx);
          // A row with no visible key yet (only possible in a key split) keeps m = -inf: use
          // 0 so that exp2(-inf - 0) = 0 instead of NaN.
          const float m_use = m_new == kNegInf ? 0.f : m_new;
          const float corr = exp2f(m[mi][r] - m_use);
          m[mi][r] = m_new;
          float sum = 0.f;
#pragma unroll
          for (int n = 0; n < kBk / 8; ++n) {
            s[mi][n][2 * r] = exp2f(s[mi][n][2 * r] - m_use);
            s[mi][n][2 * r + 1] = exp2f(s[mi][n][2 * r + 1] - m_use);
            sum += s[mi][n][2 * r] + s[mi][n][2 * r + 1];
          }
          l[mi][r] = l[mi][r] * corr + sum;  // this thread's columns; the quad sums at the end
#pragma unroll
          for (int n = 0; n < kDv / 8; ++n) {
            acc[mi][n][2 * r] *= corr;
            acc[mi][n][2 * r + 1] *= corr;
          }
        }
      }
      cp_async_wait_all();
      __syncthreads();  // V(tile) landed; every warp is done with K(tile)
      if (tile + 1 < t_end) {
        load_tile<kBk, kD, kThreads>(sK, S::kLdQ, p.k + p.k_row(b, j0 + kBk, hk), k_stride,
                                     p.Tk - j0 - kBk, p.D, p.vec_qk);
        cp_async_commit();
      }
      warp_rn_m<kMT, kDv, kBk>(acc, s, sV, S::kLdV);
    }
  }
  // Epilogue: o = acc / l, lse = (m + log2 l) ln 2; an empty split writes o = 0, lse = -inf.
  const bool split = p.n_split > 1;
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float lr = l[mi][r];
      lr += __shfl_xor_sync(0xffffffffu, lr, 1);
      lr += __shfl_xor_sync(0xffffffffu, lr, 2);
      const int i = i0 + row_w + mi * 16 + g + r * 8;
      if (i >= p.Tq) continue;
      const float inv = lr > 0.f ? 1.f / lr : 0.f;
      const float lse = lr > 0.f ? (m[mi][r] + log2f(lr)) * 0.69314718055994531f : kNegInf;
      const int64_t part_row = (int64_t(blockIdx.z) * p.B * p.Hq + bh) * p.Tq + i;
      if (split) {
        float* dst = p.o_part + part_row * p.Dv;
#pragma unroll
        for (int n = 0; n < kDv / 8; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e)
            if (n * 8 + 2 * t + e < p.Dv) dst[n * 8 + 2 * t + e] = acc[mi][n][2 * r + e] * inv;
        if (t == 0) p.lse_part[part_row] = lse;
      } else {
        Ti* dst = p.out + p.o_row(b, i, h);
#pragma unroll
        for (int n = 0; n < kDv / 8; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e)
            if (n * 8 + 2 * t + e < p.Dv) st(dst + n * 8 + 2 * t + e, acc[mi][n][2 * r + e] * inv);
        if (t == 0) p.lse[p.lse_idx(b, h, i)] = lse;
      }
    }
}

template <class Ti, class Op, int kD, int kDv, int kMT>
void launch_mt(const Params<Ti>& p, cudaStream_t stream) {
  using S = FwdShape<Op, kD, kDv, kMT>;
  static_assert(S::kSmem <= 227 * 1024, "forward tile does not fit in shared memory");
  auto kernel = fwd_mma_kernel<Ti, Op, kD, kDv, kMT>;
  allow_smem(kernel, S::kSmem);
  const dim3 grid(p.B * p.Hq, (p.Tq + S::kBq - 1) / S::kBq, p.n_split);
  kernel<<<grid, kThreads, S::kSmem, stream>>>(p);
  KIMI_CUDA_CHECK_LAUNCH();
}

// Two m-tiles per warp where the accumulators fit (Dv <= 128) and there are rows to fill them;
// decoding (Tq <= 64) keeps one: more blocks per SM, more loads in flight.
template <class Ti, class Op, int kD, int kDv>
void launch(const Params<Ti>& p, cudaStream_t stream) {
  if (kDv <= 128 && p.Tq > 64)
    launch_mt<Ti, Op, kD, kDv, kDv <= 128 ? 2 : 1>(p, stream);
  else
    launch_mt<Ti, Op, kD, kDv, 1>(p, stream);
}

}  // namespace

template <class Ti, class Op>
void launch_fwd_mma(const Params<Ti>& p, cudaStream_t stream) {
  with_head_tile(p.D, p.Dv, [&](auto kD, auto kDv) {
    launch<Ti, Op, decltype(kD)::value, decltype(kDv)::value>(p, stream);
  });
}

template void launch_fwd_mma<bf16, bf16>(const Params<bf16>&, cudaStream_t);
template void launch_fwd_mma<float, float>(const Params<float>&, cudaStream_t);

}  // namespace kimi::cuda::attn
