// Device memory hooks for a build without CUDA: any use of a CUDA tensor fails clearly.
#ifndef KIMI_LAB_CUDA
#include "core/device_memory.h"

#include "core/error.h"

namespace kimi {

static constexpr const char* kNoCuda =
    "this kimi-lab was built without CUDA (configure with -DKIMI_LAB_CUDA=ON)";

void* device_alloc(size_t) { KIMI_FAIL("{}", kNoCuda); }
void device_free(void*, size_t) {}
void device_copy(const Tensor&, const Tensor&) { KIMI_FAIL("{}", kNoCuda); }
void device_fill(const Tensor&, double) { KIMI_FAIL("{}", kNoCuda); }
bool cuda_available() { return false; }
void device_synchronize() {}
double device_time_ms(const std::function<void()>&) { KIMI_FAIL("{}", kNoCuda); }

}  // namespace kimi
#endif
