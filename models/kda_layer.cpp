// KDA layer forward (FLA fla/layers/kda.py, fla/ops/kda/gate.py; docs/models.md#layers).
#include "models/kda_layer.h"

namespace kimi::models {

KdaLayer::KdaLayer(const MixerOptions& opt, Rng& rng)
    : DeltaLayerBase("kda", opt, value_head_dim(opt, "kda")) {
  check_output_gate(opt.output_gate, "kda");
  const nn::InitOptions init = init_options(opt);
  const int64_t d = opt.d_model;
  register_qkv(rng);
  register_convs(rng);
  f_proj = register_module("f_proj", std::make_shared<LowRank>(d, V_, H_ * K_, false, rng, init));
  b_proj = register_module("b_proj", std::make_shared<nn::Linear>(d, H_, false, rng, init));
  A_log = register_parameter("A_log", init_a_log(H_, 1, 16, rng, opt.dtype));
  dt_bias = register_parameter("dt_bias", init_dt_bias(H_ * K_, opt, rng));
  if (opt.output_gate != "none")
    g_proj = register_module("g_proj", std::make_shared<LowRank>(d, V_, H_ * V_, true, rng, init));
  o_norm = register_module("o_norm", std::make_shared<nn::RMSNorm>(V_, opt.norm_eps, opt.dtype));
  o_proj = register_module("o_proj", std::make_shared<nn::Linear>(H_ * V_, d, false, rng, init));
}

Tensor KdaLayer::forward(const Tensor& x, MixerState* state_in) {
  RecurrentState* state = state_in ? as_recurrent_state(state_in, x.size(0), "kda") : nullptr;
  Qkv qkv = project_qkv(x, state);
  // g = -exp(A_log)[h] * softplus(f + dt_bias), per key channel, in log space (<= 0). Under
  // autocast the F32 dt_bias promotes f: the log-decays stay fp32 up to the kernel.
  Tensor f = split_heads(softplus(f_proj->forward(x) + dt_bias), H_);
  Tensor g = f * neg(exp(A_log)).reshape({H_, 1});
  Tensor beta = sigmoid(b_proj->forward(x));
  Tensor o = mix(qkv, g, beta, GateKind::kPerChannel, state);
  Tensor z = g_proj ? split_heads(g_proj->forward(x), H_) : Tensor();
  o = gated_rms_norm(o, o_norm->weight, o_norm->eps, z, opt_.output_gate);
  return o_proj->forward(merge_heads(o));
}

}  // namespace kimi::models
