// Raw CUDA kernels of the sequence ops (causal_conv1d, embedding) and the row helpers that the
// biases of linear and causal_conv1d use. Element types F32, BF16 (computed in fp32) and F64;
// ids I32 or I64. All buffers contiguous row-major, on the device; launches on stream().
#pragma once

#include <cstdint>

#include "core/cuda/runtime/copy.h"

namespace kimi::cuda {

// out [rows, cols] = row [cols] repeated.
void broadcast_rows(ElemType t, int64_t rows, int64_t cols, const void* row, void* out);
// out [cols] = sum over rows of x [rows, cols] (fp32 accumulation; fp64 for F64).
void column_sum(ElemType t, int64_t rows, int64_t cols, const void* x, void* out);

// Depthwise causal conv, x [B, T, D], w [D, W], bias [D] or null, prefix [B, W-1, D] or null
// (zeros): y[b,t,d] = bias[d] + sum_{j<W} w[d,j] xpad[b,t+j,d], xpad = concat(prefix, x) on T.
void causal_conv1d_fwd(ElemType t, int64_t B, int64_t T, int64_t D, int64_t W, const void* x,
                       const void* w, const void* bias, const void* prefix, void* y);
// Gradients from dy [B, T, D]: dx [B, T, D], dw [D, W]; dbias [D] and dprefix [B, W-1, D]
// where not null (prefix null reads as zeros, as in the forward).
void causal_conv1d_bwd(ElemType t, int64_t B, int64_t T, int64_t D, int64_t W, const void* dy,
                       const void* x, const void* w, const void* prefix, void* dx, void* dw,
                       void* dbias, void* dprefix);

// The position of the first of n ids outside [0, V), or -1. Synchronises (reads one value).
int64_t embedding_first_bad_id(ElemType id_type, int64_t n, int64_t V, const void* ids);
// out [n, D] = weight [V, D] rows at ids [n] (ids already checked; bad ones are skipped).
void embedding_fwd(ElemType t, ElemType id_type, int64_t n, int64_t V, int64_t D, const void* ids,
                   const void* weight, void* out);
// acc [V, D] += dy [n, D] scattered to rows ids (atomics): acc is F32 (F64 when t is F64).
void embedding_bwd(ElemType t, ElemType id_type, int64_t n, int64_t V, int64_t D, const void* ids,
                   const void* dy, void* acc);

}  // namespace kimi::cuda
