// Tensor glue of the CUDA selects: every operand is read through broadcast strides, no copies.
#ifdef KIMI_LAB_CUDA
#include "core/cuda/elementwise/join_cuda.h"

#include "core/cuda/elementwise/elementwise.h"
#include "core/cuda/elementwise/elementwise_cuda.h"

namespace kimi {

Tensor cuda_select(const Tensor& cond, const Tensor& a, const Tensor& b, double fill,
                   const Shape& shape, DType dtype) {
  Tensor out = Tensor::empty(shape, dtype, Device::kCUDA);
  check_cuda_float(out, "where");
  if (out.numel() == 0) return out;
  cuda::StridedView none;  // data == nullptr: the scalar fill
  none.type = static_cast<cuda::ElemType>(dtype);
  none.ndim = static_cast<int>(shape.size());
  for (int d = 0; d < none.ndim; ++d) none.shape[d] = shape[d];
  Tensor ce = cond.detach().expand(shape);
  Tensor ae = a.defined() ? a.detach().expand(shape) : Tensor();
  Tensor be = b.defined() ? b.detach().expand(shape) : Tensor();
  cuda::select(cuda_view(out), cuda_view(ce), ae.defined() ? cuda_view(ae) : none,
               be.defined() ? cuda_view(be) : none, fill);
  return out;
}

}  // namespace kimi
#endif  // KIMI_LAB_CUDA
