// The training loop. Step s (0-based) trains on the batch drawn with seed mix(train.seed, s),
// so a run resumed from the checkpoint after step N sees the same batches as one that never
// stopped, and ends with the same numbers.
#include "trainer/trainer.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <Eigen/Core>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/backend/precision.h"
#include "core/optim/optimizer.h"
#include "core/tensor/device_memory.h"
#include "tasks/eval_set.h"
#include "trainer/checkpoint.h"
#include "trainer/metrics_writer.h"
#include "trainer/progress.h"
#include "trainer/run_dir.h"

namespace kimi {

namespace fs = std::filesystem;

Device resolve_device(const std::string& name) {
  if (name == "cpu") return Device::kCPU;
  if (name == "auto") return cuda_available() ? Device::kCUDA : Device::kCPU;
  if (name == "cuda") {
    if (!cuda_built())
      throw UserError(
          "device cuda: no CUDA device is available (this kimi-lab was built without "
          "its CUDA backend; README, 'The GPU'); use --device cpu");
    if (!cuda_available())
      throw UserError("device cuda: no CUDA device is available; use --device cpu");
    return Device::kCUDA;
  }
  throw UserError(fmt::format("train.device: unknown device '{}' (cpu, cuda, auto)", name));
}

namespace {

void set_threads(int64_t threads) {
  if (threads <= 0) return;
#ifdef _OPENMP
  omp_set_num_threads(static_cast<int>(threads));
#endif
  Eigen::setNbThreads(static_cast<int>(threads));
}

// Routes spdlog to stderr and to run_dir/log.txt.
void setup_logging(const std::string& run_dir) {
  auto level = spdlog::get_level();
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto file =
      std::make_shared<spdlog::sinks::basic_file_sink_mt>((fs::path(run_dir) / "log.txt").string());
  auto logger = std::make_shared<spdlog::logger>("kimi", spdlog::sinks_init_list{console, file});
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

struct Session {
  RunConfig cfg;
  std::string dir;
  Device device = Device::kCPU;
  std::unique_ptr<tasks::Task> task;
  std::vector<tasks::EvalSet> eval_sets;
  tasks::SequenceFilter filter;
  std::unique_ptr<models::LanguageModel> model;
  std::unique_ptr<optim::AdamW> opt;
  int64_t start_step = 0;
  std::string last_checkpoint;
};

bool holds_run(const fs::path& dir) {
  return fs::exists(dir / "metrics.csv") || find_latest_checkpoint(dir.string()).has_value();
}

// out_dir/name, or out_dir/name-2, -3, ... when an earlier run is there: a new run never writes
// over an old one unless --out names the directory.
std::string fresh_run_dir(const RunConfig& cfg) {
  const fs::path base = fs::path(cfg.out_dir) / cfg.name;
  if (!holds_run(base)) return base.string();
  for (int k = 2;; ++k) {
    fs::path candidate = base.string() + "-" + std::to_string(k);
    if (!holds_run(candidate)) {
      spdlog::info("{} holds an earlier run; this one goes to {}", base.string(),
                   candidate.string());
      return candidate.string();
    }
  }
}

[[noreturn]] void refuse_finished(const std::string& dir, int64_t step) {
  throw UserError(fmt::format("{}: the run finished at step {}; nothing to resume", dir, step));
}

// Refuses to resume a run whose summary.json says it is done (all train.steps, or an early
// stop), before anything in the directory is written; train.steps may be raised by an override
// to continue a finished run. A missing or unreadable summary (a paused or crashed run) passes.
void check_not_finished(const std::string& dir, const RunConfig& cfg) {
  const fs::path path = fs::path(dir) / "summary.json";
  std::ifstream in(path);
  if (!in) return;
  const nlohmann::json summary = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!summary.is_object() || !summary.contains("steps_done") ||
      !summary["steps_done"].is_number_integer())
    return;
  const int64_t done = summary["steps_done"].get<int64_t>();
  const bool early = summary.contains("stopped_early") && summary["stopped_early"].is_boolean() &&
                     summary["stopped_early"].get<bool>();
  if (early || done >= cfg.train.steps) refuse_finished(dir, done);
}

Session open_session(const RunRequest& req) {
  Session s;
  std::vector<std::string> overrides = req.overrides;
  if (!req.resume_dir.empty()) {
    fs::path cfg_path = fs::path(req.resume_dir) / "config.yaml";
    if (!fs::exists(cfg_path))
      throw UserError(fmt::format("{}: no config.yaml; not a run directory", req.resume_dir));
    s.cfg = load_config(cfg_path.string(), overrides);
    s.dir = req.resume_dir;
    check_not_finished(s.dir, s.cfg);
  } else {
    s.cfg = load_config(req.config_path, overrides);
    resolve_device(req.device.empty() ? s.cfg.train.device : req.device);  // fail before writing
    s.dir =
        create_run_dir(s.cfg, overrides, req.out_dir.empty() ? fresh_run_dir(s.cfg) : req.out_dir);
  }
  s.device = resolve_device(req.device.empty() ? s.cfg.train.device : req.device);
  set_threads(s.cfg.train.threads);
  s.task = tasks::make_task(s.cfg.task);
  s.eval_sets = tasks::make_eval_sets(*s.task, s.cfg.eval);
  s.filter.add(s.eval_sets);
  s.model = std::make_unique<models::LanguageModel>(s.cfg.model, s.task->vocab_size(),
                                                    static_cast<uint64_t>(s.cfg.train.seed));
  // Initialised on the CPU (the same weights on either device), then moved; the optimizer's
  // moments are made where the parameters are.
  s.model->to(s.device);
  set_compute_precision(compute_precision_from_name(s.cfg.train.precision));
  // bf16 on the GPU also means BF16 activations (autocast); parameters, gradients, AdamW
  // moments and recurrent states stay F32.
  const bool autocast = s.device == Device::kCUDA && compute_precision() == ComputePrecision::kBF16;
  set_activation_dtype(autocast ? DType::kBF16 : DType::kF32);
  const auto& t = s.cfg.train;
  s.opt = std::make_unique<optim::AdamW>(
      s.model->named_parameters(), optim::AdamWOptions{t.beta1, t.beta2, t.eps, t.weight_decay});
  if (!req.resume_dir.empty()) {
    auto ckpt = find_latest_checkpoint(s.dir);
    if (ckpt) {
      s.start_step = load_checkpoint(ckpt->path, *s.model, s.opt.get(), s.cfg.train.steps);
      s.last_checkpoint = ckpt->path;
    }
    // A checkpoint at the last step has nothing left to train; going on would only rewrite
    // the finished run's summary.json with an empty eval.
    if (s.start_step >= s.cfg.train.steps) refuse_finished(s.dir, s.start_step);
  }
  return s;
}

// train.seq_len, or with task.mixed_lengths one of task.train_seq_lens chosen by the step's seed.
int64_t step_seq_len(const RunConfig& cfg, uint64_t step_seed) {
  const auto& lens = cfg.task.train_seq_lens;
  if (!cfg.task.mixed_lengths || lens.empty()) return cfg.train.seq_len;
  return lens[splitmix64(step_seed ^ 0x5eed1e9u) % lens.size()];
}

// One training run over an open session: steps, logging, evals, checkpoints, summary.
class TrainLoop {
 public:
  TrainLoop(Session& s, const RunRequest& req)
      : s_(s),
        req_(req),
        t_(s.cfg.train),
        metrics_(CsvTable::resume((fs::path(s.dir) / "metrics.csv").string(), metrics_columns(),
                                  s.start_step)),
        evals_(CsvTable::resume((fs::path(s.dir) / "eval.csv").string(), eval_columns(),
                                s.start_step)),
        moe_load_(s.model->moe_layers().empty()
                      ? std::nullopt
                      : std::optional<CsvTable>(
                            CsvTable::resume((fs::path(s.dir) / "moe_load.csv").string(),
                                             {"step", "layer", "expert", "load"}, s.start_step))),
        schedule_(optim::schedule_from_name(t_.schedule)),
        bar_on_(req.progress && ProgressBar::stderr_is_tty()),
        bar_(t_.steps, s.start_step, bar_on_),
        t_start_(std::chrono::steady_clock::now()) {
    result_.run_dir = s.dir;
  }

