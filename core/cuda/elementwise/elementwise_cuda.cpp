// The CUDA table of the elementwise family (core/backend/elementwise_kernels.h) over the kernels
// of elementwise.h: binary ops and selects read broadcast views (stride 0) with no copy; unary
// ops make their inputs contiguous. Float tensors F32, F64 or BF16 (bf16 computes in fp32).
#include "core/backend/elementwise_kernels.h"
#include "core/cuda/elementwise/elementwise.h"
#include "core/cuda/runtime/cuda_tensor.h"

namespace kimi {
namespace {

// cuda::BinaryOp extends kimi::BinaryKind by kGeMask (the .cu switches on its own enum).
static_assert(static_cast<int>(cuda::BinaryOp::kMax) == static_cast<int>(BinaryKind::kMax) &&
              static_cast<int>(cuda::BinaryOp::kAdd) == static_cast<int>(BinaryKind::kAdd) &&
              static_cast<int>(cuda::BinaryOp::kDiv) == static_cast<int>(BinaryKind::kDiv));

Tensor binary_to(cuda::BinaryOp op, const Tensor& a, const Tensor& b, const Shape& shape) {
  check_cuda_float(a, "binary op");
  Tensor out = Tensor::empty(shape, a.dtype(), Device::kCUDA);
  if (out.numel() == 0) return out;
  Tensor ae = a.detach().expand(shape), be = b.detach().expand(shape);
  cuda::binary(op, cuda_view(out), cuda_view(ae), cuda_view(be));
  return out;
}

Tensor binary(BinaryKind kind, const Tensor& a, const Tensor& b, const Shape& shape,
              const char* /*name*/) {
  return binary_to(static_cast<cuda::BinaryOp>(kind), a, b, shape);
}

Tensor ge_mask(const Tensor& a, const Tensor& b, const Shape& shape) {
  return binary_to(cuda::BinaryOp::kGeMask, a, b, shape);
}

Tensor unary(UnaryKind kind, const Tensor& x, double p, const char* /*name*/) {
  check_cuda_float(x, "unary op");
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), Device::kCUDA);
  cuda::unary_forward(kind, elem_type(x.dtype()), x.numel(), xc.raw_data(), y.raw_data(), p);
  return y;
}

Tensor unary_backward(UnaryKind kind, const Tensor& x, const Tensor& y, const Tensor& dy, double p,
                      const char* /*name*/) {
  const DType t = x.dtype();
  Tensor xc = x.detach().contiguous(), yc = y.detach().contiguous();
  Tensor gc = dy.detach().to(t).contiguous();
  Tensor dx = Tensor::empty(x.shape(), t, Device::kCUDA);
  cuda::unary_backward(kind, elem_type(t), x.numel(), xc.raw_data(), yc.raw_data(), gc.raw_data(),
                       dx.raw_data(), p);
  return dx;
}

// Every operand is read through broadcast strides, no copies.
Tensor select(const Tensor& cond, const Tensor& a, const Tensor& b, double fill, const Shape& shape,
              DType dtype, const char* /*name*/) {
  Tensor out = Tensor::empty(shape, dtype, Device::kCUDA);
  check_cuda_float(out, "where");
  if (out.numel() == 0) return out;
  cuda::StridedView none;  // data == nullptr: the scalar fill
  none.type = elem_type(dtype);
  none.ndim = static_cast<int>(shape.size());
  for (int d = 0; d < none.ndim; ++d) none.shape[d] = shape[d];
  Tensor ce = cond.detach().expand(shape);
  Tensor ae = a.defined() ? a.detach().expand(shape) : Tensor();
  Tensor be = b.defined() ? b.detach().expand(shape) : Tensor();
  cuda::select(cuda_view(out), cuda_view(ce), ae.defined() ? cuda_view(ae) : none,
               be.defined() ? cuda_view(be) : none, fill);
  return out;
}

}  // namespace

void register_cuda_elementwise_kernels() {
  KernelTable<ElementwiseKernels>::set(Device::kCUDA,
                                       {binary, ge_mask, unary, unary_backward, select});
}

}  // namespace kimi
