// Softmax attention layer (docs/math.md#mixers; HF Llama names q_proj, k_proj, v_proj, o_proj, no
// bias): GQA through num_kv_heads, optional RoPE (rotate-half, HF), causal_attention over a KV
// cache when decoding.
#pragma once

#include "models/mixer_common.h"

namespace kimi::models {

// Cached keys and values [B, T_cached, Hkv, D] (undefined while empty).
struct KvCacheState : MixerState {
  int64_t batch = 0, length = 0;
  Tensor k, v;
};

class AttentionLayer : public Mixer {
 public:
  AttentionLayer(const MixerOptions& opt, Rng& rng);
  Tensor forward(const Tensor& x, MixerState* state = nullptr) override;
  std::unique_ptr<MixerState> new_state(int64_t batch) const override;

  std::shared_ptr<nn::Linear> q_proj, k_proj, v_proj, o_proj;

 private:
  MixerOptions opt_;
  int64_t H_, Hkv_, D_;
};

// Appends `fresh` [B,T,...] to the cache along T (the cached part holds no graph); returns the
// whole, with gradients flowing into `fresh`.
Tensor append_to_cache(Tensor* cache, const Tensor& fresh);

}  // namespace kimi::models
