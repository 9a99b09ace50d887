// The depthwise causal short convolution of the linear-attention layers (FLA
// fla/modules/convolution.py ShortConvolution, HF Mamba2's conv1d): weight stored as FLA's
// [D, 1, W] so checkpoints load, optional bias, optional SiLU. In decoding it carries the last
// W-1 inputs of the previous piece (passed to causal_conv1d as its prefix).
#pragma once

#include "core/nn/module.h"
#include "core/ops/ops.h"

namespace kimi::models {

class ShortConv : public nn::Module {
 public:
  // PyTorch Conv1d's default init: U(-1/sqrt(W), 1/sqrt(W)) (fan_in = W for a depthwise conv).
  ShortConv(int64_t dim, int64_t width, bool bias, bool silu, Rng& rng, DType dtype);
  // x [B,T,D] -> [B,T,D]. tail (may be null): [B,W-1,D] inputs before x (read), replaced by the
  // last W-1 inputs of concat(tail, x) (detached).
  Tensor forward(const Tensor& x, Tensor* tail) const;
  // Zeros [B, W-1, D] in the weight's dtype.
  Tensor new_tail(int64_t batch) const;

  Tensor weight;  // [D, 1, W]
  Tensor bias;    // [D] or undefined
  int64_t dim, width;
  bool silu;
};

}  // namespace kimi::models
