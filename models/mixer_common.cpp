// Shared pieces of the linear mixers; see mixer_common.h.
#include "models/mixer_common.h"

#include <algorithm>
#include <cmath>

namespace kimi::models {

RecurrentState* as_recurrent_state(MixerState* state, int64_t batch, const char* layer) {
  auto* s = dynamic_cast<RecurrentState*>(state);
  KIMI_CHECK(s != nullptr, "{}: the state was not made by this kind of layer", layer);
  KIMI_CHECK(s->batch == batch, "{}: state for batch {}, input batch {}", layer, s->batch, batch);
  return s;
}

LowRank::LowRank(int64_t in, int64_t mid, int64_t out, bool out_bias, Rng& rng,
                 const nn::InitOptions& init) {
  first = register_module("0", std::make_shared<nn::Linear>(in, mid, false, rng, init));
  second = register_module("1", std::make_shared<nn::Linear>(mid, out, out_bias, rng, init));
}

void check_output_gate(const std::string& act, const char* layer) {
  if (act != "sigmoid" && act != "swish" && act != "none")
    throw UserError(fmt::format("{}: unknown output_gate '{}' (sigmoid, swish, none)", layer, act));
}

Tensor gated_rms_norm(const Tensor& o, const Tensor& weight, double eps, const Tensor& z,
                      const std::string& act) {
  Tensor y = rms_norm(o, nn::cast_like(weight, o), eps);
  if (act == "none" || !z.defined()) return y;
  return y * (act == "sigmoid" ? sigmoid(z) : silu(z));
}

Tensor init_a_log(int64_t n, double lo, double hi, Rng& rng, DType dtype) {
  std::vector<double> v(n);
  // U(0, 16) can draw 0 (FLA's GDN): keep log finite.
  for (double& a : v) a = std::log(std::max(lo + (hi - lo) * rng.uniform01(), 1e-4));
  return Tensor::from_vector(v, {n}).to(dtype);
}

Tensor init_dt_bias(int64_t n, const MixerOptions& opt, Rng& rng) {
  std::vector<double> v(n);
  const double lo = std::log(opt.dt_min), hi = std::log(opt.dt_max);
  for (double& b : v) {
    const double dt = std::max(std::exp(lo + (hi - lo) * rng.uniform01()), 1e-4);
    b = dt + std::log(-std::expm1(-dt));  // softplus(b) = dt
  }
  return Tensor::from_vector(v, {n}).to(opt.dtype);
}

nn::InitOptions init_options(const MixerOptions& opt) {
  nn::InitOptions init;
  init.std = opt.init_std;
  init.dtype = opt.dtype;
  return init;
}

int64_t value_head_dim(const MixerOptions& opt, const char* layer) {
  const double v = opt.expand_v * static_cast<double>(opt.head_dim);
  if (!(v >= 1) || std::abs(v - std::round(v)) > 1e-6)
    throw UserError(fmt::format("{}: expand_v {} x head_dim {} is not a whole value dim", layer,
                                opt.expand_v, opt.head_dim));
  return static_cast<int64_t>(std::llround(v));
}

Tensor split_heads(const Tensor& x, int64_t heads) {
  return x.reshape({x.size(0), x.size(1), heads, x.size(2) / heads});
}

Tensor merge_heads(const Tensor& x) {
  return x.reshape({x.size(0), x.size(1), x.size(2) * x.size(3)});
}

}  // namespace kimi::models
