// The prefill's GEMMs on cuBLAS (engine_kernels.h gemm): bf16 or fp32 operands, fp32 output and
// accumulation. A .cpp (host compiler): no kernels here.
#include "core/cuda/runtime/check.h"
#include "inference/engine/cuda/engine_kernels.h"

namespace kimi::inference::engine::cuda {

// cuBLAS is column-major; a row-major matrix read column-major is its transpose. So the
// row-major C = A op(B) is computed as the column-major C^T = op(B)^T A^T: cuBLAS's A is our B
// (transposed when B is stored [N, K]), its B our A, m = N, n = M.
void gemm(cublasHandle_t h, GemmType t, int M, int N, int K, const void* A, int64_t lda,
          const void* B, int64_t ldb, bool b_nk, float* C, int64_t ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
  const cudaDataType_t in = t == GemmType::kBF16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t ct =
      t == GemmType::kTF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  KIMI_CUBLAS_CHECK(cublasGemmEx(h, b_nk ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &alpha,
                                 B, in, static_cast<int>(ldb), A, in, static_cast<int>(lda), &beta,
                                 C, CUDA_R_32F, static_cast<int>(ldc), ct, CUBLAS_GEMM_DEFAULT));
}

void gemm_batched(cublasHandle_t h, GemmType t, int batch, int M, int N, int K, const void* A,
                  int64_t lda, int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b,
                  bool b_nk, float* C, int64_t ldc, int64_t stride_c, float alpha) {
  if (batch <= 0 || M <= 0 || N <= 0) return;
  const float beta = 0.f;
  const cudaDataType_t in = t == GemmType::kBF16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t ct =
      t == GemmType::kTF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  KIMI_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      h, b_nk ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &alpha, B, in,
      static_cast<int>(ldb), stride_b, A, in, static_cast<int>(lda), stride_a, &beta, C, CUDA_R_32F,
      static_cast<int>(ldc), stride_c, batch, ct, CUBLAS_GEMM_DEFAULT));
}

}  // namespace kimi::inference::engine::cuda
