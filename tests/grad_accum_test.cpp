// Gradient accumulation: the gradient of a batch split into micro-batches equals the gradient of
// the batch in one piece (within float tolerance), also when the slices hold different numbers of
// labelled positions; and a run with train.grad_accum 2 trains like one with twice the batch.
#include "trainer/grad_accum.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "tests/tiny_lm.h"
#include "trainer/trainer.h"

namespace kimi {
namespace {

ModelConfig tiny_model() { return tiny_attention_model(); }

tasks::Batch ragged_batch() {
  tasks::Batch b = tasks::empty_batch(4, 6);
  for (int64_t i = 0; i < 24; ++i) {
    b.inputs[i] = static_cast<int32_t>((i * 7 + 3) % 11);
    // Rows 0-1 are fully labelled, rows 2-3 only at two positions: unequal slices.
    b.labels[i] = (i < 12 || i % 6 >= 4) ? static_cast<int32_t>((i * 5 + 1) % 11) : -100;
  }
  return b;
}

std::vector<std::vector<float>> grads_of(int64_t micro, double* loss) {
  models::LanguageModel model(tiny_model(), 11, 7);
  *loss = forward_backward_accumulated(model, ragged_batch(), micro, Device::kCPU);
  std::vector<std::vector<float>> out;
  for (const Tensor& p : model.parameters()) out.push_back(p.grad().to_vector<float>());
  return out;
}

TEST(GradAccum, MicroBatchesGiveTheFullBatchGradient) {
  double full_loss = 0, split_loss = 0, four_loss = 0;
  const auto full = grads_of(1, &full_loss);
  const auto split = grads_of(2, &split_loss);
  const auto four = grads_of(4, &four_loss);
  EXPECT_NEAR(full_loss, split_loss, 1e-5);
  EXPECT_NEAR(full_loss, four_loss, 1e-5);
  double max_err = 0, max_abs = 0;
  for (size_t p = 0; p < full.size(); ++p)
    for (size_t i = 0; i < full[p].size(); ++i) {
      max_err = std::max({max_err, std::abs(double(full[p][i]) - split[p][i]),
                          std::abs(double(full[p][i]) - four[p][i])});
      max_abs = std::max(max_abs, std::abs(double(full[p][i])));
    }
  EXPECT_GT(max_abs, 1e-3) << "the gradient is not trivially zero";
  EXPECT_LT(max_err, 1e-5 * std::max(1.0, max_abs));
}

TEST(GradAccum, RunWithAccumulationTrainsLikeTheLargerBatch) {
  namespace fs = std::filesystem;
  auto run = [](const std::string& name, int batch, int accum) {
    RunRequest req;
    req.out_dir = (fs::temp_directory_path() / ("kimi_grad_accum_" + name)).string();
    fs::remove_all(req.out_dir);
    req.progress = false;
    req.overrides = {"task.name=mqar",
                     "task.vocab_size=32",
                     "task.mqar.num_kv_pairs=2",
                     "model.d_model=16",
                     "model.num_heads=2",
                     "model.head_dim=8",
                     "model.mixer=gdn",
                     "model.chunk_size=4",
                     "train.seq_len=16",
                     "train.steps=4",
                     "train.warmup_steps=1",
                     "train.threads=1",
                     "train.device=cpu",
                     "eval.num_examples=8",
                     "eval.batch_size=8",
                     "train.batch_size=" + std::to_string(batch),
                     "train.grad_accum=" + std::to_string(accum)};
    return run_training(req);
  };
  const RunResult one = run("one", 8, 1), two = run("two", 4, 2);
  EXPECT_NEAR(one.final_loss, two.final_loss, 1e-4);
  ASSERT_EQ(one.last_eval.size(), 1u);
  EXPECT_NEAR(one.last_eval[0].loss, two.last_eval[0].loss, 1e-4);
  const RunResult other = run("other", 4, 1);
  EXPECT_GT(std::abs(other.last_eval[0].loss - one.last_eval[0].loss), 1e-4)
      << "half the batch trains differently: the comparison can fail";
}

}  // namespace
}  // namespace kimi
