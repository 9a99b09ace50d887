// The precision of the CUDA backend's heavy products, process-wide (the trainer sets it from
// the config key `precision`). Tensors keep their dtype (activations, master weights,
// optimizer and recurrent states); what changes is the operand precision inside GEMMs,
// attention and the linear-recurrence kernels on the GPU, always with fp32 accumulation:
//   fp32  full fp32 products (the oracle setting, and what the parity tests use)
//   tf32  tensor-core TF32 operands (10-bit mantissa)
//   bf16  operands rounded to bf16 (8-bit mantissa): the mixed-precision training setting
// The CPU backend always computes in the tensors' own dtype and ignores this.
//
// Autocast (activation_dtype() == BF16; the trainer turns it on for CUDA runs at bf16): layers
// carry BF16 activations on the GPU (core/nn/layers.h autocast / cast_like) while parameters,
// their gradients, optimizer and recurrent states stay F32. Off (F32) by default, and CUDA
// tensors only, so the CPU path and fp32/tf32 runs are unchanged.
#pragma once

#include <cstdint>
#include <string>

namespace kimi {

// Declared here, defined in core/tensor/dtype.h: .cu files include this header and cannot take fmt.
enum class DType : uint8_t;

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

// F32 = autocast off; BF16 = activations of CUDA layers in bf16.
DType activation_dtype();
void set_activation_dtype(DType t);

class ActivationDTypeGuard {
 public:
  explicit ActivationDTypeGuard(DType t) : prev_(activation_dtype()) { set_activation_dtype(t); }
  ~ActivationDTypeGuard() { set_activation_dtype(prev_); }
  ActivationDTypeGuard(const ActivationDTypeGuard&) = delete;
  ActivationDTypeGuard& operator=(const ActivationDTypeGuard&) = delete;

 private:
  DType prev_;
};

}  // namespace kimi
