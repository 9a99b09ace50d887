// Palindrome (Kimi Linear tech report section 5.1): `x_1 .. x_n <sep> x_n .. x_1 <pad>...`.
// Tokens: 0 = pad, 1 = sep, content uniform from [2, vocab). Labels follow the report's table:
// each reversed token predicts the next one; <sep> is scored only with palindrome.score_sep.
#include <algorithm>

#include "core/tensor/error.h"
#include "tasks/generators.h"

namespace kimi::tasks {
namespace {

constexpr int32_t kPad = 0;
constexpr int32_t kSep = 1;

class PalindromeTask : public Task {
 public:
  PalindromeTask(int64_t vocab, PalindromeConfig config) : vocab_(vocab), config_(config) {
    if (vocab_ < 3) {
      throw UserError(fmt::format(
          "task.vocab_size must be >= 3 for palindrome (pad, sep, content); got {}", vocab_));
    }
  }
  std::string name() const override { return "palindrome"; }
  int64_t vocab_size() const override { return vocab_; }

  void check_seq_len(int64_t seq_len) const override {
    if (length(seq_len) < 1 || 2 * length(seq_len) + 1 > seq_len) {
      throw UserError(fmt::format(
          "palindrome: seq_len {} cannot hold task.palindrome.length={} (needs 2n+1 tokens)",
          seq_len, config_.length));
    }
  }

  void sample_row(uint64_t seed, int64_t seq_len, Split, int32_t* inputs,
                  int32_t* labels) const override {
    Rng rng(seed);
    const int64_t n = length(seq_len);
    std::fill(inputs, inputs + seq_len, kPad);
    std::fill(labels, labels + seq_len, kIgnoreLabel);
    for (int64_t i = 0; i < n; ++i) {
      inputs[i] = static_cast<int32_t>(rng.uniform(2, vocab_));
      inputs[2 * n - i] = inputs[i];
    }
    inputs[n] = kSep;
    // Reversed half at n+1 .. 2n; its last token has nothing left to predict.
    for (int64_t t = n + 1; t < 2 * n; ++t) labels[t] = inputs[t + 1];
    if (config_.score_sep) labels[n] = inputs[n + 1];
  }

 private:
  int64_t length(int64_t seq_len) const {
    return config_.length > 0 ? config_.length : (seq_len - 1) / 2;
  }
  int64_t vocab_;
  PalindromeConfig config_;
};

}  // namespace

std::unique_ptr<Task> make_palindrome_task(const TaskConfig& config) {
  return std::make_unique<PalindromeTask>(resolved_vocab_size(config), config.palindrome);
}

}  // namespace kimi::tasks
