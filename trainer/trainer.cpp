// The training loop. Step s (0-based) trains on the batch drawn with seed mix(train.seed, s),
// so a run resumed from the checkpoint after step N sees the same batches as one that never
// stopped, and ends with the same numbers.
#include "trainer/trainer.h"

#include <Eigen/Core>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/device_memory.h"
#include "core/optim/optimizer.h"
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
    if (!cuda_available())
      throw UserError("train.device=cuda, but no CUDA device is available (or kimi-lab was built without "
                      "-DKIMI_LAB_CUDA=ON); use --device cpu");
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
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>((fs::path(run_dir) / "log.txt").string());
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

Session open_session(const RunRequest& req) {
  Session s;
  std::vector<std::string> overrides = req.overrides;
  if (!req.resume_dir.empty()) {
    fs::path cfg_path = fs::path(req.resume_dir) / "config.yaml";
    if (!fs::exists(cfg_path)) throw UserError(fmt::format("{}: no config.yaml; not a run directory", req.resume_dir));
    s.cfg = load_config(cfg_path.string(), overrides);
    s.dir = req.resume_dir;
  } else {
    s.cfg = load_config(req.config_path, overrides);
    s.dir = create_run_dir(s.cfg, overrides, req.out_dir);
  }
  s.device = resolve_device(req.device.empty() ? s.cfg.train.device : req.device);
  set_threads(s.cfg.train.threads);
  s.task = tasks::make_task(s.cfg.task);
  s.eval_sets = tasks::make_eval_sets(*s.task, s.cfg.eval);
  s.filter.add(s.eval_sets);
  s.model = std::make_unique<models::LanguageModel>(s.cfg.model, s.task->vocab_size(),
                                                    static_cast<uint64_t>(s.cfg.train.seed));
  const auto& t = s.cfg.train;
  s.opt = std::make_unique<optim::AdamW>(s.model->named_parameters(),
                                         optim::AdamWOptions{t.beta1, t.beta2, t.eps, t.weight_decay});
  if (!req.resume_dir.empty()) {
    auto ckpt = find_latest_checkpoint(s.dir);
    if (ckpt) {
      s.start_step = load_checkpoint(ckpt->path, *s.model, s.opt.get());
      s.last_checkpoint = ckpt->path;
    }
  }
  return s;
}

bool is_finite(double x) { return std::isfinite(x); }

// train.seq_len, or with task.mixed_lengths one of task.train_seq_lens chosen by the step's seed.
int64_t step_seq_len(const RunConfig& cfg, uint64_t step_seed) {
  const auto& lens = cfg.task.train_seq_lens;
  if (!cfg.task.mixed_lengths || lens.empty()) return cfg.train.seq_len;
  return lens[splitmix64(step_seed ^ 0x5eed1e9u) % lens.size()];
}

}  // namespace

