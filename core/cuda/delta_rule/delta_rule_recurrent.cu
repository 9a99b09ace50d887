// Recurrent (token-by-token) delta rule and gated linear recurrence on the GPU, forward and
// backward; the decode step is the forward with T = 1 and the state updated in place.
// Math: docs/math.md#mixers (step) and docs/math.md#recurrent-backward (backward). Layout:
// delta_rule.cuh.
//
// Forward: the update acts on each column j of S (K x V) alone:
//   s <- a o s;  u = beta (v_j - s.k);  s <- s + k u;  o_j = scale s.q
// so one thread owns one column (K values in registers) and a block covers kCols columns of
// one (batch, head); q, k, exp(g) of kSteps tokens are staged in shared memory.
// The backward is in delta_rule_recurrent_bwd.cu, the decode step in delta_rule_decode.cu.
#include "core/cuda/delta_rule/delta_rule_recurrent.cuh"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda {
namespace {

using detail::ld;
using detail::Params;
using detail::st;

constexpr int kThreads = 64;  // threads per forward block
constexpr int kSteps = 8;     // tokens staged at a time

// SPLIT consecutive lanes share one column: lane r of the group holds rows i = ii*SPLIT + r
// (KMAX/SPLIT registers), and the column's dot products are summed with SPLIT-1 shuffles.
template <int KMAX, int SPLIT, class Ti>
__global__ void __launch_bounds__(kThreads) recurrent_fwd_kernel(Params<Ti> p) {
  constexpr int kCols = kThreads / SPLIT, KPT = KMAX / SPLIT;
  __shared__ float sq[kSteps][KMAX], sk[kSteps][KMAX], sa[kSteps][KMAX], sb[kSteps];
  __shared__ float sv[kSteps][kCols];
  const int bh = blockIdx.y, b = bh / p.H, h = bh % p.H;
  const int col = threadIdx.x / SPLIT, r = threadIdx.x % SPLIT;
  const int j = blockIdx.x * kCols + col;
  const bool active = j < p.V;
  const int64_t state0 = int64_t(bh) * p.K * p.V;
  auto row = [&](int ii) { return ii * SPLIT + r; };
  auto group_sum = [](float x) {
#pragma unroll
    for (int o = 1; o < SPLIT; o <<= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
  };
  float s[KPT];
#pragma unroll
  for (int ii = 0; ii < KPT; ++ii)
    s[ii] = (active && row(ii) < p.K && p.h0) ? p.h0[state0 + int64_t(row(ii)) * p.V + j] : 0.f;

  for (int t0 = 0; t0 < p.T; t0 += kSteps) {
    const int nt = min(kSteps, p.T - t0);
    __syncthreads();  // the previous tokens' staging is no longer read
    for (int idx = threadIdx.x; idx < kSteps * KMAX; idx += kThreads) {
      const int tt = idx / KMAX, i = idx % KMAX;
      const bool ok = tt < nt && i < p.K;
      const int64_t off = p.qk(b, t0 + tt, h) + i;
      sq[tt][i] = ok ? ld(p.q + off) : 0.f;
      sk[tt][i] = ok ? ld(p.k + off) : 0.f;
      sa[tt][i] = ok ? p.decay(b, t0 + tt, h, i) : 1.f;
    }
    if (threadIdx.x < kSteps)
      sb[threadIdx.x] =
          (p.beta && threadIdx.x < nt) ? ld(p.beta + p.tok(b, t0 + threadIdx.x, h)) : 0.f;
    for (int idx = threadIdx.x; idx < kSteps * kCols; idx += kThreads) {
      const int tt = idx / kCols, c = idx % kCols, jj = blockIdx.x * kCols + c;
      sv[tt][c] = (jj < p.V && tt < nt) ? ld(p.v + p.vo(b, t0 + tt, h) + jj) : 0.f;
    }
    __syncthreads();
#pragma unroll 1
    for (int tt = 0; tt < nt; ++tt) {
      const int t = t0 + tt;
      if (p.ckpt && t % p.every == 0 && active) {
        float* c = p.ckpt + (int64_t(bh) * p.n_ckpt + t / p.every) * p.K * p.V + j;
#pragma unroll
        for (int ii = 0; ii < KPT; ++ii)
          if (row(ii) < p.K) c[int64_t(row(ii)) * p.V] = s[ii];
      }
      float u;
      if (p.beta) {
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int ii = 0; ii < KPT; ++ii) {
          s[ii] *= sa[tt][row(ii)];
          acc[ii & 3] += s[ii] * sk[tt][row(ii)];
        }
        const float kS = group_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
        u = sb[tt] * (sv[tt][col] - kS);
      } else {
#pragma unroll
        for (int ii = 0; ii < KPT; ++ii) s[ii] *= sa[tt][row(ii)];
        u = sv[tt][col];
      }
      float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int ii = 0; ii < KPT; ++ii) {
        s[ii] += sk[tt][row(ii)] * u;
        acc[ii & 3] += s[ii] * sq[tt][row(ii)];
      }
      const float out = group_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
      if (p.o && active && r == 0) st(p.o + p.vo(b, t, h) + j, p.scale * out);
    }
  }
  if (p.ht && active) {
#pragma unroll
    for (int ii = 0; ii < KPT; ++ii)
      if (row(ii) < p.K) p.ht[state0 + int64_t(row(ii)) * p.V + j] = s[ii];
  }
}

