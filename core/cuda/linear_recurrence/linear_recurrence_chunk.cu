// Chunkwise gated linear recurrence forward on the GPU (Mamba2 SSD core / simple_gla / GLA):
// the intra and output kernels and linear_recurrence_chunk_fwd (algorithm at the top of
// linear_recurrence_chunk.cuh; the sequential scan is in linear_recurrence_chunk_scan.cu).
// Pairwise decays use exponent differences only, as in the delta-rule intra kernel: inside the
// diagonal 16 x 16 blocks exp(G_i - G_j) directly, for the off-diagonal blocks (rows i of
// block I starting at row r, columns j < r) exp(G_i - G_r) exp(G_r - G_j), two factors <= 1,
// so the block is a tensor-core product of two rescaled tiles.
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

// intra: one block per (chunk, batch*head) item. Shared (floats): sQ, sK, sG, sX (kC x ldk).
constexpr int kIntraThreads = 512;

template <class Ti, int kD>
__global__ void __launch_bounds__(kIntraThreads)
    lr_intra_kernel(Params<Ti> p, ChunkDims cd, LrBuffers<Ti> out) {
  extern __shared__ __align__(128) float smem[];
  constexpr int KP = kD, ldk = kD + 4;
  float* sQ = smem;
  float* sK = sQ + kC * ldk;
  float* sG = sK + kC * ldk;
  float* sX = sG + kC * ldk;
  const int it = blockIdx.x, c = it % cd.NC, bh = it / cd.NC, b = bh / p.H, h = bh % p.H;
  const int t0 = c * kC, L = min(kC, p.T - t0), warp = threadIdx.x / 32;
  const int64_t rs_k = int64_t(p.H) * p.K;
  const RowsSpec ks{p.qk(b, t0, h), rs_k, L, p.K, 0};
  load_rows<Ti, kC, KP>(sQ, ldk, p.q, ks);
  load_rows<Ti, kC, KP>(sK, ldk, p.k, ks);
  lr_load_gates<Ti, KP>(sG, ldk, p, b, h, t0, L);  // syncs (rows >= L carry g = 0)
  const float* Gl = sG + (kC - 1) * ldk;
  store_rows_fn(out.Gq, p.qk(b, t0, h), rs_k, 0, L, p.K,
                [&](int i, int d) { return p.scale * sQ[i * ldk + d] * __expf(sG[i * ldk + d]); });
  store_rows_fn(out.Kd, p.qk(b, t0, h), rs_k, 0, L, p.K,
                [&](int i, int d) { return sK[i * ldk + d] * __expf(Gl[d] - sG[i * ldk + d]); });
  for (int d = threadIdx.x; d < p.K; d += blockDim.x)
    out.EgL[(int64_t(bh) * cd.NC + c) * p.K + d] = __expf(Gl[d]);
  float* A = out.Aqk + (int64_t(bh) * cd.NC + c) * kC * kC;
  // Diagonal blocks elementwise (zero above the diagonal); blocks above them zero.
  for (int w = threadIdx.x; w < 4 * kBS * kBS; w += blockDim.x) {
    const int I = w / (kBS * kBS), i = I * kBS + (w / kBS) % kBS, j = I * kBS + w % kBS;
    float a = 0.f;
    if (j <= i && p.gate != GateKind::kPerChannel) {  // one decay per pair: hoisted
      for (int d = 0; d < KP; ++d) a += sQ[i * ldk + d] * sK[j * ldk + d];
      a *= __expf(sG[i * ldk] - sG[j * ldk]);
    } else if (j <= i) {
      for (int d = 0; d < KP; ++d)
        a += sQ[i * ldk + d] * sK[j * ldk + d] * __expf(sG[i * ldk + d] - sG[j * ldk + d]);
    }
    A[i * kC + j] = p.scale * a;
  }
  for (int w = threadIdx.x; w < kC * kC; w += blockDim.x) {
    const int i = w / kC, j = w % kC;
    if (j / kBS > i / kBS) A[w] = 0.f;
  }
  // Off-diagonal blocks, one row block I at a time: sX = [q_i exp(G_i - G_r) (16 rows);
  // k_j exp(G_r - G_j) (j < r)]; tile (I, J) = scale Xq Y_J^T, stored straight to global.
  for (int I = 1; I < 4; ++I) {
    const int r = I * kBS;
    __syncthreads();  // sX free again
    for (int e = threadIdx.x; e < (kBS + r) * KP; e += blockDim.x) {
      const int row = e / KP, d = e % KP;
      float x;
      if (row < kBS) {
        const int i = r + row;
        x = sQ[i * ldk + d] * __expf(sG[i * ldk + d] - sG[r * ldk + d]);
      } else {
        const int j = row - kBS;
        x = sK[j * ldk + d] * __expf(sG[r * ldk + d] - sG[j * ldk + d]);
      }
      sX[row * ldk + d] = x;
    }
    __syncthreads();
    if (warp < I) {
      FragC acc;
      wmma::fill_fragment(acc, 0.f);
      mma_16x16<false, true>(acc, sX, ldk, sX + (kBS + warp * kBS) * ldk, ldk, KP);
#pragma unroll
      for (int e = 0; e < acc.num_elements; ++e) acc.x[e] *= p.scale;
      wmma::store_matrix_sync(A + r * kC + warp * kBS, acc, kC, wmma::mem_row_major);
    }
  }
}

