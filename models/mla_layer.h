// Multi-head latent attention (docs/math.md#mla, docs/models.md#kimi-linear-48b; HF
// modeling_kimi.py / DeepSeek-V3 names: q_proj or q_a_proj + q_a_layernorm + q_b_proj,
// kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj). The qk_rope slice of the kv projection
// is one key shared by all heads. NoPE by default, as Kimi Linear's global layers: that slice is
// never rotated. With rope = true (DeepSeek-V2's decoupled RoPE) it and each head's qk_rope part
// of q are rotated by position. Decoding caches the normalised latent and that slice (rotated
// when rope is on) and attends in the absorbed form (multi-query attention over the latent).
#pragma once

#include "models/mixer_common.h"

namespace kimi::models {

// Per token: the normalised latent [B,T,kv_lora_rank] and the shared slice [B,T,qk_rope_dim],
// already rotated when rope is on (undefined while empty, or when qk_rope_dim is 0).
struct LatentCacheState : MixerState {
  int64_t batch = 0, length = 0;
  Tensor latent, k_shared;
};

class MlaLayer : public Mixer {
 public:
  MlaLayer(const MixerOptions& opt, Rng& rng);
  Tensor forward(const Tensor& x, MixerState* state = nullptr) override;
  std::unique_ptr<MixerState> new_state(int64_t batch) const override;

  std::shared_ptr<nn::Linear> q_proj;              // when q_lora_rank == 0
  std::shared_ptr<nn::Linear> q_a_proj, q_b_proj;  // when q_lora_rank > 0
  std::shared_ptr<nn::RMSNorm> q_a_layernorm;
  std::shared_ptr<nn::Linear> kv_a_proj_with_mqa;  // d -> kv_lora_rank + qk_rope
  std::shared_ptr<nn::RMSNorm> kv_a_layernorm;     // over kv_lora_rank
  std::shared_ptr<nn::Linear> kv_b_proj;           // kv_lora_rank -> H (qk_nope + v_head)
  std::shared_ptr<nn::Linear> o_proj;              // H v_head -> d

 private:
  // Expanded form (training): per-head keys and values from kv_b_proj.
  Tensor attend_expanded(const Tensor& q, const Tensor& latent, const Tensor& k_shared) const;
  // Absorbed form (decoding): q_nope folded through kv_b_proj's key half, attention over the
  // cached latent, then kv_b_proj's value half.
  Tensor attend_absorbed(const Tensor& q, const Tensor& latent, const Tensor& k_shared) const;
  // Per-head product x [B,T,H,I] with w [H,I,O] -> [B,T,H,O].
  static Tensor per_head_matmul(const Tensor& x, const Tensor& w);

  MixerOptions opt_;
  int64_t H_, nope_, rope_, vd_, rank_;
  double scale_;
};

}  // namespace kimi::models
