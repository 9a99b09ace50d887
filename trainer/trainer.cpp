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
#include <csignal>
#include <filesystem>
#include <fstream>
#include <optional>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/backend/precision.h"
#include "core/dist/communicator.h"
#include "core/io/atomic_file.h"
#include "core/optim/optimizer.h"
#include "core/tensor/device_memory.h"
#include "tasks/eval_set.h"
#include "trainer/checkpoint.h"
#include "trainer/data_parallel.h"
#include "trainer/dir_lock.h"
#include "trainer/grad_accum.h"
#include "trainer/lm_metrics.h"
#include "trainer/metrics_writer.h"
#include "trainer/progress.h"
#include "trainer/run_dir.h"
#include "trainer/run_lock.h"
#include "trainer/run_session.h"
#include "trainer/run_status.h"
#include "trainer/zero1.h"

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

// Routes spdlog to stderr and to run_dir/log.txt; returns the file's sink.
std::shared_ptr<spdlog::sinks::sink> setup_logging(const std::string& run_dir) {
  auto level = spdlog::get_level();
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto file =
      std::make_shared<spdlog::sinks::basic_file_sink_mt>((fs::path(run_dir) / "log.txt").string());
  auto logger = std::make_shared<spdlog::logger>("kimi", spdlog::sinks_init_list{console, file});
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  return file;
}

// train.seq_len, or with task.mixed_lengths one of task.train_seq_lens chosen by the step's seed.
int64_t step_seq_len(const RunConfig& cfg, uint64_t step_seed) {
  const auto& lens = cfg.task.train_seq_lens;
  if (!cfg.task.mixed_lengths || lens.empty()) return cfg.train.seq_len;
  return lens[splitmix64(step_seed ^ 0x5eed1e9u) % lens.size()];
}

// What the ranks of a data-parallel run learn from rank 0 after each step (one broadcast float).
enum StepFlags : int { kCheckpointNow = 1, kEndNow = 2 };

float broadcast_from_root(dist::Communicator& comm, float value) {
  comm.broadcast(&value, 1, 0);
  return value;
}

struct StepOutcome {
  double loss = 0, grad_norm = 0, lr = 0;
  int64_t rows = 0, seq_len = 0;
};

// The forward, backward and optimizer step of step `step` (0-based), on one rank or on all of a
// data-parallel run's (each its rows of the same global batch; the same update everywhere).
// `fail` gets a non-finite loss or gradient norm and must throw.
template <class Fail>
StepOutcome step_model(Session& s, int64_t step, optim::Schedule schedule, Fail&& fail) {
  const auto& t = s.cfg.train;
  const uint64_t step_seed = mix_seed(static_cast<uint64_t>(t.seed), static_cast<uint64_t>(step));
  // train.grad_accum slices of train.batch_size rows: the rows one larger batch would hold.
  tasks::Batch batch = tasks::sample_filtered(*s.task, t.batch_size * t.grad_accum,
                                              step_seq_len(s.cfg, step_seed), step_seed, s.filter);
  StepOutcome o;
  s.opt->zero_grad();
  o.loss = s.comm ? data_parallel_forward_backward(
                        *s.model, batch, t.grad_accum, s.device, *s.comm,
                        static_cast<size_t>(s.cfg.dist.bucket_mb * 1024 * 1024))
                  : forward_backward_accumulated(*s.model, batch, t.grad_accum, s.device);
  if (!std::isfinite(o.loss))
    fail(fmt::format("non-finite loss ({}) at step {}", o.loss, step + 1));
  o.grad_norm = optim::clip_grad_norm(s.model->parameters(), t.grad_clip);
  if (!std::isfinite(o.grad_norm))
    fail(fmt::format("non-finite gradient norm at step {}", step + 1));
  o.lr = optim::lr_at(step, t.schedule_steps > 0 ? t.schedule_steps : t.steps, t.warmup_steps, t.lr,
                      t.min_lr_ratio, schedule);
  s.opt->step(o.lr);
  // MoE: the auxiliary-loss-free bias update, from the loads of the global batch.
  s.model->after_optimizer_step(s.comm ? sum_loads_over_ranks(*s.comm) : models::LoadSum());
  o.rows = batch.batch;
  o.seq_len = batch.seq_len;
  return o;
}

