// Norm kernels (norm.h). Forward and dx: TPR threads per row (tree-reduced sum of squares /
// dot product, then a second pass over the row, mostly from cache). dw: a column reduction
// over rows, 32 columns per block across lanes and 8 rows deep, cut into row chunks when the
// columns alone would leave SMs idle; the chunk partials are added in order by a second pass.
#include "core/cuda/norm/norm.h"
#include "core/cuda/runtime/op_common.cuh"

namespace kimi::cuda {
namespace {

using namespace op_detail;

template <class T, int TPR>
__global__ void norm_fwd_kernel(int64_t rows, int64_t n, acc_t<T> div, acc_t<T> eps,
                                const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                                acc_t<T>* __restrict__ rstd) {
  using A = acc_t<T>;
  constexpr int kRpb = kRowsPerBlock<TPR>;
  __shared__ A smem[32 * kRpb];
  for (int64_t r0 = int64_t(blockIdx.x) * kRpb; r0 < rows; r0 += int64_t(gridDim.x) * kRpb) {
    const int64_t row = r0 + threadIdx.y;
    const bool active = row < rows;
    const T* xr = x + row * n;
    A ss = 0;
    if (active)
      for (int64_t j = threadIdx.x; j < n; j += TPR) {
        const A v = to_acc<A>(xr[j]);
        ss += v * v;
      }
    ss = row_allreduce<TPR>(ss, SumOp{}, smem);
    if (!active) continue;
    const A r = A(1) / m_sqrt(ss / div + eps);
    if (threadIdx.x == 0) rstd[row] = r;
    for (int64_t j = threadIdx.x; j < n; j += TPR) {
      const A v = to_acc<A>(xr[j]) * r;
      y[row * n + j] = from_acc<T>(w ? v * to_acc<A>(w[j]) : v);
    }
  }
}

template <class T, int TPR>
__global__ void norm_bwd_x_kernel(int64_t rows, int64_t n, acc_t<T> div, const T* __restrict__ x,
                                  const T* __restrict__ w, const acc_t<T>* __restrict__ rstd,
                                  const T* __restrict__ dy, T* __restrict__ dx) {
  using A = acc_t<T>;
  constexpr int kRpb = kRowsPerBlock<TPR>;
  __shared__ A smem[32 * kRpb];
  for (int64_t r0 = int64_t(blockIdx.x) * kRpb; r0 < rows; r0 += int64_t(gridDim.x) * kRpb) {
    const int64_t row = r0 + threadIdx.y;
    const bool active = row < rows;
    const T* xr = x + row * n;
    const T* gr = dy + row * n;
    A dot = 0;
    if (active)
      for (int64_t j = threadIdx.x; j < n; j += TPR) {
        const A gw = w ? to_acc<A>(gr[j]) * to_acc<A>(w[j]) : to_acc<A>(gr[j]);
        dot += gw * to_acc<A>(xr[j]);
      }
    dot = row_allreduce<TPR>(dot, SumOp{}, smem);
    if (!active) continue;
    const A r = rstd[row];
    const A c = dot * r * r / div;  // sum(gw * xhat) * r / div
    for (int64_t j = threadIdx.x; j < n; j += TPR) {
      const A gw = w ? to_acc<A>(gr[j]) * to_acc<A>(w[j]) : to_acc<A>(gr[j]);
      dx[row * n + j] = from_acc<T>(r * (gw - to_acc<A>(xr[j]) * c));
    }
  }
}

constexpr int kLanes = 32, kDepth = 8;

// partial[chunk, j] (or dw[j] when partial is null) over rows [chunk * per, (chunk + 1) * per).
template <class T>
__global__ void norm_bwd_w_kernel(int64_t rows, int64_t n, int64_t per, const T* __restrict__ x,
                                  const acc_t<T>* __restrict__ rstd, const T* __restrict__ dy,
                                  T* __restrict__ dw, acc_t<T>* __restrict__ partial) {
  using A = acc_t<T>;
  __shared__ A smem[kDepth][kLanes + 1];
  const int64_t r_begin = int64_t(blockIdx.y) * per;
  const int64_t r_end = rows - r_begin < per ? rows : r_begin + per;
  for (int64_t c0 = int64_t(blockIdx.x) * kLanes; c0 < n; c0 += int64_t(gridDim.x) * kLanes) {
    const int64_t j = c0 + threadIdx.x;
    Kahan<A> acc;
    if (j < n)
      for (int64_t r = r_begin + threadIdx.y; r < r_end; r += kDepth)
        acc.add(to_acc<A>(dy[r * n + j]) * to_acc<A>(x[r * n + j]) * rstd[r]);
    smem[threadIdx.y][threadIdx.x] = acc.sum;
    __syncthreads();
    if (threadIdx.y == 0 && j < n) {
      A total = smem[0][threadIdx.x];
      for (int k = 1; k < kDepth; ++k) total += smem[k][threadIdx.x];
      if (partial)
        partial[int64_t(blockIdx.y) * n + j] = total;
      else
        dw[j] = from_acc<T>(total);
    }
    __syncthreads();
  }
}

template <class T>
__global__ void norm_bwd_w_chunks_kernel(int64_t n, int64_t chunks,
                                         const acc_t<T>* __restrict__ partial, T* __restrict__ dw) {
  using A = acc_t<T>;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n;
       j += int64_t(gridDim.x) * blockDim.x) {
    Kahan<A> acc;
    for (int64_t c = 0; c < chunks; ++c) acc.add(partial[c * n + j]);
    dw[j] = from_acc<T>(acc.sum);
  }
}

}  // namespace

