// The byte count of each part of a decode step and the breakdown table (step_breakdown.h).
#include "inference/engine/step_breakdown.h"

#include <fmt/format.h>

#include "inference/layer_costs.h"

namespace kimi::inference::engine {

const char* step_part_name(StepPart p) {
  switch (p) {
    case StepPart::kEmbed: return "embed";
    case StepPart::kNorm: return "norms";
    case StepPart::kKdaProj: return "kda.proj";
    case StepPart::kKdaUpdate: return "kda.update";
    case StepPart::kKdaOut: return "kda.o_proj";
    case StepPart::kMlaProj: return "mla.proj";
    case StepPart::kMlaAttend: return "mla.attend";
    case StepPart::kMlaOut: return "mla.o_proj";
    case StepPart::kRoute: return "moe.route";
    case StepPart::kExperts: return "moe.experts";
    case StepPart::kFfn: return "ffn.shared+dense";
    case StepPart::kHead: return "lm_head";
    case StepPart::kCount: break;
  }
  return "?";
}

StepPartMs step_part_bytes(const models::KimiLinearConfig& c, int64_t batch, int64_t context,
                           int64_t distinct_experts) {
  const LayerParams p = layer_params(c);
  double kda_layers = 0, mla_layers = 0, moe_layers = 0, dense_layers = 0;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    (c.is_mla(i) ? mla_layers : kda_layers) += 1;
    (c.is_moe(i) ? moe_layers : dense_layers) += 1;
  }
  // The cache bytes per layer of each kind, as the simulator counts them.
  double kda_cache = 0, mla_cache = 0;
  for (const LayerCost& l : decode_step(c, batch, context)) {
    if (l.kind == "kda") kda_cache = l.work.cache_bytes;
    if (l.kind == "mla") mla_cache = l.work.cache_bytes;
  }
  const double B = static_cast<double>(batch), d = static_cast<double>(c.hidden_size);
  const double hk = static_cast<double>(c.kda_num_heads * c.kda_head_dim);
  const double H = static_cast<double>(c.num_attention_heads);
  const double kv_b = static_cast<double>(c.kv_lora_rank) * H *
                      static_cast<double>(c.qk_nope_head_dim + c.v_head_dim);
  const double mla_out = H * static_cast<double>(c.v_head_dim) * d;
  constexpr double kBf16 = 2, kF32 = 4;
  StepPartMs b{};
  auto at = [&](StepPart s) -> double& { return b[static_cast<int>(s)]; };
  at(StepPart::kEmbed) = B * d * kBf16;
  at(StepPart::kNorm) = (2.0 * static_cast<double>(c.num_hidden_layers) + 1.0) * d * kBf16;
  // kda_other and mla_other hold the block's input norm, counted under norms.
  at(StepPart::kKdaProj) = kda_layers * kBf16 * (static_cast<double>(p.kda_matmul) - d * hk);
  at(StepPart::kKdaUpdate) =
      kda_layers * (kda_cache + kBf16 * (static_cast<double>(p.kda_other) - d));
  at(StepPart::kKdaOut) = kda_layers * kBf16 * d * hk;
  at(StepPart::kMlaProj) =
      mla_layers * kBf16 * (static_cast<double>(p.mla_matmul) - kv_b - mla_out);
  at(StepPart::kMlaAttend) =
      mla_layers * (mla_cache + kBf16 * (kv_b + static_cast<double>(p.mla_other) - d));
  at(StepPart::kMlaOut) = mla_layers * kBf16 * mla_out;
  // The engine keeps the router in fp32 (routing near a tie must not move).
  at(StepPart::kRoute) = moe_layers * kF32 * static_cast<double>(p.router + p.router_bias);
  at(StepPart::kExperts) =
      static_cast<double>(distinct_experts) * kBf16 * static_cast<double>(p.expert);
  at(StepPart::kFfn) = kBf16 * (moe_layers * static_cast<double>(c.num_shared_experts * p.expert) +
                                dense_layers * static_cast<double>(p.dense_ffn));
  at(StepPart::kHead) =
      kBf16 * static_cast<double>(p.head) + B * static_cast<double>(c.vocab_size) * kF32;
  return b;
}

std::string breakdown_table(const StepPartMs& ms, const StepPartMs& bytes, double graph_ms,
                            double copy_bytes_per_s) {
  double sum_ms = 0, sum_bytes = 0;
  for (int i = 0; i < kStepParts; ++i) sum_ms += ms[i], sum_bytes += bytes[i];
  std::string t = fmt::format("    {:<17} {:>10} {:>6} {:>9} {:>8} {:>10} {:>8}\n", "part", "ms",
                              "%", "GB", "GB/s", "floor ms", "x floor");
  auto line = [&](const std::string& name, double m, double by) {
    const double floor = by / copy_bytes_per_s * 1e3;
    t += fmt::format("    {:<17} {:>10.3f} {:>6.1f} {:>9.4f} {:>8.0f} {:>10.4f} {:>8}\n", name, m,
                     sum_ms > 0 ? 100.0 * m / sum_ms : 0.0, by / 1e9,
                     m > 0 ? by / (m * 1e-3) / 1e9 : 0.0, floor,
                     floor > 0 ? fmt::format("{:.1f}", m / floor) : "-");
  };
  for (int i = 0; i < kStepParts; ++i) {
    if (ms[i] == 0 && bytes[i] == 0) continue;  // a kind of layer the model has not
    line(step_part_name(static_cast<StepPart>(i)), ms[i], bytes[i]);
  }
  line("sum (un-graphed)", sum_ms, sum_bytes);
  t += fmt::format("    graphed step {:.3f} ms; the parts' sum is {:.2f}x that\n", graph_ms,
                   graph_ms > 0 ? sum_ms / graph_ms : 0.0);
  return t;
}

}  // namespace kimi::inference::engine
