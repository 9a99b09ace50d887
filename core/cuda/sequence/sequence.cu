// Kernels of core/cuda/sequence/sequence.h. Elementwise-shaped work runs one thread per output
// element (channel d fastest, so warps read and write contiguous memory) in a grid-stride loop.
// Reductions over rows (bias gradients, the conv weight gradient) run in two passes: blocks of
// 32 columns x 8 row lanes sum a slab of rows each into fp32 partials, then one pass sums the
// partials; no atomics there, so those sums are deterministic.
#include <cuda_bf16.h>

#include <algorithm>
#include <type_traits>

#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"
#include "core/cuda/runtime/elem_access.cuh"
#include "core/cuda/sequence/sequence.h"

namespace kimi::cuda {
namespace {

using namespace elem;
constexpr int kColTile = 32, kRowLanes = 8;  // reduction blocks: (kColTile, kRowLanes)
constexpr int64_t kMinRowsPerSlab = 256, kMaxSlabs = 1024;

// Calls f(T{}) for the float element types.
template <class F>
void dispatch(ElemType t, const char* what, F&& f) {
  switch (t) {
    case ElemType::kF32: f(float{}); break;
    case ElemType::kBF16: f(__nv_bfloat16{}); break;
    case ElemType::kF64: f(double{}); break;
    default: KIMI_CUDA_REQUIRE(false, what);
  }
}
template <class F>
void dispatch_id(ElemType t, const char* what, F&& f) {
  switch (t) {
    case ElemType::kI32: f(int32_t{}); break;
    case ElemType::kI64: f(int64_t{}); break;
    default: KIMI_CUDA_REQUIRE(false, what);
  }
}

// Slabs of rows for the two-pass reductions: enough blocks to fill the GPU, few partials.
int64_t slab_count(int64_t rows) {
  return std::max<int64_t>(1, std::min(kMaxSlabs, (rows + kMinRowsPerSlab - 1) / kMinRowsPerSlab));
}

// ---------------------------------------------------------------------------------------------
// Row helpers

template <class T>
__global__ void broadcast_rows_kernel(int64_t rows, int64_t cols, const T* row, T* out) {
  KIMI_GRID_STRIDE(i, rows * cols) out[i] = row[i % cols];
}

// out[slab * cols + c] = sum of x[r, c] over the rows of slab blockIdx.y (rows_per_slab each).
template <class Tin, class Tout>
__global__ void column_sum_kernel(int64_t rows, int64_t cols, int64_t rows_per_slab, const Tin* x,
                                  Tout* out) {
  using A = acc_t<Tout>;
  __shared__ A part[kRowLanes][kColTile + 1];
  const int64_t c = blockIdx.x * static_cast<int64_t>(kColTile) + threadIdx.x;
  const int64_t r0 = blockIdx.y * rows_per_slab, r1 = min(rows, r0 + rows_per_slab);
  A a = 0;
  if (c < cols)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) a += ld(x + r * cols + c);
  part[threadIdx.y][threadIdx.x] = a;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int k = 1; k < kRowLanes; ++k) a += part[k][threadIdx.x];
    st(out + blockIdx.y * cols + c, a);
  }
}

// ---------------------------------------------------------------------------------------------
// causal_conv1d. Padded time i in [0, T+W-1): i < W-1 is the prefix (or zero), else x[i-W+1].

template <class T>
__device__ __forceinline__ acc_t<T> xpad_at(const T* x, const T* prefix, int64_t b, int64_t i,
                                            int64_t d, int64_t Tn, int64_t D, int64_t W) {
  if (i >= W - 1) return ld(x + (b * Tn + i - (W - 1)) * D + d);
  return prefix ? ld(prefix + (b * (W - 1) + i) * D + d) : acc_t<T>(0);
}