  RunResult run() {
    int64_t step = s_.start_step;
    while (step < t_.steps) {
      const StepStats st = train_step(step);
      ++step;
      log_step(step, st);
      const bool pause = req_.stop_at > 0 && step >= req_.stop_at;
      bool stop = false;
      if ((t_.eval_every > 0 && step % t_.eval_every == 0) || step == t_.steps)
        stop = evaluate(step);
      if ((t_.checkpoint_every > 0 && step % t_.checkpoint_every == 0) || step == t_.steps ||
          stop || pause)
        checkpoint(step);
      bar_.update(step,
                  fmt::format("loss {:.4f} acc {} {:.0f} tok/s", st.loss,
                              last_acc_ < 0 ? std::string("-") : fmt::format("{:.3f}", last_acc_),
                              st.tok_s));
      result_.stopped_early = stop;
      if (stop) break;
      if (pause) {
        spdlog::info("stopping at step {} as asked; continue with --resume {}", step, s_.dir);
        break;
      }
    }
    bar_.finish();
    result_.steps_done = step;
    write_summary();
    return result_;
  }

 private:
  struct StepStats {
    double loss = 0, lr = 0, grad_norm = 0, secs = 0, tok_s = 0;
  };

  // Step `step` (0-based) trains on the batch drawn with seed mix(train.seed, step).
  StepStats train_step(int64_t step) {
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t step_seed =
        mix_seed(static_cast<uint64_t>(t_.seed), static_cast<uint64_t>(step));
    tasks::Batch batch = tasks::sample_filtered(
        *s_.task, t_.batch_size, step_seq_len(s_.cfg, step_seed), step_seed, s_.filter);
    Tensor ids = Tensor::from_vector(batch.inputs, {batch.batch, batch.seq_len}).to(s_.device);
    Tensor labels = Tensor::from_vector(batch.labels, {batch.batch, batch.seq_len}).to(s_.device);
    Tensor loss = models::lm_loss(s_.model->forward(ids), labels);
    StepStats st;
    st.loss = loss.item();
    if (!std::isfinite(st.loss))
      fail(fmt::format("non-finite loss ({}) at step {}", st.loss, step + 1));
    s_.opt->zero_grad();
    loss.backward();
    st.grad_norm = optim::clip_grad_norm(s_.model->parameters(), t_.grad_clip);
    if (!std::isfinite(st.grad_norm))
      fail(fmt::format("non-finite gradient norm at step {}", step + 1));
    st.lr = optim::lr_at(step, t_.steps, t_.warmup_steps, t_.lr, t_.min_lr_ratio, schedule_);
    s_.opt->step(st.lr);
    s_.model->after_optimizer_step();  // MoE: the auxiliary-loss-free bias update
    st.secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    st.tok_s = static_cast<double>(batch.batch * batch.seq_len) / std::max(st.secs, 1e-9);
    result_.final_loss = st.loss;
    return st;
  }

