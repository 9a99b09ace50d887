// `kimi-lab eval RUN_DIR --data FILE.safetensors`: score a trained model on token sets made
// elsewhere (`<slice>.inputs` / `<slice>.labels`, int32 [N, T], -100 = not scored), such as
// zoology's own MQAR test sets.
#include <algorithm>
#include <filesystem>
#include <set>
#include <tuple>

#include "core/io/safetensors.h"
#include "tools/cli/commands.h"
#include "trainer/checkpoint.h"
#include "trainer/evaluate.h"
#include "trainer/lm_metrics.h"
#include "trainer/metrics_writer.h"
#include "trainer/run_dir.h"
#include "trainer/trainer.h"

namespace kimi::cli {

namespace fs = std::filesystem;

static std::vector<int32_t> read_i32(const io::SafetensorsFile& f, const std::string& name,
                                     const std::vector<int64_t>& shape) {
  const io::TensorInfo& info = f.info(name);
  if (info.shape != shape)
    throw UserError(fmt::format("{}: '{}' has shape {}, expected {}", f.path(), name,
                                shape_str(info.shape), shape_str(shape)));
  std::vector<int64_t> v = f.read_i64(name);
  return std::vector<int32_t>(v.begin(), v.end());
}

// Slices are the names with an .inputs tensor; each needs a matching .labels tensor.
static std::vector<tasks::EvalSet> read_slices(const std::string& path, int64_t vocab) {
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  std::vector<tasks::EvalSet> sets;
  for (const std::string& name : f.names()) {
    const std::string suffix = ".inputs";
    if (name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    std::string slice = name.substr(0, name.size() - suffix.size());
    const auto& shape = f.info(name).shape;
    if (shape.size() != 2) throw UserError(fmt::format("{}: '{}' must be [N, T]", path, name));
    if (!f.contains(slice + ".labels"))
      throw UserError(fmt::format("{}: '{}' has no '{}.labels'", path, name, slice));
    tasks::EvalSet set;
    set.task = slice;
    set.seq_len = shape[1];
    set.data.batch = shape[0];
    set.data.seq_len = shape[1];
    set.data.inputs = read_i32(f, name, shape);
    set.data.labels = read_i32(f, slice + ".labels", shape);
    for (int32_t id : set.data.inputs)
      if (id < 0 || id >= vocab)
        throw UserError(fmt::format("{}: token {} in '{}' is outside the model's vocab [0, {})",
                                    path, id, name, vocab));
    sets.push_back(std::move(set));
  }
  if (sets.empty()) throw UserError(fmt::format("{}: no '<slice>.inputs' tensors", path));
  std::sort(sets.begin(), sets.end(), [](const tasks::EvalSet& a, const tasks::EvalSet& b) {
    return std::tie(a.seq_len, a.task) < std::tie(b.seq_len, b.task);
  });
  return sets;
}

void register_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval",
      "Evaluate a trained run (its latest checkpoint) on token sets from a safetensors\n"
      "file: per-slice accuracy and exact match, printed and written to\n"
      "RUN_DIR/eval_<file>.csv.");
  auto dir = std::make_shared<std::string>();
  auto data = std::make_shared<std::string>();
  auto device = std::make_shared<std::string>("cpu");
  auto batch = std::make_shared<int64_t>(64);
  cmd->add_option("run_dir", *dir, "a run directory made by `kimi-lab run`")->required();
  cmd->add_option(
         "--data", *data,
         "safetensors with <slice>.inputs and <slice>.labels (int32 [N,T]; -100 = not scored;\n"
         "the label at t is the token after inputs[t])")
      ->required();
  cmd->add_option("--device", *device, "cpu | cuda | auto")->capture_default_str();
  cmd->add_option("--batch-size", *batch, "rows per forward pass")->capture_default_str();
  cmd->callback([dir, data, device, batch] {
    if (!fs::exists(fs::path(*dir) / "config.yaml"))
      throw UserError(fmt::format("{}: not a run directory (no config.yaml)", *dir));
    RunConfig cfg = load_config((fs::path(*dir) / "config.yaml").string(), {});
    auto ckpt = find_latest_checkpoint(*dir);
    if (!ckpt) throw UserError(fmt::format("{}: no checkpoint to evaluate", *dir));
    int64_t vocab = tasks::make_task(cfg.task)->vocab_size();
    models::LanguageModel model(cfg.model, vocab, static_cast<uint64_t>(cfg.train.seed));
    int64_t step = load_checkpoint(ckpt->path, model, nullptr);
    std::vector<tasks::EvalSet> sets = read_slices(*data, vocab);
    Device dev = resolve_device(*device);
    std::string out =
        (fs::path(*dir) / ("eval_" + fs::path(*data).stem().string() + ".csv")).string();
    CsvTable table(out, eval_columns());
    fmt::print("{} (step {}) on {}\n{:<14} {:>6} {:>7} {:>9} {:>9} {:>8}\n", ckpt->path, step,
               *data, "slice", "T", "rows", "accuracy", "exact", "loss");
    for (const auto& set : sets) {
      SliceResult r = evaluate_slice(model, set, *batch, dev);
      fmt::print("{:<14} {:>6} {:>7} {:>9.4f} {:>9.4f} {:>8.4f}\n", r.task, r.seq_len,
                 r.num_examples, r.accuracy, r.exact_match, r.loss);
      // The slices' text bytes are unknown here: no bits per byte.
      table.add_row({step, r.task, r.seq_len, r.num_kv_pairs, r.num_examples, r.loss, r.accuracy,
                     r.exact_match, perplexity(r.loss), std::string()});
    }
    table.flush();
    fmt::print("wrote {}\n", out);
  });
}

}  // namespace kimi::cli
