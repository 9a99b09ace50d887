// Pieces shared by the linear-attention mixers (KDA, GDN, DeltaNet, Mamba2): the decode state,
// FLA's two-layer low-rank projections (nn.Sequential names "0", "1"), the gated output norm
// (FLA FusedRMSNormGated), the dt / A initialisers (FLA gated_deltanet.py, kda.py, HF Mamba2).
#pragma once

#include <string>
#include <vector>

#include "core/nn/layers.h"
#include "models/mixer.h"
#include "models/short_conv.h"

namespace kimi::models {

// Recurrent state [B,H,K,V] plus the tails of each short conv (in the layer's conv order).
struct RecurrentState : MixerState {
  int64_t batch = 0;
  Tensor h;
  std::vector<Tensor> conv_tails;
};

// The state of a linear mixer, checked against its batch (throws on a wrong state type).
RecurrentState* as_recurrent_state(MixerState* state, int64_t batch, const char* layer);

// nn.Sequential(Linear(in, mid, no bias), Linear(mid, out, bias?)): names "0.weight", "1.*".
class LowRank : public nn::Module {
 public:
  LowRank(int64_t in, int64_t mid, int64_t out, bool out_bias, Rng& rng,
          const nn::InitOptions& init);
  Tensor forward(const Tensor& x) const { return second->forward(first->forward(x)); }
  std::shared_ptr<nn::Linear> first, second;
};

// o [B,T,H,V]: RMSNorm over V with weight [V], times act(z) (z like o; "sigmoid" | "swish");
// act "none" (or z undefined) = the norm alone.
Tensor gated_rms_norm(const Tensor& o, const Tensor& weight, double eps, const Tensor& z,
                      const std::string& act);
void check_output_gate(const std::string& act, const char* layer);

// log(U(lo, hi)) per entry: FLA's A_log init (KDA U(1,16), GDN U(0,16)).
Tensor init_a_log(int64_t n, double lo, double hi, Rng& rng, DType dtype);
// inverse_softplus(dt), dt = exp(U(log opt.dt_min, log opt.dt_max)) clamped below at 1e-4
// (FLA, Mamba2; defaults 1e-3, 1e-1).
Tensor init_dt_bias(int64_t n, const MixerOptions& opt, Rng& rng);

// Value dim per head = expand_v * head_dim; a UserError if that is not a whole number.
int64_t value_head_dim(const MixerOptions& opt, const char* layer);
nn::InitOptions init_options(const MixerOptions& opt);
// [B,T,H*D] -> [B,T,H,D] and back.
Tensor split_heads(const Tensor& x, int64_t heads);
Tensor merge_heads(const Tensor& x);

}  // namespace kimi::models
