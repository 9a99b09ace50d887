// DeltaNet layer forward (FLA fla/layers/delta_net.py; docs/models.md#layers).
#include "models/deltanet_layer.h"

namespace kimi::models {

DeltaNetLayer::DeltaNetLayer(const MixerOptions& opt, Rng& rng)
    : DeltaLayerBase("deltanet", opt, value_head_dim(opt, "deltanet")) {
  const nn::InitOptions init = init_options(opt);
  register_qkv(rng);
  b_proj =
      register_module("b_proj", std::make_shared<nn::Linear>(opt.d_model, H_, false, rng, init));
  register_convs(rng);
  o_norm = register_module("o_norm", std::make_shared<nn::RMSNorm>(V_, opt.norm_eps, opt.dtype));
  o_proj = register_module("o_proj",
                           std::make_shared<nn::Linear>(H_ * V_, opt.d_model, false, rng, init));
}

Tensor DeltaNetLayer::forward(const Tensor& x, MixerState* state_in) {
  RecurrentState* state = state_in ? as_recurrent_state(state_in, x.size(0), "deltanet") : nullptr;
  Qkv qkv = project_qkv(x, state);
  Tensor beta = sigmoid(b_proj->forward(x));
  Tensor o = mix(qkv, Tensor(), beta, GateKind::kNone, state);
  return o_proj->forward(merge_heads(o_norm->forward(o)));
}

}  // namespace kimi::models
