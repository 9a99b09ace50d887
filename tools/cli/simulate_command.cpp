// `kimi-lab simulate --preset kimi-linear-48b | MODEL [--gpu h200]`: the roofline simulator
// of inference/ for the hybrid and its all-MLA twin: bytes and FLOPs per token of each layer
// type, cache per sequence, largest batch, predicted prefill / TPOT / throughput against
// context, measured values joined (--measured), CSV + plot, and the "up to 6x" paragraph.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
#include "inference/measured_csv.h"
#include "inference/parallel_costs.h"
#include "inference/report.h"
#include "inference/sim_args.h"
#include "tools/cli/commands.h"

namespace kimi::cli {
namespace {

namespace fs = std::filesystem;
using namespace kimi::inference;

struct SimulateArgs {
  std::string dir, preset, gpu = "h200", measured, out, model = "roofline";
  std::vector<std::string> contexts = {"4K", "32K", "128K", "256K", "512K", "1M"};
  std::vector<std::string> batches = {"1", "max"};
  GpuOverrides overrides;
  std::vector<int> gpus = {1};
  std::optional<double> link_gbs, link_us;
  int64_t prefill_chunk = 16384, layers = 0;
  bool no_plot = false, explain = false;
};

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// tools/<script> (plot_simulator.py, plot_parallel.py) over the CSV; false (with a warning) when
// Python fails. The script sits in the source tree (KIMI_SOURCE_DIR) or under ./tools, as
// tools/plot.py does.
bool plot(const std::string& script_name, const std::string& csv, const std::string& prefix,
          const std::string& title) {
  fs::path script;
  for (const fs::path& p :
       {fs::path(KIMI_SOURCE_DIR) / "tools" / script_name, fs::path("tools") / script_name})
    if (fs::exists(p)) {
      script = p;
      break;
    }
  if (script.empty()) {
    spdlog::warn("tools/{} not found; no plot", script_name);
    return false;
  }
  const std::string python = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  const std::string cmd =
      fmt::format("{} {} {} {} --title {} >/dev/null", python, shell_quote(script.string()),
                  shell_quote(csv), shell_quote(prefix), shell_quote(title));
  if (std::system(cmd.c_str()) != 0) {
    spdlog::warn("plotting failed (is python3-matplotlib installed? run tools/setup.sh)");
    return false;
  }
  return true;
}

// --link-gbs / --link-us over NVLink 4's assumed numbers; a value that is not > 0 (>= 0 for the
// latency) is one line naming the flag.
Interconnect link_of(const SimulateArgs& a) {
  Interconnect l = nvlink4();
  if (a.link_gbs) {
    if (!(std::isfinite(*a.link_gbs) && *a.link_gbs > 0))
      throw UserError(fmt::format("--link-gbs {}: must be a bandwidth > 0 in GB/s", *a.link_gbs));
    l.bus_bandwidth = *a.link_gbs * 1e9;
    l.sources[0] = fmt::format("link: {} GB/s bus bandwidth (--link-gbs)", *a.link_gbs);
  }
  if (a.link_us) {
    if (!(std::isfinite(*a.link_us) && *a.link_us >= 0))
      throw UserError(fmt::format("--link-us {}: must be a time >= 0 in microseconds", *a.link_us));
    l.latency_s = *a.link_us * 1e-6;
    l.sources[1] = fmt::format("link: {} us per collective (--link-us)", *a.link_us);
  }
  return l;
}

// The --gpus table: decode over several GPUs of one host (predicted; parallel_costs.h).
std::string parallel_section(const SimulateArgs& a, const models::KimiLinearConfig& c,
                             const GpuProfile& g, const std::vector<int64_t>& contexts,
                             const std::vector<BatchSpec>& batches, const std::string& out,
                             TimeModel tm) {
  if (a.gpus.size() == 1 && a.gpus[0] == 1) return {};
  if (tm == TimeModel::kEngine)
    throw UserError(
        "--gpus with --model engine: the engine model is fitted to one GPU's kernels; use "
        "--model roofline for several GPUs");
  const Interconnect link = link_of(a);
  const std::vector<ParallelPrediction> rows =
      simulate_parallel(c, g, link, a.gpus, contexts, batches, Dtypes{});
  io::write_file_atomic(out + "/parallel.csv", parallel_csv(rows));
  std::string text = fmt::format(
      "\nOver several {0}s of one host (predicted, roofline; tensor parallel over KDA / MLA "
      "heads, dense and shared FFNs and the LM head's vocabulary, expert parallel over the "
      "routed experts; KDA's state splits with its heads, MLA's latent is whole on every GPU; "
      "two all-reduces of the hidden state per layer and one all-gather of the logits; 'vs 1' = "
      "TPOT on one GPU / TPOT here; wrote {1}/parallel.csv):\n",
      g.name, out);
  for (const std::string& s : link.sources) text += "  " + s + "\n";
  return text + parallel_table(rows);
}

void run_simulate(const SimulateArgs& a) {
  GpuProfile g = gpu_profile(a.gpu);
  apply_overrides(g, a.overrides);
  if (a.prefill_chunk <= 0) throw UserError("--prefill-chunk: must be a positive token count");
  const std::vector<int64_t> contexts = parse_contexts(a.contexts);
  const std::vector<BatchSpec> batches = parse_batches(a.batches);
  const models::KimiLinearConfig full = resolve_model(a.dir, a.preset);
  const models::KimiLinearConfig c = first_layers(full, a.layers);
  const std::vector<Measured> measured =
      a.measured.empty() ? std::vector<Measured>{} : read_measured_csv(a.measured);
  SimOptions o;
  o.prefill_chunk = a.prefill_chunk;
  const TimeModel tm = parse_time_model(a.model);
  if (tm == TimeModel::kEngine) {
    o.engine = engine_profile(g.name);
    if (const std::string w = split_rule_mismatch(measured, *o.engine); !w.empty())
      spdlog::warn("{}", w);
  }
  const std::vector<Prediction> rows = simulate(c, g, contexts, batches, measured, o);

  std::vector<LayerRow> layers;
  for (ModelKind m : {ModelKind::kHybrid, ModelKind::kAllMla})
    for (int64_t n : contexts)
      for (LayerRow& r : layer_breakdown(c, m, g, n, o)) layers.push_back(std::move(r));
  std::vector<LayerRow> shown;  // the printed breakdown: the shortest and longest context
  const int64_t lo = *std::min_element(contexts.begin(), contexts.end());
  const int64_t hi = *std::max_element(contexts.begin(), contexts.end());
  for (const LayerRow& r : layers)
    if (r.context == lo || r.context == hi) shown.push_back(r);

  const std::string source = model_source(a.dir, a.preset, full, a.layers);
  std::vector<int64_t> sorted = contexts;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  const std::vector<ContextRatio> ratios = throughput_ratios(c, g, sorted, o);
  std::string text =
      tm == TimeModel::kEngine
          ? fmt::format(
                "simulate: {} on {} (engine model: decode TPOT = the CUDA engine's parts, each "
                "max(bytes / achieved bandwidth, FLOPs / achieved rate) + latency, less the CUDA "
                "graph's gain; prefill and the layer table below: roofline)\n",
                source, g.name)
          : fmt::format(
                "simulate: {} on {} (roofline: per sublayer max(bytes / "
                "bandwidth, FLOPs / ceiling) + launch)\n",
                source, g.name);
  for (const std::string& s : g.sources) text += "  " + s + "\n";
  if (o.engine)
    for (const std::string& s : o.engine->sources) text += "  " + s + "\n";
  text += fmt::format(
      "\nPer layer type, per token (decode: one step at batch 1; prefill: a whole prompt of "
      "that length, chunks of {} tokens):\n{}",
      o.prefill_chunk, layers_table(shown));
  text += fmt::format(
      "\nPredictions (TPOT = one decode step serving every sequence of the batch; prefill = "
      "one sequence of that length):\n{}",
      predictions_table(rows));
  text += fmt::format(
      "\nHybrid against all-MLA, each at its largest batch (ratio max = decoding throughput "
      "ratio; ratio B=1 = TPOT ratio at batch 1):\n{}",
      ratios_table(ratios));
  const std::string fit = fit_summary(rows, 0.15);
  if (!fit.empty()) text += "\n" + fit;
  const std::string why = explain_speedup(c, g, hi, o);
  const std::string out = a.out.empty() ? "runs/simulate_" + g.name : a.out;
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw UserError(fmt::format("--out {}: cannot create ({})", out, ec.message()));
  text += parallel_section(a, c, g, contexts, batches, out, tm);
  fmt::print("{}", text);
  if (a.explain) fmt::print("\n{}", why);
  text += "\n" + why;

  io::write_file_atomic(out + "/simulate.csv", predictions_csv(rows));
  io::write_file_atomic(out + "/layers.csv", layers_csv(layers));
  io::write_file_atomic(out + "/ratios.csv", ratios_csv(ratios));
  io::write_file_atomic(out + "/report.txt", text);
  if (o.engine)
    io::write_file_atomic(out + "/engine_parts.csv", engine_parts_csv(c, rows, *o.engine));
  fmt::print("\nwrote {0}/simulate.csv, {0}/layers.csv, {0}/ratios.csv, {0}/report.txt{1}{2}\n",
             out, o.engine ? fmt::format(", {}/engine_parts.csv", out) : std::string(),
             a.explain ? "" : " (--explain prints where the paper's \"up to 6x\" comes from)");
  if (!a.no_plot &&
      plot("plot_simulator.py", out + "/simulate.csv", out + "/simulate",
           fmt::format("Kimi-Linear decoding on one {} ({}; simulated, {} model{})", g.name, source,
                       time_model_name(tm), measured.empty() ? "" : ", with measurements")))
    fmt::print("wrote {0}/simulate.png and {0}/simulate.svg\n", out);
  const bool several = !(a.gpus.size() == 1 && a.gpus[0] == 1);
  if (several && !a.no_plot &&
      plot("plot_parallel.py", out + "/parallel.csv", out + "/parallel",
           fmt::format("Kimi-Linear decoding over several {}s ({})", g.name, source)))
    fmt::print("wrote {0}/parallel.png and {0}/parallel.svg\n", out);
}

}  // namespace

void register_simulate(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "simulate",
      "Predict Kimi-Linear inference on one GPU (--gpus: several) from the config and measured\n"
      "ceilings: bytes and FLOPs per token of each layer type (decode and prefill), the cache\n"
      "per sequence, the largest batch beside the bf16 weights, and prefill time, TPOT and\n"
      "decoding throughput against context for the hybrid and its all-MLA twin (every layer\n"
      "MLA, same MoE). Roofline: each sublayer takes max(bytes / bandwidth, FLOPs / ceiling)\n"
      "+ a launch cost. Writes OUT/simulate.csv, layers.csv, ratios.csv, report.txt and\n"
      "simulate.{png,svg} (each replaced atomically); --explain prints where the paper's\n"
      "\"up to 6x\" at 1M comes from (also in report.txt).");
  auto a = std::make_shared<SimulateArgs>();
  cmd->add_option(
      "MODEL", a->dir,
      "a Kimi-Linear config.json, or the folder holding it (e.g. tests/golden/kimi_tiny)");
  cmd->add_option("--preset", a->preset, "built-in config instead of MODEL: kimi-linear-48b");
  cmd->add_option("--layers", a->layers,
                  "only the first N decoder layers (0 = all): the depth-cut model bench-infer "
                  "--layers N measures on a smaller GPU")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--model", a->model,
                  "decode time model: roofline (the GPU's ceilings) | engine (the CUDA engine's "
                  "measured kernels; h200 only; also writes OUT/engine_parts.csv)")
      ->capture_default_str();
  cmd->add_option("--gpu", a->gpu, "GPU profile: h200 | h100 (ceilings measured on the lent GPUs)")
      ->capture_default_str();
  cmd->add_option("--bw", a->overrides.bw_tbs,
                  "copy bandwidth in TB/s, bytes read + written (h200: 4.27, measured)");
  cmd->add_option("--tflops", a->overrides.tflops,
                  "bf16 GEMM ceiling in TFLOP/s (h200: 788, measured)");
  cmd->add_option("--mem-gib", a->overrides.mem_gib,
                  "GPU memory usable by the engine, GiB (h200: 139)");
  cmd->add_option("--reserve-gib", a->overrides.reserve_gib,
                  "fixed workspace kept from the caches, GiB (default 2)");
  cmd->add_option("--launch-us", a->overrides.launch_us,
                  "fixed cost per sublayer (mixer, FFN, embed + head) in microseconds (default 5)");
  cmd->add_option("--gpus", a->gpus,
                  "GPU counts of one host, e.g. 1,2,4,8: adds the predicted decode over several "
                  "GPUs (tensor + expert parallel), OUT/parallel.csv and parallel.{png,svg}; each "
                  "must divide the "
                  "KDA heads, MLA heads and routed experts")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option(
      "--link-gbs", a->link_gbs,
      "bus bandwidth between the GPUs for --gpus, GB/s (default 360: NVLink 4, assumed)");
  cmd->add_option("--link-us", a->link_us,
                  "fixed cost of one collective for --gpus, microseconds (default 10, assumed)");
  cmd->add_option("--contexts", a->contexts,
                  "context lengths (tokens in the cache), e.g. 4096,128K,1M (K = 1024)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--batch", a->batches,
                  "batch sizes: numbers and/or 'max' (the largest that fits at each context)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--measured", a->measured,
                  "measurement CSV (columns model,context,batch + any of tpot_ms, prefill_ms, "
                  "tokens_per_s; model = hybrid | all-mla): adds measured and error columns");
  cmd->add_option("--out", a->out, "output folder (default runs/simulate_<gpu>)");
  cmd->add_option("--prefill-chunk", a->prefill_chunk, "tokens per prefill chunk")
      ->capture_default_str();
  cmd->add_flag("--explain", a->explain,
                "print the paragraph on where the paper's \"up to 6x\" comes from");
  cmd->add_flag("--no-plot", a->no_plot, "write no PNG / SVG");
  cmd->callback([a] { run_simulate(*a); });
}

}  // namespace kimi::cli