template <class T>
__global__ void conv_fwd_kernel(int64_t B, int64_t Tn, int64_t D, int64_t W, const T* x, const T* w,
                                const T* bias, const T* prefix, T* y) {
  KIMI_GRID_STRIDE(idx, B * Tn * D) {
    const int64_t d = idx % D, bt = idx / D, t = bt % Tn, b = bt / Tn;
    acc_t<T> a = bias ? ld(bias + d) : acc_t<T>(0);
    for (int64_t j = 0; j < W; ++j)
      a += ld(w + d * W + j) * xpad_at(x, prefix, b, t + j, d, Tn, D, W);
    st(y + idx, a);
  }
}

// dxpad[b,i,d] = sum_{j<W, 0<=i-j<T} w[d,j] dy[b,i-j,d]; i >= W-1 goes to dx, the rest to dprefix.
template <class T>
__global__ void conv_bwd_input_kernel(int64_t B, int64_t Tn, int64_t D, int64_t W, const T* dy,
                                      const T* w, T* dx, T* dprefix) {
  const int64_t L = Tn + W - 1;
  KIMI_GRID_STRIDE(idx, B * L * D) {
    const int64_t d = idx % D, bi = idx / D, i = bi % L, b = bi / L;
    if (i < W - 1 && !dprefix) continue;
    acc_t<T> a = 0;
    for (int64_t j = 0; j < W; ++j) {
      const int64_t t = i - j;
      if (t >= 0 && t < Tn) a += ld(w + d * W + j) * ld(dy + (b * Tn + t) * D + d);
    }
    if (i >= W - 1)
      st(dx + (b * Tn + i - (W - 1)) * D + d, a);
    else
      st(dprefix + (b * (W - 1) + i) * D + d, a);
  }
}

// Partials of the weight and bias gradients over one slab of rows r = b*T + t:
//   part[slab][j][d] = sum_r dy[r,d] xpad[b,t+j,d] for j < W, and part[slab][W][d] = sum_r dy[r,d]
// (blockIdx.z = j; z = W only when there is a bias).
template <class T>
__global__ void conv_bwd_weight_kernel(int64_t B, int64_t Tn, int64_t D, int64_t W,
                                       int64_t rows_per_slab, const T* dy, const T* x,
                                       const T* prefix, acc_t<T>* part) {
  using A = acc_t<T>;
  __shared__ A sh[kRowLanes][kColTile + 1];
  const int64_t d = blockIdx.x * static_cast<int64_t>(kColTile) + threadIdx.x, j = blockIdx.z;
  const int64_t r0 = blockIdx.y * rows_per_slab, r1 = min(B * Tn, r0 + rows_per_slab);
  A a = 0;
  if (d < D)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) {
      const A g = ld(dy + r * D + d);
      a += j < W ? g * xpad_at(x, prefix, r / Tn, r % Tn + j, d, Tn, D, W) : g;
    }
  sh[threadIdx.y][threadIdx.x] = a;
  __syncthreads();
  if (threadIdx.y == 0 && d < D) {
    for (int k = 1; k < kRowLanes; ++k) a += sh[k][threadIdx.x];
    part[(blockIdx.y * (W + 1) + j) * D + d] = a;
  }
}

// dw[d,j] = sum over slabs of part[slab][j][d]; dbias[d] from j = W.
template <class T>
__global__ void conv_bwd_weight_finish_kernel(int64_t slabs, int64_t D, int64_t W,
                                              const acc_t<T>* part, T* dw, T* dbias) {
  const int64_t n = (dbias ? W + 1 : W) * D;
  KIMI_GRID_STRIDE(idx, n) {
    const int64_t d = idx % D, j = idx / D;
    acc_t<T> a = 0;
    for (int64_t s = 0; s < slabs; ++s) a += part[(s * (W + 1) + j) * D + d];
    if (j < W)
      st(dw + d * W + j, a);
    else
      st(dbias + d, a);
  }
}

// ---------------------------------------------------------------------------------------------
// embedding

template <class I>
__global__ void embedding_check_kernel(int64_t n, int64_t V, const I* ids,
                                       unsigned long long* first_bad) {
  KIMI_GRID_STRIDE(i, n) {
    const int64_t id = static_cast<int64_t>(ids[i]);
    if (id < 0 || id >= V) atomicMin(first_bad, static_cast<unsigned long long>(i));
  }
}

