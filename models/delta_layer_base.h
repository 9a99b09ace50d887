// The common body of the delta-rule layers (FLA fla/layers/{kda,gated_deltanet,delta_net}.py;
// docs/models.md#layers): q/k/v projections, short convs + SiLU (SiLU alone when short_conv is
// off, as FLA), per-head L2 norm of q and k, one delta_rule call with the decode state, and the
// output RMSNorm (+ gate) and o_proj. Subclasses add the gate g, beta and the output gate z.
#pragma once

#include <memory>

#include "models/mixer_common.h"

namespace kimi::models {

class DeltaLayerBase : public Mixer {
 public:
  std::unique_ptr<MixerState> new_state(int64_t batch) const override;

  std::shared_ptr<nn::Linear> q_proj, k_proj, v_proj;
  std::shared_ptr<ShortConv> q_conv1d, k_conv1d, v_conv1d;  // null when short_conv is off

 protected:
  // key dim per head = head_dim, value dim per head = head_v.
  DeltaLayerBase(const char* name, const MixerOptions& opt, int64_t head_v);
  void register_qkv(Rng& rng);  // registered by the subclass, in FLA's order
  void register_convs(Rng& rng);

  struct Qkv {
    Tensor q, k, v;  // [B,T,H,K] (L2-normalised), [B,T,H,K] (idem), [B,T,H,V]
  };
  Qkv project_qkv(const Tensor& x, RecurrentState* state) const;
  // delta_rule(q, k, v, g, beta) from state->h (zero without a state); stores the final state.
  Tensor mix(const Qkv& qkv, const Tensor& g, const Tensor& beta, GateKind gate,
             RecurrentState* state) const;

  MixerOptions opt_;
  int64_t H_, K_, V_;
  const char* name_;  // for error messages
};

}  // namespace kimi::models
