// The CUDA table of the optimizers (core/backend/optim_kernels.h) over the fused kernels of
// optim.h: F32 parameters, gradients and state, contiguous.
#include "core/backend/optim_kernels.h"
#include "core/cuda/optim/optim.h"
#include "core/cuda/runtime/cuda_tensor.h"

namespace kimi {
namespace {

void check_param(const Tensor& p, const char* opt) {
  KIMI_CHECK(p.dtype() == DType::kF32 && p.is_contiguous(),
             "{}: CUDA parameters must be contiguous F32, got {}", opt, p.str());
}

void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                const AdamWHyper& h) {
  check_param(p, "AdamW");
  const cuda::AdamWStep s{static_cast<float>(h.lr),
                          static_cast<float>(h.beta1),
                          static_cast<float>(h.beta2),
                          static_cast<float>(h.eps),
                          static_cast<float>(h.weight_decay),
                          static_cast<float>(h.bias_correction1),
                          static_cast<float>(h.bias_correction2)};
  cuda::adamw_step(p.numel(), p.data<float>(), g.data<float>(), m.data<float>(), v.data<float>(),
                   s);
}

void sgd_step(const Tensor& p, const Tensor& g, const Tensor& buf, double lr, double momentum,
              double weight_decay) {
  check_param(p, "SGD");
  cuda::sgd_step(p.numel(), p.data<float>(), g.data<float>(), buf.data<float>(),
                 static_cast<float>(lr), static_cast<float>(momentum),
                 static_cast<float>(weight_decay));
}

double sum_of_squares(const std::vector<Tensor>& xs) {
  std::vector<Tensor> keep;  // contiguous copies alive until the sum is read
  std::vector<cuda::ElemType> types;
  std::vector<int64_t> sizes;
  std::vector<const void*> data;
  for (const Tensor& x : xs) {
    keep.push_back(x.detach().contiguous());
    types.push_back(elem_type(keep.back().dtype()));
    sizes.push_back(keep.back().numel());
    data.push_back(keep.back().raw_data());
  }
  if (keep.empty()) return 0.0;
  return cuda::sum_of_squares(static_cast<int>(keep.size()), types.data(), sizes.data(),
                              data.data());
}

}  // namespace

void register_cuda_optim_kernels() {
  KernelTable<OptimKernels>::set(Device::kCUDA, {adamw_step, sgd_step, sum_of_squares});
}

}  // namespace kimi
