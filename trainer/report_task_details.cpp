// The task and training details of the Figure 4 report (trainer/report_internal.h), replayed
// from the config and from sampled rows, since the paper leaves them unstated.
#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "tasks/task.h"
#include "trainer/report_internal.h"

namespace kimi::report_detail {
namespace {

// How deep the stacks are when popped (64 rows a length): with many stacks and push probability
// 0.5 nearly every pop empties its stack, and the task is recall of the last push to an id.
std::string stack_depth_line(const tasks::Task& task, int64_t num_stacks,
                             const std::set<int64_t>& lengths) {
  std::vector<std::string> per_len;
  for (int64_t len : lengths) {
    const std::vector<int64_t> d = tasks::stack_pop_depths(task.sample(64, len, 0), num_stacks);
    if (d.empty()) continue;
    const double ones = static_cast<double>(std::count(d.begin(), d.end(), 1));
    const double mean = static_cast<double>(std::accumulate(d.begin(), d.end(), int64_t{0}));
    per_len.push_back(fmt::format("T={}: {:.0f}% at depth 1, mean depth {:.2f}", len,
                                  100.0 * ones / static_cast<double>(d.size()),
                                  mean / static_cast<double>(d.size())));
  }
  if (per_len.empty()) return "";
  return fmt::format(
      "- stack depth read by a pop (depth 1: the answer is the last element pushed to that "
      "stack, a recall): {}\n",
      fmt::join(per_len, "; "));
}

// Where a row's queries sit and what surrounds them: the one detail found to decide whether
// softmax attention learns MQAR at all (results/figure4/mqar_layout: the `<sep>`).
std::string mqar_layout_line(const MqarConfig& m) {
  if (m.form == "zoology")
    return fmt::format(
        "- row layout: zoology's (queries spread after the pairs with power-law gaps, power_a "
        "{}, among random tokens; no `<sep>`)\n",
        m.power_a);
  const std::string queries =
      m.query_layout == "spread"
          ? fmt::format("each query at its own slot (power-law gaps, power_a {})", m.power_a)
          : std::string("the queries in one block");
  const std::string offset =
      m.query_offset > 0 ? fmt::format(" from {} slot(s) on", m.query_offset) : std::string();
  return fmt::format(
      "- row layout: the pairs, {}, then {}{}; the other slots {} (task.mqar.sep, query_layout, "
      "query_offset, filler)\n",
      m.sep ? "`<sep>`" : "no `<sep>`", queries, offset,
      m.filler == "random" ? "random tokens" : "padding");
}

}  // namespace

std::string task_details(const RunConfig& c, const std::set<int64_t>& lengths) {
  const TaskConfig& t = c.task;
  std::string out = fmt::format("- task `{}`, vocabulary {}\n", t.name, t.vocab_size);
  if (t.name == "mqar")
    out += fmt::format(
        "- MQAR form `{}`; pairs per row: {} ; queries per row: {}\n", t.mqar.form,
        t.mqar.num_kv_pairs > 0
            ? fmt::format("{} at every length", t.mqar.num_kv_pairs)
            : fmt::format("seq_len / {} (task.mqar.tokens_per_pair)", t.mqar.tokens_per_pair),
        t.mqar.num_queries > 0 ? fmt::format("{}", t.mqar.num_queries) : "one per pair");
  if (t.name == "mqar") out += mqar_layout_line(t.mqar);
  if (t.name == "palindrome")
    out += fmt::format(
        "- palindrome length: {}; `<sep>` scored: {}\n",
        t.palindrome.length > 0 ? fmt::format("{}", t.palindrome.length) : "(seq_len - 1) / 2",
        t.palindrome.score_sep ? "yes" : "no");
  if (t.name == "stack")
    out += fmt::format(
        "- {} stacks, push probability {}, maximum depth {}; scored: the id of each pop\n",
        t.stack.num_stacks, t.stack.push_prob,
        t.stack.max_depth > 0 ? fmt::format("{}", t.stack.max_depth) : "unbounded");
  try {
    const auto task = tasks::make_task(t);
    std::vector<std::string> per_len;
    for (int64_t len : lengths) {
      const tasks::Batch b = task->sample(8, len, 0);
      int64_t scored = 0;
      for (int32_t y : b.labels) scored += y != tasks::kIgnoreLabel;
      std::string s = fmt::format("T={}: {:.0f} scored positions a row", len,
                                  static_cast<double>(scored) / 8.0);
      if (t.name == "mqar") s += fmt::format(" ({} pairs)", task->num_kv_pairs(len));
      per_len.push_back(s);
    }
    out += fmt::format("- {}\n", fmt::join(per_len, "; "));
    if (t.name == "stack") out += stack_depth_line(*task, t.stack.num_stacks, lengths);
  } catch (const std::exception&) {
    // A task that cannot be built here (an lm file moved) just goes without these counts.
  }
  out += fmt::format(
      "- model: {} layers, d_model {}, {} heads x {}, MLP {}, short conv {}; trained {} steps at "
      "batch {}, AdamW (weight decay {}, betas {} / {}), warmup {}, {} schedule, precision {}\n",
      c.model.n_layers, c.model.d_model, c.model.num_heads, c.model.head_dim,
      c.model.mlp ? "yes" : "no", c.model.short_conv ? "yes" : "no", c.train.steps,
      c.train.batch_size, c.train.weight_decay, c.train.beta1, c.train.beta2, c.train.warmup_steps,
      c.train.schedule, c.train.precision);
  return out;
}

}  // namespace kimi::report_detail
