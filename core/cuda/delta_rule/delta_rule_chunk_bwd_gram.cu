// Chunkwise delta rule backward on the GPU, kernel B4: the backward of the two Gram matrices
// with pairwise decays, A_qk = scale tril(Q Gamma K^T) and A_kk = strict_lower(K Gamma K^T)
// (stages and notation in delta_rule_chunk_bwd.cuh). With X1 = scale tril(dA_qk), X2 = dA_kk:
//   Y1_i = sum_{j<=i} X1_ij Gamma_ij o k_j,  Y2_i = sum_{j<i} X2_ij Gamma_ij o k_j,
//   Z_j  = sum_{i>=j} (X1_ij q_i + X2_ij k_i) o Gamma_ij,
//   dq = dQ0 + Y1,  dk = dK0 + Y2 + Z,  dG = dG0 + q o Y1 + k o (Y2 - Z),
// then dg = the reverse cumulative sum of dG inside the chunk (summed over the channels for
// scalar gates, by scalar_dg_kernel). The products are channel-separable: one block per
// (chunk, batch*head, KS channels). Scalar gates and none on bf16 rows of whole vectors run
// one block per chunk-head by default instead (delta_rule_chunk_bwd_gram_row.cu; it writes dg
// itself); the kernels here stay for the rest and as its oracles (gram_row_mode). Off-diagonal 16 x
// 16 blocks factor the decays at the row block's first row r (exp(G_i - G_r) exp(G_r - G_j), both
// <= 1) and run on the tensor cores; the diagonal blocks take each exp(G_i - G_j) directly. With
// kMma (bf16 inputs, unless KIMI_CUDA_BWD_GRAM_KERNEL=old) the off-diagonal products run on bf16
// mma.sync (bwd_mma.cuh: X1, X2 and the decayed q / k rows rounded to bf16, as the forward's intra
// kernel rounds its operands; fp32 sums), else on WMMA TF32.
#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "core/cuda/delta_rule/bwd_mma.cuh"
#include "core/cuda/delta_rule/delta_rule_chunk_bwd.cuh"
#include "core/cuda/delta_rule/gram_row_products.cuh"
#include "core/cuda/delta_rule/kernel_choice.h"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda {
namespace {
detail::KernelChoice g_gram_choice("KIMI_CUDA_BWD_GRAM_KERNEL");
}  // namespace
void force_chunk_bwd_gram_kernel(ChunkBwdDhKernel k) { g_gram_choice.force(k); }
bool chunk_bwd_gram_old() { return g_gram_choice.old(); }
}  // namespace kimi::cuda

