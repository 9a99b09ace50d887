// CPU kernels of causal softmax attention with grouped-query heads, forward and backward.
// Math: FlashAttention-2 (Dao 2023): tiles with an online softmax, the log-sum-exp saved for a
// backward that recomputes the probabilities (D_i = do_i . o_i). docs/math.md#mixers.
// Framework-free: raw contiguous row-major pointers.
#pragma once

#include <cstdint>

#include "core/kernels/attention.h"  // kimi::AttentionDims

namespace kimi::cpu {

// Causal: query i (0-based among Tq) sits at absolute position i + (Tk - Tq) and attends keys
// j <= that (so Tk >= Tq). q [B,Tq,Hq,D], k [B,Tk,Hkv,D], v [B,Tk,Hkv,Dv] -> o [B,Tq,Hq,Dv],
// lse [B,Hq,Tq] (log-sum-exp of the scaled scores, saved for the backward).
template <class T>
void causal_attention_fwd(const AttentionDims& d, const T* q, const T* k, const T* v, T* o, T* lse);

// dq, dk, dv overwritten. Uses o and lse from the forward.
template <class T>
void causal_attention_bwd(const AttentionDims& d, const T* q, const T* k, const T* v, const T* o,
                          const T* lse, const T* do_, T* dq, T* dk, T* dv);

}  // namespace kimi::cpu
