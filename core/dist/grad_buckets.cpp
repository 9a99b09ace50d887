#include "core/dist/grad_buckets.h"

#include <cstring>

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

void all_reduce_grads(const std::vector<Tensor>& params, Communicator& comm, size_t bucket_bytes,
                      float scale, float local_weight) {
  std::vector<float> buf;
  for (const auto& bucket : plan_buckets(params, bucket_bytes)) {
    size_t n = 0;
    for (size_t i : bucket) n += size_t(params[i].numel());
    buf.assign(n, 0.f);
    size_t at = 0;
    for (size_t i : bucket) {
      const Tensor& p = params[i];
      KIMI_CHECK(p.dtype() == DType::kF32, "all_reduce_grads: {} (F32 parameters only)", p.str());
      const Tensor g = p.grad();
      if (g.defined()) {
        const Tensor c = g.to(Device::kCPU).contiguous();
        const float* src = c.data<float>();
        if (local_weight == 1.f)
          std::memcpy(buf.data() + at, src, size_t(c.numel()) * sizeof(float));
        else
          for (int64_t k = 0; k < c.numel(); ++k) buf[at + size_t(k)] = local_weight * src[k];
      }
      at += size_t(p.numel());
    }
    comm.all_reduce_sum(buf.data(), n);
    at = 0;
    for (size_t i : bucket) {
      const Tensor& p = params[i];
      Tensor g = Tensor::empty(p.shape(), DType::kF32);
      float* d = g.data<float>();
      for (int64_t k = 0; k < p.numel(); ++k) d[k] = scale * buf[at + size_t(k)];
      if (p.device() != Device::kCPU) g = g.to(p.device());
      if (p.grad().defined()) {
        p.grad().copy_(g);
      } else {
        Tensor handle = p;  // shares the parameter: the gradient lands on it
        handle.set_grad(g);
      }
      at += size_t(p.numel());
    }
  }
}

}  // namespace kimi::dist
