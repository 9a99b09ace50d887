// Chunkwise delta rule forward on the GPU (docs/math.md#chunkwise), chunks of kC = 64 tokens.
//   intra kernel, one block per (chunk, batch*head), in parallel:
//     G = cumsum(g) inside the chunk; A_kk[i,j] = beta_i k_i.(k_j o exp(G_i - G_j)) (j < i),
//     A_qk[i,j] = scale q_i.(k_j o exp(G_i - G_j)) (j <= i); Tinv = (I + A_kk)^-1 (blocked
//     forward substitution); W = Tinv (beta exp(G) o k), U = Tinv (beta v). (bf16 inputs with
//     K, V multiples of 8, any gate: the tensor-core kernel of delta_rule_chunk_intra_mma.cu,
//     unless KIMI_CUDA_INTRA_KERNEL=old.)
//   state kernel, one block per (V tile, batch*head), sequential over chunks (bf16 inputs with
//     K, V multiples of 8: the tensor-core kernel of delta_rule_chunk_state_mma.cu, unless
//     KIMI_CUDA_STATE_KERNEL=old; otherwise the WMMA TF32 kernel below):
//     V' = U - W S;  O = (scale q o exp(G)) S + A_qk V';  S <- exp(G_C) o S + (exp(G_C-G) o k)^T V'
// Pairwise decays use exponent differences only: for rows i in 16-row block I (first row r)
// and columns j < r, exp(G_i - G_j) = exp(G_i - G_r) exp(G_r - G_j), two factors <= 1 that
// turn the off-diagonal blocks into products on the tensor cores; inside the diagonal 16 x 16
// blocks each exp(G_i - G_j) (j <= i) is taken directly. Products: WMMA, TF32 in, fp32 out.
// Shared-memory rows are padded by 4 floats (row stride = 4 mod 32 banks; WMMA alignment kept).
// This file: the state kernel, its launcher and delta_rule_chunk_fwd; the intra kernel is in
// delta_rule_chunk_intra.cu, what the two share in delta_rule_chunk.cuh.
#include <algorithm>

