// GPU profiles from ceilings measured on the lent machines (/work/shared/golden/README.md,
// "Ceilings and anchors"; the device tool's KINDS.md for the memory nvidia-smi reports). The
// compute rates of attention and of KDA's chunk kernels are derived from the timed anchors
// there: FLOPs counted as the simulator counts them, divided by the measured time.
#include "inference/gpu_profile.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/tensor/error.h"

namespace kimi::inference {
namespace {

constexpr double kMiB = 1024.0 * 1024.0, kGiB = 1024.0 * kMiB;

// The anchors' shape: B=8, T=8192, H=16, D=128 (65,536 tokens).
// Causal attention: QK^T and PV over T(T+1)/2 pairs, 2 FLOPs a multiply-add: 2*B*H*T^2*D.
constexpr double kSdpaFlops = 2.0 * 8 * 16 * 8192.0 * 8192.0 * 128;
// KDA chunk forward (paper eq. 13, C = 64, dh = 128): per token and head 6 dh^2 + 3 C dh + C^2.
constexpr double kKdaChunkFlops = 65536.0 * 16 * (6.0 * 128 * 128 + 3.0 * 64 * 128 + 64.0 * 64);

// Until the engine measures its own per-layer cost, the same assumption on both GPUs: a
// sublayer's decode is ~3 kernels in a CUDA graph at ~1.5-2 us each (launch gap, ramp and
// tail of a small grid). `--launch-us` replaces it; fit it to bench-infer at B=1, 4K.
constexpr double kLaunchS = 5e-6;
// CUDA context (~0.5 GiB), cuBLAS workspaces, decode activations and fp32 logits of a few
// hundred sequences (163840 x 4 B each), a prefill chunk's activations, allocator slack.
constexpr double kReserve = 4 * kGiB;

GpuProfile h200() {
  GpuProfile g;
  g.name = "h200";
  g.memory_bytes = 143771 * kMiB;
  g.reserve_bytes = kReserve;
  g.bandwidth = 4.27e12;
  g.gemm_flops = 788e12;
  g.attention_flops = kSdpaFlops / 3.32e-3;
  g.kda_chunk_flops = kKdaChunkFlops / 3.50e-3;
  g.fp32_flops = 48e12;
  g.launch_s_per_layer = kLaunchS;
  g.sources = {
      "memory 143771 MiB: nvidia-smi on the lent H200 (device KINDS.md)",
      "reserve 4 GiB: assumed (CUDA context, cuBLAS workspaces, activations, logits, slack)",
      "bandwidth 4.27 TB/s: device-to-device copy, bytes read + written (golden README, H200)",
      "GEMM 788 TFLOP/s: bf16 8192^3 matrix product (golden README, H200)",
      fmt::format("attention {:.0f} TFLOP/s: PyTorch SDPA causal forward, B=8 T=8192 H=16 D=128, "
                  "3.32 ms (golden README, H200)",
                  g.attention_flops / 1e12),
      fmt::format("KDA chunk {:.1f} TFLOP/s: FLA chunk_kda forward at that shape, 3.50 ms, FLOPs "
                  "by the paper's eq. 13 (golden README, H200)",
                  g.kda_chunk_flops / 1e12),
      "fp32 48 TFLOP/s: fp32 (no TF32) matrix product measured on the H100 (golden README); "
      "the H200 has the same SMs and clocks",
      "launch 5 us per sublayer: assumed (~3 graph-launched kernels); --launch-us to change",
  };
  return g;
}

GpuProfile h100() {
  GpuProfile g;
  g.name = "h100";
  g.memory_bytes = 81559 * kMiB;
  g.reserve_bytes = kReserve;
  g.bandwidth = 3.0e12;
  g.gemm_flops = 717e12;
  g.attention_flops = kSdpaFlops / 3.9e-3;
  g.kda_chunk_flops = kKdaChunkFlops / 4.5e-3;
  g.fp32_flops = 48e12;
  g.launch_s_per_layer = kLaunchS;
  g.sources = {
      "memory 81559 MiB: nvidia-smi of an H100 SXM 80 GB (the 48B model's bf16 weights, "
      "91.5 GiB, do not fit)",
      "reserve 4 GiB: assumed (as h200)",
      "bandwidth 3.0 TB/s: device-to-device copy, read + written (golden README, H100)",
      "GEMM 717 TFLOP/s: bf16 8192^3 matrix product (golden README, H100)",
      fmt::format("attention {:.0f} TFLOP/s: PyTorch SDPA causal forward, T=8192, 65,536 tokens, "
                  "H=16 D=128, 3.9 ms (golden README, H100)",
                  g.attention_flops / 1e12),
      fmt::format("KDA chunk {:.1f} TFLOP/s: FLA chunk_kda forward 4.1-4.9 ms at that shape "
                  "(4.5 taken), eq. 13 FLOPs (golden README, H100)",
                  g.kda_chunk_flops / 1e12),
      "fp32 48 TFLOP/s: fp32 (no TF32) matrix product (golden README, H100)",
      "launch 5 us per sublayer: assumed (as h200)",
  };
  return g;
}

}  // namespace

std::vector<std::string> known_gpus() { return {"h200", "h100"}; }

GpuProfile gpu_profile(const std::string& name) {
  if (name == "h200") return h200();
  if (name == "h100") return h100();
  throw UserError(fmt::format("--gpu {}: unknown GPU profile (known: {})", name,
                              fmt::join(known_gpus(), ", ")));
}

}  // namespace kimi::inference
