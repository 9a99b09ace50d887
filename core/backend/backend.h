// The backend interface. A backend (the CPU one, always built; the CUDA one, a library that
// registers itself when linked) fills one kernel table per op family for its device and answers
// supports(): whether it runs an op on given dtypes and sizes. Ops (core/ops/) check shapes, ask
// supports() before any kernel runs, record ONE autograd node, and call the table of the
// tensors' device, so no op file names a device.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "core/backend/op_list.h"
#include "core/backend/precision.h"
#include "core/tensor/op_profile.h"
#include "core/tensor/tensor.h"

namespace kimi {

inline constexpr int kNumDevices = 2;  // Device::kCPU, Device::kCUDA

// What the kernels of one op call run with. Captured when the forward runs and handed to the
// backward, so a precision change between the two passes cannot change the backward's math.
struct OpContext {
  ComputePrecision precision = ComputePrecision::kFP32;
  static OpContext current() { return {compute_precision()}; }
};

// The question an op asks before it runs: which op, on which dtype, with which input shapes
// (in the op's argument order; undefined inputs as empty shapes), and the op's integer settings.
struct OpQuery {
  Op op;
  DType dtype = DType::kF32;
  std::vector<Shape> shapes;
  int64_t chunk = 0;  // recurrence ops in chunk form: the chunk size; 0 otherwise
  bool chunk_form = false;
  OpContext ctx;
};

struct Backend {
  Device device = Device::kCPU;
  const char* name = "";
  // "" when the backend runs the query as asked; otherwise the limit it breaks, in words, e.g.
  // "key head dim K <= 128 (got 256)". nullptr: supports everything.
  std::string (*supports)(const OpQuery& q) = nullptr;
};

void register_backend(const Backend& b);
// nullptr when no backend for d is linked in.
const Backend* find_backend(Device d);
// Throws UserError "<op> on <device>: <limit>" when the device's backend refuses the query, or
// when no backend for the device is linked in.
void check_supported(Device d, const OpQuery& q);

// Registers the backends built into kimi_core (the CPU one) if that has not happened yet.
void ensure_builtin_backends();
// The CPU backend's registration (core/cpu/cpu_backend.cpp): every family's CPU table.
void register_cpu_backend();

// One kernel table per op family and device: `Family` is a struct of function pointers
// (core/backend/*_kernels.h). Backends set theirs at registration; ops get the one for their
// tensors' device.
template <class Family>
class KernelTable {
 public:
  static void set(Device d, const Family& f) {
    slots()[static_cast<int>(d)] = f;
    present()[static_cast<int>(d)] = true;
  }
  static const Family& get(Device d, const char* op) {
    if (!present()[static_cast<int>(d)]) {
      ensure_builtin_backends();
      if (!present()[static_cast<int>(d)]) missing(d, op);
    }
    return slots()[static_cast<int>(d)];
  }

 private:
  static std::array<Family, kNumDevices>& slots() {
    static std::array<Family, kNumDevices> s{};
    return s;
  }
  static std::array<bool, kNumDevices>& present() {
    static std::array<bool, kNumDevices> p{};
    return p;
  }
  [[noreturn]] static void missing(Device d, const char* op);
};

[[noreturn]] void throw_no_kernels(Device d, const char* op);
template <class Family>
void KernelTable<Family>::missing(Device d, const char* op) {
  throw_no_kernels(d, op);
}

// The table for an op's tensors, at the op's kernel dispatch (also the op profiler's boundary;
// `pass` "step" for the optimizer's kernels).
template <class Family>
const Family& kernels(const Tensor& t, const char* op, const char* pass = "forward") {
  profile::mark_op(op, pass);
  return KernelTable<Family>::get(t.device(), op);
}

}  // namespace kimi
