// `kimi-lab generate MODEL_DIR --prompt-ids 1,2,3 [--prompt-ids 4,5] --max-new-tokens N
// [--greedy] [--engine]`: decoding with the Kimi-Linear hybrid's caches (KDA state + conv tails,
// MLA latent), timed per token, on the f32 model or (--engine) the bf16 decode engine with the
// prompts batched (inference/engine/generate.h); and
// `kimi-lab model-info MODEL_DIR | --preset kimi-linear-48b`: layers, parameters (total, active)
// and decode-cache sizes of the hybrid against an all-MLA model (docs/models.md#kimi-linear-48b).
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "core/tensor/device_memory.h"
#include "core/tensor/error.h"
#include "core/tensor/rng.h"
#include "inference/engine/decode_engine.h"
#include "inference/engine/generate.h"
#include "inference/engine/weight_layout.h"
#include "models/kimi_linear.h"
#include "tools/cli/commands.h"
#include "tools/cli/flag_checks.h"
#include "trainer/trainer.h"

namespace kimi::cli {
namespace {

namespace engine = inference::engine;
using models::KimiLinearConfig;
using models::KimiLinearModel;

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.2f} {}", b, units[u]);
}

struct GenerateArgs {
  std::string dir, preset;
  std::vector<std::string> prompt_text;  // one --prompt-ids per prompt, "1,2,3"
  std::vector<std::vector<int64_t>> prompts;
  int64_t max_new = 16, stop_id = -1;
  bool greedy = false, random = false, engine = false;
  bool dtype_given = false, device_given = false;
  double temperature = 1.0;
  uint64_t seed = 0;
  std::string dtype = "f32";
  std::string device = "cpu";
};

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// "1,5,9" -> ids; every fault names --prompt-ids.
std::vector<int64_t> parse_prompt(const std::string& text) {
  std::vector<int64_t> ids;
  size_t at = 0;
  for (;;) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    int64_t v = 0;
    const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || ptr != item.data() + item.size())
      throw UserError(fmt::format("--prompt-ids {}: '{}' is not a token id", text, item));
    ids.push_back(v);
    if (comma == text.size()) break;
    at = comma + 1;
  }
  return ids;
}

constexpr int64_t kMaxNewTokens = 1000000;
constexpr int64_t kMaxPrompts = 65536;

// The checks both paths share, and the engine's refusals; fills a.prompts.
void check_args(GenerateArgs& a) {
  if (a.dir.empty() && a.preset.empty())
    throw UserError("generate: give MODEL_DIR (or --engine --preset kimi-linear-48b)");
  if (!a.dir.empty() && !a.preset.empty())
    throw UserError("generate: give MODEL_DIR or --preset, not both");
  if (!a.preset.empty() && a.preset != "kimi-linear-48b")
    throw UserError(fmt::format("--preset {}: unknown (known: kimi-linear-48b)", a.preset));
  if (!a.preset.empty() && !a.engine)
    throw UserError(
        "--preset: only with --engine (the f32 model of the 48B would need about 200 GB)");
  if (a.engine && a.device_given && a.device == "cpu")
    throw UserError("--device cpu: the decode engine (--engine) runs on CUDA only");
  if (a.engine && a.dtype_given)
    throw UserError(
        "--dtype: not with --engine (the engine computes in bf16 with an fp32 KDA state)");
  if (a.prompt_text.empty()) throw UserError("--prompt-ids: give at least one prompt");
  if (static_cast<int64_t>(a.prompt_text.size()) > kMaxPrompts)
    throw UserError(fmt::format("--prompt-ids: at most {} prompts", kMaxPrompts));
  if (a.stop_id < -1)
    throw UserError(fmt::format("--stop-id {}: want a token id, or -1 for none", a.stop_id));
  a.prompts.clear();
  for (const std::string& t : a.prompt_text) a.prompts.push_back(parse_prompt(t));
  if (!(a.temperature > 0) || !std::isfinite(a.temperature))
    throw UserError(
        fmt::format("--temperature must be positive and finite (got {})", a.temperature));
  // The MLA caches grow with every token; past a million the run would take days.
  if (a.max_new < 1 || a.max_new > kMaxNewTokens)
    throw UserError(
        fmt::format("--max-new-tokens must be in [1, {}] (got {})", kMaxNewTokens, a.max_new));
}

void check_vocab(const GenerateArgs& a, int64_t vocab) {
  for (const std::vector<int64_t>& p : a.prompts)
    for (int64_t id : p)
      if (id < 0 || id >= vocab)
        throw UserError(
            fmt::format("--prompt-ids: id {} outside the vocabulary [0, {})", id, vocab));
  if (a.stop_id >= vocab)
    throw UserError(fmt::format("--stop-id {}: outside the vocabulary [0, {})", a.stop_id, vocab));
}

