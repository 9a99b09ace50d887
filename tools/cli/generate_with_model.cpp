// `kimi-lab generate` without --engine (tools/cli/generate_internal.h): the f32 (or f64) model of
// models/ through the op engine, on the CPU or the GPU, each prompt alone with its own caches,
// prefill as one forward pass and every decode step timed.
#include <fmt/format.h>

#include <cctype>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "core/tensor/device_memory.h"
#include "core/tensor/error.h"
#include "core/tensor/rng.h"
#include "inference/engine/generate.h"
#include "models/kimi_linear.h"
#include "tools/cli/generate_internal.h"
#include "trainer/trainer.h"

namespace kimi::cli::generate_detail {
namespace {

namespace engine = inference::engine;
using models::KimiLinearConfig;
using models::KimiLinearModel;

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

}  // namespace

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

}  // namespace kimi::cli::generate_detail
