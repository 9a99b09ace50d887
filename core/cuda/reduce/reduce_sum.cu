// cuda::sum (reduce.h): x is split into kept dims (the output rows) and reduced dims, each group
// collapsed on its own. Two layouts: "rows" when the reduced elements of a row are the ones
// close in memory (TPR threads share a row, tree-combined), "cols" when neighbouring outputs
// are neighbours in memory (a [N, D] -> [D] gradient: 32 outputs per block across lanes, 8
// partial sums down the column). When that leaves the GPU idle (few long rows), the reduced
// range is cut into chunks (blockIdx.y) whose partials a second pass adds in chunk order.
// Serial per-thread sums are Kahan-compensated, so long fp32 sums stay at ~fp32 rounding.
#include "core/cuda/reduce/reduce.h"
#include "core/cuda/runtime/op_common.cuh"

namespace kimi::cuda {
namespace {

using namespace op_detail;

constexpr int kColLanes = 32, kColDepth = 8;

template <class T, int TPR, class I>
__global__ void sum_rows_kernel(I rows, I m, I per_chunk, Indexer<1, I> kd, Indexer<1, I> rd,
                                const T* __restrict__ x, T* __restrict__ out,
                                acc_t<T>* __restrict__ partial) {
  using A = acc_t<T>;
  constexpr int kRpb = kRowsPerBlock<TPR>;
  __shared__ A smem[32 * kRpb];
  const I j0 = I(blockIdx.y) * per_chunk;
  const I j1 = m - j0 < per_chunk ? m : j0 + per_chunk;
  for (I r0 = I(blockIdx.x) * kRpb; r0 < rows; r0 += I(gridDim.x) * kRpb) {
    const I row = r0 + threadIdx.y;
    Kahan<A> acc;
    if (row < rows) {
      I base[1], off[1];
      kd.offsets(row, base);
      for (I j = j0 + threadIdx.x; j < j1; j += TPR) {
        rd.offsets(j, off);
        acc.add(to_acc<A>(x[base[0] + off[0]]));
      }
    }
    const A total = row_allreduce<TPR>(acc.sum, SumOp{}, smem);
    if (row < rows && threadIdx.x == 0) {
      if (partial)
        partial[I(blockIdx.y) * rows + row] = total;
      else
        out[row] = from_acc<T>(total);
    }
  }
}

template <class T, class I>
__global__ void sum_cols_kernel(I rows, I m, I per_chunk, Indexer<1, I> kd, Indexer<1, I> rd,
                                const T* __restrict__ x, T* __restrict__ out,
                                acc_t<T>* __restrict__ partial) {
  using A = acc_t<T>;
  __shared__ A smem[kColDepth][kColLanes + 1];
  const I j0 = I(blockIdx.y) * per_chunk;
  const I j1 = m - j0 < per_chunk ? m : j0 + per_chunk;
  for (I c0 = I(blockIdx.x) * kColLanes; c0 < rows; c0 += I(gridDim.x) * kColLanes) {
    const I row = c0 + threadIdx.x;
    Kahan<A> acc;
    if (row < rows) {
      I base[1], off[1];
      kd.offsets(row, base);
      for (I j = j0 + threadIdx.y; j < j1; j += kColDepth) {
        rd.offsets(j, off);
        acc.add(to_acc<A>(x[base[0] + off[0]]));
      }
    }
    smem[threadIdx.y][threadIdx.x] = acc.sum;
    __syncthreads();
    if (threadIdx.y == 0 && row < rows) {
      A total = smem[0][threadIdx.x];
      for (int k = 1; k < kColDepth; ++k) total += smem[k][threadIdx.x];
      if (partial)
        partial[I(blockIdx.y) * rows + row] = total;
      else
        out[row] = from_acc<T>(total);
    }
    __syncthreads();
  }
}

// out[row] = sum over chunks of partial[chunk, row], in chunk order.
template <class T>
__global__ void sum_chunks_kernel(int64_t rows, int64_t chunks,
                                  const acc_t<T>* __restrict__ partial, T* __restrict__ out) {
  using A = acc_t<T>;
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows;
       r += int64_t(gridDim.x) * blockDim.x) {
    Kahan<A> acc;
    for (int64_t c = 0; c < chunks; ++c) acc.add(partial[c * rows + r]);
    out[r] = from_acc<T>(acc.sum);
  }
}

template <class T, class I>
void launch_sum(const Dims<1>& kd, const Dims<1>& rd, int64_t rows, int64_t m, const T* x, T* out) {
  using A = acc_t<T>;
  const bool cols = kd.shape[kd.ndim - 1] > 1 && kd.strides[0][kd.ndim - 1] == 1;
  const Indexer<1, I> ki = Indexer<1, I>::make(kd), ri = Indexer<1, I>::make(rd);
  auto run = [&](unsigned gx, int64_t chunks, auto&& launch) {
    const int64_t per = ceil_div(m, chunks);
    chunks = ceil_div(m, per);
    Buffer partial(chunks > 1 ? size_t(chunks) * size_t(rows) * sizeof(A) : 0);
    launch(dim3(gx, static_cast<unsigned>(chunks)), static_cast<I>(per), partial.as<A>());
    KIMI_CUDA_CHECK_LAUNCH();
    if (chunks > 1) {
      sum_chunks_kernel<T>
          <<<grid_for(rows, 256), 256, 0, stream()>>>(rows, chunks, partial.as<A>(), out);
      KIMI_CUDA_CHECK_LAUNCH();
    }
  };
  if (cols) {
    const unsigned gx = grid_for(rows, kColLanes);
    run(gx, pick_chunks(gx, m, kColDepth), [&](dim3 grid, I per, A* partial) {
      sum_cols_kernel<T, I><<<grid, dim3(kColLanes, kColDepth), 0, stream()>>>(
          I(rows), I(m), per, ki, ri, x, out, partial);
    });
    return;
  }
  with_row_threads(m, [&](auto tpr) {
    constexpr int TPR = decltype(tpr)::value;
    const unsigned gx = row_grid<TPR>(rows);
    run(gx, pick_chunks(gx, m, TPR), [&](dim3 grid, I per, A* partial) {
      sum_rows_kernel<T, TPR, I><<<grid, dim3(TPR, kRowsPerBlock<TPR>), 0, stream()>>>(
          I(rows), I(m), per, ki, ri, x, out, partial);
    });
  });
}

}  // namespace

