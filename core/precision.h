// The precision of the CUDA backend's heavy products, process-wide (the trainer sets it from
// the config key `precision`). Tensors keep their dtype (F32 activations, master weights,
// optimizer and recurrent states); what changes is the operand precision inside GEMMs,
// attention and the linear-recurrence kernels on the GPU, always with fp32 accumulation:
//   fp32  full fp32 products (the oracle setting, and what the parity tests use)
//   tf32  tensor-core TF32 operands (10-bit mantissa)
//   bf16  operands rounded to bf16 (8-bit mantissa): the mixed-precision training setting
// The CPU backend always computes in the tensors' own dtype and ignores this.
#pragma once

#include <string>

namespace kimi {

enum class ComputePrecision { kFP32, kTF32, kBF16 };

ComputePrecision compute_precision();
void set_compute_precision(ComputePrecision p);
// "fp32" | "tf32" | "bf16"; anything else throws UserError naming the value.
ComputePrecision compute_precision_from_name(const std::string& name);
const char* compute_precision_name(ComputePrecision p);

// Sets the precision for a scope, then restores the previous one.
class ComputePrecisionGuard {
 public:
  explicit ComputePrecisionGuard(ComputePrecision p) : prev_(compute_precision()) {
    set_compute_precision(p);
  }
  ~ComputePrecisionGuard() { set_compute_precision(prev_); }
  ComputePrecisionGuard(const ComputePrecisionGuard&) = delete;
  ComputePrecisionGuard& operator=(const ComputePrecisionGuard&) = delete;

 private:
  ComputePrecision prev_;
};

}  // namespace kimi
