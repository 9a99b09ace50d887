// Entry points of the CUDA attention (core/cuda/attention/attention.h): argument checks, the choice
// of kernel family (FMA for fp32 precision; tensor cores with bf16 or TF32 operands otherwise), the
// number of key splits for short query sets, and the small kernels around the main ones: the split
// combine, D_i = rowsum(dO * O) before the backward, and dQ's fp32 -> Ti at the end.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/cuda/attention/attention.h"
#include "core/cuda/attention/attention_kernels.cuh"
#include "core/cuda/runtime/allocator.h"

namespace kimi::cuda {
namespace attn {
namespace {

constexpr int kMaxSplits = 128;

// One block per (b, h, i) row: lse = log sum_z exp(lse_z), o = sum_z exp(lse_z - lse) o_z.
template <class Ti>
__global__ void combine_kernel(const float* o_part, const float* lse_part, Ti* o, float* lse,
                               int n_split, int Hq, int Tq, int Dv, int64_t rows) {
  const int64_t row = blockIdx.x;  // (b * Hq + h) * Tq + i
  __shared__ float w[kMaxSplits];
  __shared__ float lse_s;
  if (threadIdx.x == 0) {
    float mx = -INFINITY;
    for (int z = 0; z < n_split; ++z) mx = fmaxf(mx, lse_part[z * rows + row]);
    float sum = 0.f;
    for (int z = 0; z < n_split; ++z) sum += expf(lse_part[z * rows + row] - mx);
    lse_s = mx + logf(sum);  // some split always holds key 0, so mx is finite
  }
  __syncthreads();
  for (int z = threadIdx.x; z < n_split; z += blockDim.x)
    w[z] = expf(lse_part[z * rows + row] - lse_s);
  __syncthreads();
  const int64_t bh = row / Tq, i = row % Tq, b = bh / Hq, h = bh % Hq;
  Ti* dst = o + ((b * Tq + i) * Hq + h) * Dv;
  for (int c = threadIdx.x; c < Dv; c += blockDim.x) {
    float a = 0.f;
    for (int z = 0; z < n_split; ++z) a += w[z] * o_part[(z * rows + row) * Dv + c];
    st(dst + c, a);
  }
  if (threadIdx.x == 0) lse[row] = lse_s;
}

// One warp per (b, i, h) row of o: di[(b * Hq + h) * Tq + i] = sum_c do * o.
template <class Ti>
__global__ void di_kernel(const Ti* o, const Ti* do_, float* di, int Tq, int Hq, int Dv,
                          int64_t rows) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  float a = 0.f;
  for (int c = lane; c < Dv; c += 32) a += ld(o + row * Dv + c) * ld(do_ + row * Dv + c);
#pragma unroll
  for (int s = 16; s > 0; s >>= 1) a += __shfl_xor_sync(0xffffffffu, a, s);
  const int64_t h = row % Hq, bi = row / Hq, i = bi % Tq, b = bi / Tq;
  if (lane == 0) di[(b * Hq + h) * Tq + i] = a;
}

template <class Ts, class Td>
__global__ void convert_kernel(const Ts* src, Td* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    st(dst + i, ld(src + i));
}

int sm_count() {
  static const int n = [] {
    int dev = 0, c = 0;
    KIMI_CUDA_CHECK(cudaGetDevice(&dev));
    KIMI_CUDA_CHECK(cudaDeviceGetAttribute(&c, cudaDevAttrMultiProcessorCount, dev));
    return c;
  }();
  return n;
}

int grid_1d(int64_t n, int threads) {
  return static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, int64_t(sm_count()) * 16));
}

void check_dims(const AttentionDims& d) {
  KIMI_CUDA_REQUIRE(d.B >= 0 && d.Tq >= 0 && d.Hq > 0 && d.Hkv > 0, "attention: bad dims");
  KIMI_CUDA_REQUIRE(d.Hq % d.Hkv == 0, "attention: Hq must be a multiple of Hkv");
  KIMI_CUDA_REQUIRE(d.Tk >= d.Tq, "attention: causal needs Tk >= Tq");
  KIMI_CUDA_REQUIRE(d.D >= 1 && d.D <= 256 && d.Dv >= 1 && d.Dv <= 256,
                    "attention: the CUDA kernels take head dims 1..256");
  KIMI_CUDA_REQUIRE(d.Tk < (int64_t(1) << 31) && d.B * d.Hq < (int64_t(1) << 31),
                    "attention: sizes past 2^31");
}

template <class Ts, class Td>
void convert(const Ts* src, Td* dst, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  convert_kernel<Ts, Td><<<grid_1d(n, 256), 256, 0, stream>>>(src, dst, n);
  KIMI_CUDA_CHECK_LAUNCH();
}

