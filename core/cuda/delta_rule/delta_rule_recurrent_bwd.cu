// Recurrent delta rule and gated linear recurrence on the GPU, backward
// (docs/math.md#recurrent-backward): checkpoints from the forward (delta_rule_recurrent.cu), then
// the chunks walked backwards with dS in shared memory. Layout: delta_rule.cuh.
#include <algorithm>

#include "core/cuda/delta_rule/delta_rule_recurrent.cuh"
#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda {
namespace {

using detail::ld;
using detail::Params;
using detail::st;
using detail::warp_sum;

// ---------------------------------------------------------------------------------------------
// Backward: one block per (batch, head), kBwdThreads threads; dS (K x V) in shared memory.
// For each chunk, last first: the states before each of its steps are recomputed from the
// chunk's checkpoint into a workspace (column threads, as in the forward), then the steps run
// backwards (docs/math.md#recurrent-backward), in four passes over S_{t-1} (P below) and dS:
//   A (columns): kS = (a o P)^T k, u = beta (v - kS)             [u = v without beta]
//   B (rows):    dS += scale q do^T; dq = scale (a o P + k u^T) do; dk = dS u
//   C (columns): du = dS^T k; dv = beta du; dbeta = du.(v - kS)
//   D (rows):    dk -= beta (a o P) du; dS' = dS - beta k du^T; dg = rowsum(dS' o a o P);
//                dS <- a o dS'
// Column passes put consecutive threads on consecutive columns; row passes give each warp a
// row, its lanes the columns: both read shared memory without bank conflicts.
constexpr int kBwdThreads = 256;
constexpr int kWarps = kBwdThreads / 32;
// Steps between the forward's state checkpoints (the backward's own "chunk": memory B*H*K*V per
// checkpoint plus one chunk of workspace). Its own constant: RecurrenceDims::chunk is the chunk
// size of the chunk form and must not change this kernel's memory or speed.
constexpr int64_t kCheckpointEvery = 64;

template <class Ti>
struct BwdArgs {
  const Ti* do_;
  const float* dht;
  Ti *dq, *dk, *dv, *dg, *dbeta;
  float* dh0;
  float* scratch;  // [B*H][every][K][V]: states inside the current chunk
};

struct StepVectors {  // shared-memory vectors of one step
  float *q, *k, *a, *v, *dout, *kS, *u, *du, *dk, *red;
  float beta;
};

template <class Ti>
__device__ void load_step(const Params<Ti>& p, const BwdArgs<Ti>& a, int b, int h, int t,
                          StepVectors& sv, float* s_beta, bool need_do) {
  for (int i = threadIdx.x; i < p.K; i += blockDim.x) {
    sv.q[i] = ld(p.q + p.qk(b, t, h) + i);
    sv.k[i] = ld(p.k + p.qk(b, t, h) + i);
    sv.a[i] = p.decay(b, t, h, i);
  }
  for (int j = threadIdx.x; j < p.V; j += blockDim.x) {
    sv.v[j] = ld(p.v + p.vo(b, t, h) + j);
    if (need_do) sv.dout[j] = ld(a.do_ + p.vo(b, t, h) + j);
  }
  if (threadIdx.x == 0) *s_beta = p.beta ? ld(p.beta + p.tok(b, t, h)) : 1.f;
}

template <class Ti>
__global__ void __launch_bounds__(kBwdThreads) recurrent_bwd_kernel(Params<Ti> p, BwdArgs<Ti> a) {
  extern __shared__ float smem[];
  const int K = p.K, V = p.V;
  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t KV = int64_t(K) * V;
  float* dS = smem;
  StepVectors sv;
  float* base = smem + KV;
  sv.q = base;
  sv.k = base + K;
  sv.a = base + 2 * K;
  sv.dk = base + 3 * K;
  sv.v = base + 4 * K;
  sv.dout = sv.v + V;
  sv.kS = sv.dout + V;
  sv.u = sv.kS + V;
  sv.du = sv.u + V;
  sv.red = sv.du + V;
  float* s_beta = sv.red + kWarps;
  const bool delta = p.beta != nullptr;
  float* scratch = a.scratch + int64_t(bh) * p.every * KV;

  for (int64_t e = threadIdx.x; e < KV; e += blockDim.x)
    dS[e] = a.dht ? a.dht[int64_t(bh) * KV + e] : 0.f;

  for (int c = p.n_ckpt - 1; c >= 0; --c) {
    const int t0 = c * p.every, len = min(p.every, p.T - t0);
    const float* ck = p.ckpt + (int64_t(bh) * p.n_ckpt + c) * KV;
    // state before step t0+s: ck for s = 0, scratch slot s-1 after
    auto state = [&](int s) -> const float* { return s == 0 ? ck : scratch + int64_t(s - 1) * KV; };
    // --- recompute the states inside the chunk (columns, as in the forward) ---
    for (int s = 0; s + 1 < len; ++s) {
      __syncthreads();
      load_step(p, a, b, h, t0 + s, sv, s_beta, false);
      __syncthreads();
      const float* P = state(s);
      float* N = scratch + int64_t(s) * KV;
      const float bt = *s_beta;
      for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float kS = 0.f;
        for (int i = 0; i < K; ++i) kS += sv.a[i] * P[int64_t(i) * V + j] * sv.k[i];
        const float u = delta ? bt * (sv.v[j] - kS) : sv.v[j];
        for (int i = 0; i < K; ++i)
          N[int64_t(i) * V + j] = sv.a[i] * P[int64_t(i) * V + j] + sv.k[i] * u;
      }
    }
    // --- the steps backwards ---
    for (int s = len - 1; s >= 0; --s) {
      const int t = t0 + s;
      const float* P = state(s);
      __syncthreads();  // the recompute / previous step is done with the vectors and dS
      load_step(p, a, b, h, t, sv, s_beta, true);
      __syncthreads();
      const float bt = *s_beta;
      // A: kS, u
      for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float kS = 0.f;
        for (int i = 0; i < K; ++i) kS += sv.a[i] * P[int64_t(i) * V + j] * sv.k[i];
        sv.kS[j] = kS;
        sv.u[j] = delta ? bt * (sv.v[j] - kS) : sv.v[j];
      }
      __syncthreads();
      // B: dS += scale q do^T; dq = scale S_t do; dk = dS u
      for (int i = warp; i < K; i += kWarps) {
        float aq = 0.f, ak = 0.f;
        const float qi = p.scale * sv.q[i], ki = sv.k[i], ai = sv.a[i];
        for (int j = lane; j < V; j += 32) {
          const float dsn = dS[int64_t(i) * V + j] + qi * sv.dout[j];
          dS[int64_t(i) * V + j] = dsn;
          aq += (ai * P[int64_t(i) * V + j] + ki * sv.u[j]) * sv.dout[j];
          ak += dsn * sv.u[j];
        }
        aq = warp_sum(aq);
        ak = warp_sum(ak);
        if (lane == 0) {
          st(a.dq + p.qk(b, t, h) + i, p.scale * aq);
          sv.dk[i] = ak;
        }
      }
      __syncthreads();
      // C: du = dS^T k; dv; dbeta
      for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float du = 0.f;
        for (int i = 0; i < K; ++i) du += dS[int64_t(i) * V + j] * sv.k[i];
        sv.du[j] = du;
        st(a.dv + p.vo(b, t, h) + j, delta ? bt * du : du);
      }
      __syncthreads();
      if (delta && warp == 0) {
        float db = 0.f;
        for (int j = lane; j < V; j += 32) db += sv.du[j] * (sv.v[j] - sv.kS[j]);
        db = warp_sum(db);
        if (lane == 0) st(a.dbeta + p.tok(b, t, h), db);
      }
      // D: dk -= beta S' du; dS' = dS - beta k du^T; dg = rowsum(dS' o S'); dS = a o dS'
      float gsum = 0.f;
      for (int i = warp; i < K; i += kWarps) {
        float as = 0.f, ag = 0.f;
        const float ki = sv.k[i], ai = sv.a[i];
        for (int j = lane; j < V; j += 32) {
          const float sp = ai * P[int64_t(i) * V + j];
          as += sp * sv.du[j];
          float ds = dS[int64_t(i) * V + j];
          if (delta) ds -= bt * ki * sv.du[j];
          ag += ds * sp;
          dS[int64_t(i) * V + j] = ai * ds;
        }
        as = warp_sum(as);
        ag = warp_sum(ag);
        if (lane == 0) {
          st(a.dk + p.qk(b, t, h) + i, sv.dk[i] - (delta ? bt * as : 0.f));
          if (p.gate == GateKind::kPerChannel) st(a.dg + p.qk(b, t, h) + i, ag);
        }
        gsum += ag;
      }
      if (p.gate == GateKind::kScalar) {
        if (lane == 0) sv.red[warp] = gsum;
        __syncthreads();
        if (threadIdx.x == 0) {
          float sum = 0.f;
          for (int w = 0; w < kWarps; ++w) sum += sv.red[w];
          st(a.dg + p.tok(b, t, h), sum);
        }
      }
    }
  }
  if (a.dh0) {
    __syncthreads();
    for (int64_t e = threadIdx.x; e < KV; e += blockDim.x) a.dh0[int64_t(bh) * KV + e] = dS[e];
  }
}

