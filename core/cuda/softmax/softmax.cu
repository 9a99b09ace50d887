// Softmax-family kernels (softmax.h). Rows (up to vocab size) are shared by TPR threads; the
// row's max and sum of exponentials come from one read, as an online (max, sum) pair per
// thread merged by rescaling (Milakov & Gimelshein 2018), then one more pass writes.
#include "core/cuda/runtime/op_common.cuh"
#include "core/cuda/softmax/softmax.h"

namespace kimi::cuda {
namespace {

using namespace op_detail;

// Running (max m, sum s of exp(x - m)). An all -inf row keeps m = -inf, s = 0, so its
// logsumexp is -inf as on the CPU.
template <class A>
struct MaxSum {
  A m, s;
};

template <class A>
__device__ __forceinline__ MaxSum<A> merge(MaxSum<A> a, MaxSum<A> b) {
  const A m = b.m > a.m ? b.m : a.m;
  if (m == neg_inf<A>()) return {m, A(0)};
  return {m, (a.m == neg_inf<A>() ? A(0) : a.s * m_exp(a.m - m)) +
                 (b.m == neg_inf<A>() ? A(0) : b.s * m_exp(b.m - m))};
}

template <class A>
__device__ __forceinline__ void push(MaxSum<A>& ms, A x) {
  if (x > ms.m) {
    ms.s = (ms.m == neg_inf<A>() ? A(0) : ms.s * m_exp(ms.m - x)) + A(1);
    ms.m = x;
  } else if (x != neg_inf<A>()) {
    ms.s += m_exp(x - ms.m);
  }
}

// logsumexp of the row over its TPR threads (every thread of the block must call it).
template <int TPR, class T>
__device__ __forceinline__ acc_t<T> row_logsumexp(const T* xr, int64_t n, bool active, acc_t<T>* sm,
                                                  acc_t<T>* ss) {
  using A = acc_t<T>;
  MaxSum<A> ms{neg_inf<A>(), A(0)};
  if (active)
    for (int64_t j = threadIdx.x; j < n; j += TPR) push(ms, to_acc<A>(xr[j]));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    ms = merge(ms, MaxSum<A>{__shfl_xor_sync(0xffffffffu, ms.m, o),
                             __shfl_xor_sync(0xffffffffu, ms.s, o)});
  if constexpr (TPR > 32) {
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sm[threadIdx.x >> 5] = ms.m, ss[threadIdx.x >> 5] = ms.s;
    __syncthreads();
    ms = {sm[0], ss[0]};
    for (int w = 1; w < TPR / 32; ++w) ms = merge(ms, MaxSum<A>{sm[w], ss[w]});
  }
  return ms.m + m_log(ms.s);  // m = -inf: -inf + log(0) = -inf
}

template <class T, int TPR>
__global__ void softmax_fwd_kernel(int64_t rows, int64_t n, const T* __restrict__ x,
                                   T* __restrict__ y, bool log) {
  using A = acc_t<T>;
  constexpr int kRpb = kRowsPerBlock<TPR>;
  __shared__ A sm[32], ss[32];
  for (int64_t r0 = int64_t(blockIdx.x) * kRpb; r0 < rows; r0 += int64_t(gridDim.x) * kRpb) {
    const int64_t row = r0 + threadIdx.y;
    const bool active = row < rows;
    const A lse = row_logsumexp<TPR>(x + row * n, n, active, sm, ss);
    if (!active) continue;
    for (int64_t j = threadIdx.x; j < n; j += TPR) {
      const A z = to_acc<A>(x[row * n + j]) - lse;
      y[row * n + j] = from_acc<T>(log ? z : m_exp(z));
    }
  }
}

template <class T, int TPR>
__global__ void softmax_bwd_kernel(int64_t rows, int64_t n, const T* __restrict__ y,
                                   const T* __restrict__ dy, T* __restrict__ dx, bool log) {
  using A = acc_t<T>;
  constexpr int kRpb = kRowsPerBlock<TPR>;
  __shared__ A smem[32 * kRpb];
  for (int64_t r0 = int64_t(blockIdx.x) * kRpb; r0 < rows; r0 += int64_t(gridDim.x) * kRpb) {
    const int64_t row = r0 + threadIdx.y;
    const bool active = row < rows;
    A s = 0;
    if (active)
      for (int64_t j = threadIdx.x; j < n; j += TPR) {
        const A g = to_acc<A>(dy[row * n + j]);
        s += log ? g : g * to_acc<A>(y[row * n + j]);
      }
    s = row_allreduce<TPR>(s, SumOp{}, smem);
    if (!active) continue;
    for (int64_t j = threadIdx.x; j < n; j += TPR) {
      const A g = to_acc<A>(dy[row * n + j]), yv = to_acc<A>(y[row * n + j]);
      dx[row * n + j] = from_acc<T>(log ? g - m_exp(yv) * s : yv * (g - s));
    }
  }
}

// Per row: lse[r] and the row's loss lse - x[t] into row_loss (0 when ignored, NaN when the
// target is out of range).
template <class T, class Ix, int TPR>
__global__ void ce_fwd_kernel(int64_t rows, int64_t c, const T* __restrict__ x,
                              const Ix* __restrict__ targets, int64_t ignore,
                              acc_t<T>* __restrict__ lse, acc_t<T>* __restrict__ row_loss) {
  using A = acc_t<T>;
  constexpr int kRpb = kRowsPerBlock<TPR>;
  __shared__ A sm[32], ss[32];
  for (int64_t r0 = int64_t(blockIdx.x) * kRpb; r0 < rows; r0 += int64_t(gridDim.x) * kRpb) {
    const int64_t row = r0 + threadIdx.y;
    const int64_t t = row < rows ? static_cast<int64_t>(targets[row]) : ignore;
    // Whole blocks skip ignored rows only when all their rows agree; else compute and discard.
    const A l = row_logsumexp<TPR>(x + row * c, c, row < rows && t != ignore, sm, ss);
    if (row >= rows || threadIdx.x != 0) continue;
    lse[row] = l;
    if (t == ignore)
      row_loss[row] = A(0);
    else if (t < 0 || t >= c)
      row_loss[row] = static_cast<A>(NAN);
    else
      row_loss[row] = l - to_acc<A>(x[row * c + t]);
  }
}

// One block: loss = sum(row_loss) / count (fp64, fixed order), inv_count = 1 / count or 0.
template <class T, class Ix>
__global__ void ce_total_kernel(int64_t rows, const Ix* __restrict__ targets, int64_t ignore,
                                const acc_t<T>* __restrict__ row_loss, acc_t<T>* __restrict__ loss,
                                acc_t<T>* __restrict__ inv_count) {
  __shared__ double s_sum[32];
  __shared__ long long s_cnt[32];
  double sum = 0;
  long long cnt = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    sum += static_cast<double>(row_loss[r]);
    cnt += static_cast<int64_t>(targets[r]) != ignore;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    sum += __shfl_xor_sync(0xffffffffu, sum, o);
    cnt += __shfl_xor_sync(0xffffffffu, cnt, o);
  }
  if ((threadIdx.x & 31) == 0) s_sum[threadIdx.x >> 5] = sum, s_cnt[threadIdx.x >> 5] = cnt;
  __syncthreads();
  if (threadIdx.x == 0) {
    sum = 0;
    cnt = 0;
    for (unsigned w = 0; w < blockDim.x / 32; ++w) sum += s_sum[w], cnt += s_cnt[w];
    const double inv = cnt ? 1.0 / static_cast<double>(cnt) : 0.0;
    *loss = static_cast<acc_t<T>>(sum * inv);
    *inv_count = static_cast<acc_t<T>>(inv);
  }
}

// Rows on grid y, columns on grid x (no per-element division).
template <class T, class Ix>
__global__ void ce_bwd_kernel(int64_t rows, int64_t c, const T* __restrict__ x,
                              const Ix* __restrict__ targets, int64_t ignore,
                              const acc_t<T>* __restrict__ lse,
                              const acc_t<T>* __restrict__ inv_count,
                              const acc_t<T>* __restrict__ g, T* __restrict__ dx) {
  using A = acc_t<T>;
  const A scale = *g * *inv_count;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t t = static_cast<int64_t>(targets[r]);
    const A l = lse[r];
    for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < c;
         j += int64_t(gridDim.x) * blockDim.x) {
      A v = 0;
      if (t != ignore) v = scale * (m_exp(to_acc<A>(x[r * c + j]) - l) - (j == t ? A(1) : A(0)));
      dx[r * c + j] = from_acc<T>(v);
    }
  }
}

}  // namespace

