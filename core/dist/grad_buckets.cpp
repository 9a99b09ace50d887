#include "core/dist/grad_buckets.h"

#include <fmt/format.h>

#include "core/ops/ops.h"
#include "core/tensor/error.h"

namespace kimi::dist {

std::vector<std::vector<size_t>> plan_buckets(const std::vector<Tensor>& params,
                                              size_t bucket_bytes) {
  std::vector<std::vector<size_t>> buckets;
  size_t bytes = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const size_t b = size_t(params[i].numel()) * sizeof(float);
    if (buckets.empty() || (bytes > 0 && bytes + b > bucket_bytes)) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(i);
    bytes += b;
  }
  return buckets;
}

namespace {

// The bucket's gradients (zeros for an undefined one) in one flat f32 tensor on the parameters'
// device, each times local_weight: one copy per parameter on the device's stream, no host trip.
Tensor pack(const std::vector<Tensor>& params, const std::vector<size_t>& bucket, int64_t n,
            float local_weight) {
  const Device device = params[bucket.front()].device();
  Tensor buf = Tensor::zeros({n}, DType::kF32, device);
  int64_t at = 0;
  for (size_t i : bucket) {
    const Tensor& p = params[i];
    KIMI_CHECK(p.dtype() == DType::kF32, "all_reduce_grads: {} (F32 parameters only)", p.str());
    KIMI_CHECK(p.device() == device, "all_reduce_grads: {} is not on {} as the bucket's others",
               p.str(), device_name(device));
    const Tensor g = p.grad();
    if (g.defined()) buf.narrow(0, at, p.numel()).copy_(g.detach().contiguous().view({p.numel()}));
    at += p.numel();
  }
  return local_weight == 1.f ? buf : mul_scalar(buf, double(local_weight));
}

}  // namespace

void all_reduce_grads(const std::vector<Tensor>& params, Communicator& comm, size_t bucket_bytes,
                      float scale, float local_weight) {
  for (const auto& bucket : plan_buckets(params, bucket_bytes)) {
    int64_t n = 0;
    for (size_t i : bucket) n += params[i].numel();
    Tensor buf = pack(params, bucket, n, local_weight);
    if (buf.device() != Device::kCPU && !comm.takes_device_buffers())
      throw UserError(fmt::format(
          "all_reduce_grads: gradients on {} and a communicator of host buffers (use nccl)",
          device_name(buf.device())));
    comm.all_reduce_sum(static_cast<float*>(buf.raw_data()), size_t(n));
    if (scale != 1.f) buf = mul_scalar(buf, double(scale));
    int64_t at = 0;
    for (size_t i : bucket) {
      const Tensor& p = params[i];
      const Tensor sum = buf.narrow(0, at, p.numel()).view(p.shape());
      if (p.grad().defined()) {
        p.grad().copy_(sum);
      } else {
        Tensor g = Tensor::empty(p.shape(), DType::kF32, p.device());
        g.copy_(sum);
        Tensor handle = p;  // shares the parameter: the gradient lands on it
        handle.set_grad(g);
      }
      at += p.numel();
    }
  }
}

}  // namespace kimi::dist
