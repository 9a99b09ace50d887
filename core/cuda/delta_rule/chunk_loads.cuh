// Loading a chunk's rows of a [B,T,H,D] tensor into fp32 shared memory for the chunk kernels
// (not a public API). Rows of D elements are read as 16-byte vectors (8 bf16 or 4 fp32), each
// thread holding up to kSlots vectors in registers between issue() and commit(): all loads are
// in flight at once, and a kernel can issue the next chunk's loads before it computes on the
// current one (register double buffering). Tensors whose rows are not whole vectors (D not a
// multiple of the vector width) take the scalar path of load_rows().
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "core/cuda/delta_rule/delta_rule_common.cuh"

namespace kimi::cuda::detail {

template <class Ti>
constexpr int kVecWidth = 16 / sizeof(Ti);

// Where rows [0, L) x columns [col0, col0 + kDP) of one head of a chunk come from; the shared
// tile is kRows x kDP (row stride lds), zero outside the tensor (rows >= L, columns >= D).
// The tile width kDP is a template argument, so every index split is a shift.
struct RowsSpec {
  int64_t row0;    // element offset of the chunk's first row, column 0
  int64_t stride;  // elements between rows (H * D)
  int L, D, col0;
};

template <class Ti>
__host__ __device__ inline bool vec_ok(int D, int col0) {
  return D % kVecWidth<Ti> == 0 && col0 % kVecWidth<Ti> == 0;
}

template <class Ti>
__device__ __forceinline__ void store_vec(float* dst, const uint4& r) {
  if constexpr (sizeof(Ti) == 2) {
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&r);
    const float2 a = __bfloat1622float2(h[0]), b = __bfloat1622float2(h[1]);
    const float2 c = __bfloat1622float2(h[2]), d = __bfloat1622float2(h[3]);
    reinterpret_cast<float4*>(dst)[0] = make_float4(a.x, a.y, b.x, b.y);
    reinterpret_cast<float4*>(dst)[1] = make_float4(c.x, c.y, d.x, d.y);
  } else {
    *reinterpret_cast<float4*>(dst) = *reinterpret_cast<const float4*>(&r);
  }
}

// kSlots vectors per thread: vector e = round * kSlots * blockDim + u * blockDim + tid.
template <class Ti, int kRows, int kDP, int kSlots>
struct RowsPrefetch {
  uint4 r[kSlots];

  __device__ __forceinline__ void issue(const Ti* src, const RowsSpec& s, int round = 0) {
    constexpr int VW = kVecWidth<Ti>;
    constexpr int nv = kDP / VW, total = kRows * nv;
#pragma unroll
    for (int u = 0; u < kSlots; ++u) {
      const int e = (round * kSlots + u) * int(blockDim.x) + int(threadIdx.x);
      const int i = e / nv, c = (e % nv) * VW;
      if (e < total && i < s.L && s.col0 + c < s.D)
        r[u] = __ldg(reinterpret_cast<const uint4*>(src + s.row0 + i * s.stride + s.col0 + c));
      else
        r[u] = make_uint4(0, 0, 0, 0);
    }
  }
  __device__ __forceinline__ void commit(float* dst, int lds, const RowsSpec& s, int round = 0) {
    constexpr int VW = kVecWidth<Ti>;
    constexpr int nv = kDP / VW, total = kRows * nv;
#pragma unroll
    for (int u = 0; u < kSlots; ++u) {
      const int e = (round * kSlots + u) * int(blockDim.x) + int(threadIdx.x);
      if (e < total) store_vec<Ti>(dst + (e / nv) * lds + (e % nv) * VW, r[u]);
    }
  }
  // True when one issue() covers the whole tile.
  __host__ __device__ static constexpr bool fits(int threads) {
    return kRows * (kDP / kVecWidth<Ti>) <= kSlots * threads;
  }
};

// Synchronous load of a tile: vector rounds of 4 slots, or scalar loads in batches of 8.
template <class Ti, int kRows, int kDP>
__device__ void load_rows(float* dst, int lds, const Ti* src, const RowsSpec& s) {
  if (vec_ok<Ti>(s.D, s.col0)) {
    constexpr int total = kRows * (kDP / kVecWidth<Ti>);
    const int rounds = (total + 4 * int(blockDim.x) - 1) / (4 * int(blockDim.x));
    for (int round = 0; round < rounds; ++round) {
      RowsPrefetch<Ti, kRows, kDP, 4> p;
      p.issue(src, s, round);
      p.commit(dst, lds, s, round);
    }
    return;
  }
  constexpr int total = kRows * kDP;
  for (int base = 0; base < total; base += 8 * int(blockDim.x)) {
    float x[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const int e = base + u * int(blockDim.x) + int(threadIdx.x), i = e / kDP, c = e % kDP;
      x[u] = (e < total && i < s.L && s.col0 + c < s.D)
                 ? ld(src + s.row0 + i * s.stride + s.col0 + c)
                 : 0.f;
    }
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const int e = base + u * int(blockDim.x) + int(threadIdx.x);
      if (e < total) dst[(e / kDP) * lds + e % kDP] = x[u];
    }
  }
}

}  // namespace kimi::cuda::detail

namespace kimi::cuda::detail {

// Writes rows [0, L) x columns [0, ncols) of values f(i, c) (fp32) to a [B,T,H,D] tensor at
// dst + row0 + i * stride + col0 + c, in 16-byte vectors when the rows are whole vectors,
// else element by element.
template <class Ti, class F>
__device__ void store_rows_fn(Ti* dst, int64_t row0, int64_t stride, int col0, int L, int ncols,
                              F&& f) {
  constexpr int VW = kVecWidth<Ti>;
  if (ncols % VW == 0 && col0 % VW == 0 && stride % VW == 0 && row0 % VW == 0) {
    const int nv = ncols / VW, total = L * nv;
    for (int e = threadIdx.x; e < total; e += blockDim.x) {
      const int i = e / nv, c = (e % nv) * VW;
      uint4 r;
      if constexpr (sizeof(Ti) == 2) {
        __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&r);
#pragma unroll
        for (int m = 0; m < 4; ++m)
          h[m] = __floats2bfloat162_rn(f(i, c + 2 * m), f(i, c + 2 * m + 1));
      } else {
        r = make_uint4(__float_as_uint(f(i, c)), __float_as_uint(f(i, c + 1)),
                       __float_as_uint(f(i, c + 2)), __float_as_uint(f(i, c + 3)));
      }
      *reinterpret_cast<uint4*>(dst + row0 + i * stride + col0 + c) = r;
    }
    return;
  }
  for (int e = threadIdx.x; e < L * ncols; e += blockDim.x) {
    const int i = e / ncols, c = e % ncols;
    st(dst + row0 + i * stride + col0 + c, f(i, c));
  }
}

// The same from a shared fp32 tile (row stride lds).
template <class Ti>
__device__ void store_rows(Ti* dst, int64_t row0, int64_t stride, int col0, int L, int ncols,
                           const float* src, int lds) {
  store_rows_fn(dst, row0, stride, col0, L, ncols, [&](int i, int c) { return src[i * lds + c]; });
}

}  // namespace kimi::cuda::detail
