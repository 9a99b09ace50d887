// Stack state tracking (tech report section 5.1): num_stacks independent LIFO stacks, a row is
// a run of 3-token ops `<push> id elem` / `<pop> id elem`, the popped elem being the one on top
// of stack id. The model must output it: label at the id position of each pop = elem.
// Tokens: 0 = pad (tail), 1 = push, 2 = pop, ids [3, 3 + S), elements [3 + S, vocab).
// Scored positions: the id of each pop (pushes are random, nothing there is predictable).
#include <algorithm>

#include "core/tensor/error.h"
#include "tasks/generators.h"

namespace kimi::tasks {
namespace {

constexpr int32_t kPad = 0;
constexpr int32_t kPush = 1;
constexpr int32_t kPop = 2;
constexpr int32_t kFirstId = 3;

class StackTask : public Task {
 public:
  StackTask(int64_t vocab, StackConfig config) : vocab_(vocab), config_(config) {
    if (config_.num_stacks < 1) {
      throw UserError(
          fmt::format("task.stack.num_stacks must be >= 1; got {}", config_.num_stacks));
    }
    if (first_elem() + 2 > vocab_) {
      throw UserError(fmt::format(
          "task.vocab_size {} too small for stack: needs 3 specials + task.stack.num_stacks ({}) "
          "ids + at least 2 elements",
          vocab_, config_.num_stacks));
    }
  }
  std::string name() const override { return "stack"; }
  int64_t vocab_size() const override { return vocab_; }

  void check_seq_len(int64_t seq_len) const override {
    if (seq_len < 6) {
      throw UserError(fmt::format("stack: seq_len {} < 6 holds no push-pop pair", seq_len));
    }
  }

  void sample_row(uint64_t seed, int64_t seq_len, Split, int32_t* inputs,
                  int32_t* labels) const override {
    Rng rng(seed);
    std::fill(inputs, inputs + seq_len, kPad);
    std::fill(labels, labels + seq_len, kIgnoreLabel);
    std::vector<std::vector<int32_t>> stacks(static_cast<size_t>(config_.num_stacks));
    std::vector<int32_t> non_empty;  // ids of non-empty stacks, for a uniform pop target
    for (int64_t t = 0; t + 3 <= seq_len; t += 3) {
      int32_t id = -1;
      int32_t elem;
      if (non_empty.empty() || rng.bernoulli(config_.push_prob)) id = push_target(rng, stacks);
      if (id >= 0) {
        elem = static_cast<int32_t>(rng.uniform(first_elem(), vocab_));
        if (stacks[id].empty()) non_empty.push_back(id);
        stacks[id].push_back(elem);
        inputs[t] = kPush;
      } else {
        const size_t slot = rng.below(non_empty.size());
        id = non_empty[slot];
        elem = stacks[id].back();
        stacks[id].pop_back();
        if (stacks[id].empty()) {
          non_empty[slot] = non_empty.back();
          non_empty.pop_back();
        }
        inputs[t] = kPop;
        labels[t + 1] = elem;  // after reading `<pop> id`, the model must name the top
      }
      inputs[t + 1] = kFirstId + id;
      inputs[t + 2] = elem;
    }
  }

 private:
  int64_t first_elem() const { return kFirstId + config_.num_stacks; }

  // The stack a push goes to: uniform, redrawn among the non-full stacks when max_depth caps the
  // drawn one; -1 (pop instead) when every stack is full. Unbounded stacks draw exactly once, so
  // max_depth 0 gives the same rows as before the key existed.
  int32_t push_target(Rng& rng, const std::vector<std::vector<int32_t>>& stacks) const {
    const auto id = static_cast<int32_t>(rng.uniform(0, config_.num_stacks));
    const auto depth = static_cast<size_t>(config_.max_depth);
    if (depth == 0 || stacks[id].size() < depth) return id;
    std::vector<int32_t> open;
    for (int32_t s = 0; s < static_cast<int32_t>(stacks.size()); ++s)
      if (stacks[s].size() < depth) open.push_back(s);
    return open.empty() ? -1 : open[rng.below(open.size())];
  }
  int64_t vocab_;
  StackConfig config_;
};

}  // namespace

std::vector<int64_t> stack_pop_depths(const Batch& b, int64_t num_stacks) {
  std::vector<int64_t> depths;
  for (int64_t r = 0; r < b.batch; ++r) {
    const int32_t* x = b.inputs.data() + r * b.seq_len;
    std::vector<int64_t> depth(static_cast<size_t>(num_stacks), 0);
    for (int64_t t = 0; t + 3 <= b.seq_len && x[t] != kPad; t += 3) {
      const int64_t id = x[t + 1] - kFirstId;
      KIMI_CHECK(id >= 0 && id < num_stacks, "stack_pop_depths: token {} at {} is no stack id",
                 x[t + 1], t + 1);
      auto& d = depth[static_cast<size_t>(id)];
      if (x[t] == kPush) {
        ++d;
      } else {
        KIMI_CHECK(x[t] == kPop && d > 0, "stack_pop_depths: op {} at {} on depth {}", x[t], t, d);
        depths.push_back(d--);
      }
    }
  }
  return depths;
}

std::unique_ptr<Task> make_stack_task(const TaskConfig& config) {
  if (!(config.stack.push_prob > 0.0 && config.stack.push_prob < 1.0)) {
    throw UserError(
        fmt::format("task.stack.push_prob must be in (0, 1); got {}", config.stack.push_prob));
  }
  return std::make_unique<StackTask>(resolved_vocab_size(config), config.stack);
}

}  // namespace kimi::tasks
