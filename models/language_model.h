// The synthetic-task / small LM model (docs/models.md#model): Embedding -> N pre-norm blocks
// (x + mixer(RMSNorm(x)), then x + SwiGLU(RMSNorm(x)) when model.mlp, or x + MoE(RMSNorm(x)) in
// the MoE layers of model.moe) -> RMSNorm -> LM head.
// The mixer of each layer comes from the config (one kind, a list, or a hybrid ratio).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/nn/layers.h"
#include "models/mixer.h"
#include "models/model_config.h"
#include "models/moe.h"

namespace kimi::models {

class Block : public nn::Module {
 public:
  Block(const ModelConfig& cfg, const std::string& kind, int64_t layer, Rng& rng,
        DType dtype = DType::kF32);
  Tensor forward(const Tensor& x, MixerState* state);
  std::shared_ptr<nn::RMSNorm> mixer_norm, mlp_norm;
  std::shared_ptr<Mixer> mixer;
  std::shared_ptr<nn::SwiGLU> mlp;      // the dense MLP (model.mlp, below model.moe.first_dense)
  std::shared_ptr<SparseMoeBlock> moe;  // layers >= model.moe.first_dense when MoE is on
  std::string kind;
};

// One decode state per layer.
struct ModelState {
  std::vector<std::unique_ptr<MixerState>> layers;
};

class LanguageModel : public nn::Module {
 public:
  // dtype: of the parameters (F32 for training; F64 for the gradient tests).
  LanguageModel(const ModelConfig& cfg, int64_t vocab_size, uint64_t seed,
                DType dtype = DType::kF32);
  // ids int32 [B, T] -> logits [B, T, vocab]. With a state: continues from it (decoding).
  Tensor forward(const Tensor& ids, ModelState* state = nullptr);
  ModelState new_state(int64_t batch) const;
  const std::vector<std::string>& layer_kinds() const { return kinds_; }
  // MoE: the bias update of every MoE layer (SparseMoeBlock::after_optimizer_step); the trainer
  // calls it once after each optimizer step. Nothing happens without MoE layers.
  void after_optimizer_step(const LoadSum& sum_over_ranks = nullptr);
  // Per MoE layer (in layer order), the fraction of routed tokens each expert got over the last
  // optimizer step (SparseMoeBlock::expert_load). Empty without MoE layers.
  std::vector<std::vector<double>> moe_expert_load() const;
  // The layer index of each MoE layer, in the order of moe_expert_load().
  std::vector<int64_t> moe_layers() const;
  int64_t vocab_size() const { return vocab_; }

 private:
  std::shared_ptr<nn::Embedding> embeddings_;
  std::vector<std::shared_ptr<Block>> layers_;
  std::shared_ptr<nn::RMSNorm> norm_;
  std::shared_ptr<nn::Linear> lm_head_;  // null when tied to the embeddings
  std::vector<std::string> kinds_;
  int64_t vocab_;
};

// The largest expert load over the mean load (1/E), across MoE layers (per_layer as
// LanguageModel::moe_expert_load()): 1 = balanced, E = every token on one expert; NaN when
// nothing was routed yet. The one number of load balance that metrics.csv logs.
double moe_max_load(const std::vector<std::vector<double>>& per_layer);

// Mean cross-entropy over labelled positions (labels int32 [B, T], -100 = not scored).
Tensor lm_loss(const Tensor& logits, const Tensor& labels);

}  // namespace kimi::models