  // Keeps what was written, names the checkpoint to go back to, and stops the run.
  [[noreturn]] void fail(const std::string& what) {
    metrics_.flush();
    bar_.finish();
    throw UserError(fmt::format("{}; stopped. The last good checkpoint is {}", what,
                                s_.last_checkpoint.empty() ? "none" : s_.last_checkpoint));
  }

  void log_step(int64_t step, const StepStats& st) {
    if (step % t_.log_every != 0 && step != t_.steps) return;
    metrics_.add_row({step, st.loss, st.lr, st.grad_norm, st.tok_s, st.secs * 1e3, wall_seconds(),
                      log_moe_load(step)});
    metrics_.flush();
    if (!bar_on_)
      spdlog::info("step {}/{} loss {:.4f} lr {:.2e} grad_norm {:.3f} {:.0f} tok/s", step, t_.steps,
                   st.loss, st.lr, st.grad_norm, st.tok_s);
  }

  // MoE: each expert's share of the step's routed tokens into moe_load.csv; returns the
  // busiest expert's load over the mean for metrics.csv (empty for a dense model).
  CsvValue log_moe_load(int64_t step) {
    if (!moe_load_) return std::string();
    const auto loads = s_.model->moe_expert_load();
    const auto layers = s_.model->moe_layers();
    for (size_t l = 0; l < loads.size(); ++l)
      for (size_t e = 0; e < loads[l].size(); ++e)
        moe_load_->add_row({step, layers[l], static_cast<int64_t>(e), loads[l][e]});
    moe_load_->flush();
    return models::moe_max_load(loads);
  }

