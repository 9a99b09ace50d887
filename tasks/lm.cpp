// Byte-level language modelling on a user's text file (vocab 256): random windows of seq_len + 1
// bytes, every position scored with the next byte. The last lm.eval_fraction of the file is held
// out: eval windows come from it, training windows from the rest, so the two never share text.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/tensor/error.h"
#include "tasks/generators.h"
#include "tasks/lm_shards.h"

namespace kimi::tasks {
namespace {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw UserError(fmt::format("task.lm.path: cannot read '{}': {}", path, std::strerror(errno)));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

class LmTask : public Task {
 public:
  LmTask(std::string path, std::string text, double eval_fraction)
      : path_(std::move(path)), text_(std::move(text)) {
    split_ = static_cast<int64_t>(static_cast<double>(text_.size()) * (1.0 - eval_fraction));
  }
  std::string name() const override { return "lm"; }
  int64_t vocab_size() const override { return 256; }

  void check_seq_len(int64_t seq_len) const override {
    const int64_t train = split_, eval = static_cast<int64_t>(text_.size()) - split_;
    if (train < seq_len + 1 || eval < seq_len + 1) {
      throw UserError(fmt::format(
          "task.lm.path: '{}' is too short for seq_len {}: its train part has {} bytes and its "
          "eval part (task.lm.eval_fraction) {}; each needs seq_len + 1",
          path_, seq_len, train, eval));
    }
  }

  void sample_row(uint64_t seed, int64_t seq_len, Split split, int32_t* inputs,
                  int32_t* labels) const override {
    Rng rng(seed);
    const int64_t begin = split == Split::kTrain ? 0 : split_;
    const int64_t end = split == Split::kTrain ? split_ : static_cast<int64_t>(text_.size());
    const int64_t start = rng.uniform(begin, end - seq_len);  // window [start, start + seq_len]
    const auto* bytes = reinterpret_cast<const unsigned char*>(text_.data()) + start;
    for (int64_t t = 0; t < seq_len; ++t) {
      inputs[t] = bytes[t];
      labels[t] = bytes[t + 1];
    }
  }

 private:
  std::string path_;
  std::string text_;
  int64_t split_ = 0;  // first byte of the held-out eval part
};

}  // namespace

std::unique_ptr<Task> make_lm_task(const TaskConfig& config) {
  if (!config.lm.data.empty() && !config.lm.path.empty())
    throw UserError("task.lm.path and task.lm.data are both set; give one (data: prepared shards)");
  if (!config.lm.data.empty()) return make_lm_shards_task(config);
  if (config.lm.path.empty()) throw UserError("task.lm.path is empty (required for task lm)");
  if (resolved_vocab_size(config) != 256) {
    throw UserError(
        fmt::format("task.vocab_size must be 256 (bytes) for task lm; got {}", config.vocab_size));
  }
  if (!(config.lm.eval_fraction > 0.0 && config.lm.eval_fraction < 1.0)) {
    throw UserError(
        fmt::format("task.lm.eval_fraction must be in (0, 1); got {}", config.lm.eval_fraction));
  }
  return std::make_unique<LmTask>(config.lm.path, read_text_file(config.lm.path),
                                  config.lm.eval_fraction);
}

}  // namespace kimi::tasks
