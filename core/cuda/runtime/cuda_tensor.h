// What the Tensor glue of every CUDA op shares: a Tensor as the raw kernels' strided view, its
// element type, and the check that an op got a float type the kernels compute in.
#pragma once

#include "core/cuda/runtime/copy.h"
#include "core/tensor/tensor.h"

namespace kimi {

// cuda::ElemType mirrors DType value for value (core/cuda/runtime/device_memory.cpp static_asserts
// it).
inline cuda::ElemType elem_type(DType t) { return static_cast<cuda::ElemType>(t); }
// Shape, strides and first element of `t` (any strides, stride 0 for broadcast dims).
cuda::StridedView cuda_view(const Tensor& t);
// F32, F64 or BF16, else one line naming the op and the dtype.
void check_cuda_float(DType t, const char* op);
inline void check_cuda_float(const Tensor& t, const char* op) { check_cuda_float(t.dtype(), op); }

}  // namespace kimi
