// `kimi-lab generate --engine` (tools/cli/generate_internal.h): the bf16 decode engine of
// inference/engine on CUDA, every prompt in its own cache slot, prefilled in chunks and then
// decoded batched; the cold first prefill and first decode step are reported apart.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/error.h"
#include "inference/engine/decode_engine.h"
#include "inference/engine/generate.h"
#include "inference/engine/weight_layout.h"
#include "models/kimi_linear.h"
#include "tools/cli/generate_internal.h"

namespace kimi::cli::generate_detail {
namespace {

namespace engine = inference::engine;
using models::KimiLinearConfig;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

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

}  // namespace kimi::cli::generate_detail
