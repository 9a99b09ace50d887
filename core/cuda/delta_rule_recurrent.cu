// Recurrent (token-by-token) delta rule and gated linear recurrence on the GPU, forward and
// backward; the decode step is the forward with T = 1 and the state updated in place.
// Math: DESIGN.md section 2 (step) and 3b (backward). Layout: delta_rule.cuh.
//
// Forward: the update acts on each column j of S (K x V) alone:
//   s <- a o s;  u = beta (v_j - s.k);  s <- s + k u;  o_j = scale s.q
// so one thread owns one column (K values in registers) and a block covers kCols columns of
// one (batch, head); q, k, exp(g) of kSteps tokens are staged in shared memory.
#include <algorithm>

#include "core/cuda/allocator.h"
#include "core/cuda/check.h"
#include "core/cuda/delta_rule_common.cuh"

namespace kimi::cuda {
namespace {

using detail::ld;
using detail::Params;
using detail::st;
using detail::warp_sum;

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

template <class Ti>
void launch_fwd(const Params<Ti>& p, cudaStream_t stream) {
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

// ---------------------------------------------------------------------------------------------
// Decode step for K = 128 (T = 1): memory-bound, so the state moves as 16-byte vectors. A block
// of 128 threads covers 64 columns of one (batch, head): lane = 4 * r + c4 within a warp, so
// the 4 column groups (of 4 columns) of a warp are 64 contiguous bytes of one row, and each
// group's 8 row lanes r hold rows i = 8 ii + r (16 float4 registers); the column dot products
// are summed over the row lanes with shuffles (xor 4, 8, 16).
constexpr int kDecThreads = 128, kDecCols = 64, kDecK = 128;

__device__ __forceinline__ float4 fma4(float a, float4 x, float4 y) {
  return make_float4(fmaf(a, x.x, y.x), fmaf(a, x.y, y.y), fmaf(a, x.z, y.z), fmaf(a, x.w, y.w));
}
__device__ __forceinline__ float4 sum_rows(float4 x) {
#pragma unroll
  for (int o = 4; o < 32; o <<= 1) {
    x.x += __shfl_xor_sync(0xffffffffu, x.x, o);
    x.y += __shfl_xor_sync(0xffffffffu, x.y, o);
    x.z += __shfl_xor_sync(0xffffffffu, x.z, o);
    x.w += __shfl_xor_sync(0xffffffffu, x.w, o);
  }
  return x;
}

template <class Ti>
__global__ void __launch_bounds__(kDecThreads) decode_k128_kernel(Params<Ti> p) {
  constexpr int kR = 8, kRows = kDecK / kR;
  __shared__ float sq[kDecK], sk[kDecK], sa[kDecK];
  const int bh = blockIdx.y, b = bh / p.H, h = bh % p.H;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int r = lane >> 2, j0 = blockIdx.x * kDecCols + (warp * 4 + (lane & 3)) * 4;
  const bool active = j0 < p.V;
  const int64_t state0 = int64_t(bh) * kDecK * p.V;
  float4 s[kRows];
#pragma unroll
  for (int ii = 0; ii < kRows; ++ii)
    s[ii] = active
                ? *reinterpret_cast<const float4*>(p.h0 + state0 + int64_t(ii * kR + r) * p.V + j0)
                : make_float4(0.f, 0.f, 0.f, 0.f);
  const int t = threadIdx.x;  // kDecThreads == kDecK
  sq[t] = ld(p.q + p.qk(b, 0, h) + t);
  sk[t] = ld(p.k + p.qk(b, 0, h) + t);
  sa[t] = p.decay(b, 0, h, t);
  const float beta = ld(p.beta + p.tok(b, 0, h));
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (active) {
    const Ti* vp = p.v + p.vo(b, 0, h) + j0;
    v = make_float4(ld(vp), ld(vp + 1), ld(vp + 2), ld(vp + 3));
  }
  __syncthreads();
  float4 kS = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
  for (int ii = 0; ii < kRows; ++ii) {
    const int i = ii * kR + r;
    const float a = sa[i];
    s[ii] = make_float4(a * s[ii].x, a * s[ii].y, a * s[ii].z, a * s[ii].w);
    kS = fma4(sk[i], s[ii], kS);
  }
  kS = sum_rows(kS);
  const float4 u = make_float4(beta * (v.x - kS.x), beta * (v.y - kS.y), beta * (v.z - kS.z),
                               beta * (v.w - kS.w));
  float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
  for (int ii = 0; ii < kRows; ++ii) {
    const int i = ii * kR + r;
    const float ki = sk[i];
    s[ii] = make_float4(fmaf(ki, u.x, s[ii].x), fmaf(ki, u.y, s[ii].y), fmaf(ki, u.z, s[ii].z),
                        fmaf(ki, u.w, s[ii].w));
    o = fma4(sq[i], s[ii], o);
  }
  o = sum_rows(o);
  if (!active) return;
  if (r == 0) {
    Ti* op = p.o + p.vo(b, 0, h) + j0;
    st(op, p.scale * o.x);
    st(op + 1, p.scale * o.y);
    st(op + 2, p.scale * o.z);
    st(op + 3, p.scale * o.w);
  }
#pragma unroll
  for (int ii = 0; ii < kRows; ++ii)
    *reinterpret_cast<float4*>(p.ht + state0 + int64_t(ii * kR + r) * p.V + j0) = s[ii];
}

// ---------------------------------------------------------------------------------------------
// Backward: one block per (batch, head), kBwdThreads threads; dS (K x V) in shared memory.
// For each chunk, last first: the states before each of its steps are recomputed from the
// chunk's checkpoint into a workspace (column threads, as in the forward), then the steps run
// backwards (DESIGN.md 3b), in four passes over S_{t-1} (P below) and dS:
//   A (columns): kS = (a o P)^T k, u = beta (v - kS)             [u = v without beta]
//   B (rows):    dS += scale q do^T; dq = scale (a o P + k u^T) do; dk = dS u
//   C (columns): du = dS^T k; dv = beta du; dbeta = du.(v - kS)
//   D (rows):    dk -= beta (a o P) du; dS' = dS - beta k du^T; dg = rowsum(dS' o a o P);
//                dS <- a o dS'
// Column passes put consecutive threads on consecutive columns; row passes give each warp a
// row, its lanes the columns: both read shared memory without bank conflicts.
constexpr int kBwdThreads = 256;
constexpr int kWarps = kBwdThreads / 32;

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
Params<Ti> make_params(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v, const Ti* g,
                       const Ti* beta, const float* h0, Ti* o, float* ht) {
  KIMI_CUDA_REQUIRE(d.B >= 0 && d.T >= 0 && d.H >= 0 && d.K > 0 && d.V > 0, "delta rule: bad dims");
  KIMI_CUDA_REQUIRE((d.gate == GateKind::kNone) == (g == nullptr),
                    "delta rule: g must be given exactly when the gate kind is not kNone");
  Params<Ti> p{};
  p.B = int(d.B);
  p.T = int(d.T);
  p.H = int(d.H);
  p.K = int(d.K);
  p.V = int(d.V);
  p.gate = d.gate;
  p.scale = float(d.scale);
  p.q = q;
  p.k = k;
  p.v = v;
  p.g = g;
  p.beta = beta;
  p.h0 = h0;
  p.o = o;
  p.ht = ht;
  p.every = 1;
  return p;
}

template <class Ti>
void run_bwd(Params<Ti> p, int64_t chunk, const Ti* do_, const float* dht, Ti* dq, Ti* dk, Ti* dv,
             Ti* dg, Ti* dbeta, float* dh0, cudaStream_t stream) {
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
  KIMI_CUDA_REQUIRE(chunk > 0, "delta rule backward: chunk must be positive");
  p.every = int(std::min<int64_t>(chunk, p.T));
  p.n_ckpt = int(detail::ceil_div(p.T, p.every));
  const int64_t KV = int64_t(p.K) * p.V, BH = int64_t(p.B) * p.H;
  Buffer ckpt(size_t(BH * p.n_ckpt * KV) * sizeof(float));
  Buffer scratch(size_t(BH * p.every * KV) * sizeof(float));
  p.ckpt = ckpt.as<float>();
  Params<Ti> fp = p;
  fp.o = nullptr;
  fp.ht = nullptr;
  launch_fwd(fp, stream);
  const size_t smem = (KV + 4 * p.K + 5 * p.V + kWarps + 1) * sizeof(float);
  int dev = 0, max_smem = 0;
  KIMI_CUDA_CHECK(cudaGetDevice(&dev));
  KIMI_CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  KIMI_CUDA_REQUIRE(smem <= size_t(max_smem),
                    "recurrent delta rule backward: K*V too large for shared memory");
  KIMI_CUDA_CHECK(cudaFuncSetAttribute(recurrent_bwd_kernel<Ti>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  BwdArgs<Ti> a{do_, dht, dq, dk, dv, dg, dbeta, dh0, scratch.as<float>()};
  recurrent_bwd_kernel<Ti><<<unsigned(BH), kBwdThreads, smem, stream>>>(p, a);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <class Ti>
void delta_rule_recurrent_fwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                              const Ti* g, const Ti* beta, const float* h0, Ti* o, float* ht,
                              cudaStream_t stream) {
  KIMI_CUDA_REQUIRE(beta != nullptr, "delta rule: beta is required");
  launch_fwd(make_params(d, q, k, v, g, beta, h0, o, ht), stream);
}

template <class Ti>
void delta_rule_recurrent_bwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                              const Ti* g, const Ti* beta, const float* h0, const Ti* do_,
                              const float* dht, Ti* dq, Ti* dk, Ti* dv, Ti* dg, Ti* dbeta,
                              float* dh0, cudaStream_t stream) {
  KIMI_CUDA_REQUIRE(beta != nullptr, "delta rule: beta is required");
  run_bwd(make_params<Ti>(d, q, k, v, g, beta, h0, nullptr, nullptr), d.chunk, do_, dht, dq, dk, dv,
          dg, dbeta, dh0, stream);
}

template <class Ti>
void delta_rule_decode_step(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                            const Ti* g, const Ti* beta, float* state, Ti* o, cudaStream_t stream) {
  KIMI_CUDA_REQUIRE(d.T == 1, "delta rule decode step: T must be 1");
  KIMI_CUDA_REQUIRE(beta != nullptr, "delta rule: beta is required");
  // Each thread reads its state columns before it writes them back: in place is safe.
  const Params<Ti> p = make_params(d, q, k, v, g, beta, state, o, state);
  if (p.K == kDecK && p.V % 4 == 0 && p.B * p.H > 0) {
    const dim3 grid(unsigned(detail::ceil_div(p.V, kDecCols)), unsigned(p.B * p.H));
    decode_k128_kernel<Ti><<<grid, kDecThreads, 0, stream>>>(p);
    KIMI_CUDA_CHECK_LAUNCH();
    return;
  }
  launch_fwd(p, stream);
}

template <class Ti>
void linear_recurrence_recurrent_fwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                                     const Ti* g, const float* h0, Ti* o, float* ht,
                                     cudaStream_t stream) {
  launch_fwd(make_params<Ti>(d, q, k, v, g, nullptr, h0, o, ht), stream);
}

template <class Ti>
void linear_recurrence_recurrent_bwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                                     const Ti* g, const float* h0, const Ti* do_, const float* dht,
                                     Ti* dq, Ti* dk, Ti* dv, Ti* dg, float* dh0,
                                     cudaStream_t stream) {
  run_bwd<Ti>(make_params<Ti>(d, q, k, v, g, nullptr, h0, nullptr, nullptr), d.chunk, do_, dht, dq,
              dk, dv, dg, nullptr, dh0, stream);
}

#define KIMI_INSTANTIATE(Ti)                                                                       \
  template void delta_rule_recurrent_fwd<Ti>(const RecurrenceDims&, const Ti*, const Ti*,          \
                                             const Ti*, const Ti*, const Ti*, const float*, Ti*,   \
                                             float*, cudaStream_t);                                \
  template void delta_rule_recurrent_bwd<Ti>(                                                      \
      const RecurrenceDims&, const Ti*, const Ti*, const Ti*, const Ti*, const Ti*, const float*,  \
      const Ti*, const float*, Ti*, Ti*, Ti*, Ti*, Ti*, float*, cudaStream_t);                     \
  template void delta_rule_decode_step<Ti>(const RecurrenceDims&, const Ti*, const Ti*, const Ti*, \
                                           const Ti*, const Ti*, float*, Ti*, cudaStream_t);       \
  template void linear_recurrence_recurrent_fwd<Ti>(const RecurrenceDims&, const Ti*, const Ti*,   \
                                                    const Ti*, const Ti*, const float*, Ti*,       \
                                                    float*, cudaStream_t);                         \
  template void linear_recurrence_recurrent_bwd<Ti>(                                               \
      const RecurrenceDims&, const Ti*, const Ti*, const Ti*, const Ti*, const float*, const Ti*,  \
      const float*, Ti*, Ti*, Ti*, Ti*, float*, cudaStream_t);
KIMI_INSTANTIATE(float)
KIMI_INSTANTIATE(__nv_bfloat16)
#undef KIMI_INSTANTIATE

}  // namespace kimi::cuda
