// `kimi-lab bench-infer [--preset kimi-linear-48b | HF_DIR]`: the decode engine's TPOT for the
// hybrid and its all-MLA twin against the memory floor, and the chunked prefill's time per
// context (inference/engine/bench_infer.h), a table, bench_infer.csv (readable by
// `simulate --measured`) and a plot (tools/plot_simulator.py).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
#include "inference/engine/bench_infer.h"
#include "inference/engine/decode_engine.h"
#include "inference/sim_args.h"
#include "tools/cli/commands.h"

namespace kimi::cli {
namespace {

namespace fs = std::filesystem;
using namespace kimi::inference;

struct BenchInferCli {
  std::string dir, preset, out = "runs/bench_infer";
  std::vector<std::string> contexts = {"4K", "32K", "128K", "512K", "1M"};
  std::vector<std::string> batches = {"1", "4", "16", "64", "256"};
  std::vector<std::string> models = {"hybrid", "mla"};
  std::string prefill_max = "128K", prefill_chunk = "16K";
  int64_t seed = 0, layers = 0;
  int warmup = 3, reps = 10;
  bool no_max = false, no_plot = false, breakdown = false;
};

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

void plot(const std::string& csv, const std::string& prefix, const std::string& title) {
  fs::path script;
  for (const fs::path& p : {fs::path(KIMI_SOURCE_DIR) / "tools" / "plot_simulator.py",
                            fs::path("tools") / "plot_simulator.py"})
    if (fs::exists(p)) {
      script = p;
      break;
    }
  if (script.empty()) return spdlog::warn("tools/plot_simulator.py not found; no plot");
  const std::string cmd =
      fmt::format("python3 {} {} {} --title {} --measured >/dev/null", quote(script.string()),
                  quote(csv), quote(prefix), quote(title));
  if (std::system(cmd.c_str()) != 0)
    spdlog::warn("plotting failed (is python3-matplotlib installed?); the CSV is written");
  else
    fmt::print("wrote {0}.png and {0}.svg\n", prefix);
}

void run(const BenchInferCli& c) {
  engine::BenchInferArgs a;
  a.hf_dir = c.dir, a.preset = c.preset;
  a.contexts = parse_contexts(c.contexts);
  a.batches = engine::parse_bench_batches(c.batches);
  a.models = engine::parse_bench_models(c.models);
  a.seed = static_cast<uint64_t>(c.seed), a.warmup = c.warmup, a.reps = c.reps,
  a.add_max_batch = !c.no_max;
  a.layers = c.layers;
  a.breakdown = c.breakdown;
  a.prefill_max = engine::parse_prefill_max(c.prefill_max);
  a.prefill_chunk = engine::parse_prefill_chunk(c.prefill_chunk);
  if (!engine::engine_available())
    throw UserError(
        "bench-infer: this kimi-lab was built without CUDA (the decode engine needs "
        "-DKIMI_LAB_CUDA=ON and a GPU)");
  fmt::print(
      "bench-infer: bf16 weights, fp32 KDA state, bf16 MLA latent cache; decode on caches filled "
      "with SYNTHETIC values up to each context; TPOT = median of {} CUDA-graph steps after {} "
      "warm-up; prefill: one sequence per context up to {} tokens, chunks of {}, after one "
      "untimed chunk ('-' beyond)\n",
      a.reps, a.warmup, a.prefill_max, a.prefill_chunk);
  const engine::BenchResult r =
      engine::run_bench_infer(a, [](const std::string& line) { fmt::print("{}\n", line); });
  fmt::print(
      "\nDecode on {} ({}); floor = (weights read + cache read/written) / copy bandwidth "
      "{:.2f} TB/s measured in this run:\n{}",
      r.device, r.source, r.copy_bytes_per_s / 1e12, engine::bench_table(r));
  fmt::print(
      "\nMemory (bf16 weights; cache per sequence: fp32 KDA state + tails, bf16 MLA "
      "latent):\n{}",
      engine::memory_table(r));
  std::error_code ec;  // made only now: a run that fails early leaves no folder behind
  fs::create_directories(c.out, ec);
  if (ec) throw UserError(fmt::format("--out {}: cannot create ({})", c.out, ec.message()));
  const std::string csv = c.out + "/bench_infer.csv";
  io::write_file_atomic(csv, engine::bench_csv(r));
  io::write_file_atomic(c.out + "/bench_infer.txt",
                        engine::bench_table(r) + "\n" + engine::memory_table(r));
  fmt::print("wrote {} (simulate --measured reads it)\n", csv);
  if (c.breakdown) {
    io::write_file_atomic(c.out + "/bench_breakdown.csv", engine::breakdown_csv(r));
    fmt::print("wrote {}/bench_breakdown.csv\n", c.out);
  }
  if (!c.no_plot)
    plot(csv, c.out + "/bench_infer",
         fmt::format("Kimi-Linear decode on {} (engine, measured; synthetic caches)", r.device));
}

}  // namespace

void register_bench_infer(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench-infer",
      "Measure the decode engine (CUDA, bf16 weights built on the GPU): TPOT and tokens/s of\n"
      "the Kimi-Linear hybrid and its all-MLA twin for each context and batch that fits, against\n"
      "the memory floor (weights + cache bytes per step at the copy bandwidth measured in the\n"
      "same run), decoding on caches filled with synthetic values up to each context; and the\n"
      "chunked prefill of one sequence of each context up to --prefill-max (prefill ms and\n"
      "tokens/s; '-' beyond).\n"
      "Writes OUT/bench_infer.csv (atomic; `simulate --measured` reads it), bench_infer.txt and\n"
      "bench_infer.{png,svg}.");
  auto c = std::make_shared<BenchInferCli>();
  cmd->add_option("HF_DIR", c->dir,
                  "a Hugging Face Kimi-Linear folder (config.json + safetensors)");
  cmd->add_option("--preset", c->preset, "built-in config with random weights: kimi-linear-48b");
  cmd->add_option("--contexts", c->contexts, "context lengths, e.g. 4K,32K,1M (K = 1024)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--batch", c->batches, "batch sizes (those that fit are run)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--models", c->models, "hybrid and/or mla (the all-MLA twin)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--layers", c->layers,
                  "only the first N decoder layers (0 = all), each keeping its kind and MoE: "
                  "the 48B cut to fit an 80 GB card (simulate --layers N predicts it)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--seed", c->seed, "weights and synthetic caches")
      ->check(CLI::Range(int64_t{0}, int64_t{4294967295}))
      ->capture_default_str();
  cmd->add_option("--warmup", c->warmup, "untimed steps first")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--reps", c->reps, "timed steps (median)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--prefill-max", c->prefill_max,
                  "longest context prefilled for real (e.g. 32K; 0 = no prefill)")
      ->capture_default_str();
  cmd->add_option("--prefill-chunk", c->prefill_chunk,
                  "tokens per prefill chunk, at most 64K (the simulator's is 16K)")
      ->capture_default_str();
  cmd->add_option("--out", c->out, "output folder")->capture_default_str();
  cmd->add_flag("--no-max-batch", c->no_max, "skip the largest batch that fits at each context");
  cmd->add_flag("--no-plot", c->no_plot, "write no PNG / SVG");
  cmd->add_flag("--breakdown", c->breakdown,
                "also time each part of the step un-graphed (embed, norms, projections, KDA\n"
                "update, MLA attend, routing, experts, shared/dense FFN, lm_head) against the\n"
                "bytes it must read; writes bench_breakdown.csv");
  cmd->callback([c] { run(*c); });
}

}  // namespace kimi::cli
