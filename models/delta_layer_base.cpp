// DeltaLayerBase: the shared front (q, k, v) and recurrence call of KDA, GDN and DeltaNet.
#include "models/delta_layer_base.h"

#include <cmath>

namespace kimi::models {

DeltaLayerBase::DeltaLayerBase(const char* name, const MixerOptions& opt, int64_t head_v)
    : opt_(opt), H_(opt.num_heads), K_(opt.head_dim), V_(head_v), name_(name) {
  if (H_ <= 0 || K_ <= 0 || V_ <= 0 || opt.d_model <= 0 || opt.conv_size < 1 || opt.chunk_size < 1)
    throw UserError(
        fmt::format("{}: bad sizes (d_model {}, heads {}, head_dim {}, value dim {}, "
                    "conv_size {}, chunk_size {})",
                    name, opt.d_model, H_, K_, V_, opt.conv_size, opt.chunk_size));
}

void DeltaLayerBase::register_qkv(Rng& rng) {
  const nn::InitOptions init = init_options(opt_);
  const int64_t d = opt_.d_model;
  q_proj = register_module("q_proj", std::make_shared<nn::Linear>(d, H_ * K_, false, rng, init));
  k_proj = register_module("k_proj", std::make_shared<nn::Linear>(d, H_ * K_, false, rng, init));
  v_proj = register_module("v_proj", std::make_shared<nn::Linear>(d, H_ * V_, false, rng, init));
}

void DeltaLayerBase::register_convs(Rng& rng) {
  if (!opt_.short_conv) return;
  const int64_t W = opt_.conv_size;
  auto conv = [&](int64_t dim) {
    return std::make_shared<ShortConv>(dim, W, false, true, rng, opt_.dtype);
  };
  q_conv1d = register_module("q_conv1d", conv(H_ * K_));
  k_conv1d = register_module("k_conv1d", conv(H_ * K_));
  v_conv1d = register_module("v_conv1d", conv(H_ * V_));
}

std::unique_ptr<MixerState> DeltaLayerBase::new_state(int64_t batch) const {
  auto s = std::make_unique<RecurrentState>();
  s->batch = batch;
  s->h = Tensor::zeros({batch, H_, K_, V_}, opt_.dtype, q_proj->weight.device());
  if (q_conv1d)
    s->conv_tails = {q_conv1d->new_tail(batch), k_conv1d->new_tail(batch),
                     v_conv1d->new_tail(batch)};
  return s;
}

DeltaLayerBase::Qkv DeltaLayerBase::project_qkv(const Tensor& x, RecurrentState* state) const {
  Tensor q = q_proj->forward(x), k = k_proj->forward(x), v = v_proj->forward(x);
  if (q_conv1d) {
    Tensor* tails = state ? state->conv_tails.data() : nullptr;
    q = q_conv1d->forward(q, tails ? &tails[0] : nullptr);
    k = k_conv1d->forward(k, tails ? &tails[1] : nullptr);
    v = v_conv1d->forward(v, tails ? &tails[2] : nullptr);
  } else {
    q = silu(q), k = silu(k), v = silu(v);
  }
  // FLA's use_qk_l2norm_in_kernel: x * rsqrt(sum x^2 + 1e-6) per head.
  return {l2_norm(split_heads(q, H_), 1e-6), l2_norm(split_heads(k, H_), 1e-6), split_heads(v, H_)};
}

Tensor DeltaLayerBase::mix(const Qkv& qkv, const Tensor& g, const Tensor& beta, GateKind gate,
                           RecurrentState* state) const {
  RecurrenceOptions ro;
  ro.gate = gate;
  ro.scale = 1.0 / std::sqrt(static_cast<double>(K_));
  ro.form = opt_.form;
  ro.chunk = opt_.chunk_size;
  RecurrenceResult r = delta_rule(qkv.q, qkv.k, qkv.v, g, beta, state ? state->h : Tensor(), ro);
  if (state) state->h = r.ht.detach();
  return r.o;
}

}  // namespace kimi::models
