// The CPU backend: the oracle every other backend is checked against. It runs every op on every
// float dtype (F32, F64; BF16 through F32 where an op says so), so it answers supports() with yes.
#include "core/backend/backend.h"

namespace kimi {

// Each family's CPU table, defined beside its kernels in this folder.
void register_cpu_softmax_kernels();
void register_cpu_elementwise_kernels();
void register_cpu_reduce_kernels();
void register_cpu_norm_kernels();
void register_cpu_product_kernels();
void register_cpu_sequence_kernels();
void register_cpu_optim_kernels();
void register_cpu_recurrence_kernels();
void register_cpu_attention_kernels();
void register_cpu_moe_kernels();

void register_cpu_backend() {
  register_backend({Device::kCPU, "cpu", nullptr});
  register_cpu_softmax_kernels();
  register_cpu_elementwise_kernels();
  register_cpu_reduce_kernels();
  register_cpu_norm_kernels();
  register_cpu_product_kernels();
  register_cpu_sequence_kernels();
  register_cpu_optim_kernels();
  register_cpu_recurrence_kernels();
  register_cpu_attention_kernels();
  register_cpu_moe_kernels();
}

}  // namespace kimi