// A data-parallel rank other than 0: the same steps as rank 0, joining its collectives (the
// gradient sums, the optimizer's gathers, its checkpoints' state_dict) and ending when rank 0
// says; it writes nothing. Evaluation runs on rank 0 alone (it needs no collective).
RunResult follow_root(Session& s) {
  RunResult result;
  if (broadcast_from_root(*s.comm, 0) == 0) return result;  // rank 0: already finished
  const auto schedule = optim::schedule_from_name(s.cfg.train.schedule);
  for (int64_t step = s.start_step; step < s.cfg.train.steps; ++step) {
    const StepOutcome o =
        step_model(s, step, schedule, [](const std::string& what) { throw UserError(what); });
    result.final_loss = o.loss;
    result.steps_done = step + 1;
    const int flags = static_cast<int>(broadcast_from_root(*s.comm, 0));
    if (flags & kCheckpointNow) (void)s.opt->state_dict();  // collective
    if (flags & kEndNow) break;
  }
  return result;
}

// One training run over an open session: steps, logging, evals, checkpoints, summary, status.
class TrainLoop {
 public:
  TrainLoop(Session& s, const RunRequest& req, RunStatus& status, const StopSignals& signals)
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
        t_start_(std::chrono::steady_clock::now()),
        status_(status),
        signals_(signals),
        lm_(s.cfg, s.model->num_parameters(), s.task->vocab_size()) {
    result_.run_dir = s.dir;
    step_ = s.start_step;
    // Tokens and FLOPs of the steps before a resume, recounted from their (seeded) lengths.
    for (int64_t step = 0; step < s.start_step; ++step) {
      const int64_t len = step_seq_len(
          s.cfg, mix_seed(static_cast<uint64_t>(t_.seed), static_cast<uint64_t>(step)));
      lm_.add_step(t_.batch_size * t_.grad_accum * len, len);
    }
  }

  RunResult run() {
    status_.set(RunState::kRunning, step_, "training");
    const bool finished = finished_before_its_summary();
    if (s_.comm) broadcast_from_root(*s_.comm, finished ? 0 : 1);
    if (finished) return result_;
    // A data-parallel run reads the signal once a step, so that the other ranks (told by the
    // broadcast below) stop at the same step.
    while (step_ < t_.steps && (s_.comm || !signals_.received())) {
      const StepStats st = train_step(step_);
      ++step_;
      log_step(step_, st);
      const bool pause = req_.stop_at > 0 && step_ >= req_.stop_at;
      const int sig = signals_.received();
      bool stop = false;
      if ((t_.eval_every > 0 && step_ % t_.eval_every == 0) || step_ == t_.steps)
        stop = evaluate(step_, /*record=*/true);
      const bool save = (t_.checkpoint_every > 0 && step_ % t_.checkpoint_every == 0) ||
                        step_ == t_.steps || stop || pause || sig;
      if (s_.comm)
        broadcast_from_root(*s_.comm, static_cast<float>((save ? kCheckpointNow : 0) |
                                                         (stop || pause || sig ? kEndNow : 0)));
      if (save) checkpoint(step_, st.loss);
      if (s_.comm && sig) break;
      bar_.update(step_,
                  fmt::format("loss {:.4f} acc {} {:.0f} tok/s", st.loss,
                              last_acc_ < 0 ? std::string("-") : fmt::format("{:.3f}", last_acc_),
                              st.tok_s));
      result_.stopped_early = stop;
      if (stop) break;
      if (pause) {
        spdlog::info("stopping at step {} as asked; continue with --resume {}", step_, s_.dir);
        break;
      }
    }
    bar_.finish();
    metrics_.flush();
    result_.steps_done = step_;
    write_summary();
    if (signals_.received()) {
      interrupted_ = true;
      status_.set(RunState::kInterrupted, step_,
                  fmt::format("{} at step {}; the checkpoint is {}; continue with --resume {}",
                              signal_name(signals_.received()), step_,
                              s_.last_checkpoint.empty() ? "none" : s_.last_checkpoint, s_.dir));
    } else if (result_.stopped_early) {
      status_.set(RunState::kFinished, step_,
                  fmt::format("every eval slice reached train.target_accuracy {} at step {}",
                              t_.target_accuracy, step_));
    } else if (step_ >= t_.steps) {
      status_.set(RunState::kFinished, step_, fmt::format("trained all {} steps", t_.steps));
    } else {
      status_.set(RunState::kInterrupted, step_,
                  fmt::format("stopped at step {} as asked (--stop-at); continue with --resume {}",
                              step_, s_.dir));
    }
    return result_;
  }

