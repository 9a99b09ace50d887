// Gated DeltaNet layer (FLA fla/layers/gated_deltanet.py; docs/math.md#mixers and
// docs/models.md#layers): the delta rule with one scalar decay per head and token, g = -exp(A_log)
// * softplus(a_proj(x) + dt_bias), value dim expand_v * head_dim, full-rank output gate g_proj.
// Parameter names as FLA's.
#pragma once

#include "models/delta_layer_base.h"

namespace kimi::models {

class GdnLayer : public DeltaLayerBase {
 public:
  GdnLayer(const MixerOptions& opt, Rng& rng);
  Tensor forward(const Tensor& x, MixerState* state = nullptr) override;

  std::shared_ptr<nn::Linear> a_proj, b_proj;  // d -> H
  Tensor A_log, dt_bias;                       // [H]
  std::shared_ptr<nn::Linear> g_proj;          // d -> H*V, no bias; null without a gate
  std::shared_ptr<nn::RMSNorm> o_norm;
  std::shared_ptr<nn::Linear> o_proj;
};

}  // namespace kimi::models
