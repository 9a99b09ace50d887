// MLA forward, expanded and absorbed forms (docs/math.md#mla and docs/models.md#kimi-linear-48b):
// DeepSeek-V3 MLA with Kimi Linear's NoPE by default (the shared qk_rope slice enters the scores
// unrotated), or with DeepSeek-V2's decoupled RoPE (rope = true: that slice and each head's
// qk_rope part of q are rotated by position; the latent part stays position-free, which is what
// lets decoding attend over the cached latent).
#include "models/mla_layer.h"

#include <cmath>

#include "models/attention_layer.h"

namespace kimi::models {

MlaLayer::MlaLayer(const MixerOptions& opt, Rng& rng)
    : opt_(opt),
      H_(opt.num_heads),
      nope_(opt.qk_nope_dim > 0 ? opt.qk_nope_dim : opt.head_dim),
      rope_(opt.qk_rope_dim),
      vd_(opt.v_head_dim > 0 ? opt.v_head_dim : opt.head_dim),
      rank_(opt.kv_lora_rank) {
  if (H_ <= 0 || nope_ <= 0 || rope_ < 0 || vd_ <= 0 || rank_ <= 0 || opt.q_lora_rank < 0)
    throw UserError(
        fmt::format("mla: bad sizes (heads {}, qk_nope {}, qk_rope {}, v_head {}, "
                    "kv_lora_rank {}, q_lora_rank {})",
                    H_, nope_, rope_, vd_, rank_, opt.q_lora_rank));
  // Refused rather than ignored (config validation names model.qk_rope_dim first).
  if (opt.rope && (rope_ == 0 || rope_ % 2 != 0))
    throw UserError(
        fmt::format("mla: rope needs an even qk_rope_dim > 0 (the rotated slice), got {}", rope_));
  scale_ = 1.0 / std::sqrt(static_cast<double>(nope_ + rope_));
  const nn::InitOptions init = init_options(opt);
  const int64_t d = opt.d_model, qk = nope_ + rope_;
  auto lin = [&](int64_t in, int64_t out) {
    return std::make_shared<nn::Linear>(in, out, false, rng, init);
  };
  if (opt.q_lora_rank == 0) {
    q_proj = register_module("q_proj", lin(d, H_ * qk));
  } else {
    q_a_proj = register_module("q_a_proj", lin(d, opt.q_lora_rank));
    q_a_layernorm = register_module(
        "q_a_layernorm",
        std::make_shared<nn::RMSNorm>(opt.q_lora_rank, opt.mla_norm_eps, opt.dtype));
    q_b_proj = register_module("q_b_proj", lin(opt.q_lora_rank, H_ * qk));
  }
  kv_a_proj_with_mqa = register_module("kv_a_proj_with_mqa", lin(d, rank_ + rope_));
  kv_a_layernorm = register_module(
      "kv_a_layernorm", std::make_shared<nn::RMSNorm>(rank_, opt.mla_norm_eps, opt.dtype));
  kv_b_proj = register_module("kv_b_proj", lin(rank_, H_ * (nope_ + vd_)));
  o_proj = register_module("o_proj", lin(H_ * vd_, d));
}

std::unique_ptr<MixerState> MlaLayer::new_state(int64_t batch) const {
  auto s = std::make_unique<LatentCacheState>();
  s->batch = batch;
  return s;
}

Tensor MlaLayer::per_head_matmul(const Tensor& x, const Tensor& w) {
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2), I = x.size(3), O = w.size(2);
  Tensor xh = x.permute({2, 0, 1, 3}).reshape({H, B * T, I});
  return matmul(xh, w).reshape({H, B, T, O}).permute({1, 2, 0, 3});
}

Tensor MlaLayer::attend_expanded(const Tensor& q, const Tensor& latent,
                                 const Tensor& k_shared) const {
  const int64_t B = latent.size(0), T = latent.size(1);
  std::vector<Tensor> kv = split(split_heads(kv_b_proj->forward(latent), H_), {nope_, vd_}, -1);
  Tensor k = kv[0];
  if (rope_ > 0) k = concat({k, k_shared.unsqueeze(2).expand({B, T, H_, rope_})}, -1);
  return causal_attention(q, k, kv[1], scale_);
}

// scores_h = q_nope_h . (W_k,h c) + q_pe . k_pe = (W_k,h^T q_nope_h) . c + q_pe . k_pe, and
// out_h = W_v,h (sum_j p_j c_j): one shared key [c, k_pe] and value c for all heads.
Tensor MlaLayer::attend_absorbed(const Tensor& q, const Tensor& latent,
                                 const Tensor& k_shared) const {
  Tensor w = nn::cast_like(kv_b_proj->weight, latent).reshape({H_, nope_ + vd_, rank_});
  std::vector<Tensor> wkv = split(w, {nope_, vd_}, 1);  // [H,nope,rank], [H,vd,rank]
  Tensor q_nope = rope_ > 0 ? q.narrow(3, 0, nope_) : q;
  Tensor qa = per_head_matmul(q_nope, wkv[0]);  // [B,T,H,rank]
  Tensor key = latent;
  if (rope_ > 0)
    qa = concat({qa, q.narrow(3, nope_, rope_)}, -1), key = concat({latent, k_shared}, -1);
  Tensor o_lat = causal_attention(qa, key.unsqueeze(2), latent.unsqueeze(2), scale_);
  return per_head_matmul(o_lat, wkv[1].transpose(1, 2));  // [B,T,H,vd]
}

Tensor MlaLayer::forward(const Tensor& x, MixerState* state_in) {
  LatentCacheState* state = nullptr;
  if (state_in) {
    state = dynamic_cast<LatentCacheState*>(state_in);
    KIMI_CHECK(state && state->batch == x.size(0),
               "mla: state not made for this layer and batch {}", x.size(0));
  }
  Tensor q =
      q_proj ? q_proj->forward(x) : q_b_proj->forward(q_a_layernorm->forward(q_a_proj->forward(x)));
  q = split_heads(q, H_);
  Tensor ckv = kv_a_proj_with_mqa->forward(x);
  Tensor latent = ckv, k_shared;
  if (rope_ > 0) {
    std::vector<Tensor> parts = split(ckv, {rank_, rope_}, -1);
    latent = parts[0], k_shared = parts[1];
  }
  latent = kv_a_layernorm->forward(latent);
  if (opt_.rope) {
    // Positions continue from the cache; the cache keeps the rotated k_rope (DeepSeek-V2), so a
    // cached key never needs its position again. Rotate-half pairs (HF Llama's rope); DeepSeek's
    // interleaved pairs are the same map up to a fixed permutation of the slice's channels.
    const int64_t pos0 = state ? state->length : 0;
    Tensor q_pe = rope(q.narrow(3, nope_, rope_), pos0, opt_.rope_theta);
    q = concat({q.narrow(3, 0, nope_), q_pe}, -1);
    k_shared = rope(k_shared.unsqueeze(2), pos0, opt_.rope_theta).squeeze(2);
  }
  Tensor o;
  if (!state) {
    o = attend_expanded(q, latent, k_shared);
  } else {
    latent = append_to_cache(&state->latent, latent);
    if (rope_ > 0) k_shared = append_to_cache(&state->k_shared, k_shared);
    state->length += x.size(1);
    o = attend_absorbed(q, latent, k_shared);
  }
  return o_proj->forward(merge_heads(o));
}

}  // namespace kimi::models
