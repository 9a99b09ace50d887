// Device helpers shared by the op kernels (elementwise, reduce, softmax, norm .cu files; not a
// public API): fp32 (fp64 for F64) compute on any storage type, dtype dispatch, launch sizing,
// dimension collapsing for strided views, and warp / row reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"
#include "core/cuda/runtime/copy.h"

namespace kimi::cuda::op_detail {

// Compute type: fp64 for F64 storage, fp32 for everything else (bf16 is a storage type).
template <class T>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};
template <class T>
using acc_t = typename AccOf<T>::type;

template <class A, class T>
__device__ __forceinline__ A to_acc(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return static_cast<A>(__bfloat162float(x));
  else if constexpr (std::is_same_v<T, __half>)
    return static_cast<A>(__half2float(x));
  else
    return static_cast<A>(x);
}
template <class T, class A>
__device__ __forceinline__ T from_acc(A x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __float2bfloat16(static_cast<float>(x));
  else
    return static_cast<T>(x);
}
template <class T>
__device__ __forceinline__ bool nonzero(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(x) != 0.f;
  else if constexpr (std::is_same_v<T, __half>)
    return __half2float(x) != 0.f;
  else
    return x != T(0);
}

// Math in the compute type (explicit overloads: no reliance on nvcc's implicit ones).
__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return log(x); }
__device__ __forceinline__ float m_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double m_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float m_pow(float x, float p) { return powf(x, p); }
__device__ __forceinline__ double m_pow(double x, double p) { return pow(x, p); }
__device__ __forceinline__ float m_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_abs(double x) { return fabs(x); }
template <class A>
__device__ __forceinline__ A neg_inf() {
  return -static_cast<A>(INFINITY);
}

// Calls f(T{}) for a float storage type: F32, F64 or BF16.
template <class F>
void dispatch_float(ElemType t, const char* what, F&& f) {
  switch (t) {
    case ElemType::kF32: f(float{}); return;
    case ElemType::kF64: f(double{}); return;
    case ElemType::kBF16: f(__nv_bfloat16{}); return;
    default: KIMI_CUDA_REQUIRE(false, what);
  }
}
// Calls f(T{}) for any element type (masks).
template <class F>
void dispatch_any(ElemType t, F&& f) {
  switch (t) {
    case ElemType::kF32: f(float{}); return;
    case ElemType::kF64: f(double{}); return;
    case ElemType::kBF16: f(__nv_bfloat16{}); return;
    case ElemType::kF16: f(__half{}); return;
    case ElemType::kI32: f(int32_t{}); return;
    case ElemType::kI64: f(int64_t{}); return;
  }
}
template <class F>
void dispatch_index(ElemType t, const char* what, F&& f) {
  switch (t) {
    case ElemType::kI32: f(int32_t{}); return;
    case ElemType::kI64: f(int64_t{}); return;
    default: KIMI_CUDA_REQUIRE(false, what);
  }
}

inline int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    KIMI_CUDA_CHECK(cudaGetDevice(&dev));
    KIMI_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
    return v > 0 ? v : 1;
  }();
  return n;
}
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
// Blocks for `work` items at `threads` per block: enough to fill the GPU a few times over; the
// kernels loop grid-stride over the rest.
inline unsigned grid_for(int64_t work, int threads) {
  const int64_t want = ceil_div(work, threads), cap = int64_t(sm_count()) * 8;
  return static_cast<unsigned>(want < 1 ? 1 : (want < cap ? want : cap));
}

// --- strided views ------------------------------------------------------------------------
// N operands sharing one logical shape. collapse() drops size-1 dims and merges neighbours that
// are contiguous with each other in every operand, so the common cases (a [B,T,D] + b [D])
// unravel 1-2 dims per element instead of the full rank.
template <int N>
struct Dims {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};

  void collapse() {
    int out = 0;
    for (int d = 0; d < ndim; ++d) {
      if (shape[d] == 1) continue;
      bool merge = out > 0;
      for (int k = 0; merge && k < N; ++k) merge = strides[k][out - 1] == strides[k][d] * shape[d];
      if (merge) {
        shape[out - 1] *= shape[d];
        for (int k = 0; k < N; ++k) strides[k][out - 1] = strides[k][d];
      } else {
        shape[out] = shape[d];
        for (int k = 0; k < N; ++k) strides[k][out] = strides[k][d];
        ++out;
      }
    }
    if (out == 0) {  // all size 1: one element
      shape[0] = 1;
      for (int k = 0; k < N; ++k) strides[k][0] = 0;
      out = 1;
    }
    ndim = out;
  }
  // True when every offset and the element count fit 32 bits (cheap index math).
  bool fits_u32() const {
    int64_t numel = 1;
    for (int d = 0; d < ndim; ++d) numel *= shape[d];
    if (numel >= (int64_t(1) << 31)) return false;
    for (int k = 0; k < N; ++k) {
      int64_t maxoff = 0;
      for (int d = 0; d < ndim; ++d) {
        if (strides[k][d] < 0) return false;
        maxoff += (shape[d] - 1) * strides[k][d];
      }
      if (maxoff >= (int64_t(1) << 31)) return false;
    }
    return true;
  }
};