  int64_t step() const { return step_; }
  bool interrupted() const { return interrupted_; }

  static const char* signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
  }

 private:
  struct StepStats {
    double loss = 0, lr = 0, grad_norm = 0, secs = 0, tok_s = 0;
  };

  // A run killed after its last checkpoint but before its summary.json (the final step, or the
  // eval that met train.target_accuracy): the model is evaluated again, which gives the same
  // numbers as before, and the summary and status are written without training further.
  bool finished_before_its_summary() {
    if (step_ == 0) return false;
    const bool last = step_ >= t_.steps;
    bool evaluated_here = false;
    for (const auto& row : evals_.rows())
      evaluated_here = evaluated_here || row[0] == std::to_string(step_);
    if (!last && !(t_.target_accuracy > 0 && evaluated_here)) return false;
    const bool reached = evaluate(step_, /*record=*/false);
    if (!last && !reached) return false;
    spdlog::info("the run had finished at step {} before its summary was written; writing it",
                 step_);
    result_.stopped_early = !last && reached;
    result_.steps_done = step_;
    result_.final_loss = s_.checkpoint_loss.value_or(0.0);
    bar_.finish();
    write_summary();
    status_.set(RunState::kFinished, step_,
                last ? fmt::format("trained all {} steps", t_.steps)
                     : fmt::format("every eval slice reached train.target_accuracy {} at step {}",
                                   t_.target_accuracy, step_));
    return true;
  }

  // Step `step` (0-based) trains on the batch drawn with seed mix(train.seed, step).
  StepStats train_step(int64_t step) {
    const auto t0 = std::chrono::steady_clock::now();
    const StepOutcome o =
        step_model(s_, step, schedule_, [this](const std::string& what) { fail(what); });
    StepStats st;
    st.loss = o.loss;
    st.grad_norm = o.grad_norm;
    st.lr = o.lr;
    st.secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    st.tok_s = static_cast<double>(o.rows * o.seq_len) / std::max(st.secs, 1e-9);
    lm_.add_step(o.rows * o.seq_len, o.seq_len);
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
                      lm_.tokens(), lm_.flops(), log_moe_load(step)});
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

  // Evaluates every slice (rows in eval.csv when `record`); true when all reach
  // train.target_accuracy (early stop).
  bool evaluate(int64_t step, bool record) {
    result_.last_eval.clear();
    bool all_reached = t_.target_accuracy > 0;
    for (const auto& set : s_.eval_sets) {
      SliceResult r = evaluate_slice(*s_.model, set, s_.cfg.eval.batch_size, s_.device);
      if (record)
        evals_.add_row({step, r.task, r.seq_len, r.num_kv_pairs, r.num_examples, r.loss, r.accuracy,
                        r.exact_match, perplexity(r.loss), lm_.bits_per_byte_cell(r.loss)});
      if (!bar_on_ && record)
        spdlog::info("eval step {} {} T={}: loss {:.4f} accuracy {:.4f} exact {:.4f}", step, r.task,
                     r.seq_len, r.loss, r.accuracy, r.exact_match);
      all_reached = all_reached && r.accuracy >= t_.target_accuracy;
      result_.last_eval.push_back(r);
    }
    if (record) evals_.flush();
    last_acc_ = result_.last_eval.empty() ? -1 : result_.last_eval.back().accuracy;
    return all_reached;
  }

  void checkpoint(int64_t step, double loss) {
    std::string path = checkpoint_path(s_.dir, step);
    // A refused (non-finite) or failed checkpoint stops the run like a non-finite loss, naming
    // the last good checkpoint, which is kept.
    try {
      save_checkpoint(path, *s_.model, *s_.opt, step, CheckpointStamp{s_.run_id, loss});
    } catch (const UserError& e) {
      fail(fmt::format("checkpoint at step {}: {}", step, e.what()));
    }
    s_.last_checkpoint = path;
    // Older checkpoints go only now that the new one is safely renamed into place.
    prune_checkpoints(s_.dir, t_.keep_checkpoints);
    status_.set(RunState::kRunning, step, "training");
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
                              {"run_id", s_.run_id},
                              {"steps_done", result_.steps_done},
                              {"final_loss", result_.final_loss},
                              {"stopped_early", result_.stopped_early},
                              {"parameters", s_.model->num_parameters()},
                              {"layers", s_.model->layer_kinds()},
                              {"device", std::string(device_name(s_.device))},
                              {"wall_s", wall_seconds()},
                              {"provenance", provenance()},
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
  RunStatus& status_;
  const StopSignals& signals_;
  RunResult result_;
  int64_t step_ = 0;
  bool interrupted_ = false;
  double last_acc_ = -1;
  LmCounters lm_;
};

}  // namespace

