// CPU kernels of the gated delta rule (DeltaNet, GDN, KDA) and of the gated linear recurrence
// (Mamba2's SSD core, FLA simple_gla / GLA): recurrent and chunkwise forms, forward and backward.
// Math: docs/math.md#mixers and docs/math.md#chunkwise (Kimi Linear report,
// flash-linear-attention's naive references). Framework-free: raw contiguous row-major pointers;
// activations [B,T,H,*], states [B,H,K,V].
#pragma once

#include <cstdint>

#include "core/kernels/recurrence.h"  // kimi::GateKind, kimi::RecurrenceDims

namespace kimi::cpu {

// Delta rule (docs/math.md#mixers and docs/math.md#chunkwise). q,k: [B,T,H,K]; v: [B,T,H,V]; g: log
// decay, [B,T,H,K] for kPerChannel, [B,T,H] for kScalar, nullptr for kNone; beta: [B,T,H]; h0:
// [B,H,K,V] or nullptr (zero); outputs o: [B,T,H,V]; ht: [B,H,K,V] or nullptr if not wanted.
template <class T>
void delta_rule_recurrent_fwd(const RecurrenceDims& d, const T* q, const T* k, const T* v,
                              const T* g, const T* beta, const T* h0, T* o, T* ht);
template <class T>
void delta_rule_chunk_fwd(const RecurrenceDims& d, const T* q, const T* k, const T* v, const T* g,
                          const T* beta, const T* h0, T* o, T* ht);

// Backward of L with upstream do [B,T,H,V] and dht [B,H,K,V] (nullptr = zero). Recomputes what
// it needs from the inputs (states kept at chunk boundaries, recomputed inside a chunk; the
// recurrence never runs backwards). Overwrites dq,dk,dv,dbeta, dg (same shape as g; ignored
// when gate==kNone) and dh0 (nullptr = not wanted).
template <class T>
void delta_rule_recurrent_bwd(const RecurrenceDims& d, const T* q, const T* k, const T* v,
                              const T* g, const T* beta, const T* h0, const T* do_, const T* dht,
                              T* dq, T* dk, T* dv, T* dg, T* dbeta, T* dh0);
template <class T>
void delta_rule_chunk_bwd(const RecurrenceDims& d, const T* q, const T* k, const T* v, const T* g,
                          const T* beta, const T* h0, const T* do_, const T* dht, T* dq, T* dk,
                          T* dv, T* dg, T* dbeta, T* dh0);

// Gated linear recurrence without the delta rule (Mamba2's SSD core; FLA simple_gla when
// gate==kScalar, GLA when kPerChannel): S = Diag(exp(g_t)) S + k_t v_t^T; o_t = S^T (scale q_t).
// Same shapes as the delta rule, no beta.
template <class T>
void linear_recurrence_recurrent_fwd(const RecurrenceDims& d, const T* q, const T* k, const T* v,
                                     const T* g, const T* h0, T* o, T* ht);
template <class T>
void linear_recurrence_chunk_fwd(const RecurrenceDims& d, const T* q, const T* k, const T* v,
                                 const T* g, const T* h0, T* o, T* ht);
template <class T>
void linear_recurrence_recurrent_bwd(const RecurrenceDims& d, const T* q, const T* k, const T* v,
                                     const T* g, const T* h0, const T* do_, const T* dht, T* dq,
                                     T* dk, T* dv, T* dg, T* dh0);
template <class T>
void linear_recurrence_chunk_bwd(const RecurrenceDims& d, const T* q, const T* k, const T* v,
                                 const T* g, const T* h0, const T* do_, const T* dht, T* dq, T* dk,
                                 T* dv, T* dg, T* dh0);

}  // namespace kimi::cpu
