// `kimi-lab generate MODEL_DIR --prompt-ids 1,2,3 --max-new-tokens N [--greedy]`: decoding with
// the Kimi-Linear hybrid's caches (KDA state + conv tails, MLA latent), timed per token; and
// `kimi-lab model-info MODEL_DIR | --preset kimi-linear-48b`: layers, parameters (total, active)
// and decode-cache sizes of the hybrid against an all-MLA model (docs/models.md#kimi-linear-48b).
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "core/tensor/device_memory.h"
#include "core/tensor/error.h"
#include "models/kimi_linear.h"
#include "tools/cli/commands.h"
#include "tools/cli/flag_checks.h"
#include "trainer/trainer.h"

namespace kimi::cli {
namespace {

using models::KimiLinearConfig;
using models::KimiLinearModel;

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.2f} {}", b, units[u]);
}

struct GenerateArgs {
  std::string dir;
  std::vector<int64_t> prompt;
  int64_t max_new = 16;
  bool greedy = false, random = false;
  double temperature = 1.0;
  uint64_t seed = 0;
  std::string dtype = "f32";
  std::string device = "cpu";
};

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// The next id from logits of one position: argmax, or a draw from softmax(logits / temperature).
int64_t next_token(const Tensor& last, const GenerateArgs& a, Rng& rng) {
  const std::vector<double> v = last.to_vector<double>();
  if (a.greedy) return std::max_element(v.begin(), v.end()) - v.begin();
  const double top = *std::max_element(v.begin(), v.end());
  std::vector<double> p(v.size());
  double sum = 0;
  for (size_t i = 0; i < v.size(); ++i) sum += p[i] = std::exp((v[i] - top) / a.temperature);
  double u = rng.uniform01() * sum;
  for (size_t i = 0; i < p.size(); ++i)
    if ((u -= p[i]) <= 0) return static_cast<int64_t>(i);
  return static_cast<int64_t>(p.size()) - 1;
}

std::unique_ptr<KimiLinearModel> open_model(const GenerateArgs& a) {
  DType dt;
  std::string name = a.dtype;
  for (char& ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (!dtype_from_name(name, &dt) || (dt != DType::kF32 && dt != DType::kF64))
    throw UserError(fmt::format("--dtype {}: want f32 or f64", a.dtype));
  if (!a.random) return KimiLinearModel::from_pretrained(a.dir, dt);
  const KimiLinearConfig c = models::load_kimi_linear_config(a.dir + "/config.json");
  return std::make_unique<KimiLinearModel>(c, dt, a.seed);
}

constexpr int64_t kMaxNewTokens = 1000000;

void run_generate(const GenerateArgs& a) {
  if (a.prompt.empty()) throw UserError("--prompt-ids: give at least one token id");
  if (!(a.temperature > 0) || !std::isfinite(a.temperature))
    throw UserError(
        fmt::format("--temperature must be positive and finite (got {})", a.temperature));
  // The MLA caches grow with every token; past a million the run would take days.
  if (a.max_new < 1 || a.max_new > kMaxNewTokens)
    throw UserError(
        fmt::format("--max-new-tokens must be in [1, {}] (got {})", kMaxNewTokens, a.max_new));
  const auto t_load = std::chrono::steady_clock::now();
  const Device dev = resolve_device(a.device);
  auto model = open_model(a);
  if (dev != Device::kCPU && model->parameters().front().dtype() != DType::kF32)
    throw UserError("generate --device cuda: the CUDA backend computes in f32 (use --dtype f32)");
  model->to(dev);
  const int64_t vocab = model->config().vocab_size;
  for (int64_t id : a.prompt)
    if (id < 0 || id >= vocab)
      throw UserError(fmt::format("--prompt-ids: id {} outside the vocabulary [0, {})", id, vocab));
  fmt::print("model {} ({}, {} parameters) ready in {:.0f} ms\n", a.dir,
             a.random ? "random weights" : "checkpoint", model->num_parameters(), ms_since(t_load));
  Rng rng(a.seed);
  models::KimiLinearState state = model->new_state(1);
  const int64_t T = static_cast<int64_t>(a.prompt.size());
  auto t0 = std::chrono::steady_clock::now();
  Tensor logits = model->forward(Tensor::from_vector(a.prompt, {1, T}).to(dev), &state);
  device_synchronize();  // the GPU's work is queued: time it to the end
  const double prefill_ms = ms_since(t0);
  std::vector<int64_t> out;
  std::vector<double> step_ms;
  int64_t next = next_token(logits.select(1, T - 1).select(0, 0), a, rng);
  for (int64_t i = 0; i < a.max_new; ++i) {
    out.push_back(next);
    if (i + 1 == a.max_new) break;
    t0 = std::chrono::steady_clock::now();
    logits =
        model->forward(Tensor::from_vector(std::vector<int64_t>{next}, {1, 1}).to(dev), &state);
    device_synchronize();
    step_ms.push_back(ms_since(t0));
    next = next_token(logits.select(1, 0).select(0, 0), a, rng);
  }
  fmt::print("prompt ids:    {}\n", fmt::join(a.prompt, ","));
  fmt::print("generated ids: {}\n", fmt::join(out, ","));
  fmt::print("prefill: {} tokens in {:.2f} ms ({:.3f} ms/token)\n", T, prefill_ms, prefill_ms / T);
  if (!step_ms.empty()) {
    double total = 0;
    for (double m : step_ms) total += m;
    fmt::print("decode:  {} tokens, {:.3f} ms/token (per token: {:.3f})\n", step_ms.size(),
               total / step_ms.size(), fmt::join(step_ms, " "));
  }
  const models::CacheUsage u = KimiLinearModel::cache_usage(state);
  fmt::print("cache after {} tokens: KDA {} ({} layers, fixed), MLA {} ({} layers, grows)\n",
             u.tokens, human_bytes(u.kda_bytes), u.kda_layers, human_bytes(u.mla_bytes),
             u.mla_layers);
}

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

void register_generate(CLI::App& app) {
  auto* gen = app.add_subcommand(
      "generate",
      "Decode from a Kimi-Linear checkpoint (HF folder) with the KDA / MLA caches,\n"
      "printing the ids and the per-token time of prefill and decode.");
  auto a = std::make_shared<GenerateArgs>();
  gen->add_option("MODEL_DIR", a->dir, "folder with config.json and model*.safetensors")
      ->required();
  gen->add_option("--prompt-ids", a->prompt, "prompt token ids")
      ->delimiter(',')
      ->check(kFitsInt64)
      ->required();
  gen->add_option("--max-new-tokens", a->max_new, "tokens to generate (1 to 1,000,000)")
      ->check(kFitsInt64)
      ->capture_default_str();
  gen->add_flag("--greedy", a->greedy, "argmax decoding (otherwise sample at --temperature)");
  gen->add_option("--temperature", a->temperature, "sampling temperature (> 0)")
      ->capture_default_str();
  gen->add_flag("--random", a->random, "random weights from config.json alone (no checkpoint)");
  gen->add_option("--seed", a->seed, "seed of the random weights and of sampling")
      ->capture_default_str();
  gen->add_option("--dtype", a->dtype, "f32 or f64 (cuda: f32)")->capture_default_str();
  gen->add_option("--device", a->device, "cpu | cuda | auto")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  gen->callback([a] { run_generate(*a); });

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
