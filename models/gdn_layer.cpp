// GDN layer forward (FLA fla/layers/gated_deltanet.py, use_gate_in_kernel; docs/models.md#layers).
#include "models/gdn_layer.h"

namespace kimi::models {

GdnLayer::GdnLayer(const MixerOptions& opt, Rng& rng)
    : DeltaLayerBase("gdn", opt, value_head_dim(opt, "gdn")) {
  check_output_gate(opt.output_gate, "gdn");
  const nn::InitOptions init = init_options(opt);
  const int64_t d = opt.d_model;
  register_qkv(rng);
  a_proj = register_module("a_proj", std::make_shared<nn::Linear>(d, H_, false, rng, init));
  b_proj = register_module("b_proj", std::make_shared<nn::Linear>(d, H_, false, rng, init));
  A_log = register_parameter("A_log", init_a_log(H_, 0, 16, rng, opt.dtype));
  dt_bias = register_parameter("dt_bias", init_dt_bias(H_, opt, rng));
  register_convs(rng);
  if (opt.output_gate != "none")
    g_proj = register_module("g_proj", std::make_shared<nn::Linear>(d, H_ * V_, false, rng, init));
  o_norm = register_module("o_norm", std::make_shared<nn::RMSNorm>(V_, opt.norm_eps, opt.dtype));
  o_proj = register_module("o_proj", std::make_shared<nn::Linear>(H_ * V_, d, false, rng, init));
}

Tensor GdnLayer::forward(const Tensor& x, MixerState* state_in) {
  RecurrentState* state = state_in ? as_recurrent_state(state_in, x.size(0), "gdn") : nullptr;
  Qkv qkv = project_qkv(x, state);
  Tensor g = softplus(a_proj->forward(x) + dt_bias) * neg(exp(A_log));  // [B,T,H], <= 0
  Tensor beta = sigmoid(b_proj->forward(x));
  Tensor o = mix(qkv, g, beta, GateKind::kScalar, state);
  Tensor z = g_proj ? split_heads(g_proj->forward(x), H_) : Tensor();
  o = gated_rms_norm(o, o_norm->weight, o_norm->eps, z, opt_.output_gate);
  return o_proj->forward(merge_heads(o));
}

}  // namespace kimi::models
