// The LM task over memory-mapped token shards (tasks/lm_shards.h).
#include "tasks/lm_shards.h"

#include <algorithm>
#include <filesystem>

#include "core/tensor/error.h"
#include "tasks/rng.h"

namespace kimi::tasks {

TokenStream::TokenStream(const std::string& dir, const SplitInfo& split) {
  for (const auto& file : split.shards) {
    shards_.emplace_back((std::filesystem::path(dir) / file).string());
    starts_.push_back(total_);
    total_ += shards_.back().size();
  }
}

void TokenStream::copy(int64_t begin, int64_t n, int32_t* out) const {
  KIMI_CHECK(begin >= 0 && n >= 0 && begin + n <= total_, "tokens [{}, {}) outside a stream of {}",
             begin, begin + n, total_);
  // The shard holding `begin`: the last one starting at or before it.
  size_t s = std::upper_bound(starts_.begin(), starts_.end(), begin) - starts_.begin() - 1;
  while (n > 0) {
    const int64_t offset = begin - starts_[s];
    const int64_t take = std::min(n, shards_[s].size() - offset);
    shards_[s].copy(offset, take, out);
    out += take, begin += take, n -= take, ++s;
  }
}

namespace {

class LmShardsTask : public Task {
 public:
  explicit LmShardsTask(LmManifest m)
      : m_(std::move(m)), train_(m_.dir, m_.train), val_(m_.dir, m_.val) {
    for (const TokenStream* s : {&train_, &val_}) {
      const SplitInfo& info = s == &train_ ? m_.train : m_.val;
      if (s->size() != info.tokens)
        throw UserError(fmt::format("{}: the shards hold {} tokens but the manifest says {}",
                                    manifest_path(m_.dir), s->size(), info.tokens));
    }
  }
  std::string name() const override { return "lm"; }
  int64_t vocab_size() const override { return m_.vocab_size; }

  void check_seq_len(int64_t seq_len) const override {
    if (train_.size() < seq_len + 1 || val_.size() < seq_len + 1)
      throw UserError(fmt::format(
          "task.lm.data: '{}' is too small for seq_len {}: {} train and {} validation tokens; "
          "each split needs seq_len + 1",
          m_.dir, seq_len, train_.size(), val_.size()));
  }

  void sample_row(uint64_t seed, int64_t seq_len, Split split, int32_t* inputs,
                  int32_t* labels) const override {
    const TokenStream& s = split == Split::kTrain ? train_ : val_;
    Rng rng(seed);
    const int64_t start = rng.uniform(0, s.size() - seq_len);  // window [start, start+T]
    s.copy(start, seq_len, inputs);
    s.copy(start + 1, seq_len, labels);
  }

 private:
  LmManifest m_;
  TokenStream train_, val_;
};

}  // namespace

std::unique_ptr<Task> make_lm_shards_task(const TaskConfig& config) {
  LmManifest m = read_lm_manifest(config.lm.data);
  if (config.vocab_size != 0 && config.vocab_size != m.vocab_size)
    throw UserError(fmt::format(
        "task.vocab_size: {} but {} says the tokenizer has {} (leave task.vocab_size at 0)",
        config.vocab_size, manifest_path(config.lm.data), m.vocab_size));
  return std::make_unique<LmShardsTask>(std::move(m));
}

}  // namespace kimi::tasks
