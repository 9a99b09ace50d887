// GPU profiles from ceilings measured on the lent machines (/work/shared/golden/README.md,
// "Ceilings and anchors"; the device tool's KINDS.md for the memory nvidia-smi reports). The
// compute rates of attention and of KDA's chunk kernels are derived from the timed anchors
// there: FLOPs counted as the simulator counts them, divided by the measured time.
#include "inference/gpu_profile.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

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
// cuBLAS workspaces, one prefill chunk's activations (16K tokens: MoE dispatch and expert
// intermediates ~0.6 GiB each, KDA chunk intermediates), allocator slack. The decode
// activations grow with the batch and are counted per sequence (simulator.h).
constexpr double kReserve = 2 * kGiB;

GpuProfile h200() {
  GpuProfile g;
  g.name = "h200";
  g.memory_bytes = 139 * kGiB;
  g.reserve_bytes = kReserve;
  g.bandwidth = 4.27e12;
  g.gemm_flops = 788e12;
  g.attention_flops = kSdpaFlops / 3.32e-3;
  g.kda_chunk_flops = kKdaChunkFlops / 3.50e-3;
  g.fp32_flops = 48e12;
  g.launch_s_per_layer = kLaunchS;
  g.sources = {
      "memory 139 GiB usable: nvidia-smi's 143771 MiB (140.4 GiB) on the lent H200 less the "
      "CUDA context (device KINDS.md: about 139 GiB); --mem-gib to change",
      "reserve 2 GiB: assumed fixed workspace (cuBLAS, a prefill chunk, slack); --reserve-gib",
      "bandwidth 4.27 TB/s: device-to-device copy, bytes read + written (golden README, H200); "
      "--bw to change",
      "GEMM 788 TFLOP/s: bf16 8192^3 matrix product (golden README, H200); --tflops to change",
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
  g.memory_bytes = 80 * kGiB;
  g.reserve_bytes = kReserve;
  g.bandwidth = 3.0e12;
  g.gemm_flops = 717e12;
  g.attention_flops = kSdpaFlops / 3.9e-3;
  g.kda_chunk_flops = kKdaChunkFlops / 4.5e-3;
  g.fp32_flops = 48e12;
  g.launch_s_per_layer = kLaunchS;
  g.sources = {
      "memory 80 GiB usable: nvidia-smi's 81559 MiB on an H100 SXM less the CUDA context (the "
      "48B model's bf16 weights, 91.5 GiB, do not fit)",
      "reserve 2 GiB: assumed (as h200)",
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

// `value` of `flag` checked and turned into the profile's units; the source line says so.
double checked(const char* flag, double value, bool zero_ok) {
  if (!std::isfinite(value) || value < 0 || (value == 0 && !zero_ok))
    throw UserError(fmt::format("{} {}: must be a number {} 0", flag, value, zero_ok ? ">=" : ">"));
  return value;
}

// Replaces the source line that starts with `what` (each number has one).
void set_source(GpuProfile& g, const std::string& what, const std::string& line) {
  std::erase_if(g.sources, [&](const std::string& l) { return l.rfind(what + " ", 0) == 0; });
  g.sources.push_back(line);
}

}  // namespace

void apply_overrides(GpuProfile& g, const GpuOverrides& o) {
  if (o.bw_tbs) {
    g.bandwidth = 1e12 * checked("--bw", *o.bw_tbs, false);
    set_source(g, "bandwidth", fmt::format("bandwidth {} TB/s: --bw", *o.bw_tbs));
  }
  if (o.tflops) {
    g.gemm_flops = 1e12 * checked("--tflops", *o.tflops, false);
    set_source(g, "GEMM", fmt::format("GEMM {} TFLOP/s: --tflops", *o.tflops));
  }
  if (o.mem_gib) {
    g.memory_bytes = kGiB * checked("--mem-gib", *o.mem_gib, false);
    set_source(g, "memory", fmt::format("memory {} GiB usable: --mem-gib", *o.mem_gib));
  }
  if (o.reserve_gib) {
    g.reserve_bytes = kGiB * checked("--reserve-gib", *o.reserve_gib, true);
    set_source(g, "reserve", fmt::format("reserve {} GiB: --reserve-gib", *o.reserve_gib));
  }
  if (o.launch_us) {
    g.launch_s_per_layer = 1e-6 * checked("--launch-us", *o.launch_us, true);
    set_source(g, "launch", fmt::format("launch {} us per sublayer: --launch-us", *o.launch_us));
  }
}

std::vector<std::string> known_gpus() { return {"h200", "h100"}; }

GpuProfile gpu_profile(const std::string& name) {
  if (name == "h200") return h200();
  if (name == "h100") return h100();
  throw UserError(fmt::format("--gpu {}: unknown GPU profile (known: {})", name,
                              fmt::join(known_gpus(), ", ")));
}

}  // namespace kimi::inference
