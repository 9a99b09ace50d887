// One decoding step of the delta rule on the GPU (T = 1, the state updated in place): a
// memory-bound kernel for K = 128, else the recurrent forward (delta_rule_recurrent.cu).
// Math: docs/math.md#mixers. Layout: delta_rule.cuh.
#include "core/cuda/delta_rule/delta_rule_recurrent.cuh"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda {
namespace {

using detail::ld;
using detail::Params;
using detail::st;

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

}  // namespace

template <class Ti>
void delta_rule_decode_step(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                            const Ti* g, const Ti* beta, float* state, Ti* o, cudaStream_t stream) {
  delta_rule_decode_step(d, q, k, v, g, beta, state, state, o, stream);
}

template <class Ti>
void delta_rule_decode_step(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                            const Ti* g, const Ti* beta, const float* h_in, float* h_out, Ti* o,
                            cudaStream_t stream) {
  KIMI_CUDA_REQUIRE(d.T == 1, "delta rule decode step: T must be 1");
  KIMI_CUDA_REQUIRE(beta != nullptr, "delta rule: beta is required");
  // Each thread reads its state columns before it writes them back: in place is safe.
  const Params<Ti> p = detail::recurrent_params(d, q, k, v, g, beta, h_in, o, h_out);
  if (p.K == kDecK && p.V % 4 == 0 && p.B * p.H > 0) {
    const dim3 grid(unsigned(detail::ceil_div(p.V, kDecCols)), unsigned(p.B * p.H));
    decode_k128_kernel<Ti><<<grid, kDecThreads, 0, stream>>>(p);
    KIMI_CUDA_CHECK_LAUNCH();
    return;
  }
  detail::launch_recurrent_fwd(p, stream);
}

template void delta_rule_decode_step<float>(const RecurrenceDims&, const float*, const float*,
                                            const float*, const float*, const float*, const float*,
                                            float*, float*, cudaStream_t);
template void delta_rule_decode_step<__nv_bfloat16>(const RecurrenceDims&, const __nv_bfloat16*,
                                                    const __nv_bfloat16*, const __nv_bfloat16*,
                                                    const __nv_bfloat16*, const __nv_bfloat16*,
                                                    const float*, float*, __nv_bfloat16*,
                                                    cudaStream_t);
template void delta_rule_decode_step<float>(const RecurrenceDims&, const float*, const float*,
                                            const float*, const float*, const float*, float*,
                                            float*, cudaStream_t);
template void delta_rule_decode_step<__nv_bfloat16>(const RecurrenceDims&, const __nv_bfloat16*,
                                                    const __nv_bfloat16*, const __nv_bfloat16*,
                                                    const __nv_bfloat16*, const __nv_bfloat16*,
                                                    float*, __nv_bfloat16*, cudaStream_t);

}  // namespace kimi::cuda
