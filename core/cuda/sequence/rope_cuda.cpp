// Tensor glue of rope on CUDA (rope_cuda.h): no autograd here, the op records the one node.
#include "core/cuda/sequence/rope_cuda.h"

#include "core/cuda/sequence/rope.h"

namespace kimi {

Tensor cuda_rope(const Tensor& x, int64_t pos0, double theta, bool inverse) {
  const DType dt = x.dtype();
  KIMI_CHECK(dt == DType::kF32 || dt == DType::kBF16 || dt == DType::kF64,
             "rope: CUDA tensors must be F32, BF16 or F64, got {}", dtype_name(dt));
  Tensor xc = x.detach();
  if (xc.device() != Device::kCUDA) xc = xc.to(Device::kCUDA);
  xc = xc.contiguous();
  const Shape s = xc.shape();
  Tensor y = Tensor::empty(s, dt, Device::kCUDA);
  cuda::rope(static_cast<cuda::ElemType>(dt), s[0], s[1], s[2], s[3], pos0, theta, inverse,
             xc.raw_data(), y.raw_data());
  return y;
}

}  // namespace kimi
