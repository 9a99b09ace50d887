// The decode engine's weight arena: every tensor of a Kimi-Linear model (the HF checkpoint's
// names and shapes) at a fixed offset of one device buffer, laid out layer by layer, so the
// kernels take plain pointers and a layer's weights are one contiguous range. Projections that
// read the same input sit next to each other in the order one GEMV reads them as a single
// matrix: KDA's [q; k; v; f_a; g_a; b] rows, MLA's [q; kv_a] rows, a SwiGLU's [gate; up] rows,
// and each routed expert's [w1; w3; w2] (one expert = one contiguous block).
// bf16 everywhere except what routing and the gates need exact: the router weight and its
// correction bias, A_log and dt_bias stay fp32.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/kimi_linear_config.h"

namespace kimi::inference::engine {

enum class WDType { kBF16, kF32 };

// How --random fills a tensor (the trainer's init, models/kimi_linear.cpp): normal(0, std),
// uniform(lo, hi), a constant, A_log = log U(1, 16), dt_bias = softplus^-1(exp U(log 1e-3,
// log 1e-1)).
enum class InitKind { kNormal, kUniform, kConstant, kALog, kDtBias };

struct WeightEntry {
  std::string name;            // Hugging Face name, e.g. model.layers.3.self_attn.q_proj.weight
  std::vector<int64_t> shape;  // as our parameter (A_log: [H]; HF's [1,1,H,1] is accepted)
  WDType dtype = WDType::kBF16;
  int64_t offset = 0;  // bytes from the arena's start, 256-byte aligned
  InitKind init = InitKind::kNormal;
  double a = 0.02, b = 0;  // normal: std; uniform: lo, hi; constant: a
  bool optional = false;   // may be absent from a checkpoint (then zero): KDA's g_b bias
  int64_t numel() const;
  int64_t bytes() const;
};

// Byte offsets of one decoder layer's tensors (-1 = absent).
struct LayerOffsets {
  bool is_mla = false, is_moe = false;
  int64_t input_norm = -1, post_norm = -1;
  // KDA: in_proj = [q (HK); k (HK); v (HV); f_a (V); g_a (V); b (H)] x d, one matrix.
  int64_t kda_in = -1, q_conv = -1, k_conv = -1, v_conv = -1, f_b = -1, g_b = -1, g_b_bias = -1;
  int64_t a_log = -1, dt_bias = -1, o_norm = -1, o_proj = -1;
  // MLA (q_lora_rank 0): in_proj = [q (H*(nope+rope)); kv_a (rank+rope)] x d.
  int64_t mla_in = -1, kv_norm = -1, kv_b = -1;
  // Dense SwiGLU or the shared expert: [gate; up] x d, then down.
  int64_t mlp_gate_up = -1, mlp_down = -1;
  // MoE: router [E, d] fp32, bias [E] fp32, experts from `experts` with stride expert_stride.
  int64_t router = -1, router_bias = -1, experts = -1, expert_stride = 0;
};

struct WeightLayout {
  models::KimiLinearConfig config;
  std::vector<WeightEntry> entries;
  std::vector<LayerOffsets> layers;
  int64_t embed = -1, final_norm = -1, lm_head = -1;
  int64_t total_bytes = 0;
  // Sizes the kernels need, derived once.
  int64_t kda_rows = 0, mla_rows = 0, mlp_hidden = 0, shared_hidden = 0;
  const WeightEntry* find(const std::string& name) const;
};

// Throws UserError for a config the engine does not run (q_lora_rank > 0, a router other than
// sigmoid, grouped routing, a KDA value dim unlike the key dim).
WeightLayout make_weight_layout(const models::KimiLinearConfig& c);

// Bytes of weights one decode step reads for `distinct_experts` routed experts per MoE layer
// (their sum over layers): everything but the unchosen experts and the embedding (of which a
// step reads `batch` rows).
int64_t active_weight_bytes(const WeightLayout& l, int64_t distinct_experts_all_layers,
                            int64_t batch);

}  // namespace kimi::inference::engine
