// argmax / max backward / cumsum (reduce.h) over contiguous [outer, n, inner]. With inner == 1
// the reduced or scanned dim is contiguous: TPR threads (or a block) share a row. Otherwise one
// thread walks its column serially, neighbouring threads on neighbouring k (coalesced).
// cuda::sum lives in reduce_sum.cu.
#include "core/cuda/reduce/reduce.h"
#include "core/cuda/runtime/op_common.cuh"

namespace kimi::cuda {
namespace {

using namespace op_detail;

// (v, j) beats (w, k) when larger, or equal and earlier: the first argmax, as the CPU's scan.
template <class A>
__device__ __forceinline__ bool beats(A v, int64_t j, A w, int64_t k) {
  return v > w || (v == w && j < k);
}

template <int TPR, class A>
__device__ __forceinline__ void row_argmax_allreduce(A& v, int64_t& j, A* sv, int64_t* sj) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A w = __shfl_xor_sync(0xffffffffu, v, o);
    const int64_t k = __shfl_xor_sync(0xffffffffu, j, o);
    if (beats(w, k, v, j)) v = w, j = k;
  }
  if constexpr (TPR > 32) {
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sv[threadIdx.x >> 5] = v, sj[threadIdx.x >> 5] = j;
    __syncthreads();
    v = sv[0];
    j = sj[0];
    for (int w = 1; w < TPR / 32; ++w)
      if (beats(sv[w], sj[w], v, j)) v = sv[w], j = sj[w];
  }
}

constexpr int64_t kNoIndex = INT64_MAX;

template <class T, class Ix, int TPR>
__global__ void argmax_rows_kernel(int64_t rows, int64_t n, const T* __restrict__ x,
                                   T* __restrict__ values, Ix* __restrict__ index) {
  using A = acc_t<T>;
  constexpr int kRpb = kRowsPerBlock<TPR>;
  __shared__ A sv[32];
  __shared__ int64_t sj[32];
  for (int64_t r0 = int64_t(blockIdx.x) * kRpb; r0 < rows; r0 += int64_t(gridDim.x) * kRpb) {
    const int64_t row = r0 + threadIdx.y;
    A v = neg_inf<A>();
    int64_t j = kNoIndex;
    if (row < rows) {
      const T* xr = x + row * n;
      for (int64_t c = threadIdx.x; c < n; c += TPR) {
        const A w = to_acc<A>(xr[c]);
        if (j == kNoIndex || w > v) v = w, j = c;
      }
    }
    row_argmax_allreduce<TPR>(v, j, sv, sj);
    if (row < rows && threadIdx.x == 0) {
      const int64_t best = j == kNoIndex ? 0 : j;
      index[row] = static_cast<Ix>(best);
      if (values) values[row] = x[row * n + best];
    }
  }
}

template <class T, class Ix>
__global__ void argmax_cols_kernel(int64_t outer, int64_t n, int64_t inner, const T* __restrict__ x,
                                   T* __restrict__ values, Ix* __restrict__ index) {
  using A = acc_t<T>;
  const int64_t total = outer * inner;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < total;
       o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = o / inner, k = o % inner;
    const T* p = x + i * n * inner + k;
    int64_t best = 0;
    A bv = to_acc<A>(p[0]);
    for (int64_t j = 1; j < n; ++j) {
      const A w = to_acc<A>(p[j * inner]);
      if (w > bv) bv = w, best = j;
    }
    index[o] = static_cast<Ix>(best);
    if (values) values[o] = p[best * inner];
  }
}

template <class T>
__global__ void max_backward_kernel(int64_t outer, int64_t n, int64_t inner,
                                    const int64_t* __restrict__ index, const T* __restrict__ g,
                                    T* __restrict__ dx) {
  const int64_t total = outer * n * inner;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = e % inner, t = e / inner;
    const int64_t j = t % n, o = (t / n) * inner + k;
    dx[e] = index[o] == j ? g[o] : from_acc<T>(acc_t<T>(0));
  }
}

// One block of kScanThreads per row, kScanItems consecutive elements per thread per tile; the
// running carry crosses tiles. Element jj of the scan order is position reverse ? n-1-jj : jj.
constexpr int kScanThreads = 256, kScanItems = 4, kScanTile = kScanThreads * kScanItems;

