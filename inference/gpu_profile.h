// The ceilings the simulator divides work by: memory size and bandwidth, and one compute rate
// per kind of work (dense GEMM, flash-style attention, KDA's chunk kernels, fp32 recurrent
// decode), plus the engine's fixed cost per layer and the memory kept back from the caches.
// Each number's source is in gpu_profile.cpp and printed by `kimi-lab simulate`.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace kimi::inference {

struct GpuProfile {
  std::string name;
  double memory_bytes = 0;        // usable by the engine: the device's memory less the CUDA context
  double reserve_bytes = 0;       // fixed workspace kept from the caches (cuBLAS, a prefill chunk)
  double bandwidth = 0;           // bytes per second, read + written (device copy)
  double gemm_flops = 0;          // bf16 matrix products, FLOP/s
  double attention_flops = 0;     // flash-style causal attention, bf16, FLOP/s
  double kda_chunk_flops = 0;     // KDA chunk kernels (prefill), counted with the paper's eq. 13
  double fp32_flops = 0;          // CUDA-core fp32 (KDA's recurrent decode step)
  double launch_s_per_layer = 0;  // fixed cost of each sublayer (mixer, FFN, embed + head)
  // One line per number: value and where it comes from.
  std::vector<std::string> sources;
};

// "h200" or "h100"; anything else is a UserError naming the known ones.
GpuProfile gpu_profile(const std::string& name);
std::vector<std::string> known_gpus();

// The command line's replacements of a profile's numbers, in the units people quote them in;
// nullopt keeps the profile's value. Each replaced number's source line says which flag set it.
struct GpuOverrides {
  std::optional<double> bw_tbs;       // --bw: copy bandwidth, TB/s (10^12 bytes/s)
  std::optional<double> tflops;       // --tflops: bf16 GEMM ceiling, TFLOP/s
  std::optional<double> mem_gib;      // --mem-gib: memory usable by the engine, GiB
  std::optional<double> reserve_gib;  // --reserve-gib: fixed workspace, GiB
  std::optional<double> launch_us;    // --launch-us: fixed cost per sublayer, microseconds
};
// A UserError naming the flag for a value that is not a finite number > 0 (>= 0 for the
// reserve and the launch cost).
void apply_overrides(GpuProfile& g, const GpuOverrides& o);

}  // namespace kimi::inference
