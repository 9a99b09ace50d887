// Eval sets from ids made elsewhere (tasks::eval_set_from_ids, behind `kimi-lab eval --data`):
// ids checked as int64 (never truncated), labels in the vocabulary or ignored, no empty slice;
// and evaluate_slice refusing a slice it cannot score instead of reporting accuracy 0.
#include <gtest/gtest.h>

#include <string>

#include "core/tensor/error.h"
#include "tasks/eval_set.h"
#include "trainer/config.h"
#include "trainer/evaluate.h"

namespace kimi {
namespace {

std::string error_of(int64_t rows, int64_t T, const std::vector<int64_t>& inputs,
                     const std::vector<int64_t>& labels, int64_t vocab = 16) {
  try {
    tasks::eval_set_from_ids("sl", rows, T, inputs, labels, vocab, "f.safetensors");
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

TEST(EvalData, IdsAreCheckedBeforeNarrowing) {
  const std::vector<int64_t> in = {1, 2, 3, 4}, lab = {-100, 3, -100, 5};
  const tasks::EvalSet set = tasks::eval_set_from_ids("sl", 2, 2, in, lab, 16, "f");
  EXPECT_EQ(set.task, "sl");
  EXPECT_EQ(set.seq_len, 2);
  EXPECT_EQ(set.data.inputs, (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(set.data.labels, (std::vector<int32_t>{-100, 3, -100, 5}));
  // 2^32 + 5 would be 5 as int32, a valid id: it must be refused.
  EXPECT_HAS(error_of(2, 2, {1, 2, (int64_t{1} << 32) + 5, 4}, lab),
             "f.safetensors: slice 'sl': token id 4294967301 at row 1, position 0");
  EXPECT_HAS(error_of(2, 2, {1, -1, 3, 4}, lab), "token id -1");
  EXPECT_HAS(error_of(2, 2, {1, 2, 3, 16}, lab), "token id 16");
  EXPECT_HAS(error_of(2, 2, in, {-100, 3, -100, 16}), "slice 'sl': label 16 at row 1, position 1");
  EXPECT_HAS(error_of(2, 2, in, {-100, 3, -7, 5}), "label -7");
  EXPECT_HAS(error_of(2, 2, in, {-100, 3, -100, (int64_t{1} << 32) + 5}), "label 4294967301");
}

TEST(EvalData, EmptySlicesAreRefused) {
  EXPECT_HAS(error_of(0, 4, {}, {}), "slice 'sl': no rows");
  EXPECT_HAS(error_of(3, 0, {}, {}), "slice 'sl': no positions");
  EXPECT_HAS(error_of(1, 2, {1, 2}, {-100, -100}), "slice 'sl': no scored labels");
  EXPECT_HAS(error_of(1, 2, {1, 2, 3}, {-100, 3}), "3 inputs and 2 labels");
}

TEST(EvalData, EvaluateSliceRefusesASliceWithoutScoredLabels) {
  RunConfig cfg = load_config("", {"model.d_model=8", "model.head_dim=4", "task.vocab_size=16",
                                   "train.seq_len=8", "task.mqar.num_kv_pairs=1"});
  models::LanguageModel model(cfg.model, 16, 0);
  tasks::EvalSet set;
  set.task = "unscored";
  set.seq_len = 4;
  set.data.batch = 1;
  set.data.seq_len = 4;
  set.data.inputs = {1, 2, 3, 4};
  set.data.labels = {-100, -100, -100, -100};
  try {
    evaluate_slice(model, set, 4, Device::kCPU);
    FAIL() << "an unscored slice gave a result";
  } catch (const UserError& e) {
    EXPECT_HAS(std::string(e.what()), "'unscored' (T=4): no scored labels");
  }
  set.data.labels[2] = 5;
  const SliceResult r = evaluate_slice(model, set, 4, Device::kCPU);
  EXPECT_EQ(r.num_examples, 1);
  EXPECT_TRUE(r.accuracy == 0.0 || r.accuracy == 1.0);
}

}  // namespace
}  // namespace kimi
