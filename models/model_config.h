// The model's configuration (the keys under model.*), owned by the model layer: trainer/config*
// decodes YAML into it and validates it; the models build from it. Defaults follow the paper's
// synthetic setting (docs/paper.md#synthetic-tasks).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kimi {

struct Mamba2Config {
  int64_t d_state = 64;
  int64_t expand = 2;
};

// model.moe.*: sparse MoE feed-forward layers. num_experts 0 = off.
struct MoeConfig {
  int64_t num_experts = 0;    // routed experts per MoE layer; 0 = no MoE
  int64_t top_k = 2;          // experts per token
  int64_t expert_hidden = 0;  // SwiGLU hidden size of each expert; 0 = the dense MLP's
  int64_t num_shared = 1;     // always-on shared experts (one SwiGLU of num_shared * hidden)
  int64_t first_dense = 0;    // layers below this keep the dense MLP (Kimi's first_k_dense_replace)
  double routed_scaling_factor = 1.0;  // Kimi-Linear-48B: 2.446
  double bias_update_rate = 1e-3;      // u: bias_e += u * sign(mean load - load_e) per step
  double aux_loss_coef = 0.0;          // load-balance loss coefficient; 0 = none
};

struct ModelConfig {
  int64_t d_model = 256;
  int64_t n_layers = 2;
  std::vector<std::string> mixer = {"kda"};  // one name for all layers, or one per layer
  std::string hybrid;  // "kda:attention=3:1"; empty = off; when set it decides the layers
  int64_t num_heads = 2;
  int64_t head_dim = 128;
  int64_t num_kv_heads = 0;  // 0 = num_heads (resolved at load)
  double expand_v = 1.0;
  bool short_conv = true;
  int64_t conv_size = 4;
  std::string output_gate = "auto";  // auto (FLA: KDA sigmoid, GDN swish) | sigmoid | swish | none
  bool rope = false;  // attention, and MLA's qk_rope_dim slice; Kimi Linear's global layers: NoPE
  double rope_theta = 10000.0;
  bool mlp = false;        // zoology's MQAR models have no MLP
  int64_t mlp_hidden = 0;  // 0 = auto (the model's SwiGLU rule)
  bool tie_embeddings = false;
  double norm_eps = 1e-5;
  int64_t chunk_size = 64;
  int64_t kv_lora_rank = 64;  // MLA
  int64_t q_lora_rank = 0;    // MLA; 0 = full-rank q projection
  int64_t qk_rope_dim = 0;    // MLA: the shared key slice; rotated when rope is true
  Mamba2Config mamba2;
  MoeConfig moe;
  double init_std = 0.02;
  // Initial step sizes softplus(dt_bias) of the decay gates of kda, gdn and mamba2, drawn
  // log-uniform in [dt_min, dt_max] (Mamba's names; FLA's defaults). A channel's initial
  // log-decay is -A dt: smaller values start the layer remembering longer.
  double dt_min = 1e-3, dt_max = 1e-1;
};

// The mixer of each layer: model.hybrid "a:b=x:y" gives [a]*x then [b]*y per group (the global
// layer last; a short last group keeps its b's at the end), else model.mixer (one name for all
// layers, or exactly n_layers names). Every name must be a kind in the mixer registry
// (models::mixer_kinds()). Throws UserError naming the key.
std::vector<std::string> layer_mixers(const ModelConfig& model);

// Checks model.moe.* (one line naming the key). Throws UserError.
void validate_moe(const ModelConfig& model);

namespace models {

struct MixerOptions;  // models/mixer.h

// The one conversion from the model config to the options of a layer of mixer `kind` (the
// fields MixerOptions shares with model.*; "auto" output gates resolved per kind; dtype F32).
MixerOptions mixer_options(const ModelConfig& cfg, const std::string& kind);

}  // namespace models
}  // namespace kimi
