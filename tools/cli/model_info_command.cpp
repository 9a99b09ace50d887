// `kimi-lab model-info MODEL_DIR | --preset kimi-linear-48b`: layers, parameters (total, active)
// and decode-cache sizes of the Kimi-Linear hybrid against an all-MLA model
// (docs/models.md#kimi-linear-48b).
#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

#include "core/tensor/error.h"
#include "models/kimi_linear.h"
#include "tools/cli/commands.h"
#include "tools/cli/generate_internal.h"

namespace kimi::cli {
namespace {

using generate_detail::human_bytes;
using models::KimiLinearConfig;

void print_layers(const KimiLinearConfig& c) {
  std::vector<int64_t> mla;
  int64_t moe = 0;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    if (c.is_mla(i)) mla.push_back(i);
    moe += c.is_moe(i);
  }
  fmt::print("layers: {} = {} KDA + {} MLA (0-based MLA layers: {})\n", c.num_hidden_layers,
             c.num_hidden_layers - static_cast<int64_t>(mla.size()), mla.size(),
             fmt::join(mla, ", "));
  fmt::print(
      "  hidden {}, vocab {}, KDA {} heads x {}, MLA {} heads (nope {} + rope {}, v {}, "
      "latent {})\n",
      c.hidden_size, c.vocab_size, c.kda_num_heads, c.kda_head_dim, c.num_attention_heads,
      c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim, c.kv_lora_rank);
  fmt::print("  FFN: {} dense SwiGLU ({}), {} MoE ({} experts x {}, top-{}, {} shared, scale {})\n",
             c.num_hidden_layers - moe, c.intermediate_size, moe, c.num_experts,
             c.moe_intermediate_size, c.num_experts_per_token, c.num_shared_experts,
             c.routed_scaling_factor);
}

void print_parameters(const KimiLinearConfig& c) {
  const models::ParameterCount p = models::parameter_count(c);
  auto b = [](int64_t n) {
    return n >= 1'000'000'000 ? fmt::format("{:.3f}B", n / 1e9)
           : n >= 1'000'000   ? fmt::format("{:.3f}M", n / 1e6)
                              : fmt::format("{:.1f}K", n / 1e3);
  };
  fmt::print("parameters: total {} ({}), active per token {} ({} without the embedding table)\n",
             b(p.total), p.total, b(p.active), b(p.active - p.embedding));
  fmt::print(
      "  embedding {}, lm_head {}, KDA {}, MLA {}, dense MLP {}, MoE {} (routed experts "
      "{}), norms {}\n",
      b(p.embedding), b(p.lm_head), b(p.kda), b(p.mla), b(p.dense_mlp), b(p.moe),
      b(p.routed_experts), b(p.norms));
}

void print_cache(const KimiLinearConfig& c, int64_t state_bytes, int64_t latent_bytes,
                 const char* label) {
  const models::CacheSizes s = models::cache_sizes(c, state_bytes, latent_bytes);
  fmt::print("decode cache, {}:\n", label);
  fmt::print(
      "  per token: hybrid {} ({} MLA layers x {}), all-MLA {} ({} layers); KDA fixed {} "
      "per sequence ({} layers x ({} state + {} conv tails))\n",
      human_bytes(s.num_mla * s.mla_per_token_per_layer), s.num_mla,
      human_bytes(s.mla_per_token_per_layer),
      human_bytes((s.num_mla + s.num_kda) * s.mla_per_token_per_layer), s.num_mla + s.num_kda,
      human_bytes(s.hybrid(0)), s.num_kda, human_bytes(s.kda_state_per_layer),
      human_bytes(s.kda_conv_per_layer));
  fmt::print("  {:>10} {:>14} {:>14} {:>10}\n", "tokens", "hybrid", "all-MLA", "reduction");
  for (int64_t n : {int64_t{4096}, int64_t{131072}, int64_t{1048576}}) {
    const double h = s.hybrid(n), m = s.all_mla(n);
    fmt::print("  {:>10} {:>14} {:>14} {:>9.1f}%\n", n, human_bytes(h), human_bytes(m),
               100.0 * (1.0 - h / m));
  }
}

void run_model_info(const std::string& dir, const std::string& preset) {
  if (dir.empty() == preset.empty())
    throw UserError("model-info: give MODEL_DIR or --preset kimi-linear-48b (one of them)");
  if (!preset.empty() && preset != "kimi-linear-48b")
    throw UserError(fmt::format("--preset {}: unknown (known: kimi-linear-48b)", preset));
  const KimiLinearConfig c = preset.empty() ? models::load_kimi_linear_config(dir + "/config.json")
                                            : models::kimi_linear_48b();
  fmt::print("{}\n", preset.empty() ? dir + "/config.json" : "preset " + preset);
  print_layers(c);
  print_parameters(c);
  print_cache(c, 4, 2, "reference dtypes (KDA state fp32, MLA latent bf16)");
  print_cache(c, 4, 4, "kimi-lab's CPU model (fp32 state and latent)");
}

}  // namespace

void register_model_info(CLI::App& app) {
  auto* info =
      app.add_subcommand("model-info",
                         "Layers, parameter counts (total, active) and decode-cache sizes of a\n"
                         "Kimi-Linear config, against an all-MLA model of the same depth.");
  auto dir = std::make_shared<std::string>();
  auto preset = std::make_shared<std::string>();
  info->add_option("MODEL_DIR", *dir, "folder with config.json");
  info->add_option("--preset", *preset, "kimi-linear-48b");
  info->callback([dir, preset] { run_model_info(*dir, *preset); });
}

}  // namespace kimi::cli