// output: one block per (chunk x batch*head, V tile of 64): O = Gq h_c + A_qk V.
// Shared (floats): sQ (Gq, kC x ldk), sH (KP x ldv), sA (kC x kLdA), sV (kC x ldv; then O).
template <class Ti, int kD>
__global__ void __launch_bounds__(kThreads)
    lr_output_kernel(Params<Ti> p, ChunkDims cd, LrBuffers<Ti> in, const Ti* hs) {
  extern __shared__ __align__(128) float smem[];
  constexpr int KP = kD, ldk = kD + 4, BV = 64, ldv = BV + 4, tvb = BV / kBS;
  constexpr int kPerWarp = 4 * tvb / kWarps;
  float* sQ = smem;
  float* sH = sQ + kC * ldk;
  float* sA = sH + KP * ldv;
  float* sV = sA + kC * kLdA;
  const int v0 = blockIdx.y * BV, it = blockIdx.x, c = it % cd.NC, bh = it / cd.NC;
  const int b = bh / p.H, h = bh % p.H, t0 = c * kC, L = min(kC, p.T - t0);
  const int warp = threadIdx.x / 32, vcols = min(BV, p.V - v0);
  const int64_t rs_k = int64_t(p.H) * p.K, rs_v = int64_t(p.H) * p.V;
  load_rows<Ti, kC, KP>(sQ, ldk, in.Gq, RowsSpec{p.qk(b, t0, h), rs_k, L, p.K, 0});
  load_rows<Ti, KP, BV>(sH, ldv, hs, RowsSpec{state_at(bh, c, cd.NC, p.K, p.V), p.V, p.K, p.V, v0});
  load_rows<float, kC, kC>(sA, kLdA, in.Aqk, RowsSpec{int64_t(it) * kC * kC, kC, kC, kC, 0});
  load_rows<Ti, kC, BV>(sV, ldv, p.v, RowsSpec{p.vo(b, t0, h), rs_v, L, p.V, v0});
  __syncthreads();
  FragC acc[kPerWarp];
#pragma unroll
  for (int u = 0; u < kPerWarp; ++u) {
    const int tile = warp + u * kWarps, I = tile / tvb, N = tile % tvb;
    wmma::fill_fragment(acc[u], 0.f);
    mma_16x16<false, false>(acc[u], sQ + I * kBS * ldk, ldk, sH + N * kBS, ldv, KP);
    mma_16x16<false, false>(acc[u], sA + I * kBS * kLdA, kLdA, sV + N * kBS, ldv, (I + 1) * kBS);
  }
  __syncthreads();  // every warp is done reading sV
#pragma unroll
  for (int u = 0; u < kPerWarp; ++u) {
    const int tile = warp + u * kWarps, I = tile / tvb, N = tile % tvb;
    wmma::store_matrix_sync(sV + I * kBS * ldv + N * kBS, acc[u], ldv, wmma::mem_row_major);
  }
  __syncthreads();
  store_rows(p.o, p.vo(b, t0, h), rs_v, v0, L, vcols, sV, ldv);
}

}  // namespace

template <class Ti>
void launch_lr_intra(const Params<Ti>& p, const ChunkDims& cd, const LrBuffers<Ti>& buf,
                     cudaStream_t stream) {
  const size_t smem = size_t(4 * kC * (cd.D + 4)) * sizeof(float);
  auto* kernel = cd.D == 64 ? lr_intra_kernel<Ti, 64> : lr_intra_kernel<Ti, 128>;
  set_smem(kernel, smem);
  const unsigned grid = unsigned(int64_t(cd.NC) * p.B * p.H);
  kernel<<<grid, kIntraThreads, smem, stream>>>(p, cd, buf);
  KIMI_CUDA_CHECK_LAUNCH();
}

template <class Ti>
void launch_lr_output(const Params<Ti>& p, const ChunkDims& cd, const LrBuffers<Ti>& buf,
                      const Ti* hs, cudaStream_t stream) {
  const size_t smem = size_t(kC * (cd.D + 4) + cd.D * 68 + kC * kLdA + kC * 68) * sizeof(float);
  auto* kernel = cd.D == 64 ? lr_output_kernel<Ti, 64> : lr_output_kernel<Ti, 128>;
  set_smem(kernel, smem);
  const dim3 grid(unsigned(int64_t(cd.NC) * p.B * p.H), unsigned(ceil_div(p.V, 64)));
  kernel<<<grid, kThreads, smem, stream>>>(p, cd, buf, hs);
  KIMI_CUDA_CHECK_LAUNCH();
}

template <class Ti>
bool lr_tensor_core(const Params<Ti>& p) {
  if constexpr (!std::is_same_v<Ti, __nv_bfloat16>) {
    return false;
  } else {
    const char* e = std::getenv("KIMI_CUDA_LR_KERNEL");
    return chunk::use_prefetch(p) && !(e && std::string_view(e) == "old");
  }
}