template <class T, class I>
__global__ void embedding_fwd_kernel(int64_t n, int64_t V, int64_t D, const I* ids, const T* weight,
                                     T* out) {
  KIMI_GRID_STRIDE(idx, n * D) {
    const int64_t id = static_cast<int64_t>(ids[idx / D]);
    if (id >= 0 && id < V) out[idx] = weight[id * D + idx % D];
  }
}

template <class T, class I>
__global__ void embedding_bwd_kernel(int64_t n, int64_t V, int64_t D, const I* ids, const T* dy,
                                     acc_t<T>* acc) {
  KIMI_GRID_STRIDE(idx, n * D) {
    const int64_t id = static_cast<int64_t>(ids[idx / D]);
    if (id >= 0 && id < V) atomicAdd(acc + id * D + idx % D, ld(dy + idx));
  }
}

}  // namespace

void broadcast_rows(ElemType t, int64_t rows, int64_t cols, const void* row, void* out) {
  if (rows * cols == 0) return;
  dispatch(t, "broadcast_rows: F32, BF16 or F64", [&](auto tag) {
    using T = decltype(tag);
    broadcast_rows_kernel<T><<<grid_for(rows * cols), kThreads, 0, stream()>>>(
        rows, cols, static_cast<const T*>(row), static_cast<T*>(out));
    KIMI_CUDA_CHECK_LAUNCH();
  });
}

void column_sum(ElemType t, int64_t rows, int64_t cols, const void* x, void* out) {
  if (cols == 0) return;
  dispatch(t, "column_sum: F32, BF16 or F64", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const dim3 block(kColTile, kRowLanes);
    const unsigned col_blocks = static_cast<unsigned>((cols + kColTile - 1) / kColTile);
    const int64_t slabs = slab_count(rows), per = (rows + slabs - 1) / slabs;
    if (slabs == 1) {  // rows == 0 lands here too and writes zeros
      column_sum_kernel<T, T><<<dim3(col_blocks, 1), block, 0, stream()>>>(
          rows, cols, std::max<int64_t>(rows, 1), static_cast<const T*>(x), static_cast<T*>(out));
      KIMI_CUDA_CHECK_LAUNCH();
      return;
    }
    Buffer part(static_cast<size_t>(slabs * cols) * sizeof(A));
    column_sum_kernel<T, A><<<dim3(col_blocks, static_cast<unsigned>(slabs)), block, 0, stream()>>>(
        rows, cols, per, static_cast<const T*>(x), part.as<A>());
    KIMI_CUDA_CHECK_LAUNCH();
    column_sum_kernel<A, T><<<dim3(col_blocks, 1), block, 0, stream()>>>(
        slabs, cols, slabs, part.as<A>(), static_cast<T*>(out));
    KIMI_CUDA_CHECK_LAUNCH();
  });
}

void causal_conv1d_fwd(ElemType t, int64_t B, int64_t T, int64_t D, int64_t W, const void* x,
                       const void* w, const void* bias, const void* prefix, void* y) {
  if (B * T * D == 0) return;
  dispatch(t, "causal_conv1d: F32, BF16 or F64", [&](auto tag) {
    using E = decltype(tag);
    conv_fwd_kernel<E><<<grid_for(B * T * D), kThreads, 0, stream()>>>(
        B, T, D, W, static_cast<const E*>(x), static_cast<const E*>(w), static_cast<const E*>(bias),
        static_cast<const E*>(prefix), static_cast<E*>(y));
    KIMI_CUDA_CHECK_LAUNCH();
  });
}