  // Evaluates every slice; true when all reach train.target_accuracy (early stop).
  bool evaluate(int64_t step) {
    result_.last_eval.clear();
    bool all_reached = t_.target_accuracy > 0;
    for (const auto& set : s_.eval_sets) {
      SliceResult r = evaluate_slice(*s_.model, set, s_.cfg.eval.batch_size, s_.device);
      evals_.add_row({step, r.task, r.seq_len, r.num_kv_pairs, r.num_examples, r.loss, r.accuracy,
                      r.exact_match});
      if (!bar_on_)
        spdlog::info("eval step {} {} T={}: loss {:.4f} accuracy {:.4f} exact {:.4f}", step, r.task,
                     r.seq_len, r.loss, r.accuracy, r.exact_match);
      all_reached = all_reached && r.accuracy >= t_.target_accuracy;
      result_.last_eval.push_back(r);
    }
    evals_.flush();
    last_acc_ = result_.last_eval.empty() ? -1 : result_.last_eval.back().accuracy;
    return all_reached;
  }

  void checkpoint(int64_t step) {
    std::string path = checkpoint_path(s_.dir, step);
    // A refused (non-finite) or failed checkpoint stops the run like a non-finite loss, naming
    // the last good checkpoint, which is kept.
    try {
      save_checkpoint(path, *s_.model, *s_.opt, step);
    } catch (const UserError& e) {
      fail(fmt::format("checkpoint at step {}: {}", step, e.what()));
    }
    // Older checkpoints go once the new one is safely renamed into place.
    if (!s_.last_checkpoint.empty() && s_.last_checkpoint != path) fs::remove(s_.last_checkpoint);
    s_.last_checkpoint = path;
  }

  void write_summary() const {
    nlohmann::json slices = nlohmann::json::array();
    for (const auto& r : result_.last_eval)
      slices.push_back({{"task", r.task},
                        {"seq_len", r.seq_len},
                        {"num_kv_pairs", r.num_kv_pairs},
                        {"loss", r.loss},
                        {"accuracy", r.accuracy},
                        {"exact_match", r.exact_match}});
    nlohmann::json summary = {{"run_dir", s_.dir},
                              {"steps_done", result_.steps_done},
                              {"final_loss", result_.final_loss},
                              {"stopped_early", result_.stopped_early},
                              {"parameters", s_.model->num_parameters()},
                              {"layers", s_.model->layer_kinds()},
                              {"device", std::string(device_name(s_.device))},
                              {"wall_s", wall_seconds()},
                              {"config", flatten_dotted(to_json(s_.cfg))},
                              {"eval", slices}};
    write_json_atomic((fs::path(s_.dir) / "summary.json").string(), summary);
  }

  double wall_seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start_).count();
  }

  Session& s_;
  const RunRequest& req_;
  const TrainConfig& t_;
  CsvTable metrics_, evals_;
  std::optional<CsvTable> moe_load_;  // moe_load.csv, only for a model with MoE layers
  optim::Schedule schedule_;
  bool bar_on_;
  ProgressBar bar_;
  std::chrono::steady_clock::time_point t_start_;
  RunResult result_;
  double last_acc_ = -1;
};

}  // namespace

RunResult run_training(const RunRequest& req) {
  Session s = open_session(req);
  setup_logging(s.dir);
  spdlog::info("run dir {}; {} layers [{}], {} parameters, task {} (vocab {}), device {}{}", s.dir,
               s.model->layer_kinds().size(), fmt::join(s.model->layer_kinds(), ","),
               s.model->num_parameters(), s.task->name(), s.task->vocab_size(),
               device_name(s.device),
               s.device == Device::kCUDA
                   ? fmt::format(" ({} products{})", s.cfg.train.precision,
                                 activation_dtype() == DType::kBF16 ? ", bf16 activations" : "")
                   : "");
  if (s.start_step > 0)
    spdlog::info("resuming from {} at step {}", s.last_checkpoint, s.start_step);
  return TrainLoop(s, req).run();
}

}  // namespace kimi
