// Error reporting for core/cuda/runtime/check.h, compiled by the host compiler (fmt works here).
#include "core/cuda/runtime/check.h"

#include "core/tensor/error.h"

namespace kimi::cuda {

void fail(const char* file, int line, const char* expr, const char* detail) {
  throw_error(file, line, fmt::format("CUDA backend: {} failed: {}", expr, detail));
}

void fail_cuda(const char* file, int line, const char* expr, cudaError_t err) {
  throw_error(
      file, line,
      fmt::format("CUDA error {} ({}): {}", cudaGetErrorName(err), cudaGetErrorString(err), expr));
}

}  // namespace kimi::cuda
