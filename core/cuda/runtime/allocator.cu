// Caching device allocator and the process stream (allocator.h). Size classes: 512 B minimum,
// then 4 classes per power of two (2^k * {1, 1.25, 1.5, 1.75}); one free list per class.
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda {
namespace {

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_lists;  // class size -> blocks
  AllocatorStats stats;
};

// Never destroyed: blocks outlive static destruction (the driver reclaims them at exit, and
// cudaFree during teardown would fail once the runtime has unloaded).
Cache& cache() {
  static Cache* c = new Cache();
  return *c;
}

void release_all_locked(Cache& c) {
  for (auto& [sz, list] : c.free_lists) {
    for (void* p : list) cudaFree(p);
    c.stats.bytes_cached -= sz * list.size();
    list.clear();
  }
}

}  // namespace

bool device_present() {
  static const bool present = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no device" error
      return false;
    }
    return n > 0;
  }();
  return present;
}

cudaStream_t stream() {
  static cudaStream_t s = [] {
    cudaStream_t st = nullptr;
    KIMI_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    return st;
  }();
  return s;
}

size_t size_class(size_t n) {
  if (n <= 512) return 512;
  size_t p = 512;
  while (p * 2 < n) p *= 2;  // p < n <= 2p
  const size_t q = p / 4;
  return (n + q - 1) / q * q;  // p + {1,2,3,4} * p/4
}

void* alloc(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  const size_t sz = size_class(nbytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.stats.allocs++;
  auto& list = c.free_lists[sz];
  void* p = nullptr;
  if (!list.empty()) {
    p = list.back();
    list.pop_back();
    c.stats.bytes_cached -= sz;
  } else {
    cudaError_t err = cudaMalloc(&p, sz);
    if (err != cudaSuccess) {
      cudaGetLastError();
      release_all_locked(c);
      err = cudaMalloc(&p, sz);
    }
    KIMI_CUDA_CHECK(err);
    c.stats.cuda_mallocs++;
  }
  c.stats.bytes_in_use += sz;
  if (c.stats.bytes_in_use > c.stats.peak_bytes_in_use)
    c.stats.peak_bytes_in_use = c.stats.bytes_in_use;
  return p;
}

void free(void* ptr, size_t nbytes) {
  if (!ptr) return;
  const size_t sz = size_class(nbytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.free_lists[sz].push_back(ptr);
  c.stats.bytes_in_use -= sz;
  c.stats.bytes_cached += sz;
}

void empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  KIMI_CUDA_CHECK(cudaDeviceSynchronize());
  release_all_locked(c);
}

AllocatorStats allocator_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

}  // namespace kimi::cuda
