// Chunkwise gated linear recurrence backward on the GPU: the per-chunk gradient kernel and
// linear_recurrence_chunk_bwd (stages at the top of linear_recurrence_chunk.cuh):
//   intra (the forward's) -> scan forwards (h_c) -> scan backwards (dh_c, dh0) -> grad.
// bf16 rows of whole vectors with a scalar gate or none run on tensor cores instead (lr_bwd_mma
// below; KIMI_CUDA_LR_BWD_KERNEL=old, or KIMI_CUDA_LR_KERNEL=old, keeps these kernels; =new is
// the default, which other inputs do not take). The delta rule's per-stage switches
// (KIMI_CUDA_BWD_*_KERNEL) do not apply here.
// The grad kernel, one block per (chunk, batch*head), in two phases over the same shared
// memory: (1) V streamed in 32-column tiles: dV = A_qk^T dO + Kd dh_c (stored per tile), and the
// sums dGq = dO h_c^T, dKd = V dh_c^T, dA = dO V^T, deL = rowsum(dh_c o h_c) kept in shared
// memory; (2) q, k, G loaded over the phase-1 tiles: dq = scale exp(G) o dGq + scale
// (dA o decay) k, dk = exp(G_L - G) o dKd + scale (dA o decay)^T q (decayed Gram backward split
// as in the forward: diagonal 16 x 16 blocks elementwise, off-diagonal blocks as products of
// tiles rescaled against the block's first row), and dg: since every use of G_i[d] enters
// through q_i[d] or k_i[d] (and G_L through Kd and exp(G_L)), dL/dG_i = q_i o dq_i - k_i o dk_i,
// plus c = sum_j Kd_j o dKd_j + deL o exp(G_L) at the last row; dg = reverse cumsum of that.
#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <type_traits>