namespace kimi::cuda::detail::chunk_bwd {
namespace {

// First the elementwise partials (dGq, dGk, dKd from B2 / B3, deL = rowsum(dh o h)):
//   dQ0 = scale e^G o dGq, dK0 = e^G o dGk + e^(G_L - G) o dKd,
//   dG0 = q o dQ0 + k o (e^G o dGk - e^(G_L - G) o dKd), row L-1 += colsum(Kd o dKd) + deL e^G_L.
// Every global tile is in flight before the first is stored (register prefetch; q, k and g
// only with kPre: bf16 rows of whole vectors). Shared (floats): sQ, sK, sG, sdQ, sdK, sdG
// (kC x ld), sX1, sX2 (kC x kLdA), sB (48 x ld: b o K, then the Z product), sAQ, sAK, sY1,
// sY2 (16 x ld), sPart (kNT), sDel (KS).
// KS = 32 (the default for bf16 rows of whole vectors; KIMI_CUDA_GRAM_KS=64 picks the wide one):
// 108 KB of shared memory and <= 64 registers, so that two blocks share an SM and one block's
// loads overlap the other's serial phases (B4 5.22 -> 4.96 ms KDA, 6.01 -> 5.40 GDN on an H100).
template <class Ti, int kD, int KS, bool kPre, bool kMma, bool kRow>
__global__ void __launch_bounds__(kNT, KS == 32 ? 2 : 1)
    gram_bwd_kernel(Params<Ti> p, ChunkDims cd, BwdBuffers<Ti> bw) {
  static_assert(!kRow || kMma, "the row-gate products run on the bf16 tensor cores");
  static_assert(kNT % KS == 0, "one column per thread in the partials pass");
  extern __shared__ __align__(128) float smem[];
  constexpr int ld = KS + 4, nks = KS / kBS;
  float* sQ = smem;
  float* sK = sQ + kC * ld;
  float* sG = sK + kC * ld;
  float* sdQ = sG + kC * ld;
  float* sdK = sdQ + kC * ld;
  float* sdG = sdK + kC * ld;
  float* sX1 = sdG + kC * ld;
  float* sX2 = sX1 + kC * kLdA;
  float* sB = sX2 + kC * kLdA;
  float* sAQ = sB + 3 * kBS * ld;
  float* sAK = sAQ + kBS * ld;
  float* sY1 = sAK + kBS * ld;
  float* sY2 = sY1 + kBS * ld;
  float* sPart = sY2 + kBS * ld;
  float* sDel = sPart + kNT;
  const int c = blockIdx.x, bh = blockIdx.y, col0 = blockIdx.z * KS;
  const int b = bh / p.H, h = bh % p.H, warp = threadIdx.x / 32;
  const int t0 = c * kC, L = min(kC, p.T - t0), ncols = min(KS, p.K - col0);
  const int64_t item = int64_t(bh) * cd.NC + c, rs_k = int64_t(p.H) * p.K;
  const RowsSpec kspec{p.qk(b, t0, h), rs_k, L, p.K, col0};
  const RowsSpec wspec{item * kC * kD, kD, kC, kD, col0};
  const RowsSpec aspec{item * kC * kC, kC, kC, kC, 0};
  constexpr int kFS = (kC * KS / 4 + kNT - 1) / kNT, kAS = (kC * kC / 4 + kNT - 1) / kNT;
  RowsPrefetch<float, kC, KS, kFS> p0, p1, p2;
  RowsPrefetch<float, kC, kC, kAS> pa, pb;
  p0.issue(bw.ws0, wspec);
  p1.issue(bw.ws1, wspec);
  p2.issue(bw.ws2, wspec);
  pa.issue(bw.dAqk, aspec);
  pb.issue(bw.dAkk, aspec);
  const float del = threadIdx.x < KS ? bw.deL[item * kD + col0 + threadIdx.x] : 0.f;
  bool g_loaded = false;
  if constexpr (kPre) {
    constexpr int kQS = (kC * KS / kVecWidth<Ti> + kNT - 1) / kNT;
    RowsPrefetch<Ti, kC, KS, kQS> pq, pk, pg;
    const bool pc = p.gate == GateKind::kPerChannel;
    pq.issue(p.q, kspec);
    pk.issue(p.k, kspec);
    if (pc) pg.issue(p.g, kspec);
    pq.commit(sQ, ld, kspec);
    pk.commit(sK, ld, kspec);
    if (pc) pg.commit(sG, ld, kspec);
    g_loaded = pc;
  } else {
    load_rows<Ti, kC, KS>(sQ, ld, p.q, kspec);
    load_rows<Ti, kC, KS>(sK, ld, p.k, kspec);
  }
  p0.commit(sdQ, ld, wspec);
  p1.commit(sdK, ld, wspec);
  p2.commit(sdG, ld, wspec);
  pa.commit(sX1, kLdA, aspec);
  pb.commit(sX2, kLdA, aspec);
  if (threadIdx.x < KS) sDel[threadIdx.x] = del;
  load_gates<Ti, KS>(sG, ld, p, b, h, t0, L, col0, g_loaded);  // syncs
  // X1 = scale tril(dA_qk), X2 = strict_lower(dA_kk); the partials (in place of dGq, dGk, dKd),
  // each thread keeping one column's partial sum of Kd o dKd.
  for (int e = threadIdx.x; e < kC * kC; e += blockDim.x) {
    const int i = e / kC, j = e % kC;
    sX1[i * kLdA + j] = j <= i ? p.scale * sX1[i * kLdA + j] : 0.f;
    if (j >= i) sX2[i * kLdA + j] = 0.f;
  }
  const float* GL = sG + (kC - 1) * ld;  // rows past L carry g = 0: G_L = G[kC-1]
  float part = 0.f;
  for (int e = threadIdx.x; e < kC * KS; e += kNT) {
    const int i = e / KS, d = e % KS, x = i * ld + d;
    const float G = sG[x], eG = __expf(G), eD = __expf(GL[d] - G);
    const float qq = sQ[x], kk = sK[x], dgk = sdK[x], dkd = sdG[x];
    const float dq0 = p.scale * eG * sdQ[x], tk = kk * eD * dkd;
    sdQ[x] = dq0;
    sdK[x] = eG * dgk + eD * dkd;
    sdG[x] = qq * dq0 + kk * eG * dgk - tk;
    part += tk;
  }
  sPart[threadIdx.x] = part;
  __syncthreads();
  if (threadIdx.x < KS) {
    float s = 0.f;
    for (int u = 0; u < kNT / KS; ++u) s += sPart[u * KS + threadIdx.x];
    sdG[(L - 1) * ld + threadIdx.x] += s + sDel[threadIdx.x] * __expf(GL[threadIdx.x]);
  }
  __syncthreads();
  if constexpr (kRow) {
    row_gate_products<KS>(p, bw, sQ, sK, sG, sdQ, sdK, sdG, sX1, sX2, sB, b, h, t0, L, col0, ncols);
  } else {
    for (int I = 0; I < 4; ++I) {
      const int r = I * kBS;
      if (I > 0) {
        // sB rows j < r: k_j exp(G_r - G_j); sAQ, sAK: q_i, k_i exp(G_i - G_r) for i in block I.
        for (int e = threadIdx.x; e < (r + 2 * kBS) * KS; e += blockDim.x) {
          const int row = e / KS, d = e % KS;
          const float Gr = sG[r * ld + d];
          if (row < r) {
            sB[row * ld + d] = sK[row * ld + d] * __expf(Gr - sG[row * ld + d]);
          } else {
            const int m = (row - r) % kBS, i = r + m;
            const bool isq = row - r < kBS;
            (isq ? sAQ : sAK)[m * ld + d] =
                (isq ? sQ : sK)[i * ld + d] * __expf(sG[i * ld + d] - Gr);
          }
        }
        __syncthreads();
        // Y1, Y2 of block I (without the factor exp(G_i - G_r)) = X[I, :r] sB.
        for (int t = warp; t < 2 * nks; t += kNW) {
          const int which = t / nks, N = t % nks;
          const float* x = (which ? sX2 : sX1) + r * kLdA;
          float* y = (which ? sY2 : sY1) + N * kBS;
          if constexpr (kMma) {
            float acc[2][4];
            bwd_mma::zero_16x16(acc);
            bwd_mma::mma_16x16_bf16<false, false>(acc, x, kLdA, sB + N * kBS, ld, r);
            bwd_mma::store_16x16(y, ld, acc);
          } else {
            FragC acc;
            wmma::fill_fragment(acc, 0.f);
            mma_16x16<false, false>(acc, x, kLdA, sB + N * kBS, ld, r);
            wmma::store_matrix_sync(y, acc, ld, wmma::mem_row_major);
          }
        }
        __syncthreads();
        // Z rows j < r (without the factor exp(G_r - G_j)) = X1[I, :r]^T aQ + X2[I, :r]^T aK.
        for (int t = warp; t < I * nks; t += kNW) {
          const int J = t / nks, N = t % nks;
          const float *x1 = sX1 + r * kLdA + J * kBS, *x2 = sX2 + r * kLdA + J * kBS;
          float* z = sB + J * kBS * ld + N * kBS;
          if constexpr (kMma) {
            float acc[2][4];
            bwd_mma::zero_16x16(acc);
            bwd_mma::mma_16x16_bf16<true, false>(acc, x1, kLdA, sAQ + N * kBS, ld, kBS);
            bwd_mma::mma_16x16_bf16<true, false>(acc, x2, kLdA, sAK + N * kBS, ld, kBS);
            bwd_mma::store_16x16(z, ld, acc);
          } else {
            FragC acc;
            wmma::fill_fragment(acc, 0.f);
            mma_16x16<true, false>(acc, x1, kLdA, sAQ + N * kBS, ld, kBS);
            mma_16x16<true, false>(acc, x2, kLdA, sAK + N * kBS, ld, kBS);
            wmma::store_matrix_sync(z, acc, ld, wmma::mem_row_major);
          }
        }
        __syncthreads();
      }
      // One thread per (row m < r + 16, channel): rows m < r take their Z term of block I; rows
      // of block I their Y1, Y2 and their own diagonal-block Z term; dq of block I is final.
      for (int e = threadIdx.x; e < (r + kBS) * KS; e += blockDim.x) {
        const int m = e / KS, d = e % KS;
        const float Gm = sG[m * ld + d];
        if (m < r) {
          const float z = sB[m * ld + d] * __expf(sG[r * ld + d] - Gm);
          sdK[m * ld + d] += z;
          sdG[m * ld + d] -= sK[m * ld + d] * z;
          continue;
        }
        float y1 = 0.f, y2 = 0.f, z = 0.f;
        if (I > 0) {
          const float a = __expf(Gm - sG[r * ld + d]);
          y1 = a * sY1[(m - r) * ld + d];
          y2 = a * sY2[(m - r) * ld + d];
        }
        for (int j = r; j <= m; ++j) {
          const float gk = __expf(Gm - sG[j * ld + d]) * sK[j * ld + d];
          y1 += sX1[m * kLdA + j] * gk;
          y2 += sX2[m * kLdA + j] * gk;
        }
        for (int i = m; i < r + kBS; ++i)
          z += (sX1[i * kLdA + m] * sQ[i * ld + d] + sX2[i * kLdA + m] * sK[i * ld + d]) *
               __expf(sG[i * ld + d] - Gm);
        const float qm = sQ[m * ld + d], km = sK[m * ld + d];
        sdK[m * ld + d] += y2 + z;
        sdG[m * ld + d] += qm * y1 + km * (y2 - z);
        if (m < L && d < ncols) st(bw.dq + p.qk(b, t0 + m, h) + col0 + d, sdQ[m * ld + d] + y1);
      }
      __syncthreads();
    }
  }
  store_rows(bw.dk, p.qk(b, t0, h), rs_k, col0, L, ncols, sdK, ld);
  if (p.gate == GateKind::kNone) return;
  if constexpr (kMma) {
    // The reverse cumulative sum by kSeg row segments per column (every thread: a column d and
    // a segment s): segment sums, then each segment's scan from the sum of those below it; a
    // chain of ~kC / kSeg + kSeg dependent steps instead of kC on KS threads.
    constexpr int kSeg = kNT / KS, R = kC / kSeg;
    static_assert(kC % kSeg == 0, "whole row segments");
    const int d = threadIdx.x % KS, sg = threadIdx.x / KS;
    float part = 0.f;
#pragma unroll
    for (int i = 0; i < R; ++i) part += sdG[(sg * R + i) * ld + d];
    sPart[threadIdx.x] = part;
    __syncthreads();
    float acc = 0.f;
    for (int u = sg + 1; u < kSeg; ++u) acc += sPart[u * KS + d];
#pragma unroll
    for (int i = R - 1; i >= 0; --i) {
      acc += sdG[(sg * R + i) * ld + d];
      sdG[(sg * R + i) * ld + d] = acc;
    }
  } else {
    for (int d = threadIdx.x; d < KS; d += blockDim.x) {
      float acc = 0.f;
      for (int i = kC - 1; i >= 0; --i) {
        acc += sdG[i * ld + d];
        sdG[i * ld + d] = acc;
      }
    }
  }
  __syncthreads();
  if (p.gate == GateKind::kPerChannel) {
    store_rows(bw.dg, p.qk(b, t0, h), rs_k, col0, L, ncols, sdG, ld);
  } else {  // per-channel sums into ws2 for scalar_dg_kernel
    for (int e = threadIdx.x; e < kC * KS; e += blockDim.x)
      bw.ws2[(item * kC + e / KS) * kD + col0 + e % KS] = sdG[(e / KS) * ld + e % KS];
  }
}

// Which kernel runs the scalar gates and none (KIMI_CUDA_GRAM_ROW, read at every launch; for the
// tests and experiments): block (the default): one block per chunk-head,
// delta_rule_chunk_bwd_gram_row.cu (bf16 rows of whole vectors; other rows take split); split:
// the row-gate products per 32 or 64 channels (row_gate_products); off: the per-channel kernel,
// the oracle of both. Any other value is refused rather than ignored.
enum class GramRow { kBlock, kSplit, kOff };

GramRow gram_row_mode() {
  const char* e = std::getenv("KIMI_CUDA_GRAM_ROW");
  const std::string_view v = e ? e : "";
  if (v.empty() || v == "block") return GramRow::kBlock;
  if (v == "split") return GramRow::kSplit;
  if (v == "off") return GramRow::kOff;
  throw std::invalid_argument(std::string("KIMI_CUDA_GRAM_ROW=") + e +
                              ": give block, split or off");
}

// True when the kernel wrote a scalar gate's dg itself (the block row kernel).
template <class Ti, int kD, bool kPre, bool kMma, int KS = 64, bool kRow = false>
bool launch_gram_as(const Params<Ti>& p, const ChunkDims& cd, const BwdBuffers<Ti>& bw,
                    cudaStream_t stream) {
  if constexpr (kMma && !kRow) {  // scalar gates and none take the row-gate products
    const GramRow mode = p.gate == GateKind::kPerChannel ? GramRow::kOff : gram_row_mode();
    if constexpr (kPre && std::is_same_v<Ti, __nv_bfloat16>) {
      if (mode == GramRow::kBlock) {
        launch_gram_row_block(p, cd, bw, stream);
        return true;
      }
    }
    if (mode != GramRow::kOff)
      return launch_gram_as<Ti, kD, kPre, kMma, KS, true>(p, cd, bw, stream);
  }
  const auto kernel = gram_bwd_kernel<Ti, kD, KS, kPre, kMma, kRow>;
  const size_t smem =
      size_t(6 * kC * (KS + 4) + 2 * kC * kLdA + 7 * kBS * (KS + 4) + kNT + KS) * sizeof(float);
  set_smem(kernel, smem);
  if constexpr (KS == 32)  // two blocks per SM need the whole carveout as shared memory
    KIMI_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                         int(cudaSharedmemCarveoutMaxShared)));
  const dim3 grid(unsigned(cd.NC), unsigned(p.B * p.H), unsigned(detail::ceil_div(p.K, KS)));
  kernel<<<grid, kNT, smem, stream>>>(p, cd, bw);
  KIMI_CUDA_CHECK_LAUNCH();
  return false;
}

