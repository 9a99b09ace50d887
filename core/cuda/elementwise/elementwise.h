// Elementwise CUDA kernels: unary functions with their derivatives, broadcasting binary ops and
// selects (where / masked_fill). Float storage F32, F64 or BF16 (bf16 computes in fp32); masks of
// any element type. All on kimi::cuda::stream().
#pragma once

#include <cstdint>

#include "core/cuda/runtime/copy.h"
#include "core/kernels/elementwise.h"

namespace kimi::cuda {

// The unary kinds are the ones the CPU kernels switch on (core/kernels/elementwise.h).
using UnaryOp = kimi::UnaryKind;
// kimi::BinaryKind in the same order (elementwise_cuda.cpp static_asserts it) plus kGeMask,
// CUDA-only: (a >= b) ? 1 : 0, the routing mask of maximum.
enum class BinaryOp : uint8_t { kAdd, kSub, kMul, kDiv, kMax, kGeMask };

// y = f(x) over n contiguous elements; p is the scalar of the *Scalar ops.
void unary_forward(UnaryOp op, ElemType t, int64_t n, const void* x, void* y, double p);
// dx = dy * f'(x), with y = f(x) from the forward; all contiguous.
void unary_backward(UnaryOp op, ElemType t, int64_t n, const void* x, const void* y, const void* dy,
                    void* dx, double p);

// out = a op b. out contiguous; a and b views of out's shape (broadcast dims have stride 0),
// all three of one float type.
void binary(BinaryOp op, const StridedView& out, const StridedView& a, const StridedView& b);

// out = cond != 0 ? a : b. out contiguous; cond (any element type), a and b views of out's
// shape; an operand with data == nullptr stands for the scalar `fill`.
void select(const StridedView& out, const StridedView& cond, const StridedView& a,
            const StridedView& b, double fill);

}  // namespace kimi::cuda
