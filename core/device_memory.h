// Device memory hooks used by Tensor for non-CPU storage. The CUDA backend (core/cuda/,
// built with -DKIMI_LAB_CUDA=ON) implements them with a caching allocator; a CPU-only build
// gets device_memory_cpu_only.cpp, which fails with a clear message.
#pragma once

#include <cstddef>
#include <functional>

namespace kimi {

class Tensor;

void* device_alloc(size_t nbytes);
void device_free(void* ptr, size_t nbytes);
// Copies between any two devices (host<->device, device<->device); shapes already checked.
void device_copy(const Tensor& dst, const Tensor& src);
void device_fill(const Tensor& dst, double value);
bool cuda_available();
// Waits until the device has finished all queued work (a no-op without CUDA).
void device_synchronize();
// Milliseconds of device time that the work `f` queues, between two CUDA events on the stream
// (the benchmark timer; waits for the work to finish).
double device_time_ms(const std::function<void()>& f);

}  // namespace kimi
