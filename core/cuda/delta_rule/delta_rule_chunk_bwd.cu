// Chunkwise delta rule backward on the GPU (docs/math.md#chunkwise and
// docs/math.md#chunkwise-backward; the stages are listed in delta_rule_chunk_bwd.cuh): this file
// holds the two sequential kernels (F2: the chunk states h_c and V' from a forward walk; B1: the
// state gradients dh_c and dV' from a backward walk), their launchers and delta_rule_chunk_bwd.
// Products: WMMA, TF32 in, fp32 out. bf16 with K, V multiples of 8 runs F2 on the forward's
// tensor-core state kernel (store mode) and B1 on its backward twin
// (delta_rule_chunk_bwd_dh_mma.cu); the kernels here stay for the rest and as the oracle.
#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "core/cuda/delta_rule/delta_rule_chunk_bwd.cuh"
#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda {
namespace {

using namespace detail::chunk_bwd;
using detail::Params;
using detail::RowsPrefetch;
using detail::RowsSpec;

// Per-head tile of the [B*H][NC][K][V] state arrays.
__device__ __forceinline__ int64_t state_at(int bh, int c, int NC, int K, int V) {
  return (int64_t(bh) * NC + c) * K * V;
}

// F2: per (V tile of BV columns, batch*head), chunks in order. S (KP x BV) in shared memory:
//   h_c = S;  V' = U - W S;  S <- exp(G_last) o S + Kd^T V'.
// Shared (floats): sS (KP x ldb), sW, sK (Kd) (kC x ldk), sU (kC x ldb), sEg (KP).
template <int BV, class Ti, bool kPre, int kD>
__global__ void __launch_bounds__(kThreads, 1)
    fwd_h_kernel(Params<Ti> p, ChunkDims cd, ChunkBuffers<Ti> in, BwdBuffers<Ti> bw) {
  extern __shared__ __align__(128) float smem[];
  constexpr int ldb = BV + 4, KP = kD, ldk = kD + 4;
  constexpr int kUSlots = (BV * kC / detail::kVecWidth<Ti> + kThreads - 1) / kThreads;
  constexpr int kKSlots = (kC * kD / detail::kVecWidth<Ti> + kThreads - 1) / kThreads;
  float* sS = smem;
  float* sW = sS + KP * ldb;
  float* sK = sW + kC * ldk;
  float* sU = sK + kC * ldk;
  float* sEg = sU + kC * ldb;
  const int bh = blockIdx.y, v0 = blockIdx.x * BV, b = bh / p.H, h = bh % p.H;
  const int64_t rs_k = int64_t(p.H) * p.K, rs_v = int64_t(p.H) * p.V;
  const int vcols = min(BV, p.V - v0);
  auto len = [&](int c) { return min(kC, p.T - c * kC); };
  auto kspec = [&](int c) { return RowsSpec{p.qk(b, c * kC, h), rs_k, len(c), p.K, 0}; };
  auto uspec = [&](int c) { return RowsSpec{p.vo(b, c * kC, h), rs_v, len(c), p.V, v0}; };
  auto eg_of = [&](int c) {
    const int d = threadIdx.x;
    return d < p.K ? in.EgL[(int64_t(bh) * cd.NC + c) * p.K + d] : 1.f;
  };
  RowsPrefetch<Ti, kC, KP, kKSlots> pw, pk;
  RowsPrefetch<Ti, kC, BV, kUSlots> pu;
  float eg_r = 1.f;
  auto issue = [&](int c) {
    pw.issue(in.W, kspec(c));
    pk.issue(in.Kd, kspec(c));
    pu.issue(in.U, uspec(c));
    eg_r = eg_of(c);
  };
  for (int e = threadIdx.x; e < KP * BV; e += blockDim.x) {
    const int i = e / BV, j = e % BV;
    sS[i * ldb + j] = (p.h0 && i < p.K && j < vcols)
                          ? p.h0[int64_t(bh) * p.K * p.V + int64_t(i) * p.V + v0 + j]
                          : 0.f;
  }
  if (kPre) issue(0);
  for (int c = 0; c < cd.NC; ++c) {
    const int L = len(c);
    __syncthreads();  // the previous chunk is done with every buffer
    if constexpr (kPre) {
      pw.commit(sW, ldk, kspec(c));
      pk.commit(sK, ldk, kspec(c));
      pu.commit(sU, ldb, uspec(c));
    } else {
      detail::load_rows<Ti, kC, KP>(sW, ldk, in.W, kspec(c));
      detail::load_rows<Ti, kC, KP>(sK, ldk, in.Kd, kspec(c));
      detail::load_rows<Ti, kC, BV>(sU, ldb, in.U, uspec(c));
      eg_r = eg_of(c);
    }
    if (threadIdx.x < KP) sEg[threadIdx.x] = eg_r;
    if (kPre && c + 1 < cd.NC) issue(c + 1);
    __syncthreads();
    detail::store_rows(bw.h, state_at(bh, c, cd.NC, p.K, p.V), p.V, v0, p.K, vcols, sS, ldb);
    block_gemm<false, false>(sU, ldb, sW, ldk, sS, ldb, kC, BV, KP, -1.f, true);  // V'
    __syncthreads();
    detail::store_rows(bw.Vp, p.vo(b, c * kC, h), rs_v, v0, L, vcols, sU, ldb);
    for (int e = threadIdx.x; e < KP * BV; e += blockDim.x)
      sS[(e / BV) * ldb + e % BV] *= sEg[e / BV];
    __syncthreads();
    block_gemm<true, false>(sS, ldb, sK, ldk, sU, ldb, KP, BV, kC, 1.f, true);  // S += Kd^T V'
  }
}

// B1: per (V tile, batch*head), chunks backwards. dS (KP x BV) starts at dht:
//   dh_c = dS;  dV' = A_qk^T dO + Kd dS;  dS <- exp(G_last) o dS + Gq^T dO - W^T dV'.
// Shared (floats): sdS (KP x ldb), sQ (Gq), sK (Kd), sW (kC x ldk), sdO, sdV (kC x ldb),
// sA (kC x kLdA), sEg (KP).
template <int BV, class Ti, bool kPre, int kD>
__global__ void __launch_bounds__(kThreads, 1)
    bwd_dh_kernel(Params<Ti> p, ChunkDims cd, ChunkBuffers<Ti> in, BwdBuffers<Ti> bw,
                  const float* dht, float* dh0) {
  extern __shared__ __align__(128) float smem[];
  constexpr int ldb = BV + 4, KP = kD, ldk = kD + 4;
  constexpr int kUSlots = (BV * kC / detail::kVecWidth<Ti> + kThreads - 1) / kThreads;
  constexpr int kKSlots = (kC * kD / detail::kVecWidth<Ti> + kThreads - 1) / kThreads;
  float* sdS = smem;
  float* sQ = sdS + KP * ldb;
  float* sK = sQ + kC * ldk;
  float* sW = sK + kC * ldk;
  float* sdO = sW + kC * ldk;
  float* sdV = sdO + kC * ldb;
  float* sA = sdV + kC * ldb;
  float* sEg = sA + kC * kLdA;
  const int bh = blockIdx.y, v0 = blockIdx.x * BV, b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x / 32;
  const int64_t rs_k = int64_t(p.H) * p.K, rs_v = int64_t(p.H) * p.V;
  const int64_t state0 = int64_t(bh) * p.K * p.V;
  const int vcols = min(BV, p.V - v0);
  auto len = [&](int c) { return min(kC, p.T - c * kC); };
  auto kspec = [&](int c) { return RowsSpec{p.qk(b, c * kC, h), rs_k, len(c), p.K, 0}; };
  auto ospec = [&](int c) { return RowsSpec{p.vo(b, c * kC, h), rs_v, len(c), p.V, v0}; };
  auto aspec = [&](int c) { return RowsSpec{(int64_t(bh) * cd.NC + c) * kC * kC, kC, kC, kC, 0}; };
  auto eg_of = [&](int c) {
    const int d = threadIdx.x;
    return d < p.K ? in.EgL[(int64_t(bh) * cd.NC + c) * p.K + d] : 1.f;
  };
  RowsPrefetch<Ti, kC, KP, kKSlots> pq, pk, pw;
  RowsPrefetch<Ti, kC, BV, kUSlots> po;
  RowsPrefetch<float, kC, kC, (kC * kC / 4 + kThreads - 1) / kThreads> pa;
  float eg_r = 1.f;
  auto issue = [&](int c) {
    pq.issue(in.Gq, kspec(c));
    pk.issue(in.Kd, kspec(c));
    pw.issue(in.W, kspec(c));
    po.issue(bw.do_, ospec(c));
    pa.issue(in.Aqk, aspec(c));
    eg_r = eg_of(c);
  };
  for (int e = threadIdx.x; e < KP * BV; e += blockDim.x) {
    const int i = e / BV, j = e % BV;
    sdS[i * ldb + j] =
        (dht && i < p.K && j < vcols) ? dht[state0 + int64_t(i) * p.V + v0 + j] : 0.f;
  }
  if (kPre) issue(cd.NC - 1);
  for (int c = cd.NC - 1; c >= 0; --c) {
    const int L = len(c);
    __syncthreads();
    if constexpr (kPre) {
      pq.commit(sQ, ldk, kspec(c));
      pk.commit(sK, ldk, kspec(c));
      pw.commit(sW, ldk, kspec(c));
      po.commit(sdO, ldb, ospec(c));
      pa.commit(sA, kLdA, aspec(c));
    } else {
      detail::load_rows<Ti, kC, KP>(sQ, ldk, in.Gq, kspec(c));
      detail::load_rows<Ti, kC, KP>(sK, ldk, in.Kd, kspec(c));
      detail::load_rows<Ti, kC, KP>(sW, ldk, in.W, kspec(c));
      detail::load_rows<Ti, kC, BV>(sdO, ldb, bw.do_, ospec(c));
      detail::load_rows<float, kC, kC>(sA, kLdA, in.Aqk, aspec(c));
      eg_r = eg_of(c);
    }
    if (threadIdx.x < KP) sEg[threadIdx.x] = eg_r;
    if (kPre && c > 0) issue(c - 1);
    __syncthreads();
    detail::store_rows(bw.dh, state_at(bh, c, cd.NC, p.K, p.V), p.V, v0, p.K, vcols, sdS, ldb);
    constexpr int tvb = BV / kBS;
    for (int tile = warp; tile < 4 * tvb; tile += kWarps) {  // dV' (A_qk^T is upper triangular)
      const int I = tile / tvb, N = tile % tvb;
      FragC acc;
      wmma::fill_fragment(acc, 0.f);
      mma_16x16<true, false>(acc, sA + I * kBS * kLdA + I * kBS, kLdA,
                             sdO + I * kBS * ldb + N * kBS, ldb, kC - I * kBS);
      mma_16x16<false, false>(acc, sK + I * kBS * ldk, ldk, sdS + N * kBS, ldb, KP);
      wmma::store_matrix_sync(sdV + I * kBS * ldb + N * kBS, acc, ldb, wmma::mem_row_major);
    }
    __syncthreads();
    detail::store_rows(bw.dVp, p.vo(b, c * kC, h), rs_v, v0, L, vcols, sdV, ldb);
    for (int e = threadIdx.x; e < KP * BV; e += blockDim.x)
      sdS[(e / BV) * ldb + e % BV] *= sEg[e / BV];
    __syncthreads();
    for (int tile = warp; tile < (KP / kBS) * tvb; tile += kWarps) {
      const int I = tile / tvb, N = tile % tvb;
      FragC acc, neg;
      wmma::load_matrix_sync(acc, sdS + I * kBS * ldb + N * kBS, ldb, wmma::mem_row_major);
      wmma::fill_fragment(neg, 0.f);
      mma_16x16<true, false>(acc, sQ + I * kBS, ldk, sdO + N * kBS, ldb, kC);
      mma_16x16<true, false>(neg, sW + I * kBS, ldk, sdV + N * kBS, ldb, kC);
#pragma unroll
      for (int e = 0; e < acc.num_elements; ++e) acc.x[e] -= neg.x[e];
      wmma::store_matrix_sync(sdS + I * kBS * ldb + N * kBS, acc, ldb, wmma::mem_row_major);
    }
  }
  __syncthreads();
  if (dh0) {
    for (int e = threadIdx.x; e < p.K * vcols; e += blockDim.x) {
      const int i = e / vcols, j = e % vcols;
      dh0[state0 + int64_t(i) * p.V + v0 + j] = sdS[i * ldb + j];
    }
  }
}

template <int BV>
size_t fwd_h_smem(int D) {
  return (D * (BV + 4) + 2 * kC * (D + 4) + kC * (BV + 4) + D) * sizeof(float);
}
template <int BV>
size_t bwd_dh_smem(int D) {
  return (D * (BV + 4) + 3 * kC * (D + 4) + 2 * kC * (BV + 4) + kC * kLdA + D) * sizeof(float);
}

template <int BV, class Ti, bool kPre, int kD>
void launch_seq_as(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& fw,
                   const BwdBuffers<Ti>& bw, const float* dht, float* dh0, bool backward,
                   cudaStream_t stream) {
  const dim3 grid(unsigned(detail::ceil_div(p.V, BV)), unsigned(p.B * p.H));
  if (!backward) {
    const size_t smem = fwd_h_smem<BV>(kD);
    set_smem(fwd_h_kernel<BV, Ti, kPre, kD>, smem);
    fwd_h_kernel<BV, Ti, kPre, kD><<<grid, kThreads, smem, stream>>>(p, cd, fw, bw);
  } else {
    const size_t smem = bwd_dh_smem<BV>(kD);
    set_smem(bwd_dh_kernel<BV, Ti, kPre, kD>, smem);
    bwd_dh_kernel<BV, Ti, kPre, kD><<<grid, kThreads, smem, stream>>>(p, cd, fw, bw, dht, dh0);
  }
  KIMI_CUDA_CHECK_LAUNCH();
}

template <int BV, class Ti>
void launch_seq(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& fw,
                const BwdBuffers<Ti>& bw, const float* dht, float* dh0, bool backward,
                cudaStream_t stream) {
  if constexpr (sizeof(Ti) == 2) {
    if (use_prefetch(p)) {
      if (cd.D == 64)
        return launch_seq_as<BV, Ti, true, 64>(p, cd, fw, bw, dht, dh0, backward, stream);
      return launch_seq_as<BV, Ti, true, 128>(p, cd, fw, bw, dht, dh0, backward, stream);
    }
  }
  if (cd.D == 64)
    return launch_seq_as<BV, Ti, false, 64>(p, cd, fw, bw, dht, dh0, backward, stream);
  launch_seq_as<BV, Ti, false, 128>(p, cd, fw, bw, dht, dh0, backward, stream);
}

// dg of scalar gates: the sum over the channels of B4's per-channel dg (ws2), where B4 ran per
// channel blocks (KIMI_CUDA_GRAM_ROW=split or off, or rows that are not whole bf16 vectors).
template <class Ti>
__global__ void scalar_dg_kernel(Params<Ti> p, ChunkDims cd, const float* ws, Ti* dg) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  const int64_t rows = int64_t(p.B) * p.H * cd.NC * kC;
  if (row >= rows) return;
  const int i = int(row % kC);
  const int64_t item = row / kC;
  const int c = int(item % cd.NC), bh = int(item / cd.NC);
  const int t = c * kC + i;
  if (t >= p.T) return;
  float s = 0.f;
  for (int d = lane; d < p.K; d += 32) s += ws[row * cd.D + d];
  s = detail::warp_sum(s);
  if (lane == 0) detail::st(dg + p.tok(bh / p.H, t, bh % p.H), s);
}

}  // namespace