#include "core/cuda/linear_recurrence/linear_recurrence_chunk.cuh"
#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda {
namespace detail::lrc {
namespace {

constexpr int kBV = 32, kLdt = kBV + 4;

template <class Ti, int kD>
__global__ void __launch_bounds__(kNT, 1)
    lr_grad_kernel(Params<Ti> p, ChunkDims cd, LrBuffers<Ti> in, const Ti* hs, const Ti* dhs,
                   const Ti* do_, Ti* dq, Ti* dk, Ti* dv, Ti* dg) {
  extern __shared__ __align__(128) float smem[];
  __shared__ float sDeL[kD], sCL[kD];
  constexpr int KP = kD, ld = kD + 4;
  float* sDQ = smem;           // dGq, then dq
  float* sDK = sDQ + kC * ld;  // dKd, then dk
  float* sDA = sDK + kC * ld;  // dO V^T, then scale * masked
  float* R = sDA + kC * kLdA;
  // phase 1
  float* sKd = R;
  float* sA = sKd + kC * ld;
  float* sDo = sA + kC * kLdA;
  float* sVt = sDo + kC * kLdt;
  float* sDv = sVt + kC * kLdt;
  float* sH = sDv + kC * kLdt;
  float* sDh = sH + KP * kLdt;
  // phase 2
  float* sQ = R;
  float* sK = sQ + kC * ld;
  float* sG = sK + kC * ld;
  float* sY = sG + kC * ld;  // 48 rows
  float* sP = sY + 48 * ld;  // 16 rows
  const int it = blockIdx.x, c = it % cd.NC, bh = it / cd.NC, b = bh / p.H, h = bh % p.H;
  const int t0 = c * kC, L = min(kC, p.T - t0), warp = threadIdx.x / 32;
  const int64_t rs_k = int64_t(p.H) * p.K, rs_v = int64_t(p.H) * p.V;
  const int64_t s0 = state_at(bh, c, cd.NC, p.K, p.V);
  const RowsSpec ks{p.qk(b, t0, h), rs_k, L, p.K, 0};

  // ---- phase 1: V in tiles of kBV columns
  load_rows<Ti, kC, KP>(sKd, ld, in.Kd, ks);
  load_rows<float, kC, kC>(sA, kLdA, in.Aqk, RowsSpec{int64_t(it) * kC * kC, kC, kC, kC, 0});
  for (int v0 = 0; v0 < p.V; v0 += kBV) {
    const bool first = v0 == 0;
    const RowsSpec vs{p.vo(b, t0, h), rs_v, L, p.V, v0}, ss{s0, p.V, p.K, p.V, v0};
    load_rows<Ti, kC, kBV>(sDo, kLdt, do_, vs);
    load_rows<Ti, kC, kBV>(sVt, kLdt, p.v, vs);
    load_rows<Ti, KP, kBV>(sH, kLdt, hs, ss);
    load_rows<Ti, KP, kBV>(sDh, kLdt, dhs, ss);
    __syncthreads();
    block_gemm<false, true>(sDQ, ld, sDo, kLdt, sH, kLdt, kC, KP, kBV, 1.f, !first);
    block_gemm<false, true>(sDK, ld, sVt, kLdt, sDh, kLdt, kC, KP, kBV, 1.f, !first);
    block_gemm<false, true>(sDA, kLdA, sDo, kLdt, sVt, kLdt, kC, kC, kBV, 1.f, !first);
    constexpr int tvb = kBV / kBS;
    for (int tile = warp; tile < 4 * tvb; tile += kNW) {  // dV (A_qk^T is upper triangular)
      const int I = tile / tvb, N = tile % tvb;
      FragC acc;
      wmma::fill_fragment(acc, 0.f);
      mma_16x16<true, false>(acc, sA + I * kBS * kLdA + I * kBS, kLdA,
                             sDo + I * kBS * kLdt + N * kBS, kLdt, kC - I * kBS);
      mma_16x16<false, false>(acc, sKd + I * kBS * ld, ld, sDh + N * kBS, kLdt, KP);
      wmma::store_matrix_sync(sDv + I * kBS * kLdt + N * kBS, acc, kLdt, wmma::mem_row_major);
    }
    for (int d = threadIdx.x; d < KP; d += blockDim.x) {
      float s = first ? 0.f : sDeL[d];
      for (int j = 0; j < kBV; ++j) s += sDh[d * kLdt + j] * sH[d * kLdt + j];
      sDeL[d] = s;
    }
    __syncthreads();
    store_rows(dv, p.vo(b, t0, h), rs_v, v0, L, min(kBV, p.V - v0), sDv, kLdt);
    __syncthreads();  // tiles free for the next loads
  }

  // ---- phase 2: q, k, G over the phase-1 tiles
  load_rows<Ti, kC, KP>(sQ, ld, p.q, ks);
  load_rows<Ti, kC, KP>(sK, ld, p.k, ks);
  lr_load_gates<Ti, KP>(sG, ld, p, b, h, t0, L);  // syncs
  const float* Gl = sG + (kC - 1) * ld;
  for (int e = threadIdx.x; e < kC * KP; e += blockDim.x) {
    const int i = e / KP, d = e % KP;
    sDQ[i * ld + d] *= p.scale * __expf(sG[i * ld + d]);
    sDK[i * ld + d] *= __expf(Gl[d] - sG[i * ld + d]);
  }
  for (int e = threadIdx.x; e < kC * kC; e += blockDim.x) {
    const int i = e / kC, j = e % kC;
    sDA[i * kLdA + j] = j <= i ? p.scale * sDA[i * kLdA + j] : 0.f;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < KP; d += blockDim.x) {  // last-row term, before dk grows
    float s = sDeL[d] * __expf(Gl[d]);
    for (int i = 0; i < kC; ++i) s += sK[i * ld + d] * sDK[i * ld + d];
    sCL[d] = s;
  }
  __syncthreads();
  // Diagonal blocks of the Gram backward, elementwise.
  for (int e = threadIdx.x; e < kC * KP; e += blockDim.x) {
    const int i = e / KP, d = e % KP, r = (i / kBS) * kBS;
    const float gi = sG[i * ld + d];
    float aq = 0.f, ak = 0.f;
    for (int j = r; j <= i; ++j)
      aq += sDA[i * kLdA + j] * sK[j * ld + d] * __expf(gi - sG[j * ld + d]);
    for (int m = i; m < r + kBS; ++m)
      ak += sDA[m * kLdA + i] * sQ[m * ld + d] * __expf(sG[m * ld + d] - gi);
    sDQ[i * ld + d] += aq;
    sDK[i * ld + d] += ak;
  }
  // Off-diagonal blocks: rows of block I (first row r) against columns j < r.
  for (int I = 1; I < 4; ++I) {
    const int r = I * kBS;
    __syncthreads();
    for (int e = threadIdx.x; e < r * KP; e += blockDim.x) {
      const int j = e / KP, d = e % KP;
      sY[j * ld + d] = sK[j * ld + d] * __expf(sG[r * ld + d] - sG[j * ld + d]);
    }
    __syncthreads();
    block_gemm<false, false>(sP, ld, sDA + r * kLdA, kLdA, sY, ld, kBS, KP, r, 1.f, false);
    __syncthreads();
    for (int e = threadIdx.x; e < kBS * KP; e += blockDim.x) {
      const int i = r + e / KP, d = e % KP;
      const float f = __expf(sG[i * ld + d] - sG[r * ld + d]);
      sDQ[i * ld + d] += f * sP[(e / KP) * ld + d];
      sP[(e / KP) * ld + d] = sQ[i * ld + d] * f;
    }
    __syncthreads();
    block_gemm<true, false>(sY, ld, sDA + r * kLdA, kLdA, sP, ld, r, KP, kBS, 1.f, false);
    __syncthreads();
    for (int e = threadIdx.x; e < r * KP; e += blockDim.x) {
      const int j = e / KP, d = e % KP;
      sDK[j * ld + d] += __expf(sG[r * ld + d] - sG[j * ld + d]) * sY[j * ld + d];
    }
  }
  __syncthreads();
  // dG and its reverse cumulative sum (rows >= L: q = k = 0), into sG (G no longer read).
  for (int d = threadIdx.x; d < KP; d += blockDim.x) {
    float acc = sCL[d];
    for (int i = kC - 1; i >= 0; --i) {
      acc += sQ[i * ld + d] * sDQ[i * ld + d] - sK[i * ld + d] * sDK[i * ld + d];
      sG[i * ld + d] = acc;
    }
  }
  __syncthreads();
  store_rows(dq, p.qk(b, t0, h), rs_k, 0, L, p.K, sDQ, ld);
  store_rows(dk, p.qk(b, t0, h), rs_k, 0, L, p.K, sDK, ld);
  if (p.gate == GateKind::kPerChannel) {
    store_rows(dg, p.qk(b, t0, h), rs_k, 0, L, p.K, sG, ld);
  } else if (p.gate == GateKind::kScalar) {
    const int lane = threadIdx.x % 32;
    for (int i = warp; i < L; i += kNW) {
      float s = 0.f;
      for (int d = lane; d < p.K; d += 32) s += sG[i * ld + d];
      s = warp_sum(s);
      if (lane == 0) st(dg + p.tok(b, t0 + i, h), s);
    }
  }
}

}  // namespace

template <class Ti>
void launch_lr_grad(const Params<Ti>& p, const ChunkDims& cd, const LrBuffers<Ti>& buf,
                    const Ti* hs, const Ti* dhs, const Ti* do_, Ti* dq, Ti* dk, Ti* dv, Ti* dg,
                    cudaStream_t stream) {
  const int ld = cd.D + 4;
  const int ph1 = kC * ld + kC * kLdA + 3 * kC * kLdt + 2 * cd.D * kLdt, ph2 = 4 * kC * ld;
  const size_t smem = size_t(2 * kC * ld + kC * kLdA + std::max(ph1, ph2)) * sizeof(float);
  auto* kernel = cd.D == 64 ? lr_grad_kernel<Ti, 64> : lr_grad_kernel<Ti, 128>;
  set_smem(kernel, smem);
  const unsigned grid = unsigned(int64_t(cd.NC) * p.B * p.H);
  kernel<<<grid, kNT, smem, stream>>>(p, cd, buf, hs, dhs, do_, dq, dk, dv, dg);
  KIMI_CUDA_CHECK_LAUNCH();
}

namespace {

// The backward on the delta rule's bf16 tensor-core stages without their delta-rule parts
// (delta_rule_chunk_bwd.cuh; kNoW in each kernel), where lr_bwd_tensor_core holds:
//   F1 the intra kernel (Gq, Kd, A_qk, exp(G_L));  F2 the state walk in store mode (h_c only:
//   V' = v);  B1 the reverse walk (dh_c, dh0, and dV' = A_qk^T dO + Kd dh_c, which is dv);
//   B2 dGq = dO h^T, dKd = v dh^T, dA_qk = dO v^T, deL = rowsum(dh o h) (no dW);
//   B4 the row block kernel without A_kk: dq, dk and a scalar gate's dg.
// The grad kernel above (fp32 tiles, WMMA TF32) and the scans stay for the rest and as the oracle.
bool lr_bwd_tensor_core(const Params<__nv_bfloat16>& p) {
  const char* e = std::getenv("KIMI_CUDA_LR_BWD_KERNEL");  // read at every call (tests, bench)
  const std::string_view v = e ? e : "";
  KIMI_CUDA_REQUIRE(v.empty() || v == "old" || v == "new",
                    "KIMI_CUDA_LR_BWD_KERNEL must be old or new");
  return lr_tensor_core(p) && p.gate != GateKind::kPerChannel && v != "old";
}

void lr_bwd_mma(const Params<__nv_bfloat16>& p, const ChunkDims& cd, const float* dht, float* dh0,
                const __nv_bfloat16* do_, __nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv,
                __nv_bfloat16* dg, cudaStream_t stream) {
  using Tb = __nv_bfloat16;
  const int64_t BTH = int64_t(p.B) * p.T * p.H, items = int64_t(p.B) * p.H * cd.NC;
  Buffer Gq(size_t(BTH * p.K) * sizeof(Tb)), Kd(size_t(BTH * p.K) * sizeof(Tb));
  Buffer A(size_t(items * kC * kC) * sizeof(float)), EgL(size_t(items * p.K) * sizeof(float));
  Buffer hb(size_t(items * p.K * p.V) * sizeof(Tb)), dhb(hb.size());
  const size_t ws_bytes = size_t(items * kC * cd.D) * sizeof(float);
  Buffer dGq(ws_bytes), dKd(ws_bytes);
  Buffer dA(size_t(items * kC * kC) * sizeof(float)), deL(size_t(items * cd.D) * sizeof(float));
  const LrBuffers<Tb> buf{Gq.as<Tb>(), Kd.as<Tb>(), A.as<float>(), EgL.as<float>()};
  const detail::chunk::ChunkBuffers<Tb> cb{nullptr, const_cast<Tb*>(p.v), buf.Gq, buf.Kd, buf.Aqk,
                                           buf.EgL};
  launch_lr_intra_any(p, cd, buf, stream);
  detail::chunk::launch_state_mma_store_linear(p, cd, cb, hb.as<Tb>(), stream);
  detail::chunk::launch_bwd_dh_mma_linear(p, cd, cb, do_, dht, dhb.as<Tb>(), dv, dh0, stream);
  BwdBuffers<Tb> bw{};
  bw.h = hb.as<Tb>();
  bw.dh = dhb.as<Tb>();
  bw.Vp = const_cast<Tb*>(p.v);  // read only
  bw.ws0 = dGq.as<float>();
  bw.ws2 = dKd.as<float>();
  bw.dAqk = dA.as<float>();
  bw.deL = deL.as<float>();
  bw.do_ = do_;
  bw.dq = dq;
  bw.dk = dk;
  bw.dv = dv;
  bw.dg = dg;
  launch_dhv_linear(p, cd, bw, stream);
  launch_gram_row_block_linear(p, cd, bw, stream);
}

}  // namespace
}  // namespace detail::lrc

