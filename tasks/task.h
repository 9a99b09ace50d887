// Synthetic and language-modelling tasks as seeded token generators (Kimi Linear tech report
// section 5.1; zoology's multiquery_ar for the zoology MQAR form). Layout: plain int32 rows
// [batch, seq_len] row-major; labels -100 = not scored; the label at t is the token the model
// must predict after reading inputs[0..t] (docs/paper.md#synthetic-tasks).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tasks/task_config.h"

namespace kimi::tasks {

inline constexpr int32_t kIgnoreLabel = -100;

struct Batch {
  int64_t batch = 0, seq_len = 0;
  std::vector<int32_t> inputs, labels;  // [batch, seq_len] row-major
};

// Train and eval rows may be drawn from different data (lm holds out the file's tail).
enum class Split { kTrain, kEval };

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  virtual int64_t vocab_size() const = 0;

  // Throws kimi::UserError naming the config keys when seq_len cannot hold one example.
  virtual void check_seq_len(int64_t seq_len) const = 0;

  // Key-value pairs per row at this length (an eval.csv column); 0 for non-MQAR tasks.
  virtual int64_t num_kv_pairs(int64_t seq_len) const { return 0; }

  // Writes one row (seq_len inputs and labels); deterministic in (row_seed, seq_len, split).
  virtual void sample_row(uint64_t row_seed, int64_t seq_len, Split split, int32_t* inputs,
                          int32_t* labels) const = 0;

  // Deterministic in (seed): the same seed gives the same batch. Row r uses
  // row_seed(seed, r, 0), so a filtered batch only differs in the rows it had to redraw.
  virtual Batch sample(int64_t batch, int64_t seq_len, uint64_t seed) const;
};

uint64_t row_seed(uint64_t seed, int64_t row, int64_t attempt);

// Builds the task named by config.name. The lm task reads its file here (UserError if absent).
std::unique_ptr<Task> make_task(const TaskConfig& config);

// Every length the run will use (train.seq_len, the mixed train lengths of config, the eval
// lengths) fits the task; called by load_config so a bad length fails before training starts.
void check_task_lengths(const TaskConfig& config, int64_t train_seq_len,
                        const std::vector<int64_t>& eval_seq_lens);

// For each pop of a stack-task batch (row by row, in order), the depth of the stack it reads
// before popping (1: the pop empties it, so its answer is the last element pushed to that id),
// replayed from the tokens. How much of a stack configuration is LIFO memory rather than recall:
// `kimi-lab report` prints it, since the paper leaves the task's depth unstated.
std::vector<int64_t> stack_pop_depths(const Batch& b, int64_t num_stacks);

// Shared by the generators: a zero-filled batch with all labels ignored.
Batch empty_batch(int64_t batch, int64_t seq_len);

}  // namespace kimi::tasks