template <class Ti>
void delta_rule_chunk_bwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                          const Ti* g, const Ti* beta, const float* h0, const Ti* do_,
                          const float* dht, Ti* dq, Ti* dk, Ti* dv, Ti* dg, Ti* dbeta, float* dh0,
                          cudaStream_t stream, const ChunkBwdEvents* events, Ti* dh_out) {
  KIMI_CUDA_REQUIRE(d.B >= 0 && d.T >= 0 && d.H >= 0 && d.K > 0 && d.V > 0,
                    "chunk delta rule backward: bad dims");
  KIMI_CUDA_REQUIRE((d.gate == GateKind::kNone) == (g == nullptr),
                    "delta rule: g must be given exactly when the gate kind is not kNone");
  KIMI_CUDA_REQUIRE(beta != nullptr, "delta rule: beta is required");
  KIMI_CUDA_REQUIRE(d.gate == GateKind::kNone || dg != nullptr, "delta rule backward: dg needed");
  KIMI_CUDA_REQUIRE(d.K <= 128 && d.V <= 128, "chunk delta rule: needs K <= 128 and V <= 128");
  if (d.B * d.H == 0) return;
  if (d.T == 0) {  // no steps: dh0 = dht
    delta_rule_recurrent_bwd(d, q, k, v, g, beta, h0, do_, dht, dq, dk, dv, dg, dbeta, dh0, stream);
    return;
  }
  const Params<Ti> p = detail::make_params<Ti>(d, q, k, v, g, beta, h0, nullptr, nullptr);
  const ChunkDims cd = chunk_dims(p.K, p.V, p.T);
  const int64_t BTH = d.B * d.T * d.H, BH = d.B * d.H, items = BH * cd.NC;
  Buffer W(size_t(BTH * d.K) * sizeof(Ti)), U(size_t(BTH * d.V) * sizeof(Ti));
  Buffer Gq(size_t(BTH * d.K) * sizeof(Ti)), Kd(size_t(BTH * d.K) * sizeof(Ti));
  Buffer Aqk(size_t(items * kC * kC) * sizeof(float)), EgL(size_t(items * d.K) * sizeof(float));
  ChunkBuffers<Ti> fw{W.as<Ti>(),  U.as<Ti>(),      Gq.as<Ti>(),
                      Kd.as<Ti>(), Aqk.as<float>(), EgL.as<float>()};
  Buffer hb(size_t(items * d.K * d.V) * sizeof(Ti)), dhb(size_t(items * d.K * d.V) * sizeof(Ti));
  Buffer Vp(size_t(BTH * d.V) * sizeof(Ti)), dVp(size_t(BTH * d.V) * sizeof(Ti));
  const size_t ws_bytes = size_t(items * kC * cd.D) * sizeof(float);
  Buffer ws0(ws_bytes), ws1(ws_bytes), ws2(ws_bytes);
  Buffer dAqk(size_t(items * kC * kC) * sizeof(float)),
      dAkk(size_t(items * kC * kC) * sizeof(float));
  Buffer deL(size_t(items * cd.D) * sizeof(float));
  // F1 on the tensor-core intra kernel hands B3 A_kk (through dAkk, which B3 overwrites
  // with dA_kk after reading it) and T (bf16), so that B3 (new products) need not recompute them.
  // KIMI_CUDA_BWD_WY_RECOMPUTE=1 (read at every call; tests, benchmarks) has B3 recompute them.
  bool f1_stores = false;
  if constexpr (std::is_same_v<Ti, __nv_bfloat16>) {
    const char* rec = std::getenv("KIMI_CUDA_BWD_WY_RECOMPUTE");
    f1_stores = !chunk_bwd_wy_old() && intra_mma_applies(p) && !(rec && rec[0] == '1');
  }
  Buffer Tinv(f1_stores ? size_t(items * kC * kC) * sizeof(Ti) : 0);
  if (f1_stores) {
    fw.Akk = dAkk.as<float>();
    fw.Tinv = Tinv.as<Ti>();
  }
  const BwdBuffers<Ti> bw{hb.as<Ti>(),
                          dhb.as<Ti>(),
                          Vp.as<Ti>(),
                          dVp.as<Ti>(),
                          ws0.as<float>(),
                          ws1.as<float>(),
                          ws2.as<float>(),
                          dAqk.as<float>(),
                          dAkk.as<float>(),
                          deL.as<float>(),
                          do_,
                          dq,
                          dk,
                          dv,
                          dg,
                          dbeta};
  auto mark = [&](int i) {
    if (events) KIMI_CUDA_CHECK(cudaEventRecord(events->e[i], stream));
  };
  mark(0);
  launch_intra(p, cd, fw, stream);
  mark(1);
  // Fewer than ~2 blocks per multiprocessor with 64-wide V tiles: use 32-wide tiles.
  const bool wide = BH * detail::ceil_div(d.V, 64) >= 2 * detail::sm_count();
  // F2: bf16 with 16-byte rows on the forward's tensor-core state kernel in store mode
  // (KIMI_CUDA_BWD_STATE_KERNEL=old keeps the WMMA TF32 walk below).
  bool f2_done = false;
  if constexpr (std::is_same_v<Ti, __nv_bfloat16>)
    f2_done = launch_state_mma_store(p, cd, fw, bw.h, bw.Vp, stream);
  if (f2_done) {
  } else if (wide)
    launch_seq<64>(p, cd, fw, bw, nullptr, nullptr, false, stream);
  else
    launch_seq<32>(p, cd, fw, bw, nullptr, nullptr, false, stream);
  mark(2);
  // B1: the same split (KIMI_CUDA_BWD_DH_KERNEL=old keeps the WMMA TF32 walk for bf16).
  bool b1_done = false;
  if constexpr (std::is_same_v<Ti, __nv_bfloat16>)
    b1_done = launch_bwd_dh_mma(p, cd, fw, do_, dht, bw.dh, bw.dVp, dh0, stream);
  if (b1_done) {
  } else if (wide)
    launch_seq<64>(p, cd, fw, bw, dht, dh0, true, stream);
  else
    launch_seq<32>(p, cd, fw, bw, dht, dh0, true, stream);
  if (dh_out)
    KIMI_CUDA_CHECK(cudaMemcpyAsync(dh_out, bw.dh, size_t(items * d.K * d.V) * sizeof(Ti),
                                    cudaMemcpyDeviceToDevice, stream));
  mark(3);
  launch_dhv(p, cd, bw, stream);
  mark(4);
  launch_ut_bwd(p, cd, fw, bw, stream);
  mark(5);
  const bool dg_done = launch_gram_bwd(p, cd, bw, stream);
  if (d.gate == GateKind::kScalar && !dg_done) {
    const int64_t threads = items * kC * 32;
    scalar_dg_kernel<Ti>
        <<<unsigned(detail::ceil_div(threads, 256)), 256, 0, stream>>>(p, cd, ws2.as<float>(), dg);
    KIMI_CUDA_CHECK_LAUNCH();
  }
  mark(6);
}

#define KIMI_INSTANTIATE(Ti)                                                                     \
  template void delta_rule_chunk_bwd<Ti>(const RecurrenceDims&, const Ti*, const Ti*, const Ti*, \
                                         const Ti*, const Ti*, const float*, const Ti*,          \
                                         const float*, Ti*, Ti*, Ti*, Ti*, Ti*, float*,          \
                                         cudaStream_t, const ChunkBwdEvents*, Ti*);
KIMI_INSTANTIATE(float)
KIMI_INSTANTIATE(__nv_bfloat16)
#undef KIMI_INSTANTIATE

}  // namespace kimi::cuda
