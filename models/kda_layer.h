// Kimi Delta Attention layer (FLA fla/layers/kda.py; docs/math.md#mixers and
// docs/models.md#layers): the delta rule with one decay per key channel, g = -exp(A_log)[h] *
// softplus(f_proj(x) + dt_bias), a low-rank output gate and a per-head RMSNorm. Parameter names as
// FLA's state_dict.
#pragma once

#include "models/delta_layer_base.h"

namespace kimi::models {

class KdaLayer : public DeltaLayerBase {
 public:
  KdaLayer(const MixerOptions& opt, Rng& rng);
  Tensor forward(const Tensor& x, MixerState* state = nullptr) override;

  std::shared_ptr<LowRank> f_proj;  // d -> head_v -> H*K
  std::shared_ptr<nn::Linear> b_proj;
  Tensor A_log;                     // [H]
  Tensor dt_bias;                   // [H*K]
  std::shared_ptr<LowRank> g_proj;  // d -> head_v -> H*V (bias on the second); null if no gate
  std::shared_ptr<nn::RMSNorm> o_norm;
  std::shared_ptr<nn::Linear> o_proj;
};

}  // namespace kimi::models
