// The sequential kernel of the chunkwise linear recurrence (linear_recurrence_chunk.cuh): per
// (V tile of BV columns, batch*head), the chunks in order (forward: states h_c) or in reverse
// (backward: state gradients dh_c):  hs_c = S;  S <- exp(G_L) o S + X_c^T Y_c.
// It is the only sequential work, so it stays small: no output product here (the output and
// gradient kernels use the stored states in parallel over chunks), and with bf16 rows of whole
// 16-byte vectors the next chunk's X, Y and exp(G_L) are loaded into registers while the
// current one is computed (as the delta-rule state kernel does).
#include "core/cuda/linear_recurrence/linear_recurrence_chunk.cuh"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda::detail::lrc {
namespace {

struct ScanArgs {
  const float *EgL, *init;
  float* fin;
  bool reverse;
};

// Shared (floats): sS (KP x ldb), sX (kC x ldk), sY (kC x ldb), sEg (KP).
template <int BV, class Ti, bool kPre, int kD>
__global__ void __launch_bounds__(kThreads)
    lr_scan_kernel(Params<Ti> p, ChunkDims cd, const Ti* X, const Ti* Y, Ti* hs, ScanArgs a) {
  extern __shared__ __align__(128) float smem[];
  constexpr int ldb = BV + 4, KP = kD, ldk = kD + 4;
  constexpr int kYSlots = (BV * kC / kVecWidth<Ti> + kThreads - 1) / kThreads;
  constexpr int kXSlots = (kC * kD / kVecWidth<Ti> + kThreads - 1) / kThreads;
  float* sS = smem;
  float* sX = sS + KP * ldb;
  float* sY = sX + kC * ldk;
  float* sEg = sY + kC * ldb;
  const int bh = blockIdx.y, v0 = blockIdx.x * BV, b = bh / p.H, h = bh % p.H;
  const int64_t rs_k = int64_t(p.H) * p.K, rs_v = int64_t(p.H) * p.V;
  const int64_t state0 = int64_t(bh) * p.K * p.V;
  const int vcols = min(BV, p.V - v0);
  auto len = [&](int c) { return min(kC, p.T - c * kC); };
  auto xspec = [&](int c) { return RowsSpec{p.qk(b, c * kC, h), rs_k, len(c), p.K, 0}; };
  auto yspec = [&](int c) { return RowsSpec{p.vo(b, c * kC, h), rs_v, len(c), p.V, v0}; };
  auto eg_of = [&](int c) {
    const int d = threadIdx.x;
    return d < p.K ? a.EgL[(int64_t(bh) * cd.NC + c) * p.K + d] : 1.f;
  };
  RowsPrefetch<Ti, kC, KP, kXSlots> px;
  RowsPrefetch<Ti, kC, BV, kYSlots> py;
  float eg_r = 1.f;
  auto issue = [&](int c) {
    px.issue(X, xspec(c));
    py.issue(Y, yspec(c));
    eg_r = eg_of(c);
  };
  for (int e = threadIdx.x; e < KP * BV; e += blockDim.x) {
    const int i = e / BV, j = e % BV;
    sS[i * ldb + j] =
        (a.init && i < p.K && j < vcols) ? a.init[state0 + int64_t(i) * p.V + v0 + j] : 0.f;
  }
  const int first = a.reverse ? cd.NC - 1 : 0, step = a.reverse ? -1 : 1;
  if (kPre) issue(first);
  for (int n = 0, c = first; n < cd.NC; ++n, c += step) {
    __syncthreads();  // the previous chunk is done with every buffer
    if constexpr (kPre) {
      px.commit(sX, ldk, xspec(c));
      py.commit(sY, ldb, yspec(c));
    } else {
      load_rows<Ti, kC, KP>(sX, ldk, X, xspec(c));
      load_rows<Ti, kC, BV>(sY, ldb, Y, yspec(c));
      eg_r = eg_of(c);
    }
    if (threadIdx.x < KP) sEg[threadIdx.x] = eg_r;
    if (kPre && n + 1 < cd.NC) issue(c + step);
    __syncthreads();
    store_rows(hs, state_at(bh, c, cd.NC, p.K, p.V), p.V, v0, p.K, vcols, sS, ldb);
    __syncthreads();  // stored before the update
    for (int e = threadIdx.x; e < KP * BV; e += blockDim.x)
      sS[(e / BV) * ldb + e % BV] *= sEg[e / BV];
    __syncthreads();
    block_gemm<true, false>(sS, ldb, sX, ldk, sY, ldb, KP, BV, kC, 1.f, true);  // S += X^T Y
  }
  __syncthreads();
  if (a.fin) {
    for (int e = threadIdx.x; e < p.K * vcols; e += blockDim.x) {
      const int i = e / vcols, j = e % vcols;
      a.fin[state0 + int64_t(i) * p.V + v0 + j] = sS[i * ldb + j];
    }
  }
}

template <int BV, class Ti, bool kPre, int kD>
void launch_as(const Params<Ti>& p, const ChunkDims& cd, const Ti* X, const Ti* Y, Ti* hs,
               const ScanArgs& a, cudaStream_t stream) {
  const size_t smem = size_t(kD * (BV + 4) + kC * (kD + 4) + kC * (BV + 4) + kD) * sizeof(float);
  auto* kernel = lr_scan_kernel<BV, Ti, kPre, kD>;
  set_smem(kernel, smem);
  const dim3 grid(unsigned(ceil_div(p.V, BV)), unsigned(p.B * p.H));
  kernel<<<grid, kThreads, smem, stream>>>(p, cd, X, Y, hs, a);
  KIMI_CUDA_CHECK_LAUNCH();
}

template <int BV, class Ti>
void launch_bv(const Params<Ti>& p, const ChunkDims& cd, const Ti* X, const Ti* Y, Ti* hs,
               const ScanArgs& a, cudaStream_t stream) {
  if constexpr (sizeof(Ti) == 2) {
    if (vec_ok<Ti>(p.K, 0) && vec_ok<Ti>(p.V, 0)) {
      if (cd.D == 64) return launch_as<BV, Ti, true, 64>(p, cd, X, Y, hs, a, stream);
      return launch_as<BV, Ti, true, 128>(p, cd, X, Y, hs, a, stream);
    }
  }
  if (cd.D == 64) return launch_as<BV, Ti, false, 64>(p, cd, X, Y, hs, a, stream);
  launch_as<BV, Ti, false, 128>(p, cd, X, Y, hs, a, stream);
}

}  // namespace

