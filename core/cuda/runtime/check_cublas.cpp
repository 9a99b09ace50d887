// The cuBLAS half of core/cuda/runtime/check.h (apart from check.cpp so that binaries which use no
// cuBLAS, such as the CUDA kernel tests, need not link it).
#include "core/cuda/runtime/check.h"
#include "core/tensor/error.h"

namespace kimi::cuda {

void fail_cublas(const char* file, int line, const char* expr, cublasStatus_t st) {
  throw_error(file, line,
              fmt::format("cuBLAS error {} ({}): {}", cublasGetStatusName(st),
                          cublasGetStatusString(st), expr));
}

}  // namespace kimi::cuda
