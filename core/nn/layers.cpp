// Basic layers.
#include "core/nn/layers.h"

namespace kimi::nn {

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
