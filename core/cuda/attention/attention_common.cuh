// Helpers shared by the attention kernels (not a public API): the parameter block, element
// loads/stores in fp32 whatever the storage type, cp.async, and the tile loader that stages
// rows of q/k/v/do into shared memory (zero beyond the sequence and beyond the head dim, so
// padded tiles and tail tiles contribute exact zeros, never stale NaNs).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace kimi::cuda::attn {

using bf16 = __nv_bfloat16;

template <class Ti>
struct Params {
  const Ti *q, *k, *v, *o, *do_;  // o, do_: backward only
  Ti *out, *dk, *dv;              // out: the forward's o
  float* lse;                     // forward: written; backward: read
  const float* di;                // backward: D_i = do_i . o_i, [B,Hq,Tq]
  float* dq_acc;                  // backward: dQ (already scaled) in fp32, [B,Tq,Hq,D]
  float *o_part, *lse_part;  // forward with key splits: [n_split,B,Hq,Tq,Dv], [n_split,B,Hq,Tq]
  int B, Tq, Tk, Hq, Hkv, D, Dv, group, off;  // off = Tk - Tq: query i sits at i + off
  float scale, scale_log2;                    // scale_log2 = scale * log2(e)
  int n_split, tiles_per_split;               // key tiles per split (forward)
  bool vec_qk, vec_v;                         // 16-byte vector loads are valid (alignment)

  __device__ __forceinline__ int64_t q_row(int b, int i, int h) const {
    return ((int64_t(b) * Tq + i) * Hq + h) * D;
  }
  __device__ __forceinline__ int64_t o_row(int b, int i, int h) const {
    return ((int64_t(b) * Tq + i) * Hq + h) * Dv;
  }
  __device__ __forceinline__ int64_t k_row(int b, int j, int hk) const {
    return ((int64_t(b) * Tk + j) * Hkv + hk) * D;
  }
  __device__ __forceinline__ int64_t v_row(int b, int j, int hk) const {
    return ((int64_t(b) * Tk + j) * Hkv + hk) * Dv;
  }
  __device__ __forceinline__ int64_t lse_idx(int b, int h, int i) const {
    return (int64_t(b) * Hq + h) * Tq + i;
  }
};

template <class T>
__device__ __forceinline__ float ld(const T* p) {
  if constexpr (std::is_same_v<T, bf16>)
    return __bfloat162float(*p);
  else
    return static_cast<float>(*p);
}
template <class T>
__device__ __forceinline__ void st(T* p, float x) {
  if constexpr (std::is_same_v<T, bf16>)
    *p = __float2bfloat16(x);
  else
    *p = x;
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// R rows x kCols columns of Op into shared memory (row stride lds elements) from `src` (row 0 of
// the tile; rows `row_stride` elements apart). Rows >= rows_valid and columns >= dim are zero.
// vec: Ti == Op copies go by cp.async 16 bytes at a time (dim a multiple of the chunk, rows
// 16-byte aligned); float -> bf16 by two float4 loads; otherwise element by element.
template <int R, int kCols, int kThreads, class Op, class Ti>
__device__ __forceinline__ void load_tile(Op* s, int lds, const Ti* src, int64_t row_stride,
                                          int rows_valid, int dim, bool vec) {
  constexpr int kCE = 16 / sizeof(Op);  // elements per 16-byte chunk of shared memory
  constexpr int kCPR = kCols / kCE;
  static_assert(kCols % kCE == 0, "tile width");
  for (int c = threadIdx.x; c < R * kCPR; c += kThreads) {
    const int r = c / kCPR, col = (c % kCPR) * kCE;
    Op* dst = s + r * lds + col;
    const Ti* g = src + r * row_stride + col;
    if (r >= rows_valid || col >= dim) {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
    } else if constexpr (std::is_same_v<Ti, Op>) {
      if (vec) {
        cp_async16(dst, g);
      } else {
#pragma unroll
        for (int e = 0; e < kCE; ++e) dst[e] = col + e < dim ? g[e] : Op(0.f);
      }
    } else {
      float x[kCE];
      if (vec && sizeof(Ti) == 4) {
#pragma unroll
        for (int e = 0; e < kCE; e += 4) {
          const float4 f = __ldg(reinterpret_cast<const float4*>(g + e));
          x[e] = f.x, x[e + 1] = f.y, x[e + 2] = f.z, x[e + 3] = f.w;
        }
      } else {
#pragma unroll
        for (int e = 0; e < kCE; ++e) x[e] = col + e < dim ? ld(g + e) : 0.f;
      }
#pragma unroll
      for (int e = 0; e < kCE; ++e) st(dst + e, x[e]);
    }
  }
}

// The head-dim variants the mma kernels are compiled for: the smallest tile that holds (D, Dv),
// the rest of it zero padding. Calls f(kD, kDv) with std::integral_constant arguments; the one
// ladder for the forward and the backward (the op refuses D or Dv > 256 before any launch).
template <class F>
void with_head_tile(int64_t D, int64_t Dv, F&& f) {
  using std::integral_constant;
  if (D <= 32 && Dv <= 32)
    f(integral_constant<int, 32>{}, integral_constant<int, 32>{});
  else if (D <= 64 && Dv <= 64)
    f(integral_constant<int, 64>{}, integral_constant<int, 64>{});
  else if (D <= 128 && Dv <= 128)
    f(integral_constant<int, 128>{}, integral_constant<int, 128>{});
  else if (D <= 192 && Dv <= 128)
    f(integral_constant<int, 192>{}, integral_constant<int, 128>{});
  else
    f(integral_constant<int, 256>{}, integral_constant<int, 256>{});
}

}  // namespace kimi::cuda::attn
