// The CUDA backend registers itself when its library (an OBJECT library, so this file is always
// linked in) is part of a program: the device runtime behind Tensor's CUDA storage, what the
// kernels support, and every family's kernel table.
#include "core/backend/backend.h"
#include "core/cuda/supports.h"

namespace kimi {

void register_cuda_runtime();  // core/cuda/runtime/device_memory.cpp
// Each family's CUDA table, defined in its folder.
void register_cuda_softmax_kernels();
void register_cuda_elementwise_kernels();
void register_cuda_reduce_kernels();
void register_cuda_norm_kernels();
void register_cuda_product_kernels();
void register_cuda_sequence_kernels();
void register_cuda_optim_kernels();
void register_cuda_recurrence_kernels();
void register_cuda_attention_kernels();
void register_cuda_moe_kernels();

namespace {

const bool registered = [] {
  register_cuda_runtime();
  register_backend({Device::kCUDA, "cuda", cuda_supports});
  register_cuda_softmax_kernels();
  register_cuda_elementwise_kernels();
  register_cuda_reduce_kernels();
  register_cuda_norm_kernels();
  register_cuda_product_kernels();
  register_cuda_sequence_kernels();
  register_cuda_optim_kernels();
  register_cuda_recurrence_kernels();
  register_cuda_attention_kernels();
  register_cuda_moe_kernels();
  return true;
}();

}  // namespace
}  // namespace kimi
