// Row-major GEMMs through cuBLAS on kimi::cuda::stream(): one process-wide handle, created on
// first use and bound to that stream. Raw pointers; the Tensor glue (layouts, transposes,
// compute precision) is core/cuda/gemm/matmul_cuda.cpp.
#pragma once

#include <cstdint>

#include "core/cuda/runtime/copy.h"

namespace kimi::cuda {

// Operand precision of an F32 GEMM (always fp32 accumulation). BF16 operands always multiply
// in bf16 with fp32 accumulation and F64 in fp64, whatever this says.
enum class GemmMath : uint8_t {
  kFP32,  // CUBLAS_COMPUTE_32F, TF32 off
  kTF32,  // CUBLAS_COMPUTE_32F_FAST_TF32
  kBF16,  // CUBLAS_COMPUTE_32F_FAST_16BF
};

// One operand as stored: a row-major matrix whose rows are `ld` elements apart; the GEMM uses
// it as is (trans = false) or transposed (trans = true). Matrix i of a batch starts
// i * batch_stride elements after `data` (0: one matrix shared by the whole batch).
struct GemmOperand {
  const void* data = nullptr;
  bool trans = false;
  int64_t ld = 0;
  int64_t batch_stride = 0;
};

// C[i] = alpha op(A[i]) op(B[i]) + beta C[i] for i < batch, all of element type `type` (F32,
// BF16 or F64): op(A) is [M, K], op(B) [K, N], C row-major [M, N] with rows ldc apart and
// matrices stride_c apart. beta = 0 never reads C. Does nothing when batch, M or N is 0.
void gemm(ElemType type, GemmMath math, int64_t batch, int64_t M, int64_t N, int64_t K,
          double alpha, const GemmOperand& A, const GemmOperand& B, double beta, void* C,
          int64_t ldc, int64_t stride_c);

}  // namespace kimi::cuda
