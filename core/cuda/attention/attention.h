// CUDA kernels of causal softmax attention with grouped-query heads and a KV-cache offset,
// forward and backward, in the layout and semantics of the CPU kernels
// (core/cpu/attention.h): q [B,Tq,Hq,D], k [B,Tk,Hkv,D], v [B,Tk,Hkv,Dv],
// o [B,Tq,Hq,Dv], row-major and contiguous; query i sits at position i + Tk - Tq. The
// log-sum-exp lse [B,Hq,Tq] is always fp32 (natural log of the sum of exp(scaled scores)).
// Math: FlashAttention-2 (tiles in shared memory, online softmax, no Tq x Tk matrix in device
// memory; the backward recomputes P from lse and adds dQ with fp32 atomics).
// Ti (float or __nv_bfloat16) is the type of q, k, v, o and their gradients. The operand
// precision of the products follows `prec` (core/backend/precision.h):
//   kFP32  plain fp32 FMA kernels (the parity oracle; simple, slower)
//   kTF32  tensor-core m16n8k8 TF32 for F32 inputs (BF16 inputs take the bf16 path)
//   kBF16  tensor-core m16n8k16 bf16 operands (F32 inputs: bf16 copies first, and o and the
//          gradients come back through bf16, as under PyTorch autocast)
// always with fp32 accumulation and an fp32 softmax. Limits: D, Dv <= 256 (tensor-core tiles
// of 32/64/128/256 and 192x128, other sizes zero-padded up to the next tile).
// Small Tq against a long cache (decoding) splits the keys over blocks (flash-decoding) and
// combines the partial results. Plain C++ callers may include this header.
#pragma once

#include <cuda_runtime.h>

#include "core/backend/precision.h"
#include "core/kernels/attention.h"

namespace kimi::cuda {

// num_splits: 0 = automatic (split the keys only when the (query block, head) grid cannot fill
// the GPU); n > 0 forces n key splits (tests). All work on `stream`; workspaces from the
// caching allocator.
template <class Ti>
void causal_attention_fwd(const AttentionDims& d, const Ti* q, const Ti* k, const Ti* v, Ti* o,
                          float* lse, ComputePrecision prec, cudaStream_t stream,
                          int num_splits = 0);

// dq, dk, dv overwritten (dk, dv summed over the query heads of each group). o and lse from
// the forward (o may come from another precision: it only enters through D_i = do_i . o_i).
template <class Ti>
void causal_attention_bwd(const AttentionDims& d, const Ti* q, const Ti* k, const Ti* v,
                          const Ti* o, const float* lse, const Ti* do_, Ti* dq, Ti* dk, Ti* dv,
                          ComputePrecision prec, cudaStream_t stream);

}  // namespace kimi::cuda
