// `kimi-lab eval RUN_DIR --data FILE.safetensors | --seq-lens 512,1024 [--ckpt PATH|STEP]`:
// score a trained model on token sets made elsewhere (`<slice>.inputs` / `<slice>.labels`,
// integer [N, T], -100 = not scored), such as zoology's own MQAR test sets, or on its own task at
// other lengths (length extrapolation). Every flag and every slice is checked before the model
// runs; a problem is one line naming the flag, file or slice.
#include <fmt/ranges.h>

#include <algorithm>
#include <climits>
#include <filesystem>
#include <regex>
#include <set>
#include <tuple>

#include "core/backend/precision.h"
#include "core/io/safetensors.h"
#include "tasks/eval_set.h"
#include "tools/cli/commands.h"
#include "tools/cli/flag_checks.h"
#include "trainer/checkpoint.h"
#include "trainer/evaluate.h"
#include "trainer/lm_metrics.h"
#include "trainer/metrics_writer.h"
#include "trainer/run_dir.h"
#include "trainer/trainer.h"

namespace kimi::cli {

namespace fs = std::filesystem;

namespace {

struct EvalArgs {
  std::string dir, data, ckpt, device = "cpu";
  std::vector<int64_t> seq_lens;
  int64_t batch = 64;
};

// Slices are the names with an .inputs tensor; each needs a matching .labels tensor. Ids are
// read as int64 and range-checked before narrowing (tasks::eval_set_from_ids).
std::vector<tasks::EvalSet> read_slices(const std::string& path, int64_t vocab) {
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  std::vector<tasks::EvalSet> sets;
  const std::string suffix = ".inputs";
  for (const std::string& name : f.names()) {
    if (name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string slice = name.substr(0, name.size() - suffix.size());
    const auto& shape = f.info(name).shape;
    if (shape.size() != 2)
      throw UserError(fmt::format("{}: slice '{}': '{}' has shape {}, expected [N, T]", path, slice,
                                  name, shape_str(shape)));
    if (!f.contains(slice + ".labels"))
      throw UserError(fmt::format("{}: slice '{}': no '{}.labels' tensor", path, slice, slice));
    const auto& label_shape = f.info(slice + ".labels").shape;
    if (label_shape != shape)
      throw UserError(fmt::format("{}: slice '{}': '{}.labels' has shape {}, expected {}", path,
                                  slice, slice, shape_str(label_shape), shape_str(shape)));
    sets.push_back(tasks::eval_set_from_ids(slice, shape[0], shape[1], f.read_i64(name),
                                            f.read_i64(slice + ".labels"), vocab, path));
  }
  if (sets.empty()) throw UserError(fmt::format("{}: no '<slice>.inputs' tensors", path));
  std::sort(sets.begin(), sets.end(), [](const tasks::EvalSet& a, const tasks::EvalSet& b) {
    return std::tie(a.seq_len, a.task) < std::tie(b.seq_len, b.task);
  });
  return sets;
}

// The run's own task at each length, drawn as the run draws its eval sets (eval.num_examples,
// eval.seed): at a length the run evaluated during training this is the same set.
std::vector<tasks::EvalSet> length_sets(const RunConfig& cfg, const tasks::Task& task,
                                        const std::vector<int64_t>& lens) {
  std::vector<tasks::EvalSet> sets;
  for (int64_t len : lens) {
    // The ids of one slice are int32 [N, T]; past 2^31 of them nothing fits anyway.
    if (len > (int64_t{1} << 31) / cfg.eval.num_examples)
      throw UserError(fmt::format(
          "--seq-lens {}: {} rows (eval.num_examples) x {} tokens is more than 2^31 tokens", len,
          cfg.eval.num_examples, len));
    try {
      task.check_seq_len(len);
    } catch (const UserError& e) {
      throw UserError(fmt::format("--seq-lens {}: {}", len, e.what()));
    }
    sets.push_back(tasks::make_eval_set(task, len, cfg.eval.num_examples,
                                        static_cast<uint64_t>(cfg.eval.seed)));
  }
  return sets;
}

std::vector<int64_t> checkpoint_steps(const std::string& dir) {
  static const std::regex pattern(R"(ckpt_step(\d+)\.safetensors)");
  std::vector<int64_t> steps;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, pattern) && m[1].length() < 19) steps.push_back(std::stoll(m[1]));
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

// --ckpt: a step (ckpt_step{N}.safetensors in the run), a path (as given, or inside the run
// directory), or empty for the latest checkpoint.
std::string pick_checkpoint(const std::string& dir, const std::string& ckpt) {
  if (ckpt.empty()) {
    auto latest = find_latest_checkpoint(dir);
    if (!latest) throw UserError(fmt::format("{}: no checkpoint to evaluate", dir));
    return latest->path;
  }
  const bool is_step =
      std::all_of(ckpt.begin(), ckpt.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (is_step) {
    const std::vector<int64_t> steps = checkpoint_steps(dir);
    if (ckpt.size() < 19) {
      const std::string path = checkpoint_path(dir, std::stoll(ckpt));
      if (fs::is_regular_file(path)) return path;
    }
    throw UserError(fmt::format(
        "--ckpt {}: {} has no checkpoint at step {} (it has: {})", ckpt, dir, ckpt,
        steps.empty() ? std::string("none") : fmt::format("{}", fmt::join(steps, ", "))));
  }
  if (fs::is_regular_file(ckpt)) return ckpt;
  if (fs::is_regular_file(fs::path(dir) / ckpt)) return (fs::path(dir) / ckpt).string();
  throw UserError(fmt::format("--ckpt {}: no such checkpoint file (give a path or a step)", ckpt));
}

void check_args(const EvalArgs& a) {
  if (a.batch <= 0) throw UserError(fmt::format("--batch-size must be > 0 (got {})", a.batch));
  if (a.data.empty() == a.seq_lens.empty())
    throw UserError("eval: give exactly one of --data FILE and --seq-lens LIST");
  for (int64_t len : a.seq_lens)
    if (len <= 0) throw UserError(fmt::format("--seq-lens: lengths must be > 0 (got {})", len));
  if (!a.data.empty() && !fs::is_regular_file(a.data))
    throw UserError(fmt::format("--data {}: no such file", a.data));
  if (!fs::is_regular_file(fs::path(a.dir) / "config.yaml"))
    throw UserError(fmt::format("{}: not a run directory (no config.yaml)", a.dir));
}

// The CSV at path with this evaluation's rows added; rows of other checkpoints or slices are
// kept, a row for the same (step, slice, length) is replaced. Written atomically.
void merge_csv(const std::string& path, int64_t step, const std::vector<SliceResult>& results,
               const std::vector<CsvValue>& bits_per_byte) {
  CsvTable old = CsvTable::resume(path, eval_columns(), INT64_MAX);
  CsvTable table(path, eval_columns());
  std::set<std::tuple<std::string, std::string, std::string>> fresh;
  for (const auto& r : results)
    fresh.insert({std::to_string(step), r.task, std::to_string(r.seq_len)});
  for (const auto& row : old.rows()) {
    if (fresh.count({row[0], row[1], row[2]})) continue;
    table.add_row(std::vector<CsvValue>(row.begin(), row.end()));
  }
  for (size_t i = 0; i < results.size(); ++i) {
    const SliceResult& r = results[i];
    table.add_row({step, r.task, r.seq_len, r.num_kv_pairs, r.num_examples, r.loss, r.accuracy,
                   r.exact_match, perplexity(r.loss), bits_per_byte[i]});
  }
  table.flush();
}

void run_eval(const EvalArgs& a) {
  check_args(a);
  const std::string cfg_path = (fs::path(a.dir) / "config.yaml").string();
  RunConfig cfg = load_config(cfg_path, {});
  const Device dev = resolve_device(a.device);
  std::unique_ptr<tasks::Task> task = tasks::make_task(cfg.task);
  const int64_t vocab = task->vocab_size();
  // The sets first: a bad data file or length fails before the checkpoint is read.
  std::vector<tasks::EvalSet> sets =
      a.data.empty() ? length_sets(cfg, *task, a.seq_lens) : read_slices(a.data, vocab);
  const std::string ckpt = pick_checkpoint(a.dir, a.ckpt);
  models::LanguageModel model(cfg.model, vocab, static_cast<uint64_t>(cfg.train.seed));
  const int64_t step = load_checkpoint(ckpt, model, nullptr, cfg.train.steps);
  model.to(dev);
  // The run's GPU precision (the CPU ignores it), so eval on a GPU computes as training did
  // (bf16 there also means BF16 activations, as in trainer.cpp).
  set_compute_precision(compute_precision_from_name(cfg.train.precision));
  set_activation_dtype(dev == Device::kCUDA && compute_precision() == ComputePrecision::kBF16
                           ? DType::kBF16
                           : DType::kF32);
  const std::string out =
      (fs::path(a.dir) /
       (a.data.empty() ? "eval_lengths.csv" : "eval_" + fs::path(a.data).stem().string() + ".csv"))
          .string();
  fmt::print("{} (step {}) on {}{}\n{:<14} {:>6} {:>7} {:>9} {:>9} {:>8}\n", ckpt, step,
             a.data.empty() ? "its own task" : a.data,
             a.data.empty() ? fmt::format(" (trained at T={})", cfg.train.seq_len) : "", "slice",
             "T", "rows", "accuracy", "exact", "loss");
  // Bits per byte need the text's bytes per token: known for the run's own task, not for the
  // slices of a --data file.
  const LmCounters lm(cfg, model.num_parameters(), vocab);
  std::vector<SliceResult> results;
  std::vector<CsvValue> bits_per_byte;
  for (const auto& set : sets) {
    SliceResult r = evaluate_slice(model, set, a.batch, dev);
    fmt::print("{:<14} {:>6} {:>7} {:>9.4f} {:>9.4f} {:>8.4f}\n", r.task, r.seq_len, r.num_examples,
               r.accuracy, r.exact_match, r.loss);
    results.push_back(r);
    bits_per_byte.push_back(a.data.empty() ? lm.bits_per_byte_cell(r.loss)
                                           : CsvValue(std::string()));
  }
  merge_csv(out, step, results, bits_per_byte);
  fmt::print("wrote {}\n", out);
}

}  // namespace

void register_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval",
      "Evaluate a trained run (its latest checkpoint, or --ckpt) on token sets from a\n"
      "safetensors file (--data) or on its own task at other lengths (--seq-lens: length\n"
      "extrapolation). Per-slice accuracy and exact match are printed and written to\n"
      "RUN_DIR/eval_<file>.csv or RUN_DIR/eval_lengths.csv (rows of other checkpoints kept).\n"
      "Example: kimi-lab eval runs/quickstart --seq-lens 128,256,512 --ckpt 500");
  auto a = std::make_shared<EvalArgs>();
  cmd->add_option("run_dir", a->dir, "a run directory made by `kimi-lab run`")->required();
  cmd->add_option(
      "--data", a->data,
      "safetensors with <slice>.inputs and <slice>.labels (integer [N,T]; -100 = not scored;\n"
      "the label at t is the token after inputs[t]); every id must be in the run's vocabulary");
  cmd->add_option(
         "--seq-lens", a->seq_lens,
         "evaluate on the run's own task at these lengths (e.g. 512,1024,2048), with the run's\n"
         "task config, eval.num_examples and eval.seed; at a length the run evaluated during\n"
         "training this is the same eval set")
      ->delimiter(',')
      ->check(kFitsInt64);
  cmd->add_option("--ckpt", a->ckpt,
                  "the checkpoint: a step (ckpt_step<N>.safetensors in RUN_DIR) or a path\n"
                  "(default: the latest)");
  cmd->add_option("--device", a->device, "cpu | cuda | auto")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  cmd->add_option("--batch-size", a->batch, "rows per forward pass (> 0)")
      ->check(kFitsInt64)
      ->capture_default_str();
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace kimi::cli