// A bf16 copy of n floats (a workspace from the caching allocator).
Buffer to_bf16(const float* src, int64_t n, cudaStream_t stream) {
  Buffer b(size_t(n) * sizeof(bf16));
  convert(src, b.as<bf16>(), n, stream);
  return b;
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// 16-byte vector loads need rows of whole chunks (8 bf16 or 4 fp32 in shared memory) that
// start on 16-byte boundaries.
template <class Ti>
bool vec_ok(int64_t dim, bool bf16_ops, const void* a, const void* b) {
  const int64_t chunk = bf16_ops ? 8 : 4;
  return dim % chunk == 0 && (dim * int64_t(sizeof(Ti))) % 16 == 0 && aligned16(a) && aligned16(b);
}

template <class Ti>
Params<Ti> make_params(const AttentionDims& d, const Ti* q, const Ti* k, const Ti* v) {
  Params<Ti> p{};
  p.q = q, p.k = k, p.v = v;
  p.B = int(d.B), p.Tq = int(d.Tq), p.Tk = int(d.Tk), p.Hq = int(d.Hq), p.Hkv = int(d.Hkv);
  p.D = int(d.D), p.Dv = int(d.Dv), p.group = int(d.Hq / d.Hkv), p.off = int(d.Tk - d.Tq);
  p.scale = float(d.scale);
  p.scale_log2 = float(d.scale * 1.4426950408889634);
  p.n_split = 1;
  return p;
}

// FMA for fp32 precision; bf16 operands for BF16 inputs or bf16 precision; TF32 otherwise.
enum class Path { kFma, kBf16, kTf32 };
template <class Ti>
Path path_of(ComputePrecision prec) {
  if (prec == ComputePrecision::kFP32) return Path::kFma;
  if (std::is_same_v<Ti, bf16> || prec == ComputePrecision::kBF16) return Path::kBf16;
  return Path::kTf32;
}

}  // namespace
}  // namespace attn

template <class Ti>
void causal_attention_fwd(const AttentionDims& d, const Ti* q, const Ti* k, const Ti* v, Ti* o,
                          float* lse, ComputePrecision prec, cudaStream_t stream, int num_splits) {
  using namespace attn;
  check_dims(d);
  if (d.B == 0 || d.Tq == 0) return;
  const Path path = path_of<Ti>(prec);
  const bool bf16_ops = path == Path::kBf16;
  if constexpr (std::is_same_v<Ti, float>) {
    if (bf16_ops) {  // bf16 copies in, the bf16 kernels, o back to fp32
      const int64_t nq = d.B * d.Tq * d.Hq, nk = d.B * d.Tk * d.Hkv;
      Buffer qb = to_bf16(q, nq * d.D, stream), kb = to_bf16(k, nk * d.D, stream),
             vb = to_bf16(v, nk * d.Dv, stream), ob(size_t(nq * d.Dv) * sizeof(bf16));
      causal_attention_fwd<bf16>(d, qb.as<bf16>(), kb.as<bf16>(), vb.as<bf16>(), ob.as<bf16>(), lse,
                                 prec, stream, num_splits);
      convert(ob.as<bf16>(), o, nq * d.Dv, stream);
      return;
    }
  }
  Params<Ti> p = make_params(d, q, k, v);
  p.out = o, p.lse = lse;
  p.vec_qk = vec_ok<Ti>(d.D, bf16_ops, q, k);
  p.vec_v = vec_ok<Ti>(d.Dv, bf16_ops, v, v);
  const int bq = path == Path::kFma ? kFmaFwdBq : kMmaFwdBq;
  const int bk = path == Path::kFma ? kFmaFwdBk : kMmaFwdBk;
  const int64_t nqb = (d.Tq + bq - 1) / bq, ntk = (d.Tk + bk - 1) / bk;
  // Split the keys when (query blocks x heads) leave SMs idle: about four blocks per SM (more
  // loads in flight for the memory-bound decoding case), each split at least two key tiles.
  int64_t ns = num_splits;
  if (ns <= 0) {
    const int64_t base = nqb * d.B * d.Hq;
    ns = base >= sm_count() ? 1 : std::min<int64_t>((4 * sm_count() + base - 1) / base, ntk / 2);
  }
  ns = std::clamp<int64_t>(ns, 1, std::min<int64_t>(ntk, kMaxSplits));
  const int64_t tps = (ntk + ns - 1) / ns;
  ns = (ntk + tps - 1) / tps;
  p.n_split = int(ns);
  p.tiles_per_split = int(tps);
  const int64_t rows = d.B * d.Hq * d.Tq;
  Buffer o_part, lse_part;
  if (ns > 1) {
    o_part = Buffer(size_t(ns * rows * d.Dv) * sizeof(float));
    lse_part = Buffer(size_t(ns * rows) * sizeof(float));
    p.o_part = o_part.as<float>();
    p.lse_part = lse_part.as<float>();
  }
  if (path == Path::kFma)
    launch_fwd_fma(p, stream);
  else
    launch_fwd_mma<Ti, Ti>(p, stream);  // bf16 operands for bf16, TF32 for float
  if (ns > 1) {
    combine_kernel<Ti><<<static_cast<unsigned>(rows), 128, 0, stream>>>(
        p.o_part, p.lse_part, o, lse, p.n_split, p.Hq, p.Tq, p.Dv, rows);
    KIMI_CUDA_CHECK_LAUNCH();
  }
}

