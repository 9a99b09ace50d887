// OverlappedReducer (core/dist/overlapped_reducer.h).
#include "core/dist/overlapped_reducer.h"

#include <algorithm>
#include <cstring>

#include "core/dist/grad_buckets.h"
#include "core/tensor/error.h"

namespace kimi::dist {

OverlappedReducer::OverlappedReducer(const std::vector<Tensor>& params, Communicator& comm,
                                     size_t bucket_bytes, double weight)
    : params_(params), had_grad_(params.size(), 0.f), comm_(comm), weight_(weight) {
  std::vector<Tensor> reversed(params.rbegin(), params.rend());
  for (const auto& plan : plan_buckets(reversed, bucket_bytes)) {
    Bucket b;
    size_t n = 0;
    for (size_t j : plan) {
      const size_t i = params.size() - 1 - j;
      const Tensor& p = params[i];
      KIMI_CHECK(p.device() == Device::kCPU && p.dtype() == DType::kF32,
                 "data-parallel: parameter {} (CPU F32 only for now)", p.str());
      where_[p.impl().get()] = {buckets_.size(), b.params.size()};
      b.params.push_back(i);
      b.offset.push_back(n);
      b.copied.push_back(false);
      n += size_t(p.numel());
    }
    b.data.assign(n, 0.f);
    buckets_.push_back(std::move(b));
  }
  thread_ = std::thread([this] { communicate(); });
}

OverlappedReducer::~OverlappedReducer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    abort_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

LeafGradReady OverlappedReducer::hook() {
  return [this](const Tensor& leaf) { on_ready(leaf); };
}

void OverlappedReducer::copy_in(size_t b, size_t slot) {
  Bucket& bucket = buckets_[b];
  const Tensor& p = params_[bucket.params[slot]];
  bucket.copied[slot] = true;
  const Tensor g = p.grad();
  if (!g.defined()) return;  // zeros
  had_grad_[bucket.params[slot]] = 1.f;
  const Tensor c = g.contiguous();
  KIMI_CHECK(c.device() == Device::kCPU && c.dtype() == DType::kF32,
             "data-parallel: gradient {} (CPU F32 only for now)", c.str());
  // Written before the bucket is handed over, and never after: no lock needed for the data.
  const float* src = c.data<float>();
  float* dst = bucket.data.data() + bucket.offset[slot];
  for (int64_t k = 0; k < c.numel(); ++k) dst[k] = float(double(src[k]) * weight_);
}

void OverlappedReducer::on_ready(const Tensor& leaf) {
  const auto it = where_.find(leaf.impl().get());
  if (it == where_.end()) return;  // a leaf that is not one of the parameters
  const auto [b, slot] = it->second;
  if (buckets_[b].copied[slot]) return;
  copy_in(b, slot);
  std::lock_guard<std::mutex> lock(mu_);
  if (++buckets_[b].filled == buckets_[b].params.size()) hand_over(b);
}

void OverlappedReducer::hand_over(size_t b) {
  buckets_[b].handed = true;
  cv_.notify_all();
}

void OverlappedReducer::communicate() {
  for (size_t b = 0; b < buckets_.size(); ++b) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return abort_ || buckets_[b].handed; });
      if (abort_) return;  // the step failed on this rank: its sums are dropped
      if (!finishing_) ++started_early_;
    }
    try {
      comm_.all_reduce_sum(buckets_[b].data.data(), buckets_[b].data.size());
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
      abort_ = true;
      cv_.notify_all();
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    buckets_[b].done = true;
    cv_.notify_all();
  }
}

void OverlappedReducer::finish() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    finishing_ = true;
    for (size_t b = 0; b < buckets_.size(); ++b) {
      if (buckets_[b].handed) continue;
      for (size_t s = 0; s < buckets_[b].params.size(); ++s)
        if (!buckets_[b].copied[s]) copy_in(b, s);
      hand_over(b);
    }
    cv_.wait(lock, [&] {
      return error_ ||
             std::all_of(buckets_.begin(), buckets_.end(), [](const Bucket& x) { return x.done; });
    });
  }
  thread_.join();
  if (error_) std::rethrow_exception(error_);
  comm_.all_reduce_sum(had_grad_.data(), had_grad_.size());
  for (const Bucket& bucket : buckets_)
    for (size_t s = 0; s < bucket.params.size(); ++s) {
      if (had_grad_[bucket.params[s]] == 0.f) continue;  // no rank has one
      const Tensor& p = params_[bucket.params[s]];
      Tensor g = Tensor::empty(p.shape(), DType::kF32);
      std::memcpy(g.data<float>(), bucket.data.data() + bucket.offset[s],
                  size_t(p.numel()) * sizeof(float));
      if (p.grad().defined()) {
        p.grad().copy_(g);
      } else {
        Tensor handle = p;  // shares the parameter: the gradient lands on it
        handle.set_grad(g);
      }
    }
}

}  // namespace kimi::dist
