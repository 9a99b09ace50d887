// Training a run. Step s (0-based) trains on the batch drawn with seed mix(train.seed, s), so a
// run resumed from the checkpoint after step N sees the same batches as one that never stopped,
// and ends with the same numbers. This file opens the run and its ranks and reports how it ended;
// rank 0's loop is trainer/train_loop.cpp, the step every rank takes trainer/train_step.h.
#include "trainer/trainer.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <filesystem>

#include "core/backend/precision.h"
#include "core/dist/communicator.h"
#include "core/optim/optimizer.h"
#include "core/tensor/device_memory.h"
#include "trainer/run_session.h"
#include "trainer/run_status.h"
#include "trainer/train_loop.h"
#include "trainer/train_step.h"

namespace kimi {

namespace fs = std::filesystem;

using train_detail::broadcast_from_root;
using train_detail::kCheckpointNow;
using train_detail::kEndNow;
using train_detail::step_model;
using train_detail::StepOutcome;
using train_detail::TrainLoop;

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