void causal_conv1d_bwd(ElemType t, int64_t B, int64_t T, int64_t D, int64_t W, const void* dy,
                       const void* x, const void* w, const void* prefix, void* dx, void* dw,
                       void* dbias, void* dprefix) {
  if (D == 0) return;
  dispatch(t, "causal_conv1d: F32, BF16 or F64", [&](auto tag) {
    using E = decltype(tag);
    using A = acc_t<E>;
    const E* dyp = static_cast<const E*>(dy);
    const int64_t n_in = B * (T + W - 1) * D;
    if (n_in > 0) {
      conv_bwd_input_kernel<E><<<grid_for(n_in), kThreads, 0, stream()>>>(
          B, T, D, W, dyp, static_cast<const E*>(w), static_cast<E*>(dx), static_cast<E*>(dprefix));
      KIMI_CUDA_CHECK_LAUNCH();
    }
    const int64_t rows = B * T, slabs = slab_count(rows);
    const int64_t per = std::max<int64_t>((rows + slabs - 1) / slabs, 1);
    KIMI_CUDA_REQUIRE(W < 65535, "causal_conv1d: width over 65534 (grid z)");
    const unsigned zs = static_cast<unsigned>(dbias ? W + 1 : W);
    Buffer part(static_cast<size_t>(slabs * (W + 1) * D) * sizeof(A));
    const dim3 grid(static_cast<unsigned>((D + kColTile - 1) / kColTile),
                    static_cast<unsigned>(slabs), zs);
    conv_bwd_weight_kernel<E><<<grid, dim3(kColTile, kRowLanes), 0, stream()>>>(
        B, T, D, W, per, dyp, static_cast<const E*>(x), static_cast<const E*>(prefix),
        part.as<A>());
    KIMI_CUDA_CHECK_LAUNCH();
    conv_bwd_weight_finish_kernel<E><<<grid_for(int64_t{zs} * D), kThreads, 0, stream()>>>(
        slabs, D, W, part.as<A>(), static_cast<E*>(dw), static_cast<E*>(dbias));
    KIMI_CUDA_CHECK_LAUNCH();
  });
}

int64_t embedding_first_bad_id(ElemType id_type, int64_t n, int64_t V, const void* ids) {
  if (n == 0) return -1;
  Buffer flag(sizeof(unsigned long long));
  KIMI_CUDA_CHECK(cudaMemsetAsync(flag.get(), 0xff, flag.size(), stream()));
  dispatch_id(id_type, "embedding: ids must be I32 or I64", [&](auto tag) {
    using I = decltype(tag);
    embedding_check_kernel<I><<<grid_for(n), kThreads, 0, stream()>>>(
        n, V, static_cast<const I*>(ids), flag.as<unsigned long long>());
    KIMI_CUDA_CHECK_LAUNCH();
  });
  unsigned long long first = 0;
  copy_to_host(&first, flag.get(), sizeof(first));
  return first == ~0ull ? -1 : static_cast<int64_t>(first);
}

void embedding_fwd(ElemType t, ElemType id_type, int64_t n, int64_t V, int64_t D, const void* ids,
                   const void* weight, void* out) {
  if (n * D == 0) return;
  dispatch(t, "embedding: F32, BF16 or F64", [&](auto tag) {
    using E = decltype(tag);
    dispatch_id(id_type, "embedding: ids must be I32 or I64", [&](auto itag) {
      using I = decltype(itag);
      embedding_fwd_kernel<E, I><<<grid_for(n * D), kThreads, 0, stream()>>>(
          n, V, D, static_cast<const I*>(ids), static_cast<const E*>(weight), static_cast<E*>(out));
      KIMI_CUDA_CHECK_LAUNCH();
    });
  });
}

void embedding_bwd(ElemType t, ElemType id_type, int64_t n, int64_t V, int64_t D, const void* ids,
                   const void* dy, void* acc) {
  if (n * D == 0) return;
  dispatch(t, "embedding: F32, BF16 or F64", [&](auto tag) {
    using E = decltype(tag);
    dispatch_id(id_type, "embedding: ids must be I32 or I64", [&](auto itag) {
      using I = decltype(itag);
      embedding_bwd_kernel<E, I><<<grid_for(n * D), kThreads, 0, stream()>>>(
          n, V, D, static_cast<const I*>(ids), static_cast<const E*>(dy),
          static_cast<acc_t<E>*>(acc));
      KIMI_CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace kimi::cuda