void softmax_forward(ElemType t, int64_t rows, int64_t n, const void* x, void* y, bool log) {
  if (rows * n == 0) return;
  dispatch_float(t, "softmax: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    with_row_threads(n, [&](auto tpr) {
      constexpr int TPR = decltype(tpr)::value;
      softmax_fwd_kernel<T, TPR>
          <<<row_grid<TPR>(rows), dim3(TPR, kRowsPerBlock<TPR>), 0, stream()>>>(
              rows, n, static_cast<const T*>(x), static_cast<T*>(y), log);
    });
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

void softmax_backward(ElemType t, int64_t rows, int64_t n, const void* y, const void* dy, void* dx,
                      bool log) {
  if (rows * n == 0) return;
  dispatch_float(t, "softmax backward: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    with_row_threads(n, [&](auto tpr) {
      constexpr int TPR = decltype(tpr)::value;
      softmax_bwd_kernel<T, TPR>
          <<<row_grid<TPR>(rows), dim3(TPR, kRowsPerBlock<TPR>), 0, stream()>>>(
              rows, n, static_cast<const T*>(y), static_cast<const T*>(dy), static_cast<T*>(dx),
              log);
    });
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

void cross_entropy_forward(ElemType t, int64_t rows, int64_t c, const void* x, ElemType target_type,
                           const void* targets, int64_t ignore, void* lse, void* loss,
                           void* inv_count) {
  KIMI_CUDA_REQUIRE(c > 0 || rows == 0, "cross_entropy: no classes");
  dispatch_float(t, "cross_entropy: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    dispatch_index(target_type, "cross_entropy: targets I32 or I64", [&](auto itag) {
      using Ix = decltype(itag);
      const Ix* tp = static_cast<const Ix*>(targets);
      Buffer row_loss(size_t(rows) * sizeof(A));
      if (rows > 0) {
        with_row_threads(c, [&](auto tpr) {
          constexpr int TPR = decltype(tpr)::value;
          ce_fwd_kernel<T, Ix, TPR>
              <<<row_grid<TPR>(rows), dim3(TPR, kRowsPerBlock<TPR>), 0, stream()>>>(
                  rows, c, static_cast<const T*>(x), tp, ignore, static_cast<A*>(lse),
                  row_loss.as<A>());
        });
        KIMI_CUDA_CHECK_LAUNCH();
      }
      ce_total_kernel<T, Ix><<<1, 1024, 0, stream()>>>(
          rows, tp, ignore, row_loss.as<A>(), static_cast<A*>(loss), static_cast<A*>(inv_count));
      KIMI_CUDA_CHECK_LAUNCH();
    });
  });
}

void cross_entropy_backward(ElemType t, int64_t rows, int64_t c, const void* x,
                            ElemType target_type, const void* targets, int64_t ignore,
                            const void* lse, const void* inv_count, const void* g, void* dx) {
  if (rows * c == 0) return;
  dispatch_float(t, "cross_entropy backward: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    dispatch_index(target_type, "cross_entropy: targets I32 or I64", [&](auto itag) {
      using Ix = decltype(itag);
      const int64_t gx = ceil_div(c, 256) < 1024 ? ceil_div(c, 256) : 1024;
      int64_t gy = ceil_div(int64_t(sm_count()) * 16, gx);
      gy = gy < rows ? gy : rows;
      gy = gy < 65535 ? gy : 65535;
      const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
      ce_bwd_kernel<T, Ix><<<grid, 256, 0, stream()>>>(
          rows, c, static_cast<const T*>(x), static_cast<const Ix*>(targets), ignore,
          static_cast<const A*>(lse), static_cast<const A*>(inv_count), static_cast<const A*>(g),
          static_cast<T*>(dx));
    });
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::cuda
