// Tensor glue of rope on CUDA (rope_cuda.h). Built only with -DKIMI_LAB_CUDA=ON.
#ifdef KIMI_LAB_CUDA
#include "core/cuda/sequence/rope_cuda.h"

#include "core/autograd/autograd.h"
#include "core/cuda/sequence/rope.h"

namespace kimi {

// The rotation is orthogonal: the backward applies the inverse rotation to the gradient.
Tensor cuda_rope(const Tensor& x, int64_t pos0, double theta) {
  const DType dt = x.dtype();
  KIMI_CHECK(dt == DType::kF32 || dt == DType::kBF16 || dt == DType::kF64,
             "rope: CUDA tensors must be F32, BF16 or F64, got {}", dtype_name(dt));
  KIMI_CHECK(theta > 0, "rope: theta must be positive, got {}", theta);
  const Shape s = x.shape();
  const auto et = static_cast<cuda::ElemType>(dt);
  const Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(s, dt, Device::kCUDA);
  cuda::rope(et, s[0], s[1], s[2], s[3], pos0, theta, false, xc.raw_data(), y.raw_data());
  return record("rope", y, {x}, [=](const std::vector<Tensor>& go) -> std::vector<Tensor> {
    Tensor g = go[0].detach();
    if (g.device() != Device::kCUDA) g = g.to(Device::kCUDA);
    if (g.dtype() != dt) g = g.to(dt);
    g = g.contiguous();
    Tensor dx = Tensor::empty(s, dt, Device::kCUDA);
    cuda::rope(et, s[0], s[1], s[2], s[3], pos0, theta, true, g.raw_data(), dx.raw_data());
    return {dx};
  });
}

}  // namespace kimi
#endif  // KIMI_LAB_CUDA
