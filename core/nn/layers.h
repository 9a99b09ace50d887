// Basic layers: Linear (PyTorch layout), Embedding, RMSNorm, SwiGLU MLP.
#pragma once

#include "core/nn/module.h"
#include "core/ops/ops.h"

namespace kimi::nn {

// Autocast (core/backend/precision.h). An activation entering the BF16 region: x itself unless
// autocast is on and x is an F32 CUDA tensor.
Tensor autocast(const Tensor& x);
// A parameter in the dtype of the activation it meets, through the differentiable to(): the F32
// master weight gets its gradient in F32. The identity when the dtypes agree (always, off
// autocast).
Tensor cast_like(const Tensor& param, const Tensor& x);

struct InitOptions {
  double std = 0.02;  // normal init of weights (as Hugging Face's initializer_range)
  DType dtype = DType::kF32;
};

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, Rng& rng, const InitOptions& init = {});
  Tensor forward(const Tensor& x) const;  // BF16 x BF16 under autocast
  Tensor weight;                          // [out, in]
  Tensor bias;                            // [out] or undefined
};

class Embedding : public Module {
 public:
  Embedding(int64_t vocab, int64_t dim, Rng& rng, const InitOptions& init = {});
  Tensor forward(const Tensor& ids) const { return autocast(embedding(weight, ids)); }
  Tensor weight;  // [vocab, dim]
};

class RMSNorm : public Module {
 public:
  RMSNorm(int64_t dim, double eps, DType dtype = DType::kF32);
  Tensor forward(const Tensor& x) const { return rms_norm(x, cast_like(weight, x), eps); }
  Tensor weight;  // [dim], ones
  double eps;
};

// down(silu(gate(x)) * up(x)); names as Hugging Face Llama/Kimi (gate_proj, up_proj, down_proj).
class SwiGLU : public Module {
 public:
  SwiGLU(int64_t dim, int64_t hidden, Rng& rng, const InitOptions& init = {});
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<Linear> gate_proj, up_proj, down_proj;
};

}  // namespace kimi::nn