template <class Ti>
void causal_attention_bwd(const AttentionDims& d, const Ti* q, const Ti* k, const Ti* v,
                          const Ti* o, const float* lse, const Ti* do_, Ti* dq, Ti* dk, Ti* dv,
                          ComputePrecision prec, cudaStream_t stream) {
  using namespace attn;
  check_dims(d);
  if (d.B == 0) return;
  if (d.Tq == 0) {  // no query sees any key
    KIMI_CUDA_CHECK(cudaMemsetAsync(dk, 0, size_t(d.B * d.Tk * d.Hkv * d.D) * sizeof(Ti), stream));
    KIMI_CUDA_CHECK(cudaMemsetAsync(dv, 0, size_t(d.B * d.Tk * d.Hkv * d.Dv) * sizeof(Ti), stream));
    return;
  }
  const Path path = path_of<Ti>(prec);
  const bool bf16_ops = path == Path::kBf16;
  if constexpr (std::is_same_v<Ti, float>) {
    if (bf16_ops) {  // as in the forward: bf16 copies in, gradients back to fp32
      const int64_t nq = d.B * d.Tq * d.Hq, nk = d.B * d.Tk * d.Hkv;
      Buffer qb = to_bf16(q, nq * d.D, stream), kb = to_bf16(k, nk * d.D, stream),
             vb = to_bf16(v, nk * d.Dv, stream), ob = to_bf16(o, nq * d.Dv, stream),
             dob = to_bf16(do_, nq * d.Dv, stream);
      Buffer dqb(size_t(nq * d.D) * sizeof(bf16)), dkb(size_t(nk * d.D) * sizeof(bf16)),
          dvb(size_t(nk * d.Dv) * sizeof(bf16));
      causal_attention_bwd<bf16>(d, qb.as<bf16>(), kb.as<bf16>(), vb.as<bf16>(), ob.as<bf16>(), lse,
                                 dob.as<bf16>(), dqb.as<bf16>(), dkb.as<bf16>(), dvb.as<bf16>(),
                                 prec, stream);
      convert(dqb.as<bf16>(), dq, nq * d.D, stream);
      convert(dkb.as<bf16>(), dk, nk * d.D, stream);
      convert(dvb.as<bf16>(), dv, nk * d.Dv, stream);
      return;
    }
  }
  Params<Ti> p = make_params(d, q, k, v);
  p.o = o, p.do_ = do_, p.dk = dk, p.dv = dv;
  p.lse = const_cast<float*>(lse);  // read only in the backward
  p.vec_qk = vec_ok<Ti>(d.D, bf16_ops, q, k);
  p.vec_v = vec_ok<Ti>(d.Dv, bf16_ops, v, do_);
  const int64_t rows = d.B * d.Tq * d.Hq, nq = rows * d.D;
  Buffer di(size_t(rows) * sizeof(float)), dq_acc(size_t(nq) * sizeof(float));
  p.di = di.as<float>();
  p.dq_acc = dq_acc.as<float>();
  KIMI_CUDA_CHECK(cudaMemsetAsync(p.dq_acc, 0, size_t(nq) * sizeof(float), stream));
  di_kernel<Ti><<<static_cast<unsigned>((rows + 3) / 4), 128, 0, stream>>>(o, do_, di.as<float>(),
                                                                           p.Tq, p.Hq, p.Dv, rows);
  KIMI_CUDA_CHECK_LAUNCH();
  if (path == Path::kFma)
    launch_bwd_fma(p, stream);
  else
    launch_bwd_mma<Ti, Ti>(p, stream);
  convert(p.dq_acc, dq, nq, stream);
}

template void causal_attention_fwd<float>(const AttentionDims&, const float*, const float*,
                                          const float*, float*, float*, ComputePrecision,
                                          cudaStream_t, int);
template void causal_attention_fwd<attn::bf16>(const AttentionDims&, const attn::bf16*,
                                               const attn::bf16*, const attn::bf16*, attn::bf16*,
                                               float*, ComputePrecision, cudaStream_t, int);
template void causal_attention_bwd<float>(const AttentionDims&, const float*, const float*,
                                          const float*, const float*, const float*, const float*,
                                          float*, float*, float*, ComputePrecision, cudaStream_t);
template void causal_attention_bwd<attn::bf16>(const AttentionDims&, const attn::bf16*,
                                               const attn::bf16*, const attn::bf16*,
                                               const attn::bf16*, const float*, const attn::bf16*,
                                               attn::bf16*, attn::bf16*, attn::bf16*,
                                               ComputePrecision, cudaStream_t);

}  // namespace kimi::cuda
