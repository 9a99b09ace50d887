// KIMI_CUDA_CHECK(expr) / KIMI_CUBLAS_CHECK(expr): throw kimi::Error "what (file:line)" when a
// CUDA runtime / cuBLAS call fails; KIMI_CUDA_CHECK_LAUNCH() checks the last kernel launch.
// No fmt here (nvcc 13 rejects fmt 9's consteval format strings): the message is built in
// check.cpp, compiled by the host compiler.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace kimi::cuda {

[[noreturn]] void fail(const char* file, int line, const char* expr, const char* detail);
[[noreturn]] void fail_cuda(const char* file, int line, const char* expr, cudaError_t err);
[[noreturn]] void fail_cublas(const char* file, int line, const char* expr, cublasStatus_t st);

}  // namespace kimi::cuda

#define KIMI_CUDA_CHECK(expr)                                                                    \
  do {                                                                                           \
    const cudaError_t kimi_err_ = (expr);                                                        \
    if (kimi_err_ != cudaSuccess) ::kimi::cuda::fail_cuda(__FILE__, __LINE__, #expr, kimi_err_); \
  } while (0)

#define KIMI_CUBLAS_CHECK(expr)                                       \
  do {                                                                \
    const cublasStatus_t kimi_st_ = (expr);                           \
    if (kimi_st_ != CUBLAS_STATUS_SUCCESS)                            \
      ::kimi::cuda::fail_cublas(__FILE__, __LINE__, #expr, kimi_st_); \
  } while (0)

#define KIMI_CUDA_CHECK_LAUNCH() KIMI_CUDA_CHECK(cudaGetLastError())

// A precondition at a CUDA entry point (the .cu files cannot use KIMI_CHECK: see above).
#define KIMI_CUDA_REQUIRE(cond, detail)                                   \
  do {                                                                    \
    if (!(cond)) ::kimi::cuda::fail(__FILE__, __LINE__, #cond, (detail)); \
  } while (0)
