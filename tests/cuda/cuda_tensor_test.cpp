// CUDA Tensor-hook tests (kimi_cuda_tensor_test): the device-memory hooks of
// core/tensor/device_memory.h as kimi_core's Tensor uses them (core/cuda/runtime/device_memory.cpp)
// - host <-> device copies of strided views with type conversion, device-side strided and
// converting copies, fills, clone - checked against the same operations on the CPU, element for
// element. Links kimi_core; exit 0 with a SKIP line when no GPU is present.
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "core/cuda/runtime/allocator.h"
#include "core/tensor/device_memory.h"
#include "core/tensor/tensor.h"

namespace {

using kimi::Device;
using kimi::DType;
using kimi::Tensor;

int fails = 0, checks = 0;

void check(const std::string& what, const Tensor& got, const Tensor& want) {
  ++checks;
  const std::vector<double> a = got.to_vector<double>(), b = want.to_vector<double>();
  bool ok = a.size() == b.size() && got.shape() == want.shape();
  for (size_t i = 0; ok && i < a.size(); ++i) ok = a[i] == b[i];
  if (!ok) ++fails;
  std::printf("%-58s %s\n", what.c_str(), ok ? "ok" : "FAIL");
}

Tensor iota(const kimi::Shape& s) {
  std::vector<double> v(kimi::shape_numel(s));
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.7 * double(i)) * 100.0;
  return Tensor::from_vector(v, s).to(DType::kF32);
}

void run() {
  const Tensor x = iota({4, 6, 5});
  // Round trips, contiguous.
  check("to(cuda).to(cpu) f32", x.to(Device::kCUDA).to(Device::kCPU), x);
  // A permuted (non-contiguous) CPU view uploaded, then downloaded.
  const Tensor xp = x.permute({2, 0, 1});
  check("permuted cpu view -> cuda -> cpu", xp.to(Device::kCUDA).to(Device::kCPU), xp.contiguous());
  // Non-contiguous device views: narrow + transpose on the device, downloaded.
  const Tensor xd = x.to(Device::kCUDA);
  const Tensor vd = xd.narrow(1, 1, 4).transpose(0, 2);
  check("device narrow+transpose -> cpu", vd.to(Device::kCPU),
        x.narrow(1, 1, 4).transpose(0, 2).contiguous());
  // Device -> device strided copy into a strided destination.
  Tensor dst = Tensor::zeros({5, 6, 4}, DType::kF32, Device::kCUDA);
  Tensor dv = dst.narrow(1, 2, 3);
  dv.copy_(xd.narrow(1, 0, 3).permute({2, 1, 0}));
  Tensor want = Tensor::zeros({5, 6, 4});
  Tensor wv = want.narrow(1, 2, 3);
  wv.copy_(x.narrow(1, 0, 3).permute({2, 1, 0}));
  check("device strided copy into strided device view", dst.to(Device::kCPU), want);
  // Type conversions: host f32 -> device bf16 -> device f64 -> host f32.
  const Tensor xb = x.to(DType::kBF16);
  check("cpu f32 -> cuda bf16 -> cpu", x.to(Device::kCUDA).to(DType::kBF16).to(Device::kCPU), xb);
  check("cuda bf16 -> cuda f64 -> cpu f32",
        x.to(DType::kBF16).to(Device::kCUDA).to(DType::kF64).to(Device::kCPU).to(DType::kF32),
        xb.to(DType::kF32));
  // Host -> strided device view with conversion (f64 source into an f32 device view).
  Tensor d2 = Tensor::zeros({6, 5}, DType::kF32, Device::kCUDA);
  Tensor d2v = d2.transpose(0, 1);
  d2v.copy_(x.select(0, 1).to(DType::kF64).transpose(0, 1));
  check("cpu f64 -> transposed cuda f32 view", d2.to(Device::kCPU), x.select(0, 1));
  // Device -> host into a strided host destination of another type.
  Tensor h = Tensor::zeros({5, 6}, DType::kF64);
  Tensor hv = h.transpose(0, 1);
  hv.copy_(xd.select(0, 2));
  check("cuda f32 -> transposed cpu f64 view", h.transpose(0, 1).to(DType::kF32), x.select(0, 2));
  // Fills (whole and strided) and integer types.
  Tensor f = Tensor::full({3, 4}, 1.5, DType::kF32, Device::kCUDA);
  Tensor fv = f.narrow(1, 1, 2);
  fv.fill_(-7.0);
  Tensor fw = Tensor::full({3, 4}, 1.5);
  Tensor fwv = fw.narrow(1, 1, 2);
  fwv.fill_(-7.0);
  check("full + strided fill_ on cuda", f.to(Device::kCPU), fw);
  const Tensor ii = Tensor::from_vector(std::vector<int64_t>{1, -2, 3, 1LL << 40}, {4});
  check("i64 round trip (2^40 exact)", ii.to(Device::kCUDA).to(Device::kCPU), ii);
  check("clone on cuda", xd.clone().to(Device::kCPU), x);
  ++checks;
  const bool dev = Tensor::zeros({2}, DType::kF32, Device::kCUDA).device() == Device::kCUDA;
  if (!dev) ++fails;
  std::printf("%-58s %s\n", "zeros(..., kCUDA) lives on cuda", dev ? "ok" : "FAIL");
  const auto st = kimi::cuda::allocator_stats();
  std::printf("allocator: %ld allocs, %ld cudaMalloc, %zu B cached\n", long(st.allocs),
              long(st.cuda_mallocs), st.bytes_cached);
}

}  // namespace

int main() {
  if (!kimi::cuda_available()) {
    std::printf("SKIP: no CUDA device present (cuda_available() is false)\n");
    return 0;
  }
  try {
    run();
  } catch (const std::exception& e) {
    ++fails;
    std::printf("FAIL: exception: %s\n", e.what());
  }
  std::printf("%d tensor checks, %d failed\n", checks, fails);
  return fails ? 1 : 0;
}
