// Language modelling on prepared token shards (task.lm.data, a directory written by `kimi-lab
// data prepare`). Each split is one packed stream of documents separated by the end-of-text id;
// a row is a window of seq_len + 1 consecutive tokens of it (inputs t, labels t + 1), so
// documents are packed to the training length the way llm.c's DataLoader packs them. The window
// start is a pure function of the row seed, which the trainer derives from (train.seed, step):
// a resumed run reads the same windows as an uninterrupted one.
#pragma once

#include <memory>

#include "tasks/lm_manifest.h"
#include "tasks/shards.h"
#include "tasks/task.h"

namespace kimi::tasks {

// The shards of one split, memory-mapped, addressed as one stream.
class TokenStream {
 public:
  TokenStream(const std::string& dir, const SplitInfo& split);
  int64_t size() const { return total_; }
  // Tokens [begin, begin + n) across shard boundaries.
  void copy(int64_t begin, int64_t n, int32_t* out) const;

 private:
  std::vector<Shard> shards_;
  std::vector<int64_t> starts_;  // first stream position of each shard
  int64_t total_ = 0;
};

std::unique_ptr<Task> make_lm_shards_task(const TaskConfig& config);

}  // namespace kimi::tasks
