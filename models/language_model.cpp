// The block-stacked language model used for the synthetic tasks and byte-level LM runs.
#include "models/language_model.h"

namespace kimi::models {

// SwiGLU hidden size: 8/3 d rounded up to a multiple of 32 (Llama's rule) unless given.
static int64_t mlp_hidden(const ModelConfig& cfg) {
  if (cfg.mlp_hidden > 0) return cfg.mlp_hidden;
  int64_t h = (8 * cfg.d_model + 2) / 3;
  return (h + 31) / 32 * 32;
}

Block::Block(const ModelConfig& cfg, const std::string& k, Rng& rng) : kind(k) {
  nn::InitOptions init{cfg.init_std};
  mixer_norm =
      register_module("mixer_norm", std::make_shared<nn::RMSNorm>(cfg.d_model, cfg.norm_eps));
  mixer =
      register_module("mixer", std::shared_ptr<Mixer>(make_mixer(mixer_options(cfg, kind), rng)));
  if (cfg.mlp) {
    mlp_norm =
        register_module("mlp_norm", std::make_shared<nn::RMSNorm>(cfg.d_model, cfg.norm_eps));
    mlp = register_module("mlp",
                          std::make_shared<nn::SwiGLU>(cfg.d_model, mlp_hidden(cfg), rng, init));
  }
}

Tensor Block::forward(const Tensor& x, MixerState* state) {
  Tensor h = x + mixer->forward(mixer_norm->forward(x), state);
  if (mlp) h = h + mlp->forward(mlp_norm->forward(h));
  return h;
}

LanguageModel::LanguageModel(const ModelConfig& cfg, int64_t vocab_size, uint64_t seed)
    : kinds_(layer_mixers(cfg)), vocab_(vocab_size) {
  Rng rng(seed);
  nn::InitOptions init{cfg.init_std};
  embeddings_ = register_module(
      "embeddings", std::make_shared<nn::Embedding>(vocab_size, cfg.d_model, rng, init));
  for (size_t i = 0; i < kinds_.size(); ++i)
    layers_.push_back(register_module("layers." + std::to_string(i),
                                      std::make_shared<Block>(cfg, kinds_[i], rng)));
  norm_ = register_module("norm", std::make_shared<nn::RMSNorm>(cfg.d_model, cfg.norm_eps));
  if (!cfg.tie_embeddings)
    lm_head_ = register_module(
        "lm_head", std::make_shared<nn::Linear>(cfg.d_model, vocab_size, false, rng, init));
}

Tensor LanguageModel::forward(const Tensor& ids, ModelState* state) {
  KIMI_CHECK(ids.dim() == 2, "LanguageModel: ids must be [B, T], got {}", shape_str(ids.shape()));
  if (state)
    KIMI_CHECK(state->layers.size() == layers_.size(),
               "LanguageModel: state for {} layers, model has {}", state->layers.size(),
               layers_.size());
  Tensor h = embeddings_->forward(ids);
  for (size_t i = 0; i < layers_.size(); ++i)
    h = layers_[i]->forward(h, state ? state->layers[i].get() : nullptr);
  h = norm_->forward(h);
  if (lm_head_) return lm_head_->forward(h);
  h = nn::autocast(h);
  return linear(h, nn::cast_like(embeddings_->weight, h));
}

ModelState LanguageModel::new_state(int64_t batch) const {
  ModelState s;
  for (const auto& layer : layers_) s.layers.push_back(layer->mixer->new_state(batch));
  return s;
}

// BF16 logits (autocast) give an F32 loss: the cross-entropy kernels compute in fp32.
Tensor lm_loss(const Tensor& logits, const Tensor& labels) {
  const int64_t V = logits.size(-1);
  Tensor loss = cross_entropy(logits.reshape({-1, V}), labels.reshape({-1}));
  return loss.dtype() == DType::kBF16 ? loss.to(DType::kF32) : loss;
}

}  // namespace kimi::models
