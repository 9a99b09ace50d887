// KimiLinearModel: the Kimi-Linear hybrid for inference (HF modeling_kimi.py KimiLinearForCausalLM;
// docs/models.md#kimi-linear-48b): embed_tokens -> layers (x + attn(input_layernorm(x)) with KDA or
// MLA NoPE by the config's 1-based lists; then x + ffn(post_attention_layernorm(x)), a dense SwiGLU
// below first_k_dense_replace and the sparse MoE above) -> norm -> lm_head. Loads Hugging Face
// checkpoints (one file or sharded with an index); parameter names are HF's but for KDA's FLA
// names.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/kimi_linear_config.h"
#include "models/mixer.h"
#include "models/moe.h"

namespace kimi::models {

// The one conversion from a Kimi-Linear config to the options of its layer `layer` (0-based):
// KDA, or MLA (NoPE) where c.is_mla(layer). The synthetic-task models use the ModelConfig
// overload (models/model_config.h).
MixerOptions mixer_options(const KimiLinearConfig& c, int64_t layer, DType dtype);
// The options of the config's sparse MoE blocks (every MoE layer has the same).
MoeOptions moe_options(const KimiLinearConfig& c, DType dtype);

class KimiDecoderLayer : public nn::Module {
 public:
  KimiDecoderLayer(const KimiLinearConfig& c, int64_t layer, DType dtype, Rng& rng);
  Tensor forward(const Tensor& x, MixerState* state);

  std::shared_ptr<Mixer> self_attn;                  // KDA or MLA
  std::shared_ptr<nn::SwiGLU> mlp;                   // dense layers
  std::shared_ptr<SparseMoeBlock> block_sparse_moe;  // MoE layers
  std::shared_ptr<nn::RMSNorm> input_layernorm, post_attention_layernorm;
  bool is_mla;
};

// One decode cache per layer (KDA: recurrent state + conv tails; MLA: latent cache).
struct KimiLinearState {
  std::vector<std::unique_ptr<MixerState>> layers;
  int64_t length = 0;  // tokens seen
};

// Bytes a state holds now, by layer kind.
struct CacheUsage {
  int64_t kda_layers = 0, kda_bytes = 0;  // all KDA layers together (constant in the length)
  int64_t mla_layers = 0, mla_bytes = 0;  // all MLA layers together (grows with the length)
  int64_t tokens = 0, batch = 0;
};

class KimiLinearModel : public nn::Module {
 public:
  // Random init (HF's normal(0, 0.02) weights); dtype kF32 or kF64.
  KimiLinearModel(const KimiLinearConfig& c, DType dtype = DType::kF32, uint64_t seed = 0);
  // config.json + model.safetensors (or model-*-of-*.safetensors via
  // model.safetensors.index.json) from `dir`. Weights are converted to dtype.
  static std::unique_ptr<KimiLinearModel> from_pretrained(const std::string& dir,
                                                          DType dtype = DType::kF32);
  // Copies every checkpoint tensor of `dir` in by name (strict: unknown or missing names throw
  // kimi::UserError, except KDA's g_proj.1.bias, which HF lacks and is set to zero).
  void load_hf_weights(const std::string& dir);

  // ids int32/int64 [B, T] -> logits [B, T, vocab]. Inference only (records no graph). With a
  // state: continues from it and leaves it updated (prefill, then token-by-token decode).
  Tensor forward(const Tensor& ids, KimiLinearState* state = nullptr);
  KimiLinearState new_state(int64_t batch) const;
  static CacheUsage cache_usage(const KimiLinearState& state);

  const KimiLinearConfig& config() const { return config_; }
  DType dtype() const { return dtype_; }

  std::shared_ptr<nn::Embedding> embed_tokens;
  std::vector<std::shared_ptr<KimiDecoderLayer>> layers;
  std::shared_ptr<nn::RMSNorm> norm;
  std::shared_ptr<nn::Linear> lm_head;  // null when tied to embed_tokens

 private:
  KimiLinearConfig config_;
  DType dtype_;
};

// The pass around the decoder layers, shared with the sharded model of inference/parallel (whose
// layers differ): embed -> layer(i, h, layer i's state or null) for each layer -> norm -> lm_head
// (the tied embedding when null). Inference only (records no graph); advances state->length.
using LayerStep = std::function<Tensor(size_t, const Tensor&, MixerState*)>;
Tensor kimi_linear_pass(const Tensor& ids, KimiLinearState* state, size_t num_layers,
                        const nn::Embedding& embed, const LayerStep& layer, const nn::RMSNorm& norm,
                        const nn::Linear* lm_head);

// A Hugging Face checkpoint name -> ours: KDA's f_a_proj / f_b_proj / g_a_proj / g_b_proj become
// FLA's f_proj.0 / f_proj.1 / g_proj.0 / g_proj.1; everything else is unchanged.
std::string hf_to_kimi_name(const std::string& hf_name);
// The safetensors files of a checkpoint folder (the index's shards, or model.safetensors).
std::vector<std::string> checkpoint_files(const std::string& dir);

}  // namespace kimi::models
