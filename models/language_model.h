// The synthetic-task / small LM model (docs/models.md#model): Embedding -> N pre-norm blocks
// (x + mixer(RMSNorm(x)), then x + SwiGLU(RMSNorm(x)) when model.mlp) -> RMSNorm -> LM head.
// The mixer of each layer comes from the config (one kind, a list, or a hybrid ratio).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/nn/layers.h"
#include "models/mixer.h"
#include "models/model_config.h"

namespace kimi::models {

class Block : public nn::Module {
 public:
  Block(const ModelConfig& cfg, const std::string& kind, Rng& rng);
  Tensor forward(const Tensor& x, MixerState* state);
  std::shared_ptr<nn::RMSNorm> mixer_norm, mlp_norm;
  std::shared_ptr<Mixer> mixer;
  std::shared_ptr<nn::SwiGLU> mlp;  // null when model.mlp is false
  std::string kind;
};

// One decode state per layer.
struct ModelState {
  std::vector<std::unique_ptr<MixerState>> layers;
};

class LanguageModel : public nn::Module {
 public:
  LanguageModel(const ModelConfig& cfg, int64_t vocab_size, uint64_t seed);
  // ids int32 [B, T] -> logits [B, T, vocab]. With a state: continues from it (decoding).
  Tensor forward(const Tensor& ids, ModelState* state = nullptr);
  ModelState new_state(int64_t batch) const;
  const std::vector<std::string>& layer_kinds() const { return kinds_; }
  int64_t vocab_size() const { return vocab_; }

 private:
  std::shared_ptr<nn::Embedding> embeddings_;
  std::vector<std::shared_ptr<Block>> layers_;
  std::shared_ptr<nn::RMSNorm> norm_;
  std::shared_ptr<nn::Linear> lm_head_;  // null when tied to the embeddings
  std::vector<std::string> kinds_;
  int64_t vocab_;
};

// Mean cross-entropy over labelled positions (labels int32 [B, T], -100 = not scored).
Tensor lm_loss(const Tensor& logits, const Tensor& labels);

}  // namespace kimi::models
