#include "core/backend/backend.h"

#include <array>

#include "core/tensor/error.h"

namespace kimi {
namespace {

std::array<Backend, kNumDevices>& backends() {
  static std::array<Backend, kNumDevices> b{};
  return b;
}
std::array<bool, kNumDevices>& registered() {
  static std::array<bool, kNumDevices> r{};
  return r;
}

}  // namespace

// The CPU backend is part of this library and always present: registered on first use, so no
// static-initialisation order or linker dead-stripping can lose it.
void ensure_builtin_backends() {
  static const bool done = [] {
    register_cpu_backend();
    return true;
  }();
  (void)done;
}

void register_backend(const Backend& b) {
  backends()[static_cast<int>(b.device)] = b;
  registered()[static_cast<int>(b.device)] = true;
}

const Backend* find_backend(Device d) {
  ensure_builtin_backends();
  return registered()[static_cast<int>(d)] ? &backends()[static_cast<int>(d)] : nullptr;
}

void check_supported(Device d, const OpQuery& q) {
  const Backend* b = find_backend(d);
  if (!b) throw_no_kernels(d, kOpNames[static_cast<int>(q.op)]);
  if (!b->supports) return;
  const std::string why = b->supports(q);
  if (!why.empty())
    throw UserError(fmt::format("{} on {}: {}", kOpNames[static_cast<int>(q.op)], b->name, why));
}

void throw_no_kernels(Device d, const char* op) {
  ensure_builtin_backends();
  if (d == Device::kCPU && registered()[0])
    throw UserError(fmt::format("{}: the CPU backend registered no kernels for this op", op));
  throw UserError(
      fmt::format("{}: no {} backend in this build (configure with -DKIMI_LAB_CUDA=ON "
                  "and link kimi_cuda)",
                  op, device_name(d)));
}

}  // namespace kimi
