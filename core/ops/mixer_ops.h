// Differentiable token-mixer ops: the gated delta rule (DeltaNet / GDN / KDA), the gated
// linear recurrence (Mamba2's SSD core), causal softmax attention (GQA) and RoPE. Each is one
// tape node with an analytic backward (the kernel tables of core/backend/recurrence_kernels.h
// and attention_kernels.h), not a tape over T scalar steps.
#pragma once

#include <string>

#include "core/kernels/recurrence.h"  // GateKind
#include "core/tensor/tensor.h"

namespace kimi {

// Which algorithm computes a linear recurrence: token by token, or chunkwise (WY + UT).
enum class RecurrenceForm { kRecurrent, kChunk };
RecurrenceForm recurrence_form_from_name(const std::string& name);

struct RecurrenceOptions {
  GateKind gate = GateKind::kPerChannel;
  double scale = -1;  // < 0: 1/sqrt(K)
  RecurrenceForm form = RecurrenceForm::kChunk;
  int64_t chunk = 64;
};

struct RecurrenceResult {
  Tensor o;   // [B, T, H, V]
  Tensor ht;  // [B, H, K, V]
};

// q, k [B,T,H,K]; v [B,T,H,V]; g [B,T,H,K] (per channel) | [B,T,H] (scalar) | undefined (none);
// beta [B,T,H]; h0 [B,H,K,V] or undefined.
RecurrenceResult delta_rule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                            const Tensor& beta, const Tensor& h0, const RecurrenceOptions& opt);
// S = Diag(exp(g_t)) S + k_t v_t^T; o_t = S^T (scale q_t). Same shapes, no beta.
RecurrenceResult linear_recurrence(const Tensor& q, const Tensor& k, const Tensor& v,
                                   const Tensor& g, const Tensor& h0, const RecurrenceOptions& opt);

// q [B,Tq,Hq,D], k [B,Tk,Hkv,D], v [B,Tk,Hkv,Dv] -> [B,Tq,Hq,Dv]. Causal with the queries at
// the last Tq positions of the Tk keys (a KV cache). scale < 0: 1/sqrt(D).
Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale = -1);

// Rotary embedding on x [B,T,H,D] at positions pos0.. (rotate-half convention, HF Llama).
Tensor rope(const Tensor& x, int64_t pos0, double theta = 10000.0);

}  // namespace kimi