#include "core/cuda/delta_rule/delta_rule_chunk.cuh"
#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda {
namespace {

using namespace detail::chunk;
using detail::max_smem_optin;
using detail::Params;
using detail::RowsPrefetch;
using detail::RowsSpec;
using detail::sm_count;

// ---------------------------------------------------------------------------------------------
// state kernel, BV columns of V per block, walking the chunks:
//   V' = U - W S;  O = Gq S + A_qk V';  S <- exp(G_last) o S + Kd^T V'.
// With kPre (bf16 rows of whole vectors) the next chunk's W, Gq, Kd, U tile, A_qk and
// exp(G_last) are loaded into registers while the current chunk is computed. Shared memory
// (floats): sS (KP x ldb), sW, sQ (Gq), sK (Kd) (kC x ldk each), sO, sU (V') (kC x ldb each),
// sA (kC x kLdA), sEg (KP).
template <int BV, class Ti, bool kPre, int kD>
__global__ void __launch_bounds__(kThreads, 1)
    chunk_state_kernel(Params<Ti> p, ChunkDims cd, ChunkBuffers<Ti> in) {
  extern __shared__ __align__(128) float smem[];
  constexpr int ldb = BV + 4;
  constexpr int kUSlots = (BV * kC / detail::kVecWidth<Ti> + kThreads - 1) / kThreads;
  constexpr int kKSlots = (kC * kD / detail::kVecWidth<Ti> + kThreads - 1) / kThreads;
  constexpr int KP = kD, ldk = kD + 4;
  float* sS = smem;
  float* sW = sS + KP * ldb;
  float* sQ = sW + kC * ldk;
  float* sK = sQ + kC * ldk;
  float* sO = sK + kC * ldk;
  float* sU = sO + kC * ldb;
  float* sA = sU + kC * ldb;
  float* sEg = sA + kC * kLdA;
  const int bh = blockIdx.y, v0 = blockIdx.x * BV;
  const int b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x / 32;
  const int64_t rs_k = int64_t(p.H) * p.K, rs_v = int64_t(p.H) * p.V;
  const int64_t state0 = int64_t(bh) * p.K * p.V;
  const int vcols = min(BV, p.V - v0);
  auto len = [&](int c) { return min(kC, p.T - c * kC); };
  auto kspec = [&](int c) { return RowsSpec{p.qk(b, c * kC, h), rs_k, len(c), p.K, 0}; };
  auto uspec = [&](int c) { return RowsSpec{p.vo(b, c * kC, h), rs_v, len(c), p.V, v0}; };
  auto aspec = [&](int c) { return RowsSpec{(int64_t(bh) * cd.NC + c) * kC * kC, kC, kC, kC, 0}; };
  auto eg_of = [&](int c) {
    const int d = threadIdx.x;
    return d < p.K ? in.EgL[(int64_t(bh) * cd.NC + c) * p.K + d] : 1.f;
  };
  RowsPrefetch<Ti, kC, KP, kKSlots> pw, pq, pk;
  RowsPrefetch<Ti, kC, BV, kUSlots> pu;
  RowsPrefetch<float, kC, kC, (kC * kC / 4 + kThreads - 1) / kThreads> pa;
  float eg_r = 1.f;
  auto issue = [&](int c) {
    pw.issue(in.W, kspec(c));
    pq.issue(in.Gq, kspec(c));
    pk.issue(in.Kd, kspec(c));
    pu.issue(in.U, uspec(c));
    pa.issue(in.Aqk, aspec(c));
    eg_r = eg_of(c);
  };

  for (int e = threadIdx.x; e < KP * BV; e += blockDim.x) {
    const int i = e / BV, j = e % BV;
    sS[i * ldb + j] =
        (p.h0 && i < p.K && j < vcols) ? p.h0[state0 + int64_t(i) * p.V + v0 + j] : 0.f;
  }
  if (kPre) issue(0);
  for (int c = 0; c < cd.NC; ++c) {
    const int t0 = c * kC, L = len(c);
    __syncthreads();  // the previous chunk is done with every buffer
    if constexpr (kPre) {
      pw.commit(sW, ldk, kspec(c));
      pq.commit(sQ, ldk, kspec(c));
      pk.commit(sK, ldk, kspec(c));
      pu.commit(sU, ldb, uspec(c));
      pa.commit(sA, kLdA, aspec(c));
    } else {
      detail::load_rows<Ti, kC, KP>(sW, ldk, in.W, kspec(c));
      detail::load_rows<Ti, kC, KP>(sQ, ldk, in.Gq, kspec(c));
      detail::load_rows<Ti, kC, KP>(sK, ldk, in.Kd, kspec(c));
      detail::load_rows<Ti, kC, BV>(sU, ldb, in.U, uspec(c));
      detail::load_rows<float, kC, kC>(sA, kLdA, in.Aqk, aspec(c));
      eg_r = eg_of(c);
    }
    if (threadIdx.x < KP) sEg[threadIdx.x] = eg_r;
    if (kPre && c + 1 < cd.NC) issue(c + 1);
    __syncthreads();
    // V' = U - W S (each warp owns whole tiles of sU, updated in place).
    constexpr int tvb = BV / kBS;
    for (int tile = warp; tile < 4 * tvb; tile += kWarps) {
      const int I = tile / tvb, N = tile % tvb;
      FragC acc;
      wmma::load_matrix_sync(acc, sU + I * kBS * ldb + N * kBS, ldb, wmma::mem_row_major);
#pragma unroll 4
      for (int kk = 0; kk < KP; kk += 8) {
        FragA fa;
        FragB fb;
        wmma::load_matrix_sync(fa, sW + I * kBS * ldk + kk, ldk);
        wmma::load_matrix_sync(fb, sS + kk * ldb + N * kBS, ldb);
#pragma unroll
        for (int e = 0; e < fa.num_elements; ++e) fa.x[e] = wmma::__float_to_tf32(-fa.x[e]);
        to_tf32(fb);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(sU + I * kBS * ldb + N * kBS, acc, ldb, wmma::mem_row_major);
    }
    __syncthreads();
    // O = Gq S + A_qk V' (A_qk is zero above the diagonal).
    for (int tile = warp; tile < 4 * tvb; tile += kWarps) {
      const int I = tile / tvb, N = tile % tvb;
      FragC acc;
      wmma::fill_fragment(acc, 0.f);
      mma_16x16<false, false>(acc, sQ + I * kBS * ldk, ldk, sS + N * kBS, ldb, KP);
      mma_16x16<false, false>(acc, sA + I * kBS * kLdA, kLdA, sU + N * kBS, ldb, (I + 1) * kBS);
      wmma::store_matrix_sync(sO + I * kBS * ldb + N * kBS, acc, ldb, wmma::mem_row_major);
    }
    __syncthreads();
    detail::store_rows(p.o, p.vo(b, t0, h), rs_v, v0, L, vcols, sO, ldb);
    for (int e = threadIdx.x; e < KP * BV; e += blockDim.x)
      sS[(e / BV) * ldb + e % BV] *= sEg[e / BV];
    __syncthreads();
    // S += Kd^T V' (Kd^T read column-major from sK).
    for (int tile = warp; tile < (KP / kBS) * tvb; tile += kWarps) {
      const int I = tile / tvb, N = tile % tvb;
      FragC acc;
      wmma::load_matrix_sync(acc, sS + I * kBS * ldb + N * kBS, ldb, wmma::mem_row_major);
      mma_16x16<true, false>(acc, sK + I * kBS, ldk, sU + N * kBS, ldb, kC);
      wmma::store_matrix_sync(sS + I * kBS * ldb + N * kBS, acc, ldb, wmma::mem_row_major);
    }
  }
  __syncthreads();
  if (p.ht) {
    for (int e = threadIdx.x; e < p.K * vcols; e += blockDim.x) {
      const int i = e / vcols, j = e % vcols;
      p.ht[state0 + int64_t(i) * p.V + v0 + j] = sS[i * ldb + j];
    }
  }
}

template <int BV>
size_t state_smem(const ChunkDims& cd) {
  constexpr int ldb = BV + 4;
  const int ld = cd.D + 4;
  return (cd.D * ldb + 3 * kC * ld + 2 * kC * ldb + kC * kLdA + cd.D) * sizeof(float);
}

template <int BV, class Ti, bool kPre, int kD>
void launch_state_as(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& buf,
                     cudaStream_t stream) {
  const size_t smem = state_smem<BV>(cd);
  KIMI_CUDA_REQUIRE(smem <= size_t(max_smem_optin()), "chunk delta rule: shared memory");
  KIMI_CUDA_CHECK(cudaFuncSetAttribute(chunk_state_kernel<BV, Ti, kPre, kD>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid(unsigned(detail::ceil_div(p.V, BV)), unsigned(p.B * p.H));
  chunk_state_kernel<BV, Ti, kPre, kD><<<grid, kThreads, smem, stream>>>(p, cd, buf);
  KIMI_CUDA_CHECK_LAUNCH();
}

template <int BV, class Ti>
void launch_state(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& buf,
                  cudaStream_t stream) {
  if constexpr (sizeof(Ti) == 2) {
    if (use_prefetch(p)) {
      if (cd.D == 64) return launch_state_as<BV, Ti, true, 64>(p, cd, buf, stream);
      return launch_state_as<BV, Ti, true, 128>(p, cd, buf, stream);
    }
  }
  if (cd.D == 64) return launch_state_as<BV, Ti, false, 64>(p, cd, buf, stream);
  launch_state_as<BV, Ti, false, 128>(p, cd, buf, stream);
}

}  // namespace

template <class Ti>
void delta_rule_chunk_fwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                          const Ti* g, const Ti* beta, const float* h0, Ti* o, float* ht,
                          cudaStream_t stream, const ChunkFwdEvents* events) {
  KIMI_CUDA_REQUIRE(d.B >= 0 && d.T >= 0 && d.H >= 0 && d.K > 0 && d.V > 0,
                    "chunk delta rule: bad dims");
  KIMI_CUDA_REQUIRE((d.gate == GateKind::kNone) == (g == nullptr),
                    "delta rule: g must be given exactly when the gate kind is not kNone");
  KIMI_CUDA_REQUIRE(beta != nullptr, "delta rule: beta is required");
  KIMI_CUDA_REQUIRE(d.K <= 128 && d.V <= 128, "chunk delta rule: needs K <= 128 and V <= 128");
  if (d.B * d.H == 0) return;
  if (d.T == 0) {
    delta_rule_recurrent_fwd(d, q, k, v, g, beta, h0, o, ht, stream);  // ht = h0
    return;
  }
  const Params<Ti> p = detail::make_params(d, q, k, v, g, beta, h0, o, ht);
  const ChunkDims cd = chunk_dims(p.K, p.V, p.T);
  const int64_t BTH = d.B * d.T * d.H, BH = d.B * d.H;
  Buffer W(size_t(BTH * d.K) * sizeof(Ti)), U(size_t(BTH * d.V) * sizeof(Ti));
  Buffer Gq(size_t(BTH * d.K) * sizeof(Ti)), Kd(size_t(BTH * d.K) * sizeof(Ti));
  Buffer A(size_t(BH * cd.NC * kC * kC) * sizeof(float)),
      EgL(size_t(BH * cd.NC * d.K) * sizeof(float));
  const ChunkBuffers<Ti> buf{W.as<Ti>(),  U.as<Ti>(),    Gq.as<Ti>(),
                             Kd.as<Ti>(), A.as<float>(), EgL.as<float>()};
  if (events) KIMI_CUDA_CHECK(cudaEventRecord(events->start, stream));
  launch_intra(p, cd, buf, stream);
  if (events) KIMI_CUDA_CHECK(cudaEventRecord(events->mid, stream));
  if constexpr (std::is_same_v<Ti, __nv_bfloat16>) {
    if (launch_state_mma(p, cd, buf, stream)) {
      if (events) KIMI_CUDA_CHECK(cudaEventRecord(events->end, stream));
      return;
    }
  }
  // Fewer than ~2 blocks per multiprocessor with 64-wide V tiles: use 32-wide tiles.
  if (BH * detail::ceil_div(d.V, 64) >= 2 * sm_count())
    launch_state<64>(p, cd, buf, stream);
  else
    launch_state<32>(p, cd, buf, stream);
  if (events) KIMI_CUDA_CHECK(cudaEventRecord(events->end, stream));
}

template <class Ti>
void delta_rule_chunk_intra(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                            const Ti* g, const Ti* beta, Ti* W, Ti* U, Ti* Gq, Ti* Kd, float* Aqk,
                            float* EgL, cudaStream_t stream) {
  KIMI_CUDA_REQUIRE(d.B >= 0 && d.T > 0 && d.H >= 0 && d.K > 0 && d.V > 0 && d.K <= 128 &&
                        d.V <= 128 && beta != nullptr &&
                        (d.gate == GateKind::kNone) == (g == nullptr),
                    "chunk delta rule intra: bad arguments");
  if (d.B * d.H == 0) return;
  const Params<Ti> p = detail::make_params<Ti>(d, q, k, v, g, beta, nullptr, nullptr, nullptr);
  const ChunkDims cd = chunk_dims(p.K, p.V, p.T);
  launch_intra(p, cd, ChunkBuffers<Ti>{W, U, Gq, Kd, Aqk, EgL}, stream);
}

template void delta_rule_chunk_intra<float>(const RecurrenceDims&, const float*, const float*,
                                            const float*, const float*, const float*, float*,
                                            float*, float*, float*, float*, float*, cudaStream_t);
template void delta_rule_chunk_intra<__nv_bfloat16>(const RecurrenceDims&, const __nv_bfloat16*,
                                                    const __nv_bfloat16*, const __nv_bfloat16*,
                                                    const __nv_bfloat16*, const __nv_bfloat16*,
                                                    __nv_bfloat16*, __nv_bfloat16*, __nv_bfloat16*,
                                                    __nv_bfloat16*, float*, float*, cudaStream_t);

template void delta_rule_chunk_fwd<float>(const RecurrenceDims&, const float*, const float*,
                                          const float*, const float*, const float*, const float*,
                                          float*, float*, cudaStream_t, const ChunkFwdEvents*);
template void delta_rule_chunk_fwd<__nv_bfloat16>(const RecurrenceDims&, const __nv_bfloat16*,
                                                  const __nv_bfloat16*, const __nv_bfloat16*,
                                                  const __nv_bfloat16*, const __nv_bfloat16*,
                                                  const float*, __nv_bfloat16*, float*,
                                                  cudaStream_t, const ChunkFwdEvents*);

}  // namespace kimi::cuda