void sum(const StridedView& x, uint32_t reduce_mask, void* out) {
  Dims<1> kd, rd;
  int64_t rows = 1, m = 1, maxoff = 0;
  bool nonneg = true;
  for (int d = 0; d < x.ndim; ++d) {
    Dims<1>& g = (reduce_mask >> d) & 1u ? rd : kd;
    g.shape[g.ndim] = x.shape[d];
    g.strides[0][g.ndim] = x.strides[d];
    ++g.ndim;
    ((reduce_mask >> d) & 1u ? m : rows) *= x.shape[d];
    if (x.shape[d] > 0) maxoff += (x.shape[d] - 1) * x.strides[d];
    nonneg = nonneg && x.strides[d] >= 0;
  }
  if (rows == 0) return;
  if (m == 0) {
    StridedView o;
    o.data = out;
    o.type = x.type;
    o.ndim = 1;
    o.shape[0] = rows;
    o.strides[0] = 1;
    fill_strided(o, 0.0);
    return;
  }
  kd.collapse();
  rd.collapse();
  // 32-bit index math when offsets and counts fit. Chunk partials fit too: there are chunks
  // only when the rows fill fewer than 2 blocks per SM, i.e. rows < 2 * SMs * 256.
  const int64_t lim = int64_t(1) << 31;
  const bool small = nonneg && maxoff < lim && rows < lim && m < lim;
  dispatch_float(x.type, "sum: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    if (small)
      launch_sum<T, uint32_t>(kd, rd, rows, m, static_cast<const T*>(x.data), static_cast<T*>(out));
    else
      launch_sum<T, int64_t>(kd, rd, rows, m, static_cast<const T*>(x.data), static_cast<T*>(out));
  });
}

}  // namespace kimi::cuda