template <int KMAX, int SPLIT, class Ti>
void launch_fwd_as(const Params<Ti>& p, cudaStream_t stream) {
  constexpr int kCols = kThreads / SPLIT;
  const dim3 grid(unsigned(detail::ceil_div(p.V, kCols)), unsigned(p.B * p.H));
  recurrent_fwd_kernel<KMAX, SPLIT, Ti><<<grid, kThreads, 0, stream>>>(p);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace

namespace detail {

template <class Ti>
void launch_recurrent_fwd(const Params<Ti>& p, cudaStream_t stream) {
  if (p.B == 0 || p.H == 0 || p.T == 0) {
    if (p.ht && p.ht != p.h0 && p.B * p.H > 0) {  // no steps: ht = h0
      const size_t n = size_t(p.B) * p.H * p.K * p.V * sizeof(float);
      if (p.h0)
        KIMI_CUDA_CHECK(cudaMemcpyAsync(p.ht, p.h0, n, cudaMemcpyDeviceToDevice, stream));
      else
        KIMI_CUDA_CHECK(cudaMemsetAsync(p.ht, 0, n, stream));
    }
    return;
  }
  KIMI_CUDA_REQUIRE(p.K >= 1 && p.K <= 128, "recurrent delta rule: needs 1 <= K <= 128");
  if (p.K <= 32)
    launch_fwd_as<32, 1>(p, stream);
  else if (p.K <= 64)
    launch_fwd_as<64, 2>(p, stream);
  else
    launch_fwd_as<128, 4>(p, stream);
}

template void launch_recurrent_fwd<float>(const Params<float>&, cudaStream_t);
template void launch_recurrent_fwd<__nv_bfloat16>(const Params<__nv_bfloat16>&, cudaStream_t);

}  // namespace detail

template <class Ti>
void delta_rule_recurrent_fwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                              const Ti* g, const Ti* beta, const float* h0, Ti* o, float* ht,
                              cudaStream_t stream) {
  KIMI_CUDA_REQUIRE(beta != nullptr, "delta rule: beta is required");
  detail::launch_recurrent_fwd(detail::recurrent_params(d, q, k, v, g, beta, h0, o, ht), stream);
}

template <class Ti>
void linear_recurrence_recurrent_fwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                                     const Ti* g, const float* h0, Ti* o, float* ht,
                                     cudaStream_t stream) {
  detail::launch_recurrent_fwd(detail::recurrent_params<Ti>(d, q, k, v, g, nullptr, h0, o, ht),
                               stream);
}

#define KIMI_INSTANTIATE(Ti)                                                                     \
  template void delta_rule_recurrent_fwd<Ti>(const RecurrenceDims&, const Ti*, const Ti*,        \
                                             const Ti*, const Ti*, const Ti*, const float*, Ti*, \
                                             float*, cudaStream_t);                              \
  template void linear_recurrence_recurrent_fwd<Ti>(const RecurrenceDims&, const Ti*, const Ti*, \
                                                    const Ti*, const Ti*, const float*, Ti*,     \
                                                    float*, cudaStream_t);
KIMI_INSTANTIATE(float)
KIMI_INSTANTIATE(__nv_bfloat16)
#undef KIMI_INSTANTIATE

}  // namespace kimi::cuda
