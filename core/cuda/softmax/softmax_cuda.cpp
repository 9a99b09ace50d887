// The CUDA table of the softmax family (core/backend/softmax_kernels.h) over the kernels of
// softmax.h: inputs made contiguous [rows, n].
#include "core/backend/softmax_kernels.h"
#include "core/cuda/runtime/cuda_tensor.h"
#include "core/cuda/softmax/softmax.h"

namespace kimi {
namespace {

cuda::ElemType elem(const Tensor& t) { return elem_type(t.dtype()); }

Tensor softmax(const Tensor& x, bool log) {
  check_cuda_float(x, log ? "log_softmax" : "softmax");
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), Device::kCUDA);
  cuda::softmax_forward(elem(x), rows, n, xc.raw_data(), y.raw_data(), log);
  return y;
}

Tensor softmax_backward(const Tensor& y, const Tensor& dy, bool log) {
  const int64_t n = y.size(-1), rows = n ? y.numel() / n : 0;
  Tensor yc = y.detach().contiguous(), gc = dy.detach().to(y.dtype()).contiguous();
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), Device::kCUDA);
  cuda::softmax_backward(elem(y), rows, n, yc.raw_data(), gc.raw_data(), dx.raw_data(), log);
  return dx;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                     CrossEntropySaved* saved) {
  check_cuda_float(logits, "cross_entropy");
  check_same_device(logits, targets, "cross_entropy");
  KIMI_CHECK(targets.dtype() == DType::kI32 || targets.dtype() == DType::kI64,
             "cross_entropy: targets must be I32 or I64, got {}", dtype_name(targets.dtype()));
  const int64_t rows = logits.size(0), c = logits.size(1);
  const DType acc = logits.dtype() == DType::kF64 ? DType::kF64 : DType::kF32;
  CrossEntropySaved& ce = *saved;
  ce.logits = logits.detach().contiguous();
  ce.targets = targets.detach().contiguous();
  ce.lse = Tensor::empty({rows}, acc, Device::kCUDA);
  ce.inv_count = Tensor::empty({}, acc, Device::kCUDA);
  Tensor loss = Tensor::empty({}, acc, Device::kCUDA);  // F32 from BF16 logits (autocast)
  ce.ignore_index = ignore_index;
  cuda::cross_entropy_forward(elem(logits), rows, c, ce.logits.raw_data(), elem(ce.targets),
                              ce.targets.raw_data(), ignore_index, ce.lse.raw_data(),
                              loss.raw_data(), ce.inv_count.raw_data());
  return loss;
}

Tensor cross_entropy_backward(const CrossEntropySaved& ce, const Tensor& g) {
  const Tensor& x = ce.logits;
  Tensor gs = g.detach().to(x.dtype() == DType::kF64 ? DType::kF64 : DType::kF32).contiguous();
  KIMI_CHECK(gs.numel() == 1 && gs.device() == Device::kCUDA,
             "cross_entropy backward: gradient {} is not a CUDA scalar", gs.str());
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), Device::kCUDA);
  cuda::cross_entropy_backward(elem(x), x.size(0), x.size(1), x.raw_data(), elem(ce.targets),
                               ce.targets.raw_data(), ce.ignore_index, ce.lse.raw_data(),
                               ce.inv_count.raw_data(), gs.raw_data(), dx.raw_data());
  return dx;
}

}  // namespace

void register_cuda_softmax_kernels() {
  KernelTable<SoftmaxKernels>::set(
      Device::kCUDA, {softmax, softmax_backward, cross_entropy, cross_entropy_backward});
}

}  // namespace kimi
