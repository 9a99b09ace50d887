// Mamba2 layer (HF Mamba2Mixer.torch_forward, FLA fla/layers/mamba2.py; docs/math.md#mixers,
// docs/models.md#layers): in_proj -> [z, xBC, dt]; depthwise causal conv (with bias) + SiLU on xBC;
// the SSD scan as linear_recurrence(q = C, k = B, v = dt x, g = dt A, scale 1) + D x; gated RMSNorm
// rmsnorm(y * silu(z)) * norm.weight per group; out_proj. Names as HF's state_dict. The conv is
// always on (short_conv is not read) and the head count is expand * d_model / head_dim.
#pragma once

#include "models/mixer_common.h"

namespace kimi::models {

class Mamba2Layer : public Mixer {
 public:
  Mamba2Layer(const MixerOptions& opt, Rng& rng);
  Tensor forward(const Tensor& x, MixerState* state = nullptr) override;
  std::unique_ptr<MixerState> new_state(int64_t batch) const override;

  std::shared_ptr<nn::Linear> in_proj;  // d -> 2 d_inner + 2 G N + H, no bias
  std::shared_ptr<ShortConv> conv1d;    // over xBC: d_inner + 2 G N channels
  Tensor dt_bias, A_log, D;             // [H]
  std::shared_ptr<nn::RMSNorm> norm;    // weight [d_inner]; applied per group (see forward)
  std::shared_ptr<nn::Linear> out_proj;

 private:
  // [B,T,G*N] -> [B,T,H,N]: head h reads group h / (H/G) (HF's repeat_interleave).
  Tensor heads_from_groups(const Tensor& t) const;

  MixerOptions opt_;
  int64_t H_, P_, N_, G_, d_inner_, conv_dim_;
};

}  // namespace kimi::models
