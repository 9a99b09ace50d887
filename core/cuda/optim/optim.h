// Optimizer kernels for parameters on the GPU: fused AdamW and SGD steps over fp32 parameters,
// gradients and state (in place, one pass each), and the pieces of global gradient-norm
// clipping. Raw pointers, contiguous, on stream(); core/optim/optimizer.cpp calls these.
#pragma once

#include <cstdint>

#include "core/cuda/runtime/copy.h"

namespace kimi::cuda {

struct AdamWStep {
  float lr, beta1, beta2, eps, weight_decay;
  float bias_correction1, bias_correction2;  // 1 - beta^step, computed in double by the caller
};
// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr ((m / bc1) / (sqrt(v / bc2) + eps) + wd p)
void adamw_step(int64_t n, float* p, const float* g, float* m, float* v, const AdamWStep& s);
// buf = momentum buf + g + wd p; p -= lr buf
void sgd_step(int64_t n, float* p, const float* g, float* buf, float lr, float momentum,
              float weight_decay);

// sum_k sum_i x_k[i]^2 over `count` tensors (F32, BF16 or F64), accumulated in fp64 on the
// device and read back once: the single synchronisation of gradient clipping.
double sum_of_squares(int count, const ElemType* types, const int64_t* sizes,
                      const void* const* data);

}  // namespace kimi::cuda
