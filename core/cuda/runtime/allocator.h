// The CUDA backend's process-wide state: one stream (every kernel and copy of kimi-lab goes on
// it, so stream order alone orders them) and a caching allocator over cudaMalloc. Raw-pointer
// API, no Tensor: core/cuda/runtime/device_memory.cpp adapts it to the hooks of
// core/tensor/device_memory.h.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace kimi::cuda {

// True when a CUDA device is present and usable (the first call initialises the runtime).
bool device_present();
// The process's stream (created on first use, never destroyed).
cudaStream_t stream();

// Caching allocator. Sizes round up to a size class (4 classes per power of two above 512 B,
// so at most 25% waste); freed blocks go to the free list of their class and are reused by
// the next request of that class, with no synchronisation: all work is on stream(), so a
// block freed by the host while a kernel still reads it is only reused by later work on the
// same stream. cudaMalloc runs only when a class's list is empty; if it fails, the cache is
// released (cudaFree) and the call retried once. Thread-safe.
void* alloc(size_t nbytes);           // nullptr for 0 bytes
void free(void* ptr, size_t nbytes);  // nbytes as given to alloc
void empty_cache();                   // cudaFree every cached block (synchronises the device)
size_t size_class(size_t nbytes);

struct AllocatorStats {
  int64_t cuda_mallocs = 0;  // cudaMalloc calls so far
  int64_t allocs = 0;        // alloc() calls served (cache hits + mallocs)
  size_t bytes_in_use = 0;   // by live blocks (rounded sizes)
  size_t bytes_cached = 0;   // in free lists
  size_t peak_bytes_in_use = 0;
};
AllocatorStats allocator_stats();

// A device buffer from the caching allocator, freed on scope exit (kernel workspaces).
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t nbytes) : ptr_(alloc(nbytes)), n_(nbytes) {}
  ~Buffer() { free(ptr_, n_); }
  Buffer(Buffer&& o) noexcept : ptr_(o.ptr_), n_(o.n_) {
    o.ptr_ = nullptr;
    o.n_ = 0;
  }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      free(ptr_, n_);
      ptr_ = o.ptr_;
      n_ = o.n_;
      o.ptr_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  void* get() const { return ptr_; }
  size_t size() const { return n_; }

 private:
  void* ptr_ = nullptr;
  size_t n_ = 0;
};

}  // namespace kimi::cuda