template <class Ti>
void run_bwd(Params<Ti> p, const Ti* do_, const float* dht, Ti* dq, Ti* dk, Ti* dv, Ti* dg,
             Ti* dbeta, float* dh0, cudaStream_t stream) {
  if (p.B == 0 || p.H == 0) return;
  if (p.T == 0) {  // no steps: dh0 = dht
    if (dh0) {
      const size_t n = size_t(p.B) * p.H * p.K * p.V * sizeof(float);
      if (dht)
        KIMI_CUDA_CHECK(cudaMemcpyAsync(dh0, dht, n, cudaMemcpyDeviceToDevice, stream));
      else
        KIMI_CUDA_CHECK(cudaMemsetAsync(dh0, 0, n, stream));
    }
    return;
  }
  p.every = int(std::min<int64_t>(kCheckpointEvery, p.T));
  p.n_ckpt = int(detail::ceil_div(p.T, p.every));
  const int64_t KV = int64_t(p.K) * p.V, BH = int64_t(p.B) * p.H;
  Buffer ckpt(size_t(BH * p.n_ckpt * KV) * sizeof(float));
  Buffer scratch(size_t(BH * p.every * KV) * sizeof(float));
  p.ckpt = ckpt.as<float>();
  Params<Ti> fp = p;
  fp.o = nullptr;
  fp.ht = nullptr;
  detail::launch_recurrent_fwd(fp, stream);
  const size_t smem = (KV + 4 * p.K + 5 * p.V + kWarps + 1) * sizeof(float);
  KIMI_CUDA_REQUIRE(smem <= size_t(detail::max_smem_optin()),
                    "recurrent delta rule backward: K*V too large for shared memory");
  KIMI_CUDA_CHECK(cudaFuncSetAttribute(recurrent_bwd_kernel<Ti>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  BwdArgs<Ti> a{do_, dht, dq, dk, dv, dg, dbeta, dh0, scratch.as<float>()};
  recurrent_bwd_kernel<Ti><<<unsigned(BH), kBwdThreads, smem, stream>>>(p, a);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <class Ti>
void delta_rule_recurrent_bwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                              const Ti* g, const Ti* beta, const float* h0, const Ti* do_,
                              const float* dht, Ti* dq, Ti* dk, Ti* dv, Ti* dg, Ti* dbeta,
                              float* dh0, cudaStream_t stream) {
  KIMI_CUDA_REQUIRE(beta != nullptr, "delta rule: beta is required");
  run_bwd(detail::recurrent_params<Ti>(d, q, k, v, g, beta, h0, nullptr, nullptr), do_, dht, dq, dk,
          dv, dg, dbeta, dh0, stream);
}

template <class Ti>
void linear_recurrence_recurrent_bwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                                     const Ti* g, const float* h0, const Ti* do_, const float* dht,
                                     Ti* dq, Ti* dk, Ti* dv, Ti* dg, float* dh0,
                                     cudaStream_t stream) {
  run_bwd<Ti>(detail::recurrent_params<Ti>(d, q, k, v, g, nullptr, h0, nullptr, nullptr), do_, dht,
              dq, dk, dv, dg, nullptr, dh0, stream);
}

#define KIMI_INSTANTIATE(Ti)                                                                      \
  template void delta_rule_recurrent_bwd<Ti>(                                                     \
      const RecurrenceDims&, const Ti*, const Ti*, const Ti*, const Ti*, const Ti*, const float*, \
      const Ti*, const float*, Ti*, Ti*, Ti*, Ti*, Ti*, float*, cudaStream_t);                    \
  template void linear_recurrence_recurrent_bwd<Ti>(                                              \
      const RecurrenceDims&, const Ti*, const Ti*, const Ti*, const Ti*, const float*, const Ti*, \
      const float*, Ti*, Ti*, Ti*, Ti*, float*, cudaStream_t);
KIMI_INSTANTIATE(float)
KIMI_INSTANTIATE(__nv_bfloat16)
#undef KIMI_INSTANTIATE

}  // namespace kimi::cuda
