// Internal to trainer/trainer.cpp and trainer/train_loop.cpp: one training step, which rank 0's
// loop (TrainLoop) and the other ranks of a data-parallel run (follow_root) both take, so that
// every rank draws the same batch and makes the same update.
#pragma once

#include <fmt/format.h>

#include <cmath>
#include <cstdint>

#include "core/dist/communicator.h"
#include "core/optim/optimizer.h"
#include "core/tensor/rng.h"
#include "tasks/eval_set.h"
#include "trainer/data_parallel.h"
#include "trainer/grad_accum.h"
#include "trainer/run_session.h"

namespace kimi::train_detail {

// train.seq_len, or with task.mixed_lengths one of task.train_seq_lens chosen by the step's seed.
inline int64_t step_seq_len(const RunConfig& cfg, uint64_t step_seed) {
  const auto& lens = cfg.task.train_seq_lens;
  if (!cfg.task.mixed_lengths || lens.empty()) return cfg.train.seq_len;
  return lens[splitmix64(step_seed ^ 0x5eed1e9u) % lens.size()];
}

// What the ranks of a data-parallel run learn from rank 0 after each step (one broadcast float).
enum StepFlags : int { kCheckpointNow = 1, kEndNow = 2 };

inline float broadcast_from_root(dist::Communicator& comm, float value) {
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

}  // namespace kimi::train_detail
