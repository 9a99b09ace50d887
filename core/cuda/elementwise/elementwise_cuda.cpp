// Tensor glue of the CUDA elementwise kernels: binary ops take broadcast views (stride 0) with
// no copy; unary ops make their inputs contiguous.
#ifdef KIMI_LAB_CUDA
#include "core/cuda/elementwise/elementwise_cuda.h"

#include "core/autograd/autograd.h"
#include "core/cuda/elementwise/elementwise.h"

namespace kimi {

static_assert(static_cast<int>(cuda::UnaryOp::kPowScalar) ==
                  static_cast<int>(cpu::UnaryKind::kPowScalar) &&
              static_cast<int>(cuda::UnaryOp::kSoftplus) ==
                  static_cast<int>(cpu::UnaryKind::kSoftplus) &&
              static_cast<int>(cuda::UnaryOp::kNeg) == static_cast<int>(cpu::UnaryKind::kNeg));
static_assert(static_cast<int>(cuda::BinaryOp::kMax) == static_cast<int>(cpu::BinaryKind::kMax) &&
              static_cast<int>(cuda::BinaryOp::kAdd) == static_cast<int>(cpu::BinaryKind::kAdd));

static Tensor binary_to(cuda::BinaryOp op, const Tensor& a, const Tensor& b, const Shape& shape) {
  check_cuda_float(a, "binary op");
  Tensor out = Tensor::empty(shape, a.dtype(), Device::kCUDA);
  if (out.numel() == 0) return out;
  NoGradGuard no_grad;
  Tensor ae = a.detach().expand(shape), be = b.detach().expand(shape);
  cuda::binary(op, cuda_view(out), cuda_view(ae), cuda_view(be));
  return out;
}

Tensor cuda_binary(cpu::BinaryKind kind, const Tensor& a, const Tensor& b, const Shape& shape) {
  return binary_to(static_cast<cuda::BinaryOp>(kind), a, b, shape);
}

Tensor cuda_ge_mask(const Tensor& a, const Tensor& b, const Shape& shape) {
  return binary_to(cuda::BinaryOp::kGeMask, a, b, shape);
}

Tensor cuda_unary(cpu::UnaryKind kind, const Tensor& x, double p) {
  check_cuda_float(x, "unary op");
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), Device::kCUDA);
  cuda::unary_forward(static_cast<cuda::UnaryOp>(kind), static_cast<cuda::ElemType>(x.dtype()),
                      x.numel(), xc.raw_data(), y.raw_data(), p);
  return y;
}

Tensor cuda_unary_backward(cpu::UnaryKind kind, const Tensor& x, const Tensor& y, const Tensor& dy,
                           double p) {
  const DType t = x.dtype();
  Tensor xc = x.detach().contiguous(), yc = y.detach().contiguous();
  Tensor gc = dy.detach().to(t).contiguous();
  Tensor dx = Tensor::empty(x.shape(), t, Device::kCUDA);
  cuda::unary_backward(static_cast<cuda::UnaryOp>(kind), static_cast<cuda::ElemType>(t),
                       x.numel(), xc.raw_data(), yc.raw_data(), gc.raw_data(), dx.raw_data(), p);
  return dx;
}

}  // namespace kimi
#endif  // KIMI_LAB_CUDA
