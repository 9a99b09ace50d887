// Reduction and scan CUDA kernels: sums over any set of dims of a strided view, max / argmax
// along one dim, and cumsum. Float storage F32, F64 or BF16; accumulation in fp32 (fp64 for
// F64) in a fixed order (tree reductions, no atomics), so results are run-to-run identical.
#pragma once

#include <cstdint>

#include "core/cuda/runtime/copy.h"

namespace kimi::cuda {

// out[o] = sum of x over the dims whose bit is set in reduce_mask, o running row-major over
// the other dims (out contiguous, x's type). x may have any strides (broadcast included).
void sum(const StridedView& x, uint32_t reduce_mask, void* out);

// Over contiguous x viewed as [outer, n, inner] (n >= 1): index[i, k] = the first j holding
// the largest x[i, j, k] (index_type I32 or I64) and values[i, k] that value (values may be
// nullptr).
void argmax(ElemType t, int64_t outer, int64_t n, int64_t inner, const void* x, void* values,
            ElemType index_type, void* index);
// dx[i, j, k] = j == index[i, k] ? g[i, k] : 0 (all contiguous; index I64).
void max_backward(ElemType t, int64_t outer, int64_t n, int64_t inner, const int64_t* index,
                  const void* g, void* dx);

// Inclusive prefix sum along the middle dim of contiguous [outer, n, inner]; reverse sums from
// the end (the backward of cumsum).
void cumsum(ElemType t, int64_t outer, int64_t n, int64_t inner, const void* x, void* y,
            bool reverse);

}  // namespace kimi::cuda
