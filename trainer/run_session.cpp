// open_session(): the checks and set-up before a run's first step (trainer/run_session.h).
#include "trainer/run_session.h"

#include <spdlog/spdlog.h>

#include <Eigen/Core>
#include <filesystem>
#include <fstream>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/backend/precision.h"
#include "core/io/atomic_file.h"
#include "trainer/checkpoint.h"
#include "trainer/data_parallel.h"
#include "trainer/run_dir.h"
#include "trainer/zero1.h"

namespace kimi {

namespace fs = std::filesystem;

namespace {

void set_threads(int64_t threads) {
  if (threads <= 0) return;
#ifdef _OPENMP
  omp_set_num_threads(static_cast<int>(threads));
#endif
  Eigen::setNbThreads(static_cast<int>(threads));
}
// out_dir/name, or out_dir/name-2, -3, ... when an earlier run is there: a new run never writes
// over an old one. Each candidate is locked before it is looked at, so two runs started at
// once with one name never share a directory: the second is refused.
std::string fresh_run_dir(const RunConfig& cfg, DirLock* lock) {
  const std::string base = (fs::path(cfg.out_dir) / cfg.name).string();
  for (int k = 1;; ++k) {
    const std::string candidate = k == 1 ? base : base + "-" + std::to_string(k);
    DirLock held = lock_run_dir(candidate);
    if (holds_run(candidate)) continue;
    if (k > 1) spdlog::info("{} holds an earlier run; this one goes to {}", base, candidate);
    *lock = std::move(held);
    return candidate;
  }
}

// --out DIR names the directory: one that already holds a run is refused, so a new run never
// mixes with (and later resumes from the checkpoint of) another.
std::string named_run_dir(const std::string& dir, bool caller_holds_lock, DirLock* lock) {
  DirLock held = caller_holds_lock ? DirLock() : lock_run_dir(dir);
  if (holds_run(dir))
    throw RunDirUnavailable(fmt::format(
        "{}: already holds a run; continue it with --resume {}, or give another --out", dir, dir));
  *lock = std::move(held);
  return dir;
}

[[noreturn]] void refuse_finished(const std::string& dir, int64_t step) {
  throw RunDirUnavailable(
      fmt::format("{}: the run finished at step {}; nothing to resume", dir, step));
}

// Refuses to resume a run whose summary.json says it is done (all train.steps, or an early
// stop), before anything in the directory is written. A missing or unreadable summary (a
// paused or crashed run) passes.
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

// Keys an override given with --resume may change: they decide how the rest of the run is
// computed, reported or saved, not what was trained so far or the learning rate of any step.
// (eval.seq_lens, eval.num_examples and eval.seed are not among them: training batches are
// redrawn when they equal an eval row, so the eval sets shape the training data.)
bool resume_may_change(const std::string& key) {
  static const char* const kKeys[] = {"train.log_every",        "train.eval_every",
                                      "train.checkpoint_every", "train.keep_checkpoints",
                                      "train.target_accuracy",  "train.device",
                                      "train.precision",        "train.threads",
                                      "eval.batch_size",        "dist.bucket_mb"};
  for (const char* k : kKeys)
    if (key == k) return true;
  return false;
}

// Every key an override given with --resume changes must be one resume_may_change accepts, or
// train.steps (never below the step already trained). One line naming the key otherwise.
// Extending train.steps keeps the learning rate of every step as it was: the decay keeps its
// old horizon (train.schedule_steps is set to the old train.steps, and recorded) and the added
// steps train at min_lr. Returns the overrides to record (with that train.schedule_steps).
std::vector<std::string> check_resume_overrides(const RunConfig& stored, RunConfig& wanted,
                                                std::vector<std::string> overrides,
                                                int64_t trained) {
  const nlohmann::json have = flatten_dotted(to_json(stored));
  const nlohmann::json want = flatten_dotted(to_json(wanted));
  for (const auto& [key, value] : want.items()) {
    if (have.contains(key) && have[key] == value) continue;
    if (resume_may_change(key)) continue;
    const std::string change =
        fmt::format("{} -> {}", have.contains(key) ? have[key].dump() : "unset", value.dump());
    if (key == "train.steps") {
      if (wanted.train.steps < trained)
        throw UserError(fmt::format(
            "train.steps: cannot change on resume ({}): the run has trained {} steps already",
            change, trained));
      continue;
    }
    throw UserError(fmt::format(
        "{}: cannot change on resume ({}): it would change what was trained or the learning-rate "
        "schedule; start a new run instead. On resume only train.steps, log_every, eval_every, "
        "checkpoint_every, keep_checkpoints, target_accuracy, device, precision, threads, "
        "eval.batch_size and dist.bucket_mb may change",
        key, change));
  }
  if (wanted.train.steps != stored.train.steps && stored.train.schedule_steps == 0) {
    wanted.train.schedule_steps = stored.train.steps;
    overrides.push_back(fmt::format("train.schedule_steps={}", stored.train.steps));
  }
  return overrides;
}

// A data-parallel run trains on the CPU over TCP; never silently on one GPU.
void check_data_parallel(const Session& s, Device device) {
  if (!s.comm) return;
  // TCP moves host buffers only, and NCCL's ranks each drive a GPU.
  if (device == Device::kCUDA && !s.comm->takes_device_buffers())
    throw UserError(
        "device cuda: data-parallel ranks on GPUs meet through NCCL (run --gpus N, or "
        "KIMI_DIST_BACKEND=nccl under a launcher), not tcp");
  if (device != Device::kCUDA && s.comm->takes_device_buffers())
    throw UserError(
        "KIMI_DIST_BACKEND=nccl: the ranks must train on GPUs (--device cuda); the CPU's ranks "
        "meet over tcp");
  rank_rows(s.cfg.train.batch_size, s.comm->world_size(), s.comm->rank());  // divides, or one line
  // The load-balance loss is a product of per-batch means: over each rank's rows it is not the
  // global batch's, so the ranks would not train as one process does.
  if (s.cfg.model.moe.num_experts > 0 && s.cfg.model.moe.aux_loss_coef > 0)
    throw UserError(
        "model.moe.aux_loss_coef > 0 with several ranks: the load-balance loss would be taken "
        "over each rank's rows, not the global batch; use the auxiliary-loss-free bias update "
        "(model.moe.aux_loss_coef=0, model.moe.bias_update_rate > 0) or one rank");
}

}  // namespace

Session open_session(const RunRequest& req, dist::Communicator* comm) {
  Session s;
  s.comm = comm;
  s.root = !comm || comm->rank() == 0;
  std::vector<std::string> overrides = req.overrides;
  std::optional<RunIdentity> identity;
  if (!req.resume_dir.empty()) {
    const fs::path cfg_path = fs::path(req.resume_dir) / "config.yaml";
    if (!fs::exists(cfg_path))
      throw UserError(fmt::format("{}: no config.yaml; not a run directory", req.resume_dir));
    s.dir = req.resume_dir;
    if (!req.caller_holds_lock && s.root) s.lock = lock_run_dir(s.dir);
    s.cfg = load_config(cfg_path.string(), overrides);
    check_data_parallel(s, resolve_device(req.device.empty() ? s.cfg.train.device : req.device));
    if (!overrides.empty()) {
      const auto latest = find_latest_checkpoint(s.dir);
      overrides = check_resume_overrides(load_config(cfg_path.string(), {}), s.cfg, overrides,
                                         latest ? latest->step : 0);
    }
    check_not_finished(s.dir, s.cfg);
    identity = read_run_identity(s.dir);
  } else {
    s.cfg = load_config(req.config_path, overrides);
    // fail before writing
    check_data_parallel(s, resolve_device(req.device.empty() ? s.cfg.train.device : req.device));
    // Ranks other than 0 write nothing: they need no directory.
    if (s.root)
      s.dir = req.out_dir.empty() ? fresh_run_dir(s.cfg, &s.lock)
                                  : named_run_dir(req.out_dir, req.caller_holds_lock, &s.lock);
  }
  // Left by a process killed mid-write; no one else writes here while we hold the lock.
  if (s.root) s.removed_temp_files = io::remove_atomic_temp_files(s.dir);
  if (req.resume_dir.empty() && s.root) {
    create_run_dir(s.cfg, overrides, s.dir);
    identity = read_run_identity(s.dir);
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
  const optim::AdamWOptions adamw{t.beta1, t.beta2, t.eps, t.weight_decay};
  if (s.comm) {
    s.opt = std::make_unique<Zero1AdamW>(s.model->named_parameters(), adamw, *s.comm);
  } else {
    s.opt = std::make_unique<optim::AdamW>(s.model->named_parameters(), adamw);
  }
  if (!req.resume_dir.empty()) {
    if (auto ckpt = find_latest_checkpoint(s.dir)) {
      CheckpointChecks checks;
      checks.max_step = s.cfg.train.steps;
      // A directory from before run ids (no run.json) takes its own unstamped checkpoints.
      if (identity) {
        checks.run_id = identity->run_id;
        checks.unstamped_max_step = identity->unstamped_max_step;
      }
      const LoadedCheckpoint loaded = load_checkpoint(ckpt->path, *s.model, s.opt.get(), checks);
      s.start_step = loaded.step;
      s.checkpoint_loss = loaded.stamp.loss;
      s.last_checkpoint = ckpt->path;
    } else {
      s.resumed_from_scratch = true;
    }
    // Everything is checked: now the directory may change.
    if (!s.root) return s;
    if (!identity) {
      identity = RunIdentity{new_run_id(), s.start_step};
      write_run_identity(s.dir, *identity);
    }
    record_resume_overrides(s.dir, s.cfg, overrides, s.start_step);
  }
  if (identity) s.run_id = identity->run_id;
  return s;
}

}  // namespace kimi