// Device copy of Dims in the index type I; offsets(i) unravels row-major flat index i.
template <int N, class I>
struct Indexer {
  int ndim;
  I shape[kMaxDims];
  I strides[N][kMaxDims];

  static Indexer make(const Dims<N>& d) {
    Indexer x{};
    x.ndim = d.ndim;
    for (int i = 0; i < d.ndim; ++i) {
      x.shape[i] = static_cast<I>(d.shape[i]);
      for (int k = 0; k < N; ++k) x.strides[k][i] = static_cast<I>(d.strides[k][i]);
    }
    return x;
  }
  __device__ __forceinline__ void offsets(I i, I (&off)[N]) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d > 0; --d) {
      const I c = i % shape[d];
      i /= shape[d];
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += c * strides[k][d];
    }
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += i * strides[k][0];
  }
};

// --- reductions -------------------------------------------------------------------------------
struct SumOp {
  template <class A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    return a + b;
  }
};
struct MaxOp {  // NaN-ignoring like std::max(m, x) scanned from -inf
  template <class A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    return b > a ? b : a;
  }
};

template <class A, class Op>
__device__ __forceinline__ A warp_allreduce(A v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Row kernels run blocks of (TPR, RowsPerBlock<TPR>) threads: TPR threads share one row
// (threadIdx.y picks the row). 32 threads for short rows, up to 1024 for vocab-sized ones.
template <int TPR>
constexpr int kRowsPerBlock = TPR >= 256 ? 1 : 256 / TPR;

// Calls f(std::integral_constant<int, TPR>{}) with the row width for rows of length n.
template <class F>
void with_row_threads(int64_t n, F&& f) {
  if (n <= 512)
    f(std::integral_constant<int, 32>{});
  else if (n <= 8192)
    f(std::integral_constant<int, 256>{});
  else
    f(std::integral_constant<int, 1024>{});
}
template <int TPR>
unsigned row_grid(int64_t rows) {
  return grid_for(rows, kRowsPerBlock<TPR>);
}

// Reduces v over the TPR threads of this row; every one of them gets the result, combined in a
// fixed order (deterministic). Every thread of the block must call it (it may __syncthreads);
// smem holds 32 * blockDim.y values.
template <int TPR, class A, class Op>
__device__ __forceinline__ A row_allreduce(A v, Op op, A* smem) {
  v = warp_allreduce(v, op);
  if constexpr (TPR > 32) {
    constexpr int kWarps = TPR / 32;
    A* s = smem + threadIdx.y * 32;
    __syncthreads();  // the previous call's readers are done with smem
    if ((threadIdx.x & 31) == 0) s[threadIdx.x >> 5] = v;
    __syncthreads();
    v = s[0];
    for (int w = 1; w < kWarps; ++w) v = op(v, s[w]);
  }
  return v;
}

// Compensated running sum: a thread's serial sum of a long range stays at ~fp32 rounding.
template <class A>
struct Kahan {
  A sum = 0, c = 0;
  __device__ __forceinline__ void add(A v) {
    const A y = v - c;
    const A t = sum + y;
    c = (t - sum) - y;
    sum = t;
  }
};

// Splits a reduced range of length m into chunks (a second pass adds their partials in order)
// when `blocks` blocks, each with `lanes` threads along the range, would leave SMs idle; each
// thread still sums at least 32 elements of its chunk. At most 1024 chunks.
inline int64_t pick_chunks(int64_t blocks, int64_t m, int64_t lanes) {
  const int64_t want_blocks = 2 * int64_t(sm_count());
  if (blocks >= want_blocks) return 1;
  int64_t chunks = ceil_div(want_blocks, blocks);
  const int64_t by_work = ceil_div(m, lanes * 32);
  if (chunks > by_work) chunks = by_work;
  if (chunks > 1024) chunks = 1024;
  return chunks < 1 ? 1 : chunks;
}

}  // namespace kimi::cuda::op_detail
