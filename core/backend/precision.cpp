#include "core/backend/precision.h"

#include <atomic>

#include "core/tensor/dtype.h"
#include "core/tensor/error.h"

namespace kimi {
namespace {
std::atomic<ComputePrecision> g_precision{ComputePrecision::kFP32};
std::atomic<DType> g_activation{DType::kF32};
}  // namespace

DType activation_dtype() { return g_activation.load(std::memory_order_relaxed); }
void set_activation_dtype(DType t) {
  KIMI_CHECK(t == DType::kF32 || t == DType::kBF16, "activation dtype {} (want F32 or BF16)",
             dtype_name(t));
  g_activation.store(t, std::memory_order_relaxed);
}

ComputePrecision compute_precision() { return g_precision.load(std::memory_order_relaxed); }
void set_compute_precision(ComputePrecision p) { g_precision.store(p, std::memory_order_relaxed); }

ComputePrecision compute_precision_from_name(const std::string& name) {
  if (name == "fp32") return ComputePrecision::kFP32;
  if (name == "tf32") return ComputePrecision::kTF32;
  if (name == "bf16") return ComputePrecision::kBF16;
  throw UserError(fmt::format("unknown precision '{}' (fp32, tf32, bf16)", name));
}

const char* compute_precision_name(ComputePrecision p) {
  switch (p) {
    case ComputePrecision::kFP32: return "fp32";
    case ComputePrecision::kTF32: return "tf32";
    case ComputePrecision::kBF16: return "bf16";
  }
  return "?";
}

}  // namespace kimi