void norm_forward(ElemType t, int64_t rows, int64_t n, double div, double eps, const void* x,
                  const void* w, void* y, void* rstd) {
  if (rows * n == 0) return;
  dispatch_float(t, "norm: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    with_row_threads(n, [&](auto tpr) {
      constexpr int TPR = decltype(tpr)::value;
      norm_fwd_kernel<T, TPR><<<row_grid<TPR>(rows), dim3(TPR, kRowsPerBlock<TPR>), 0, stream()>>>(
          rows, n, static_cast<A>(div), static_cast<A>(eps), static_cast<const T*>(x),
          static_cast<const T*>(w), static_cast<T*>(y), static_cast<A*>(rstd));
    });
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

void norm_backward_x(ElemType t, int64_t rows, int64_t n, double div, const void* x, const void* w,
                     const void* rstd, const void* dy, void* dx) {
  if (rows * n == 0) return;
  dispatch_float(t, "norm backward: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    with_row_threads(n, [&](auto tpr) {
      constexpr int TPR = decltype(tpr)::value;
      norm_bwd_x_kernel<T, TPR>
          <<<row_grid<TPR>(rows), dim3(TPR, kRowsPerBlock<TPR>), 0, stream()>>>(
              rows, n, static_cast<A>(div), static_cast<const T*>(x), static_cast<const T*>(w),
              static_cast<const A*>(rstd), static_cast<const T*>(dy), static_cast<T*>(dx));
    });
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

void norm_backward_w(ElemType t, int64_t rows, int64_t n, const void* x, const void* rstd,
                     const void* dy, void* dw) {
  if (n == 0) return;
  if (rows == 0) {
    StridedView v;
    v.data = dw;
    v.type = t;
    v.ndim = 1;
    v.shape[0] = n;
    v.strides[0] = 1;
    fill_strided(v, 0.0);
    return;
  }
  dispatch_float(t, "norm backward: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const unsigned gx = grid_for(n, kLanes);
    int64_t chunks = pick_chunks(gx, rows, kDepth);
    const int64_t per = ceil_div(rows, chunks);
    chunks = ceil_div(rows, per);
    Buffer partial(chunks > 1 ? size_t(chunks) * size_t(n) * sizeof(A) : 0);
    norm_bwd_w_kernel<T>
        <<<dim3(gx, static_cast<unsigned>(chunks)), dim3(kLanes, kDepth), 0, stream()>>>(
            rows, n, per, static_cast<const T*>(x), static_cast<const A*>(rstd),
            static_cast<const T*>(dy), static_cast<T*>(dw), partial.as<A>());
    KIMI_CUDA_CHECK_LAUNCH();
    if (chunks > 1) {
      norm_bwd_w_chunks_kernel<T>
          <<<grid_for(n, 256), 256, 0, stream()>>>(n, chunks, partial.as<A>(), static_cast<T*>(dw));
    }
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::cuda
