// Kernel table of the optimizers: in-place AdamW and SGD updates of one parameter, and the two
// halves of global gradient-norm clipping. Called by core/optim/optimizer.cpp with the parameter,
// its gradient (contiguous, on the parameter's device, in its dtype) and its state.
#pragma once

#include <vector>

#include "core/backend/backend.h"

namespace kimi {

struct AdamWHyper {
  double lr, beta1, beta2, eps, weight_decay;
  double bias_correction1, bias_correction2;  // 1 - beta^step
};

struct OptimKernels {
  // m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr ((m / bc1) / (sqrt(v / bc2) + eps) + wd p)
  void (*adamw_step)(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                     const AdamWHyper& h) = nullptr;
  // buf = momentum buf + g + wd p; p -= lr buf
  void (*sgd_step)(const Tensor& p, const Tensor& g, const Tensor& buf, double lr, double momentum,
                   double weight_decay) = nullptr;
  // sum over the tensors of sum_i x[i]^2, accumulated in fp64 (one host read on a device).
  double (*sum_of_squares)(const std::vector<Tensor>& xs) = nullptr;
};

}  // namespace kimi