template <class Ti>
void launch_lr_scan(const Params<Ti>& p, const ChunkDims& cd, const Ti* X, const Ti* Y,
                    const float* EgL, const float* init, Ti* hs, float* fin, bool reverse,
                    cudaStream_t stream) {
  const ScanArgs a{EgL, init, fin, reverse};
  // The walk is latency bound: narrower V tiles give more blocks when there are few heads.
  const int64_t BH = int64_t(p.B) * p.H;
  if (BH * ceil_div(p.V, 64) >= 2 * sm_count()) return launch_bv<64>(p, cd, X, Y, hs, a, stream);
  if (BH * ceil_div(p.V, 32) >= sm_count()) return launch_bv<32>(p, cd, X, Y, hs, a, stream);
  launch_bv<16>(p, cd, X, Y, hs, a, stream);
}

template void launch_lr_scan<float>(const Params<float>&, const ChunkDims&, const float*,
                                    const float*, const float*, const float*, float*, float*, bool,
                                    cudaStream_t);
template void launch_lr_scan<__nv_bfloat16>(const Params<__nv_bfloat16>&, const ChunkDims&,
                                            const __nv_bfloat16*, const __nv_bfloat16*,
                                            const float*, const float*, __nv_bfloat16*, float*,
                                            bool, cudaStream_t);

}  // namespace kimi::cuda::detail::lrc