// The new B4 runs 32 channels per block, two blocks per SM (bf16 rows of whole vectors only);
// KIMI_CUDA_GRAM_KS=64 (read at every launch, for experiments and the tests) runs 64, one block
// per SM. Any other value is refused rather than ignored.
bool gram_ks32() {
  const char* e = std::getenv("KIMI_CUDA_GRAM_KS");
  if (e == nullptr || *e == '\0' || std::string_view(e) == "32") return true;
  if (std::string_view(e) == "64") return false;
  throw std::invalid_argument(std::string("KIMI_CUDA_GRAM_KS=") + e + ": give 32 or 64");
}

}  // namespace

template <class Ti>
bool launch_gram_bwd(const Params<Ti>& p, const ChunkDims& cd, const BwdBuffers<Ti>& bw,
                     cudaStream_t stream) {
  if constexpr (sizeof(Ti) == 2) {
    const bool pre = use_prefetch(p);
    if (!chunk_bwd_gram_old() && pre && gram_ks32()) {
      if (cd.D == 64) return launch_gram_as<Ti, 64, true, true, 32>(p, cd, bw, stream);
      return launch_gram_as<Ti, 128, true, true, 32>(p, cd, bw, stream);
    }
    if (!chunk_bwd_gram_old()) {
      if (pre && cd.D == 64) return launch_gram_as<Ti, 64, true, true>(p, cd, bw, stream);
      if (pre) return launch_gram_as<Ti, 128, true, true>(p, cd, bw, stream);
      if (cd.D == 64) return launch_gram_as<Ti, 64, false, true>(p, cd, bw, stream);
      return launch_gram_as<Ti, 128, false, true>(p, cd, bw, stream);
    }
    if (pre) {
      if (cd.D == 64) return launch_gram_as<Ti, 64, true, false>(p, cd, bw, stream);
      return launch_gram_as<Ti, 128, true, false>(p, cd, bw, stream);
    }
  }
  if (cd.D == 64) return launch_gram_as<Ti, 64, false, false>(p, cd, bw, stream);
  return launch_gram_as<Ti, 128, false, false>(p, cd, bw, stream);
}

template bool launch_gram_bwd<float>(const Params<float>&, const ChunkDims&,
                                     const BwdBuffers<float>&, cudaStream_t);
template bool launch_gram_bwd<__nv_bfloat16>(const Params<__nv_bfloat16>&, const ChunkDims&,
                                             const BwdBuffers<__nv_bfloat16>&, cudaStream_t);

}  // namespace kimi::cuda::detail::chunk_bwd
