// Basic layers: Linear (PyTorch layout), Embedding, RMSNorm, SwiGLU MLP.
#pragma once

#include "core/nn/module.h"
#include "core/ops.h"

namespace kimi::nn {

struct InitOptions {
  double std = 0.02;  // normal init of weights (as Hugging Face's initializer_range)
  DType dtype = DType::kF32;
};

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, Rng& rng, const InitOptions& init = {});
  Tensor forward(const Tensor& x) const { return linear(x, weight, bias); }
  Tensor weight;  // [out, in]
  Tensor bias;    // [out] or undefined
};

class Embedding : public Module {
 public:
  Embedding(int64_t vocab, int64_t dim, Rng& rng, const InitOptions& init = {});
  Tensor forward(const Tensor& ids) const { return embedding(weight, ids); }
  Tensor weight;  // [vocab, dim]
};

class RMSNorm : public Module {
 public:
  RMSNorm(int64_t dim, double eps, DType dtype = DType::kF32);
  Tensor forward(const Tensor& x) const { return rms_norm(x, weight, eps); }
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
