// cuBLAS calls for core/cuda/gemm/gemm.h. A .cpp (host compiler): no kernels here.
#include "core/cuda/gemm/gemm.h"

#include <cublas_v2.h>

#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda {
namespace {

// Never destroyed: a static destructor could run after the CUDA runtime has shut down.
cublasHandle_t handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t x = nullptr;
    KIMI_CUBLAS_CHECK(cublasCreate(&x));
    KIMI_CUBLAS_CHECK(cublasSetStream(x, stream()));
    // DEFAULT_MATH keeps CUBLAS_COMPUTE_32F in full fp32 (TF32 only where the compute type asks
    // for it); split-K partial sums of bf16 outputs stay in fp32.
    KIMI_CUBLAS_CHECK(cublasSetMathMode(
        x, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                     CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    return x;
  }();
  return h;
}

cublasComputeType_t f32_compute(GemmMath math) {
  switch (math) {
    case GemmMath::kFP32: return CUBLAS_COMPUTE_32F;
    case GemmMath::kTF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    case GemmMath::kBF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
  }
  return CUBLAS_COMPUTE_32F;
}

}  // namespace

// cuBLAS is column-major. A row-major matrix X (rows ld apart) is, read column-major with the
// same ld, X^T. So the row-major product C = op(A) op(B) [M, N] is computed as the
// column-major product C^T = op(B)^T op(A)^T [N, M]:
//   cuBLAS (transa, transb, m, n, k) = (op flag of B, op flag of A, N, M, K),
//   its A = our B (ld = B.ld), its B = our A (ld = A.ld), its C = our C (ldc).
// Leading-dimension rules then match: B stored [K, N] (no trans) needs ld >= N = cuBLAS's m;
// B stored [N, K] (trans) needs ld >= K; A stored [M, K] needs ld >= K; A stored [K, M] needs
// ld >= M; C needs ldc >= N.
void gemm(ElemType type, GemmMath math, int64_t batch, int64_t M, int64_t N, int64_t K,
          double alpha, const GemmOperand& A, const GemmOperand& B, double beta, void* C,
          int64_t ldc, int64_t stride_c) {
  if (batch <= 0 || M <= 0 || N <= 0) return;
  KIMI_CUDA_REQUIRE(K >= 0 && ldc >= N, "gemm: bad K or ldc");
  cudaDataType_t dt = CUDA_R_32F;
  cublasComputeType_t ct = CUBLAS_COMPUTE_32F;
  const float fa = static_cast<float>(alpha), fb = static_cast<float>(beta);
  const void* pa = &fa;
  const void* pb = &fb;
  switch (type) {
    case ElemType::kF32: ct = f32_compute(math); break;
    case ElemType::kBF16: dt = CUDA_R_16BF; break;
    case ElemType::kF64:
      dt = CUDA_R_64F;
      ct = CUBLAS_COMPUTE_64F;
      pa = &alpha;
      pb = &beta;
      break;
    default: KIMI_CUDA_REQUIRE(false, "gemm: element type must be F32, BF16 or F64");
  }
  const cublasOperation_t op_b = B.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = A.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  // cuBLAS wants leading dimensions >= 1, which a zero-width operand's need not be.
  const int64_t lda = A.ld > 0 ? A.ld : 1, ldb = B.ld > 0 ? B.ld : 1;
  if (batch == 1) {
    KIMI_CUBLAS_CHECK(cublasGemmEx_64(handle(), op_b, op_a, N, M, K, pa, B.data, dt, ldb, A.data,
                                      dt, lda, pb, C, dt, ldc, ct, CUBLAS_GEMM_DEFAULT));
  } else {
    KIMI_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(
        handle(), op_b, op_a, N, M, K, pa, B.data, dt, ldb, B.batch_stride, A.data, dt, lda,
        A.batch_stride, pb, C, dt, ldc, stride_c, batch, ct, CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace kimi::cuda
