// Device memory for Tensor's non-CPU storage. A backend library that owns a device (the CUDA
// one) registers its runtime when linked; without one, any use of that device fails with a
// clear message, and cuda_available() is false.
#pragma once

#include <cstddef>
#include <functional>

#include "core/tensor/dtype.h"

namespace kimi {

class Tensor;

struct DeviceRuntime {
  bool (*available)() = nullptr;  // a device is present and usable
  void* (*alloc)(size_t nbytes) = nullptr;
  void (*free)(void* ptr, size_t nbytes) = nullptr;
  // Copies between any two devices (host<->device, device<->device); shapes already checked.
  void (*copy)(const Tensor& dst, const Tensor& src) = nullptr;
  void (*fill)(const Tensor& dst, double value) = nullptr;
  void (*synchronize)() = nullptr;
  double (*time_ms)(const std::function<void()>& f) = nullptr;
};
void register_device_runtime(Device d, const DeviceRuntime& r);

void* device_alloc(Device d, size_t nbytes);
void device_free(Device d, void* ptr, size_t nbytes);
void device_copy(const Tensor& dst, const Tensor& src);
void device_fill(const Tensor& dst, double value);
// A CUDA runtime is linked in and a device is present.
bool cuda_available();
// Whether this build has a CUDA backend at all (whatever the machine has).
bool cuda_built();
// Waits until the device has finished all queued work (a no-op without CUDA).
void device_synchronize();
// Milliseconds of device time that the work `f` queues, between two CUDA events on the stream
// (the benchmark timer; waits for the work to finish).
double device_time_ms(const std::function<void()>& f);

}  // namespace kimi
