// The Kimi-Linear hybrid's configuration, read from a Hugging Face config.json (keys of
// moonshotai/Kimi-Linear-48B-A3B's configuration_kimi.py), the full-size preset of
// docs/models.md#kimi-linear-48b, and the sizes derived from a config alone (no allocation):
// parameter counts (total and active per token) and decode-cache bytes (KDA state + conv tails, MLA
// latent per token).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kimi::models {

struct KimiLinearConfig {
  int64_t vocab_size = 0, hidden_size = 0, num_hidden_layers = 0;
  int64_t num_attention_heads = 0, head_dim = 0, intermediate_size = 0;
  double rms_norm_eps = 1e-5;
  // MLA (the full-attention layers). q_lora_rank 0 = none (null in the file).
  int64_t kv_lora_rank = 0, q_lora_rank = 0;
  int64_t qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;
  bool mla_use_nope = true;
  double mla_norm_eps = 1e-6;  // kv_a_layernorm / q_a_layernorm (DeepSeek's RMSNorm default)
  // KDA (linear_attn_config). The layer lists are 1-based, as in the file.
  int64_t kda_head_dim = 0, kda_num_heads = 0, short_conv_kernel_size = 4;
  std::vector<int64_t> kda_layers, full_attn_layers;
  // MoE.
  int64_t num_experts = 0, num_experts_per_token = 0, num_shared_experts = 0;
  int64_t moe_intermediate_size = 0, first_k_dense_replace = 0, moe_layer_freq = 1;
  double routed_scaling_factor = 1.0;
  bool moe_renormalize = true;
  std::string moe_router_activation_func = "sigmoid";
  int64_t num_expert_group = 1, topk_group = 1;
  bool tie_word_embeddings = false;

  // 0-based layer index.
  bool is_mla(int64_t layer) const;
  bool is_moe(int64_t layer) const;
};

// Parses and checks a config.json's text; `where` names it in errors (kimi::UserError).
KimiLinearConfig parse_kimi_linear_config(const std::string& json_text, const std::string& where);
KimiLinearConfig load_kimi_linear_config(const std::string& path);
// Kimi-Linear-48B-A3B (docs/models.md#kimi-linear-48b).
KimiLinearConfig kimi_linear_48b();
// The paper's full-attention baseline for `c`: every layer MLA (same width, heads, MoE and
// vocabulary). cache_sizes(twin).hybrid(n) == cache_sizes(c).all_mla(n). Throws UserError when
// `c` has no MLA sizes to copy.
KimiLinearConfig all_mla_twin(const KimiLinearConfig& c);

// Parameters counted from the config, as the Hugging Face checkpoint holds them (KDA's g_b_proj
// without a bias). active = what one token uses: everything but the unchosen routed experts.
struct ParameterCount {
  int64_t embedding = 0, lm_head = 0, kda = 0, mla = 0, dense_mlp = 0, moe = 0, norms = 0;
  int64_t routed_experts = 0;  // all routed experts of all MoE layers (inside `moe`)
  int64_t total = 0, active = 0;
};
ParameterCount parameter_count(const KimiLinearConfig& c);

// Decode-cache bytes from the config. state_bytes: bytes per element of the KDA recurrent state
// and conv tails; latent_bytes: per element of the MLA cache (latent + shared rope slice).
struct CacheSizes {
  int64_t kda_state_per_layer = 0;      // H * K * V (whatever the length)
  int64_t kda_conv_per_layer = 0;       // 3 tails of (W-1) * H*K
  int64_t mla_per_token_per_layer = 0;  // kv_lora_rank + qk_rope_head_dim
  int64_t num_kda = 0, num_mla = 0;
  // The whole cache of one sequence of `tokens` tokens (all layers).
  int64_t hybrid(int64_t tokens) const;
  // The same model with every layer MLA.
  int64_t all_mla(int64_t tokens) const;
};
CacheSizes cache_sizes(const KimiLinearConfig& c, int64_t state_bytes, int64_t latent_bytes);

}  // namespace kimi::models