template <class Ids>
void print_ids(const GenerateArgs& a, size_t i, const Ids& out, bool stopped) {
  if (a.prompts.size() == 1) {
    fmt::print("prompt ids:    {}\n", fmt::join(a.prompts[i], ","));
    fmt::print("generated ids: {}{}\n", fmt::join(out, ","), stopped ? " (stop id)" : "");
  } else {
    fmt::print("prompt {} ids:    {}\n", i + 1, fmt::join(a.prompts[i], ","));
    fmt::print("generated {} ids: {}{}\n", i + 1, fmt::join(out, ","), stopped ? " (stop id)" : "");
  }
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

// The f32 (or f64) model through the op engine, one prompt after the other.
void run_model(const GenerateArgs& a) {
  const auto t_load = std::chrono::steady_clock::now();
  const Device dev = resolve_device(a.device);
  auto model = open_model(a);
  if (dev != Device::kCPU && model->parameters().front().dtype() != DType::kF32)
    throw UserError("generate --device cuda: the CUDA backend computes in f32 (use --dtype f32)");
  model->to(dev);
  check_vocab(a, model->config().vocab_size);
  fmt::print("model {} ({}, {} parameters) ready in {:.0f} ms\n", a.dir,
             a.random ? "random weights" : "checkpoint", model->num_parameters(), ms_since(t_load));
  const engine::Sampling sampling{a.greedy, a.temperature};
  for (size_t p = 0; p < a.prompts.size(); ++p) {
    const std::vector<int64_t>& prompt = a.prompts[p];
    Rng rng(engine::prompt_seed(a.seed, static_cast<int64_t>(p)));
    auto pick = [&](const Tensor& last) {
      const std::vector<double> v = last.to_vector<double>();
      return engine::pick_token(v.data(), static_cast<int64_t>(v.size()), sampling, rng);
    };
    models::KimiLinearState state = model->new_state(1);
    const int64_t T = static_cast<int64_t>(prompt.size());
    auto t0 = std::chrono::steady_clock::now();
    Tensor logits = model->forward(Tensor::from_vector(prompt, {1, T}).to(dev), &state);
    device_synchronize();  // the GPU's work is queued: time it to the end
    const double prefill_ms = ms_since(t0);
    std::vector<int64_t> out;
    std::vector<double> step_ms;
    int64_t next = pick(logits.select(1, T - 1).select(0, 0));
    bool stopped = false;
    for (int64_t i = 0; i < a.max_new; ++i) {
      out.push_back(next);
      if (next == a.stop_id) {
        stopped = true;
        break;
      }
      if (i + 1 == a.max_new) break;
      t0 = std::chrono::steady_clock::now();
      logits =
          model->forward(Tensor::from_vector(std::vector<int64_t>{next}, {1, 1}).to(dev), &state);
      device_synchronize();
      step_ms.push_back(ms_since(t0));
      next = pick(logits.select(1, 0).select(0, 0));
    }
    print_ids(a, p, out, stopped);
    fmt::print("prefill: {} tokens in {:.2f} ms ({:.3f} ms/token)\n", T, prefill_ms,
               prefill_ms / T);
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
}

// The bf16 decode engine (inference/engine/generate.h): all prompts batched, one slot each.
void run_engine(const GenerateArgs& a) {
  if (!engine::engine_available())
    throw UserError(
        "generate --engine: this kimi-lab was built without CUDA (the decode engine needs "
        "-DKIMI_LAB_CUDA=ON and a GPU)");
  const KimiLinearConfig c = !a.preset.empty()
                                 ? models::kimi_linear_48b()
                                 : models::load_kimi_linear_config(a.dir + "/config.json");
  const engine::WeightLayout layout = engine::make_weight_layout(c);
  check_vocab(a, c.vocab_size);
  const bool random = a.random || !a.preset.empty();
  const auto t_load = std::chrono::steady_clock::now();
  std::unique_ptr<engine::DecodeEngine> e;
  try {
    e = engine::make_decode_engine(layout);
  } catch (const UserError& err) {
    throw UserError(fmt::format("generate --engine: {}", err.what()));
  }
  if (random)
    e->init_random(a.seed);
  else
    e->load_hf(a.dir);
  fmt::print("engine: {} ({}, {:.2f} GiB of bf16 weights) on {}, ready in {:.0f} ms\n",
             a.preset.empty() ? a.dir : "preset " + a.preset,
             random ? "random weights, seeded" : "checkpoint", layout.total_bytes / 1073741824.0,
             e->device_name(), ms_since(t_load));
  std::vector<std::vector<int32_t>> prompts;
  for (const std::vector<int64_t>& p : a.prompts) prompts.emplace_back(p.begin(), p.end());
  engine::GenerateOptions o;
  o.max_new = a.max_new, o.seed = a.seed, o.stop_id = a.stop_id;
  o.sampling = {a.greedy, a.temperature};
  const engine::GenerateOutput out = engine::generate(*e, prompts, o);
  for (size_t p = 0; p < prompts.size(); ++p) print_ids(a, p, out.ids[p], out.stopped[p]);
  // The prefills (one per prompt; the first runs cold: cuBLAS and first launches), then the
  // decode steps, the first of which is cold too.
  std::vector<double> decode;
  int64_t fed = 0, generated = 0;
  double total = 0;
  for (size_t s = 0; s < out.steps.size(); ++s) {
    const engine::GenerateStep& st = out.steps[s];
    total += st.ms;
    if (st.prompt_rows > 0) {
      fed += st.prompt_rows;
      fmt::print("prefill {}: {} tokens in {:.3f} ms ({:.0f} tokens/s, chunks of {}){}\n", s + 1,
                 st.prompt_rows, st.ms, st.prompt_rows / st.ms * 1e3, e->prefill_chunk(),
                 s == 0 ? " (cold)" : "");
    } else {
      fed += st.rows;
      decode.push_back(st.ms);
    }
  }
  for (const auto& ids : out.ids) generated += static_cast<int64_t>(ids.size());
  fmt::print(
      "{} prompts prefilled, then {} decode steps (one token for each unfinished prompt): {} "
      "tokens fed, {} generated in {:.2f} ms ({:.1f} generated tokens/s)\n",
      prompts.size(), decode.size(), fed, generated, total, generated / total * 1e3);
  if (!decode.empty()) fmt::print("  decode step 1 (cold): {:.3f} ms\n", decode.front());
  if (decode.size() > 1) {
    decode.erase(decode.begin());
    fmt::print(
        "  decode steps 2..: {}, median {:.3f} ms/step = time per output token of each prompt\n",
        decode.size(), median(decode));
  }
}

void run_generate(GenerateArgs& a) {
  check_args(a);
  if (a.engine)
    run_engine(a);
  else
    run_model(a);
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
      "Decode from a Kimi-Linear checkpoint (HF folder) with the KDA / MLA caches, printing\n"
      "the ids and the time of prefill and decode. Give --prompt-ids once per prompt.\n"
      "Without --engine: the f32 (or f64) model of models/ through the op engine, on the CPU\n"
      "or the GPU (--device), each prompt alone, prefill as one forward pass.\n"
      "With --engine: the bf16 decode engine of inference/engine (CUDA only; bf16 weights and\n"
      "activations, fp32 KDA state, bf16 MLA latent), every prompt in its own cache slot:\n"
      "each prompt prefilled in chunks of 16K tokens (one pass of every layer per chunk), then\n"
      "all prompts decoded batched. The fp32 logits of each prefill's last token and of every\n"
      "step (B x vocab) come back to the host, where the next token is picked\n"
      "(greedy or sampled, as without --engine). MODEL_DIR, or --preset kimi-linear-48b with\n"
      "random weights built on the GPU (92 GiB of bf16: an H200 or larger).\n"
      "Sampling: prompt i (from 0) draws from its own stream, seeded --seed for the first\n"
      "prompt and mix_seed(--seed, i) for the others, on both paths.");
  auto a = std::make_shared<GenerateArgs>();
  gen->add_option("MODEL_DIR", a->dir, "folder with config.json and model*.safetensors");
  gen->add_option("--prompt-ids", a->prompt_text,
                  "one prompt's token ids, e.g. 1,5,9; repeat the flag for more prompts")
      ->allow_extra_args(false);
  gen->add_option("--max-new-tokens", a->max_new, "tokens to generate per prompt (1 to 1,000,000)")
      ->check(kFitsInt64)
      ->capture_default_str();
  gen->add_option("--stop-id", a->stop_id,
                  "end a prompt once it generates this id (kept in the output; -1: none)")
      ->check(kFitsInt64)
      ->capture_default_str();
  gen->add_flag("--greedy", a->greedy, "argmax decoding (otherwise sample at --temperature)");
  gen->add_option("--temperature", a->temperature, "sampling temperature (> 0)")
      ->capture_default_str();
  gen->add_flag("--random", a->random,
                "random weights from config.json alone (no checkpoint; the engine's random "
                "weights are not the f32 model's)");
  gen->add_option("--seed", a->seed, "seed of the random weights and of sampling")
      ->capture_default_str();
  gen->add_flag("--engine", a->engine,
                "run the bf16 decode engine (CUDA) instead of the f32 model, prompts batched");
  gen->add_option("--preset", a->preset,
                  "with --engine: kimi-linear-48b, random seeded weights built on the GPU");
  auto* dtype = gen->add_option("--dtype", a->dtype, "f32 or f64 (cuda: f32; not with --engine)")
                    ->capture_default_str();
  auto* device = gen->add_option("--device", a->device, "cpu | cuda | auto (--engine: cuda)")
                     ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
                     ->capture_default_str();
  gen->callback([a, dtype, device] {
    a->dtype_given = dtype->count() > 0;
    a->device_given = device->count() > 0;
    run_generate(*a);
  });

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