RunResult run_training(const RunRequest& req) {
  Session s = open_session(req);
  setup_logging(s.dir);
  const TrainConfig& t = s.cfg.train;
  spdlog::info("run dir {}; {} layers [{}], {} parameters, task {} (vocab {}), device {}", s.dir,
               s.model->layer_kinds().size(), fmt::join(s.model->layer_kinds(), ","), s.model->num_parameters(),
               s.task->name(), s.task->vocab_size(), device_name(s.device));
  if (s.start_step > 0) spdlog::info("resuming from {} at step {}", s.last_checkpoint, s.start_step);
  CsvTable metrics = CsvTable::resume((fs::path(s.dir) / "metrics.csv").string(), metrics_columns(), s.start_step);
  CsvTable evals = CsvTable::resume((fs::path(s.dir) / "eval.csv").string(), eval_columns(), s.start_step);
  const optim::Schedule schedule = optim::schedule_from_name(t.schedule);
  const bool bar_on = req.progress && ProgressBar::stderr_is_tty();
  ProgressBar bar(t.steps, s.start_step, bar_on);
  RunResult result;
  result.run_dir = s.dir;
  const auto t_start = std::chrono::steady_clock::now();
  double last_loss = 0, last_acc = -1;

  auto run_eval = [&](int64_t step) {
    result.last_eval.clear();
    bool all_reached = t.target_accuracy > 0;
    for (const auto& set : s.eval_sets) {
      SliceResult r = evaluate_slice(*s.model, set, s.cfg.eval.batch_size, s.device);
      evals.add_row({step, r.task, r.seq_len, r.num_kv_pairs, r.num_examples, r.loss, r.accuracy, r.exact_match});
      if (!bar_on)
        spdlog::info("eval step {} {} T={}: loss {:.4f} accuracy {:.4f} exact {:.4f}", step, r.task, r.seq_len,
                     r.loss, r.accuracy, r.exact_match);
      all_reached = all_reached && r.accuracy >= t.target_accuracy;
      result.last_eval.push_back(r);
    }
    evals.flush();
    last_acc = result.last_eval.empty() ? -1 : result.last_eval.back().accuracy;
    return all_reached;
  };
  auto checkpoint = [&](int64_t step) {
    std::string path = checkpoint_path(s.dir, step);
    save_checkpoint(path, *s.model, *s.opt, step);
    // Older checkpoints go once the new one is safely renamed into place.
    if (!s.last_checkpoint.empty() && s.last_checkpoint != path) fs::remove(s.last_checkpoint);
    s.last_checkpoint = path;
  };

  int64_t step = s.start_step;
  while (step < t.steps) {
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t step_seed = mix_seed(static_cast<uint64_t>(t.seed), static_cast<uint64_t>(step));
    tasks::Batch batch = tasks::sample_filtered(*s.task, t.batch_size, step_seq_len(s.cfg, step_seed), step_seed, s.filter);
    Tensor ids = Tensor::from_vector(batch.inputs, {batch.batch, batch.seq_len}).to(s.device);
    Tensor labels = Tensor::from_vector(batch.labels, {batch.batch, batch.seq_len}).to(s.device);
    Tensor loss = models::lm_loss(s.model->forward(ids), labels);
    const double loss_value = loss.item();
    if (!is_finite(loss_value)) {
      metrics.flush();
      bar.finish();
      throw UserError(fmt::format("non-finite loss ({}) at step {}; stopped. The last good checkpoint is {}",
                                  loss_value, step + 1, s.last_checkpoint.empty() ? "none" : s.last_checkpoint));
    }
    s.opt->zero_grad();
    loss.backward();
    const double grad_norm = optim::clip_grad_norm(s.model->parameters(), t.grad_clip);
    if (!is_finite(grad_norm)) {
      metrics.flush();
      bar.finish();
      throw UserError(fmt::format("non-finite gradient norm at step {}; stopped. The last good checkpoint is {}",
                                  step + 1, s.last_checkpoint.empty() ? "none" : s.last_checkpoint));
    }
    const double lr = optim::lr_at(step, t.steps, t.warmup_steps, t.lr, t.min_lr_ratio, schedule);
    s.opt->step(lr);
    ++step;
    last_loss = loss_value;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tok_s = static_cast<double>(batch.batch * batch.seq_len) / std::max(secs, 1e-9);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    if (step % t.log_every == 0 || step == t.steps) {
      metrics.add_row({step, loss_value, lr, grad_norm, tok_s, secs * 1e3, wall});
      metrics.flush();
      if (!bar_on) spdlog::info("step {}/{} loss {:.4f} lr {:.2e} grad_norm {:.3f} {:.0f} tok/s", step, t.steps,
                                loss_value, lr, grad_norm, tok_s);
    }
    bool stop = false;
    const bool pause = req.stop_at > 0 && step >= req.stop_at;
    if ((t.eval_every > 0 && step % t.eval_every == 0) || step == t.steps) stop = run_eval(step);
    if ((t.checkpoint_every > 0 && step % t.checkpoint_every == 0) || step == t.steps || stop || pause)
      checkpoint(step);
    bar.update(step, fmt::format("loss {:.4f} acc {} {:.0f} tok/s", loss_value,
                                 last_acc < 0 ? std::string("-") : fmt::format("{:.3f}", last_acc), tok_s));
    if (stop) {
      result.stopped_early = true;
      break;
    }
    if (pause) {
      spdlog::info("stopping at step {} as asked; continue with --resume {}", step, s.dir);
      break;
    }
  }
  bar.finish();
  result.steps_done = step;
  result.final_loss = last_loss;
  nlohmann::json summary = {{"run_dir", s.dir},
                            {"steps_done", step},
                            {"final_loss", last_loss},
                            {"stopped_early", result.stopped_early},
                            {"parameters", s.model->num_parameters()},
                            {"layers", s.model->layer_kinds()},
                            {"device", std::string(device_name(s.device))},
                            {"wall_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count()},
                            {"config", flatten_dotted(to_json(s.cfg))}};
  nlohmann::json slices = nlohmann::json::array();
  for (const auto& r : result.last_eval)
    slices.push_back({{"task", r.task}, {"seq_len", r.seq_len}, {"num_kv_pairs", r.num_kv_pairs},
                      {"loss", r.loss}, {"accuracy", r.accuracy}, {"exact_match", r.exact_match}});
  summary["eval"] = slices;
  write_json_atomic((fs::path(s.dir) / "summary.json").string(), summary);
  return result;
}

}  // namespace kimi