template <class T>
__global__ void cumsum_rows_kernel(int64_t rows, int64_t n, const T* __restrict__ x,
                                   T* __restrict__ y, bool reverse) {
  using A = acc_t<T>;
  __shared__ A warp_total[kScanThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    A carry = 0;
    for (int64_t t0 = 0; t0 < n; t0 += kScanTile) {
      A v[kScanItems];
      A local = 0;
#pragma unroll
      for (int k = 0; k < kScanItems; ++k) {
        const int64_t jj = t0 + threadIdx.x * kScanItems + k;
        if (jj < n) local += to_acc<A>(xr[reverse ? n - 1 - jj : jj]);
        v[k] = local;
      }
      A incl = local;  // inclusive scan of the thread totals within the warp
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const A u = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += u;
      }
      A excl_in_warp = __shfl_up_sync(0xffffffffu, incl, 1);
      if (lane == 0) excl_in_warp = 0;
      if (lane == 31) warp_total[warp] = incl;
      __syncthreads();
      A before = 0, tile = 0;
      for (int w = 0; w < kScanThreads / 32; ++w) {
        if (w < warp) before += warp_total[w];
        tile += warp_total[w];
      }
      const A excl = carry + before + excl_in_warp;
#pragma unroll
      for (int k = 0; k < kScanItems; ++k) {
        const int64_t jj = t0 + threadIdx.x * kScanItems + k;
        if (jj < n) yr[reverse ? n - 1 - jj : jj] = from_acc<T>(excl + v[k]);
      }
      carry += tile;
      __syncthreads();  // warp_total is rewritten by the next tile
    }
  }
}

template <class T>
__global__ void cumsum_cols_kernel(int64_t outer, int64_t n, int64_t inner, const T* __restrict__ x,
                                   T* __restrict__ y, bool reverse) {
  using A = acc_t<T>;
  const int64_t total = outer * inner;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < total;
       o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = (o / inner) * n * inner + o % inner;
    A acc = 0;
    for (int64_t jj = 0; jj < n; ++jj) {
      const int64_t at = base + (reverse ? n - 1 - jj : jj) * inner;
      acc += to_acc<A>(x[at]);
      y[at] = from_acc<T>(acc);
    }
  }
}

}  // namespace

void argmax(ElemType t, int64_t outer, int64_t n, int64_t inner, const void* x, void* values,
            ElemType index_type, void* index) {
  KIMI_CUDA_REQUIRE(n >= 1, "argmax over an empty dim");
  const int64_t total = outer * inner;
  if (total == 0) return;
  dispatch_float(t, "argmax: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    dispatch_index(index_type, "argmax: index I32 or I64", [&](auto itag) {
      using Ix = decltype(itag);
      const T* px = static_cast<const T*>(x);
      T* pv = static_cast<T*>(values);
      Ix* pi = static_cast<Ix*>(index);
      if (inner == 1) {
        with_row_threads(n, [&](auto tpr) {
          constexpr int TPR = decltype(tpr)::value;
          argmax_rows_kernel<T, Ix, TPR>
              <<<row_grid<TPR>(total), dim3(TPR, kRowsPerBlock<TPR>), 0, stream()>>>(total, n, px,
                                                                                     pv, pi);
        });
      } else {
        argmax_cols_kernel<T, Ix>
            <<<grid_for(total, 256), 256, 0, stream()>>>(outer, n, inner, px, pv, pi);
      }
    });
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

void max_backward(ElemType t, int64_t outer, int64_t n, int64_t inner, const int64_t* index,
                  const void* g, void* dx) {
  const int64_t total = outer * n * inner;
  if (total == 0) return;
  dispatch_float(t, "max_backward: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    max_backward_kernel<T><<<grid_for(total, 256), 256, 0, stream()>>>(
        outer, n, inner, index, static_cast<const T*>(g), static_cast<T*>(dx));
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

void cumsum(ElemType t, int64_t outer, int64_t n, int64_t inner, const void* x, void* y,
            bool reverse) {
  if (outer * n * inner == 0) return;
  dispatch_float(t, "cumsum: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    const T* px = static_cast<const T*>(x);
    T* py = static_cast<T*>(y);
    if (inner == 1)
      cumsum_rows_kernel<T>
          <<<grid_for(outer, 1), kScanThreads, 0, stream()>>>(outer, n, px, py, reverse);
    else
      cumsum_cols_kernel<T>
          <<<grid_for(outer * inner, 256), 256, 0, stream()>>>(outer, n, inner, px, py, reverse);
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::cuda