RunResult run_training(const RunRequest& req) {
  // An external launcher (torchrun, `run --ranks N`) sets WORLD_SIZE > 1, and `run --gpus N`
  // KIMI_DIST_BACKEND: a data-parallel run. On the CPU the ranks meet over TCP, on GPUs through
  // NCCL (the default for --device cuda; check_data_parallel refuses a mismatch).
  const dist::RendezvousInfo rendezvous = dist::rendezvous_from_env();
  std::unique_ptr<dist::Communicator> comm;
  if (dist::data_parallel(rendezvous)) {
    const std::string backend = !rendezvous.backend.empty() ? rendezvous.backend
                                : req.device == "cuda"      ? "nccl"
                                                            : "tcp";
    comm = dist::make_communicator(backend, rendezvous);
  }
  Session s = open_session(req, comm.get());
  if (comm) {
    // Every rank resumes from the checkpoint rank 0 chose.
    const auto root_start =
        static_cast<int64_t>(broadcast_from_root(*comm, static_cast<float>(s.start_step)));
    if (root_start != s.start_step)
      throw UserError(fmt::format(
          "rank {}: resumes at step {} but rank 0 at step {} (the run directory changed under "
          "the ranks)",
          comm->rank(), s.start_step, root_start));
  }
  if (!s.root) {
    StopSignals signals;  // a Ctrl-C reaches every rank: rank 0 alone decides when to stop
    return follow_root(s);
  }
  const auto log_file = setup_logging(s.dir);
  // SIGINT/SIGTERM from here on stop the run cleanly; before, nothing but config.yaml and
  // run.json was written, and the default action is right.
  StopSignals signals;
  for (const auto& name : s.removed_temp_files)
    spdlog::info("removed {}, a temp file left by a process killed mid-write", name);
  if (s.resumed_from_scratch)
    spdlog::warn(
        "resume: {} holds no checkpoint; training from step 0 (metrics and evals "
        "logged so far are replaced)",
        s.dir);
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
  RunStatus status(s.dir, provenance());
  int64_t step = s.start_step;
  RunResult result;
  bool interrupted = false;
  try {
    TrainLoop loop(s, req, status, signals);
    try {
      result = loop.run();
    } catch (...) {
      step = loop.step();
      throw;
    }
    interrupted = loop.interrupted();
  } catch (const std::exception& e) {
    // The console gets the error from the caller; log.txt and status.json keep it.
    log_file->log(spdlog::details::log_msg("kimi", spdlog::level::err, e.what()));
    log_file->flush();
    status.set_noexcept(RunState::kFailed, step, e.what());
    throw;
  }
  if (!interrupted) return result;
  const std::string what =
      fmt::format("{} at step {}: checkpoint {} written; continue with --resume {}",
                  TrainLoop::signal_name(signals.received()), result.steps_done,
                  s.last_checkpoint.empty() ? "none" : s.last_checkpoint, s.dir);
  spdlog::warn("{}", what);
  spdlog::default_logger()->flush();
  signals.reraise();  // ends the process, unless an embedding program handles the signal
  throw RunInterrupted(what);
}

}  // namespace kimi