template <class Ti>
void linear_recurrence_chunk_bwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                                 const Ti* g, const float* h0, const Ti* do_, const float* dht,
                                 Ti* dq, Ti* dk, Ti* dv, Ti* dg, float* dh0, cudaStream_t stream) {
  using namespace detail::lrc;
  KIMI_CUDA_REQUIRE(d.B >= 0 && d.T >= 0 && d.H >= 0 && d.K > 0 && d.V > 0,
                    "chunk linear recurrence: bad dims");
  KIMI_CUDA_REQUIRE((d.gate == GateKind::kNone) == (g == nullptr),
                    "linear recurrence: g must be given exactly when the gate kind is not kNone");
  KIMI_CUDA_REQUIRE(d.K <= 128 && d.V <= 128,
                    "chunk linear recurrence: needs K <= 128 and V <= 128");
  if (d.B * d.H == 0) return;
  if (d.T == 0) {
    linear_recurrence_recurrent_bwd(d, q, k, v, g, h0, do_, dht, dq, dk, dv, dg, dh0, stream);
    return;
  }
  const detail::Params<Ti> p =
      detail::make_params<Ti>(d, q, k, v, g, nullptr, h0, nullptr, nullptr);
  const ChunkDims cd = chunk_dims(p.K, p.V, p.T);
  if constexpr (std::is_same_v<Ti, __nv_bfloat16>) {
    if (lr_bwd_tensor_core(p)) return lr_bwd_mma(p, cd, dht, dh0, do_, dq, dk, dv, dg, stream);
  }
  const int64_t BTH = d.B * d.T * d.H, BH = d.B * d.H;
  Buffer Gq(size_t(BTH * d.K) * sizeof(Ti)), Kd(size_t(BTH * d.K) * sizeof(Ti));
  Buffer A(size_t(BH * cd.NC * kC * kC) * sizeof(float));
  Buffer EgL(size_t(BH * cd.NC * d.K) * sizeof(float));
  Buffer hs(size_t(BH * cd.NC * d.K * d.V) * sizeof(Ti)), dhs(hs.size());
  const LrBuffers<Ti> buf{Gq.as<Ti>(), Kd.as<Ti>(), A.as<float>(), EgL.as<float>()};
  launch_lr_intra_any(p, cd, buf, stream);
  launch_lr_scan(p, cd, buf.Kd, v, buf.EgL, h0, hs.as<Ti>(), nullptr, false, stream);
  launch_lr_scan(p, cd, buf.Gq, do_, buf.EgL, dht, dhs.as<Ti>(), dh0, true, stream);
  launch_lr_grad(p, cd, buf, hs.as<Ti>(), dhs.as<Ti>(), do_, dq, dk, dv, dg, stream);
}

template void linear_recurrence_chunk_bwd<float>(const RecurrenceDims&, const float*, const float*,
                                                 const float*, const float*, const float*,
                                                 const float*, const float*, float*, float*, float*,
                                                 float*, float*, cudaStream_t);
template void linear_recurrence_chunk_bwd<__nv_bfloat16>(
    const RecurrenceDims&, const __nv_bfloat16*, const __nv_bfloat16*, const __nv_bfloat16*,
    const __nv_bfloat16*, const float*, const __nv_bfloat16*, const float*, __nv_bfloat16*,
    __nv_bfloat16*, __nv_bfloat16*, __nv_bfloat16*, float*, cudaStream_t);

}  // namespace kimi::cuda
