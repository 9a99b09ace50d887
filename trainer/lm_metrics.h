// Language-model metrics for metrics.csv and eval.csv: training FLOPs per token (Kaplan et al.
// 2020, "Scaling Laws for Neural Language Models", section 2.1: C = 6N per token plus an
// attention term), perplexity, and bits per byte (the loss in bits spread over the text's bytes,
// comparable across tokenizers). Engineer D's models/flops.* may replace training_flops_per_token.
#pragma once

#include <cstdint>

#include "models/model_config.h"
#include "tasks/task_config.h"
#include "trainer/config.h"
#include "trainer/metrics_writer.h"

namespace kimi {

// Training (forward + backward = 3x forward) FLOPs per token at this length:
//   6 * N_matmul                          N_matmul: parameters used in a product per token (the
//                                         embedding lookup is free; a tied head is counted once)
// + 6 * L_attn * T * H * Dh               softmax attention/MLA: QK^T and AV, 2 * 2 * T * H * Dh
//                                         forward per token over the full (unmasked) square
// + 12 * L_lin * H * Dk * Dv              linear mixers (KDA, GDN, DeltaNet, Mamba2): the state
//                                         read and update, 2 * 2 * H * Dk * Dv forward per token
double training_flops_per_token(const ModelConfig& model, int64_t num_parameters,
                                int64_t vocab_size, int64_t seq_len);

double perplexity(double loss_nats);

// loss / ln 2 / bytes_per_token; 0 when bytes_per_token <= 0 (a task without text bytes).
double bits_per_byte(double loss_nats, double bytes_per_token);

// Text bytes per token of the eval data: the byte-level lm task (task.lm.path) 1, prepared data
// (task.lm.data) its manifest's validation split, synthetic tasks 0 (no bits per byte).
double eval_bytes_per_token(const TaskConfig& task);

// A run's running totals for metrics.csv (tokens, flops: cumulative over the steps so far) and
// the bits_per_byte cell of eval.csv.
class LmCounters {
 public:
  LmCounters(const RunConfig& config, int64_t num_parameters, int64_t vocab_size);
  void add_step(int64_t tokens, int64_t seq_len);
  int64_t tokens() const { return tokens_; }
  double flops() const { return flops_; }
  // Empty for tasks without text bytes (synthetic tasks).
  CsvValue bits_per_byte_cell(double loss_nats) const;

 private:
  ModelConfig model_;
  int64_t num_parameters_, vocab_size_;
  double bytes_per_token_;
  int64_t tokens_ = 0;
  double flops_ = 0;
};

}  // namespace kimi
