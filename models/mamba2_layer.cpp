// Mamba2 layer forward (HF Mamba2Mixer.torch_forward; docs/math.md#mixers and
// docs/models.md#layers).
#include "models/mamba2_layer.h"

#include <cmath>

namespace kimi::models {

Mamba2Layer::Mamba2Layer(const MixerOptions& opt, Rng& rng) : opt_(opt) {
  P_ = opt.head_dim, N_ = opt.d_state, G_ = opt.n_groups, d_inner_ = opt.expand * opt.d_model;
  if (P_ <= 0 || N_ <= 0 || G_ <= 0 || d_inner_ <= 0 || d_inner_ % P_ != 0)
    throw UserError(
        fmt::format("mamba2: d_inner = expand {} x d_model {} must be a multiple of "
                    "head_dim {} (d_state {}, n_groups {})",
                    opt.expand, opt.d_model, P_, N_, G_));
  H_ = d_inner_ / P_;
  if (H_ % G_ != 0 || d_inner_ % G_ != 0)
    throw UserError(fmt::format("mamba2: {} heads do not split into n_groups {}", H_, G_));
  conv_dim_ = d_inner_ + 2 * G_ * N_;
  const nn::InitOptions init = init_options(opt);
  const int64_t d = opt.d_model;
  in_proj = register_module(
      "in_proj", std::make_shared<nn::Linear>(d, d_inner_ + conv_dim_ + H_, false, rng, init));
  conv1d = register_module(
      "conv1d", std::make_shared<ShortConv>(conv_dim_, opt.conv_size, true, true, rng, opt.dtype));
  dt_bias = register_parameter("dt_bias", init_dt_bias(H_, opt, rng));
  std::vector<double> a(H_);
  for (int64_t h = 0; h < H_; ++h) a[h] = std::log(static_cast<double>(h + 1));  // A = 1..H (HF)
  A_log = register_parameter("A_log", Tensor::from_vector(a, {H_}).to(opt.dtype));
  D = register_parameter("D", Tensor::ones({H_}, opt.dtype));
  norm = register_module("norm", std::make_shared<nn::RMSNorm>(d_inner_, opt.norm_eps, opt.dtype));
  out_proj =
      register_module("out_proj", std::make_shared<nn::Linear>(d_inner_, d, false, rng, init));
}

std::unique_ptr<MixerState> Mamba2Layer::new_state(int64_t batch) const {
  auto s = std::make_unique<RecurrentState>();
  s->batch = batch;
  s->h = Tensor::zeros({batch, H_, N_, P_}, opt_.dtype, D.device());
  s->conv_tails = {conv1d->new_tail(batch)};
  return s;
}

Tensor Mamba2Layer::heads_from_groups(const Tensor& t) const {
  const int64_t B = t.size(0), T = t.size(1);
  return t.reshape({B, T, G_, 1, N_}).expand({B, T, G_, H_ / G_, N_}).reshape({B, T, H_, N_});
}

Tensor Mamba2Layer::forward(const Tensor& x, MixerState* state_in) {
  RecurrentState* state = state_in ? as_recurrent_state(state_in, x.size(0), "mamba2") : nullptr;
  const int64_t B = x.size(0), T = x.size(1);
  std::vector<Tensor> zxd = split(in_proj->forward(x), {d_inner_, conv_dim_, H_}, -1);
  Tensor xbc = conv1d->forward(zxd[1], state ? &state->conv_tails[0] : nullptr);
  std::vector<Tensor> xbc_parts = split(xbc, {d_inner_, G_ * N_, G_ * N_}, -1);
  Tensor xs = split_heads(xbc_parts[0], H_);  // [B,T,H,P]
  Tensor dt = softplus(zxd[2] + dt_bias);     // [B,T,H]
  Tensor g = dt * neg(exp(A_log));            // dt A, log decay
  RecurrenceOptions ro;
  ro.gate = GateKind::kScalar;
  ro.scale = 1.0;
  ro.form = opt_.form;
  ro.chunk = opt_.chunk_size;
  RecurrenceResult r =
      linear_recurrence(heads_from_groups(xbc_parts[2]), heads_from_groups(xbc_parts[1]),
                        xs * dt.unsqueeze(-1), g, state ? state->h : Tensor(), ro);
  if (state) state->h = r.ht.detach();
  Tensor y = merge_heads(r.o + xs * nn::cast_like(D, xs).reshape({H_, 1})) * silu(zxd[0]);
  // The gated norm normalises each group of d_inner / G channels (mamba_ssm's group_size).
  y = rms_norm(y.reshape({B, T, G_, d_inner_ / G_}), Tensor(), opt_.norm_eps)
          .reshape({B, T, d_inner_});
  return out_proj->forward(y * nn::cast_like(norm->weight, y));
}

}  // namespace kimi::models