// The tensor-core kernels' buffers: no W; U = v (read only, the walk's V').
template <class Ti>
chunk::ChunkBuffers<Ti> chunk_buffers(const Params<Ti>& p, const LrBuffers<Ti>& buf) {
  return {nullptr, const_cast<Ti*>(p.v), buf.Gq, buf.Kd, buf.Aqk, buf.EgL};
}

template <class Ti>
void launch_lr_intra_any(const Params<Ti>& p, const ChunkDims& cd, const LrBuffers<Ti>& buf,
                         cudaStream_t stream) {
  if constexpr (std::is_same_v<Ti, __nv_bfloat16>)
    if (lr_tensor_core(p))
      return chunk::launch_intra_mma_linear(p, cd, chunk_buffers(p, buf), stream);
  launch_lr_intra(p, cd, buf, stream);
}

#define KIMI_LRC_INST(Ti)                                                                          \
  template bool lr_tensor_core<Ti>(const Params<Ti>&);                                             \
  template void launch_lr_intra_any<Ti>(const Params<Ti>&, const ChunkDims&, const LrBuffers<Ti>&, \
                                        cudaStream_t);                                             \
  template void launch_lr_intra<Ti>(const Params<Ti>&, const ChunkDims&, const LrBuffers<Ti>&,     \
                                    cudaStream_t);                                                 \
  template void launch_lr_output<Ti>(const Params<Ti>&, const ChunkDims&, const LrBuffers<Ti>&,    \
                                     const Ti*, cudaStream_t);
KIMI_LRC_INST(float)
KIMI_LRC_INST(__nv_bfloat16)
#undef KIMI_LRC_INST

}  // namespace detail::lrc

template <class Ti>
void linear_recurrence_chunk_fwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                                 const Ti* g, const float* h0, Ti* o, float* ht,
                                 cudaStream_t stream) {
  using namespace detail::lrc;
  KIMI_CUDA_REQUIRE(d.B >= 0 && d.T >= 0 && d.H >= 0 && d.K > 0 && d.V > 0,
                    "chunk linear recurrence: bad dims");
  KIMI_CUDA_REQUIRE((d.gate == GateKind::kNone) == (g == nullptr),
                    "linear recurrence: g must be given exactly when the gate kind is not kNone");
  KIMI_CUDA_REQUIRE(d.K <= 128 && d.V <= 128,
                    "chunk linear recurrence: needs K <= 128 and V <= 128");
  if (d.B * d.H == 0) return;
  if (d.T == 0) {
    linear_recurrence_recurrent_fwd(d, q, k, v, g, h0, o, ht, stream);  // ht = h0
    return;
  }
  const detail::Params<Ti> p = detail::make_params<Ti>(d, q, k, v, g, nullptr, h0, o, ht);
  const ChunkDims cd = chunk_dims(p.K, p.V, p.T);
  if constexpr (std::is_same_v<Ti, __nv_bfloat16>)
    if (lr_tensor_core(p) && launch_lr_walk(p, cd, stream)) return;  // one kernel, no buffers
  const int64_t BTH = d.B * d.T * d.H, BH = d.B * d.H;
  Buffer Gq(size_t(BTH * d.K) * sizeof(Ti)), Kd(size_t(BTH * d.K) * sizeof(Ti));
  Buffer A(size_t(BH * cd.NC * kC * kC) * sizeof(float));
  Buffer EgL(size_t(BH * cd.NC * d.K) * sizeof(float));
  const LrBuffers<Ti> buf{Gq.as<Ti>(), Kd.as<Ti>(), A.as<float>(), EgL.as<float>()};
  if constexpr (std::is_same_v<Ti, __nv_bfloat16>) {
    if (lr_tensor_core(p)) {  // intra kernel + walk: O from the walk, no stored states
      const detail::chunk::ChunkBuffers<Ti> cb = chunk_buffers(p, buf);
      detail::chunk::launch_intra_mma_linear(p, cd, cb, stream);
      detail::chunk::launch_state_mma_linear(p, cd, cb, stream);
      return;
    }
  }
  Buffer hs(size_t(BH * cd.NC * d.K * d.V) * sizeof(Ti));
  launch_lr_intra(p, cd, buf, stream);
  launch_lr_scan(p, cd, buf.Kd, v, buf.EgL, h0, hs.as<Ti>(), ht, false, stream);
  launch_lr_output(p, cd, buf, hs.as<Ti>(), stream);
}

template void linear_recurrence_chunk_fwd<float>(const RecurrenceDims&, const float*, const float*,
                                                 const float*, const float*, const float*, float*,
                                                 float*, cudaStream_t);
template void linear_recurrence_chunk_fwd<__nv_bfloat16>(const RecurrenceDims&,
                                                         const __nv_bfloat16*, const __nv_bfloat16*,
                                                         const __nv_bfloat16*, const __nv_bfloat16*,
                                                         const float*, __nv_bfloat16*, float*,
                                                         cudaStream_t);

}  // namespace kimi::cuda
