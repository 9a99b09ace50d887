// Rank 0's training loop (trainer/train_loop.h). Every row it writes is flushed as it goes and
// every checkpoint is renamed into place before older ones are pruned, so a run killed at any
// point resumes from what is on disk.
#include "trainer/train_loop.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "trainer/checkpoint.h"
#include "trainer/run_dir.h"
#include "trainer/train_step.h"

namespace kimi::train_detail {

namespace fs = std::filesystem;

TrainLoop::TrainLoop(Session& s, const RunRequest& req, RunStatus& status,
                     const StopSignals& signals)
    : s_(s),
      req_(req),
      t_(s.cfg.train),
      metrics_(CsvTable::resume((fs::path(s.dir) / "metrics.csv").string(), metrics_columns(),
                                s.start_step)),
      evals_(
          CsvTable::resume((fs::path(s.dir) / "eval.csv").string(), eval_columns(), s.start_step)),
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
    const int64_t len =
        step_seq_len(s.cfg, mix_seed(static_cast<uint64_t>(t_.seed), static_cast<uint64_t>(step)));
    lm_.add_step(t_.batch_size * t_.grad_accum * len, len);
  }
}

RunResult TrainLoop::run() {
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
    bar_.update(
        step_,
        fmt::format("loss {:.4f} acc {} {:.0f} tok/s", st.loss,
                    last_acc_ < 0 ? std::string("-") : fmt::format("{:.3f}", last_acc_), st.tok_s));
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

bool TrainLoop::finished_before_its_summary() {
  if (step_ == 0) return false;
  const bool last = step_ >= t_.steps;
  bool evaluated_here = false;
  for (const auto& row : evals_.rows())
    evaluated_here = evaluated_here || row[0] == std::to_string(step_);
  if (!last && !(t_.target_accuracy > 0 && evaluated_here)) return false;
  const bool reached = evaluate(step_, /*record=*/false);
  if (!last && !reached) return false;
  spdlog::info("the run had finished at step {} before its summary was written; writing it", step_);
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

TrainLoop::StepStats TrainLoop::train_step(int64_t step) {
  std::optional<profile::OpProfiler> prof;  // --profile-step: this step, op by op
  if (req_.profile_step == step + 1) prof.emplace();
  const auto t0 = std::chrono::steady_clock::now();
  const StepOutcome o =
      step_model(s_, step, schedule_, [this](const std::string& what) { fail(what); });
  StepStats st;
  st.secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (prof) record_profile(step + 1, prof->finish());
  st.loss = o.loss;
  st.grad_norm = o.grad_norm;
  st.lr = o.lr;
  st.tok_s = static_cast<double>(o.rows * o.seq_len) / std::max(st.secs, 1e-9);
  lm_.add_step(o.rows * o.seq_len, o.seq_len);
  result_.final_loss = st.loss;
  if (!prof) last_step_secs_ = st.secs;
  return st;
}

void TrainLoop::record_profile(int64_t step, std::vector<profile::OpTime> rows) {
  StepProfile p;
  p.step = step;
  p.unprofiled_ms = step > s_.start_step + 1 ? last_step_secs_ * 1e3 : 0;
  for (const profile::OpTime& r : rows) p.profiled_ms += r.ms;
  p.rows = std::move(rows);
  const std::string path = (fs::path(s_.dir) / "profile_step.csv").string();
  write_step_profile(path, p);
  spdlog::info("step {} timed op by op: {} ({:.3f} ms with the device synchronised at each op)",
               step, path, p.profiled_ms);
  result_.profile = std::move(p);
}

void TrainLoop::fail(const std::string& what) {
  metrics_.flush();
  bar_.finish();
  throw UserError(fmt::format("{}; stopped. The last good checkpoint is {}", what,
                              s_.last_checkpoint.empty() ? "none" : s_.last_checkpoint));
}

void TrainLoop::log_step(int64_t step, const StepStats& st) {
  if (step % t_.log_every != 0 && step != t_.steps) return;
  metrics_.add_row({step, st.loss, st.lr, st.grad_norm, st.tok_s, st.secs * 1e3, wall_seconds(),
                    lm_.tokens(), lm_.flops(), log_moe_load(step)});
  metrics_.flush();
  if (!bar_on_)
    spdlog::info("step {}/{} loss {:.4f} lr {:.2e} grad_norm {:.3f} {:.0f} tok/s", step, t_.steps,
                 st.loss, st.lr, st.grad_norm, st.tok_s);
}

CsvValue TrainLoop::log_moe_load(int64_t step) {
  if (!moe_load_) return std::string();
  const auto loads = s_.model->moe_expert_load();
  const auto layers = s_.model->moe_layers();
  for (size_t l = 0; l < loads.size(); ++l)
    for (size_t e = 0; e < loads[l].size(); ++e)
      moe_load_->add_row({step, layers[l], static_cast<int64_t>(e), loads[l][e]});
  moe_load_->flush();
  return models::moe_max_load(loads);
}

bool TrainLoop::evaluate(int64_t step, bool record) {
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

void TrainLoop::checkpoint(int64_t step, double loss) {
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

void TrainLoop::write_summary() const {
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

double TrainLoop::wall_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start_).count();
}
}  // namespace kimi::train_detail
