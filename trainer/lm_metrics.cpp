// Training FLOPs, perplexity and bits per byte (trainer/lm_metrics.h).
#include "trainer/lm_metrics.h"

#include <cmath>
#include <numbers>

#include "tasks/lm_manifest.h"

namespace kimi {

double training_flops_per_token(const ModelConfig& model, int64_t num_parameters,
                                int64_t vocab_size, int64_t seq_len) {
  const double embedding =
      model.tie_embeddings ? 0.0 : static_cast<double>(vocab_size) * model.d_model;
  double flops = 6.0 * (static_cast<double>(num_parameters) - embedding);
  const double heads = static_cast<double>(model.num_heads),
               dh = static_cast<double>(model.head_dim);
  for (const auto& mixer : layer_mixers(model)) {
    if (mixer == "attention" || mixer == "mla")
      flops += 6.0 * static_cast<double>(seq_len) * heads * dh;
    else
      flops += 12.0 * heads * dh * dh * model.expand_v;
  }
  return flops;
}

double perplexity(double loss_nats) { return std::exp(loss_nats); }

double bits_per_byte(double loss_nats, double bytes_per_token) {
  return bytes_per_token > 0 ? loss_nats / std::numbers::ln2 / bytes_per_token : 0.0;
}

double eval_bytes_per_token(const TaskConfig& task) {
  if (task.name != "lm") return 0.0;
  if (task.lm.data.empty()) return 1.0;
  return tasks::read_lm_manifest(task.lm.data).val.bytes_per_token();
}

LmCounters::LmCounters(const RunConfig& config, int64_t num_parameters, int64_t vocab_size)
    : model_(config.model),
      num_parameters_(num_parameters),
      vocab_size_(vocab_size),
      bytes_per_token_(eval_bytes_per_token(config.task)) {}

void LmCounters::add_step(int64_t tokens, int64_t seq_len) {
  tokens_ += tokens;
  flops_ += static_cast<double>(tokens) *
            training_flops_per_token(model_, num_parameters_, vocab_size_, seq_len);
}

CsvValue LmCounters::bits_per_byte_cell(double loss_nats) const {
  if (bytes_per_token_ <= 0) return std::string();
  return bits_per_byte(loss_nats, bytes_per_token_);
}

}  // namespace kimi
