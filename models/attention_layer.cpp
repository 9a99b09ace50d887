// Softmax attention layer forward (docs/math.md#mixers; core/ops/mixer_ops.h causal_attention,
// rope).
#include "models/attention_layer.h"

namespace kimi::models {

Tensor append_to_cache(Tensor* cache, const Tensor& fresh) {
  Tensor all = cache->defined() ? concat({*cache, fresh}, 1) : fresh;
  *cache = all.detach();
  return all;
}

AttentionLayer::AttentionLayer(const MixerOptions& opt, Rng& rng)
    : opt_(opt),
      H_(opt.num_heads),
      Hkv_(opt.num_kv_heads > 0 ? opt.num_kv_heads : opt.num_heads),
      D_(opt.head_dim) {
  if (H_ <= 0 || D_ <= 0 || H_ % Hkv_ != 0)
    throw UserError(
        fmt::format("attention: num_heads {} must be a multiple of num_kv_heads {} "
                    "(head_dim {})",
                    H_, Hkv_, D_));
  if (opt.rope && D_ % 2 != 0)
    throw UserError(fmt::format("attention: RoPE needs an even head_dim, got {}", D_));
  const nn::InitOptions init = init_options(opt);
  const int64_t d = opt.d_model;
  q_proj = register_module("q_proj", std::make_shared<nn::Linear>(d, H_ * D_, false, rng, init));
  k_proj = register_module("k_proj", std::make_shared<nn::Linear>(d, Hkv_ * D_, false, rng, init));
  v_proj = register_module("v_proj", std::make_shared<nn::Linear>(d, Hkv_ * D_, false, rng, init));
  o_proj = register_module("o_proj", std::make_shared<nn::Linear>(H_ * D_, d, false, rng, init));
}

std::unique_ptr<MixerState> AttentionLayer::new_state(int64_t batch) const {
  auto s = std::make_unique<KvCacheState>();
  s->batch = batch;
  return s;
}

Tensor AttentionLayer::forward(const Tensor& x, MixerState* state_in) {
  KvCacheState* state = nullptr;
  if (state_in) {
    state = dynamic_cast<KvCacheState*>(state_in);
    KIMI_CHECK(state && state->batch == x.size(0),
               "attention: state not made for this layer "
               "and batch {}",
               x.size(0));
  }
  Tensor q = split_heads(q_proj->forward(x), H_);
  Tensor k = split_heads(k_proj->forward(x), Hkv_);
  Tensor v = split_heads(v_proj->forward(x), Hkv_);
  const int64_t pos0 = state ? state->length : 0;
  if (opt_.rope) q = rope(q, pos0, opt_.rope_theta), k = rope(k, pos0, opt_.rope_theta);
  if (state) {
    k = append_to_cache(&state->k, k);
    v = append_to_cache(&state->v, v);
    state->length += x.size(1);
  }
  return o_proj->forward(merge_heads(causal_attention(q, k, v)));
}

}  // namespace kimi::models
