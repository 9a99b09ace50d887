// Basic layers.
#include "core/nn/layers.h"

#include "core/backend/precision.h"

namespace kimi::nn {

Tensor autocast(const Tensor& x) {
  const DType t = activation_dtype();
  if (t == DType::kF32 || x.dtype() != DType::kF32 || x.device() != Device::kCUDA) return x;
  return x.to(t);
}

Tensor cast_like(const Tensor& param, const Tensor& x) {
  if (!param.defined() || param.dtype() == x.dtype()) return param;
  return param.to(x.dtype());
}

Tensor Linear::forward(const Tensor& x) const {
  const Tensor xa = autocast(x);
  return linear(xa, cast_like(weight, xa), cast_like(bias, xa));
}

Linear::Linear(int64_t in, int64_t out, bool has_bias, Rng& rng, const InitOptions& init) {
  weight = register_parameter("weight", randn({out, in}, rng, init.std, init.dtype));
  if (has_bias) bias = register_parameter("bias", Tensor::zeros({out}, init.dtype));
}

Embedding::Embedding(int64_t vocab, int64_t dim, Rng& rng, const InitOptions& init) {
  weight = register_parameter("weight", randn({vocab, dim}, rng, init.std, init.dtype));
}

RMSNorm::RMSNorm(int64_t dim, double eps_, DType dtype) : eps(eps_) {
  weight = register_parameter("weight", Tensor::ones({dim}, dtype));
}

SwiGLU::SwiGLU(int64_t dim, int64_t hidden, Rng& rng, const InitOptions& init) {
  gate_proj = register_module("gate_proj", std::make_shared<Linear>(dim, hidden, false, rng, init));
  up_proj = register_module("up_proj", std::make_shared<Linear>(dim, hidden, false, rng, init));
  down_proj = register_module("down_proj", std::make_shared<Linear>(hidden, dim, false, rng, init));
}

Tensor SwiGLU::forward(const Tensor& x) const {
  return down_proj->forward(silu(gate_proj->forward(x)) * up_proj->forward(x));
}

}  // namespace kimi::nn
