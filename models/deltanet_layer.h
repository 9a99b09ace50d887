// DeltaNet layer (FLA fla/layers/delta_net.py with its defaults: use_beta, short conv + SiLU,
// qk_activation silu, qk_norm l2, use_gate False; docs/math.md#mixers and docs/models.md#layers):
// the ungated delta rule, beta = sigmoid(b_proj(x)), per-head RMSNorm on o, o_proj. Key dim per
// head = head_dim, value dim per head = expand_v * head_dim (FLA derives both from hidden_size and
// num_heads).
#pragma once

#include "models/delta_layer_base.h"

namespace kimi::models {

class DeltaNetLayer : public DeltaLayerBase {
 public:
  DeltaNetLayer(const MixerOptions& opt, Rng& rng);
  Tensor forward(const Tensor& x, MixerState* state = nullptr) override;

  std::shared_ptr<nn::Linear> b_proj;  // d -> H
  std::shared_ptr<nn::RMSNorm> o_norm;
  std::shared_ptr<nn::Linear> o_proj;
};

}  // namespace kimi::models
