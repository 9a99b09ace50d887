// The block-stacked language model used for the synthetic tasks and byte-level LM runs.
#include "models/language_model.h"

#include <algorithm>
#include <limits>

namespace kimi::models {

// SwiGLU hidden size: 8/3 d rounded up to a multiple of 32 (Llama's rule) unless given.
static int64_t mlp_hidden(const ModelConfig& cfg) {
  if (cfg.mlp_hidden > 0) return cfg.mlp_hidden;
  int64_t h = (8 * cfg.d_model + 2) / 3;
  return (h + 31) / 32 * 32;
}

Block::Block(const ModelConfig& cfg, const std::string& k, int64_t layer, Rng& rng, DType dtype)
    : kind(k) {
  nn::InitOptions init{cfg.init_std, dtype};
  mixer_norm = register_module("mixer_norm",
                               std::make_shared<nn::RMSNorm>(cfg.d_model, cfg.norm_eps, dtype));
  MixerOptions mo = mixer_options(cfg, kind);
  mo.dtype = dtype;
  mixer = register_module("mixer", std::shared_ptr<Mixer>(make_mixer(mo, rng)));
  const bool sparse = cfg.moe.num_experts > 0 && layer >= cfg.moe.first_dense;
  if (cfg.mlp || sparse)
    mlp_norm = register_module("mlp_norm",
                               std::make_shared<nn::RMSNorm>(cfg.d_model, cfg.norm_eps, dtype));
  if (sparse) {
    MoeOptions m;
    m.d_model = cfg.d_model, m.num_experts = cfg.moe.num_experts, m.top_k = cfg.moe.top_k;
    m.expert_hidden = cfg.moe.expert_hidden > 0 ? cfg.moe.expert_hidden : mlp_hidden(cfg);
    m.num_shared = cfg.moe.num_shared, m.routed_scaling_factor = cfg.moe.routed_scaling_factor;
    m.bias_update_rate = cfg.moe.bias_update_rate, m.aux_loss_coef = cfg.moe.aux_loss_coef;
    m.init_std = cfg.init_std, m.dtype = dtype;
    moe = register_module("moe", std::make_shared<SparseMoeBlock>(m, rng));
  } else if (cfg.mlp) {
    mlp = register_module("mlp",
                          std::make_shared<nn::SwiGLU>(cfg.d_model, mlp_hidden(cfg), rng, init));
  }
}

Tensor Block::forward(const Tensor& x, MixerState* state) {
  Tensor h = x + mixer->forward(mixer_norm->forward(x), state);
  if (mlp) h = h + mlp->forward(mlp_norm->forward(h));
  if (moe) h = h + moe->forward(mlp_norm->forward(h));
  return h;
}

LanguageModel::LanguageModel(const ModelConfig& cfg, int64_t vocab_size, uint64_t seed, DType dtype)
    : kinds_(layer_mixers(cfg)), vocab_(vocab_size) {
  Rng rng(seed);
  nn::InitOptions init{cfg.init_std, dtype};
  embeddings_ = register_module(
      "embeddings", std::make_shared<nn::Embedding>(vocab_size, cfg.d_model, rng, init));
  for (size_t i = 0; i < kinds_.size(); ++i)
    layers_.push_back(register_module(
        "layers." + std::to_string(i),
        std::make_shared<Block>(cfg, kinds_[i], static_cast<int64_t>(i), rng, dtype)));
  norm_ = register_module("norm", std::make_shared<nn::RMSNorm>(cfg.d_model, cfg.norm_eps, dtype));
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

void LanguageModel::after_optimizer_step(const LoadSum& sum_over_ranks) {
  for (const auto& layer : layers_)
    if (layer->moe) layer->moe->after_optimizer_step(sum_over_ranks);
}

std::vector<std::vector<double>> LanguageModel::moe_expert_load() const {
  std::vector<std::vector<double>> out;
  for (const auto& layer : layers_)
    if (layer->moe) out.push_back(layer->moe->expert_load());
  return out;
}

std::vector<int64_t> LanguageModel::moe_layers() const {
  std::vector<int64_t> out;
  for (size_t i = 0; i < layers_.size(); ++i)
    if (layers_[i]->moe) out.push_back(static_cast<int64_t>(i));
  return out;
}

double moe_max_load(const std::vector<std::vector<double>>& per_layer) {
  double worst = -1;
  for (const auto& load : per_layer)
    for (double l : load) worst = std::max(worst, l * static_cast<double>(load.size()));
  return worst < 0 ? std::numeric_limits<double>::quiet_NaN() : worst;
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
