// `kimi-lab generate MODEL_DIR --prompt-ids 1,2,3 [--prompt-ids 4,5] --max-new-tokens N
// [--greedy] [--engine]`: decoding with the Kimi-Linear hybrid's caches (KDA state + conv tails,
// MLA latent), timed per token, on the f32 model (generate_with_model.cpp) or (--engine) the bf16
// decode engine with the prompts batched (generate_with_engine.cpp, inference/engine/generate.h).
// `kimi-lab model-info` is model_info_command.cpp.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/error.h"
#include "tools/cli/commands.h"
#include "tools/cli/flag_checks.h"
#include "tools/cli/generate_internal.h"

namespace kimi::cli {

namespace generate_detail {

void check_vocab(const GenerateArgs& a, int64_t vocab) {
  for (const std::vector<int64_t>& p : a.prompts)
    for (int64_t id : p)
      if (id < 0 || id >= vocab)
        throw UserError(
            fmt::format("--prompt-ids: id {} outside the vocabulary [0, {})", id, vocab));
  if (a.stop_id >= vocab)
    throw UserError(fmt::format("--stop-id {}: outside the vocabulary [0, {})", a.stop_id, vocab));
}

}  // namespace generate_detail

namespace {

using generate_detail::check_vocab;
using generate_detail::GenerateArgs;
using generate_detail::run_engine;
using generate_detail::run_model;

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

void run_generate(GenerateArgs& a) {
  check_args(a);
  if (a.engine)
    run_engine(a);
  else
    run_model(a);
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
}

}  // namespace kimi::cli
