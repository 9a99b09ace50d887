// The CPU cost estimate (trainer/cost_estimate.h). Measured rather than derived from FLOPs: the
// mixers' chunked kernels run far below a GEMM's rate, and their rate depends on the machine,
// the thread count and the shapes, so only a timing of the run's own shapes is honest.
#include "trainer/cost_estimate.h"

#include <fmt/format.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/autograd/autograd.h"
#include "core/optim/optimizer.h"
#include "models/language_model.h"
#include "tasks/task.h"

namespace kimi {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct PassTimes {
  double forward = 0, backward = 0, update = 0;
};

PassTimes time_pass(models::LanguageModel& model, optim::AdamW& opt, const tasks::Batch& batch) {
  PassTimes t;
  Tensor ids = Tensor::from_vector(batch.inputs, {batch.batch, batch.seq_len});
  Tensor labels = Tensor::from_vector(batch.labels, {batch.batch, batch.seq_len});
  auto t0 = Clock::now();
  Tensor loss = models::lm_loss(model.forward(ids), labels);
  loss.item();
  t.forward = seconds_since(t0);
  t0 = Clock::now();
  opt.zero_grad();
  loss.backward();
  t.backward = seconds_since(t0);
  t0 = Clock::now();
  opt.step(0.0);  // lr 0: the timing needs the update's work, not its effect
  t.update = seconds_since(t0);
  return t;
}

// The length a step trains at: train.seq_len, or the mean of task.train_seq_lens when mixed.
int64_t typical_train_len(const RunConfig& cfg) {
  const auto& lens = cfg.task.train_seq_lens;
  if (!cfg.task.mixed_lengths || lens.empty()) return cfg.train.seq_len;
  int64_t sum = 0;
  for (int64_t len : lens) sum += len;
  return std::max<int64_t>(1, sum / static_cast<int64_t>(lens.size()));
}

}  // namespace

double scale_to_batch(double t_small, int64_t small_rows, double t_big, int64_t big_rows,
                      int64_t batch) {
  if (big_rows == small_rows)
    return t_big * static_cast<double>(batch) / static_cast<double>(big_rows);
  const double per_row =
      std::max(0.0, (t_big - t_small) / static_cast<double>(big_rows - small_rows));
  const double fixed = std::max(0.0, t_big - per_row * static_cast<double>(big_rows));
  // Never below what the timed rows took: noise cannot make the batch cheaper than them.
  return std::max(t_big, fixed + per_row * static_cast<double>(batch));
}

CostEstimate estimate_cpu_cost(const RunConfig& cfg, int64_t steps) {
  if (cfg.train.threads > 0) {
#ifdef _OPENMP
    omp_set_num_threads(static_cast<int>(cfg.train.threads));
#endif
    Eigen::setNbThreads(static_cast<int>(cfg.train.threads));
  }
  const auto task = tasks::make_task(cfg.task);
  models::LanguageModel model(cfg.model, task->vocab_size(), static_cast<uint64_t>(cfg.train.seed));
  const auto& t = cfg.train;
  optim::AdamW opt(model.named_parameters(),
                   optim::AdamWOptions{t.beta1, t.beta2, t.eps, t.weight_decay});
  CostEstimate est;
  const int64_t len = typical_train_len(cfg);
  // An untimed pass on one row first: the first pass pays for thread start-up and first-touch
  // allocation.
  time_pass(model, opt, task->sample(1, len, /*seed=*/1));
  // A pass has a per-row cost and a fixed one (kernel launches, thread hand-offs, the update):
  // two row counts separate them. Scaling one small pass by batch / rows counted the fixed
  // part batch / rows times (8-fold for the quickstart).
  const int64_t small_rows = std::min<int64_t>(t.batch_size, 2);
  est.rows_timed = std::min<int64_t>(t.batch_size, 8);
  const auto best_of_two = [&](int64_t rows) {
    const tasks::Batch batch = task->sample(rows, len, /*seed=*/0);
    PassTimes pass = time_pass(model, opt, batch);
    if (pass.forward + pass.backward < 1.0) {
      const PassTimes again = time_pass(model, opt, batch);
      pass.forward = std::min(pass.forward, again.forward);
      pass.backward = std::min(pass.backward, again.backward);
      pass.update = std::min(pass.update, again.update);
    }
    return pass;
  };
  const PassTimes big = best_of_two(est.rows_timed);
  const PassTimes small = est.rows_timed > small_rows ? best_of_two(small_rows) : big;
  const PassTimes& pass = big;
  est.step_s = scale_to_batch(small.forward + small.backward, small_rows,
                              big.forward + big.backward, est.rows_timed, t.batch_size) +
               big.update;
  // Evaluation is a forward pass per slice; taken per token from the training length (an
  // attention layer's cost grows faster than that with length: an underestimate there).
  const double forward_per_token = pass.forward / static_cast<double>(est.rows_timed * len);
  for (int64_t eval_len : cfg.eval.seq_lens)
    est.eval_s += forward_per_token * static_cast<double>(cfg.eval.num_examples * eval_len);
  est.steps = std::max<int64_t>(steps, 0);
  est.evals = est.steps == 0 ? 0 : t.eval_every > 0 ? est.steps / t.eval_every + 1 : 1;
  return est;
}

std::vector<std::string> cpu_sized_overrides(const RunConfig& cfg) {
  std::vector<std::string> out = {
      "model.d_model=64",      "model.head_dim=32",   "model.num_heads=2",
      "model.num_kv_heads=0",  "train.seq_len=128",   "eval.seq_lens=[128]",
      "train.batch_size=32",   "train.steps=1500",    "train.lr=3e-3",
      "train.warmup_steps=50", "train.eval_every=50", "train.target_accuracy=0.99"};
  if (cfg.task.mixed_lengths) out.push_back("task.mixed_lengths=false");
  // MQAR at 128 tokens holds 16 pairs (the quickstart's); 0 = seq_len / 8 also gives 16.
  if (cfg.task.name == "mqar" && cfg.task.mqar.num_kv_pairs > 16)
    out.push_back("task.mqar.num_kv_pairs=16");
  return out;
}

std::string format_duration(double seconds) {
  if (seconds >= 2 * 3600) return fmt::format("about {:.0f} hours", seconds / 3600);
  if (seconds >= 3600) return fmt::format("about {:.1f} hours", seconds / 3600);
  if (seconds >= 120) return fmt::format("about {:.0f} minutes", seconds / 60);
  return fmt::format("about {:.0f} seconds", std::max(1.0, seconds));
}

}  // namespace kimi
