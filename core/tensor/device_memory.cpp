#include "core/tensor/device_memory.h"

#include <array>

#include "core/tensor/error.h"
#include "core/tensor/tensor.h"

namespace kimi {
namespace {

std::array<DeviceRuntime, 2>& runtimes() {
  static std::array<DeviceRuntime, 2> r{};
  return r;
}

const DeviceRuntime& runtime(Device d) {
  const DeviceRuntime& r = runtimes()[static_cast<int>(d)];
  if (!r.alloc)
    KIMI_FAIL(
        "a {} tensor, but this kimi-lab has no {} backend (configure with -DKIMI_LAB_CUDA=ON)",
        device_name(d), device_name(d));
  return r;
}

// The device of a copy that involves one: dst's unless dst is on the CPU.
Device other_device(const Tensor& dst, const Tensor& src) {
  return dst.device() != Device::kCPU ? dst.device() : src.device();
}

}  // namespace

void register_device_runtime(Device d, const DeviceRuntime& r) {
  runtimes()[static_cast<int>(d)] = r;
}

void* device_alloc(Device d, size_t nbytes) { return runtime(d).alloc(nbytes); }
void device_free(Device d, void* ptr, size_t nbytes) { runtime(d).free(ptr, nbytes); }
void device_copy(const Tensor& dst, const Tensor& src) {
  runtime(other_device(dst, src)).copy(dst, src);
}
void device_fill(const Tensor& dst, double value) { runtime(dst.device()).fill(dst, value); }

bool cuda_built() { return runtimes()[static_cast<int>(Device::kCUDA)].alloc != nullptr; }
bool cuda_available() {
  return cuda_built() && runtimes()[static_cast<int>(Device::kCUDA)].available();
}

void device_synchronize() {
  if (cuda_available()) runtime(Device::kCUDA).synchronize();
}

double device_time_ms(const std::function<void()>& f) { return runtime(Device::kCUDA).time_ms(f); }

}  // namespace kimi
