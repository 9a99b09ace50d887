// Multi-query associative recall. Kimi form (tech report section 5.1):
//   `k_1 v_1 .. k_K v_K <sep> q_1 .. q_Q <pad>..`, label at each query = its value;
//   0 = pad, 1 = sep, keys from the lower half of [2, vocab), values from the upper half.
// Zoology form: HazyResearch/zoology data/associative_recall.py `_mqar`, step for step.
// Between them, the Kimi form's query_layout=spread puts each query at its own slot after <sep>
// (even offsets, zoology's power-law gaps), filler=random fills the other slots with random
// tokens, sep=false drops <sep> and query_offset leaves filler slots before the first query, so
// that what holds softmax attention on the MQAR plateau can be told apart
// (results/figure4/mqar_layout: the <sep>).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/tensor/error.h"
#include "tasks/generators.h"

namespace kimi::tasks {
namespace {

constexpr int32_t kPad = 0;
constexpr int32_t kSep = 1;

// Zoology's query gaps: `choice(space, size=K, replace=False, p ~ a * g^(a-1))`. Efraimidis-
// Spirakis keys (log u / w, largest first) give the same law as numpy's successive draws,
// including the order in which gaps are paired with keys.
std::vector<int64_t> power_law_gaps(Rng& rng, int64_t space, int64_t k, double power_a) {
  std::vector<std::pair<double, int64_t>> keyed(static_cast<size_t>(space));
  for (int64_t g = 0; g < space; ++g) {
    const double w = power_a * std::pow(static_cast<double>(g + 1), power_a - 1.0);
    const double u = 1.0 - rng.uniform01();  // (0, 1]: log stays finite
    keyed[g] = {std::log(u) / w, g};
  }
  std::partial_sort(keyed.begin(), keyed.begin() + k, keyed.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<int64_t> gaps(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) gaps[i] = keyed[i].second;
  return gaps;
}

class MqarTask : public Task {
 public:
  MqarTask(int64_t vocab, MqarConfig config) : vocab_(vocab), config_(std::move(config)) {
    if (zoology() && config_.num_queries != 0) {
      throw UserError(
          "task.mqar.num_queries applies to form kimi only (zoology queries every key once)");
    }
    if (zoology() && (config_.query_layout != "block" || config_.filler != "pad" || !config_.sep ||
                      config_.query_offset != 0)) {
      throw UserError(
          "task.mqar.query_layout / filler / sep / query_offset apply to form kimi only "
          "(zoology's queries are always spread among random tokens, with no <sep>)");
    }
    if (!zoology() && vocab_ < 6) {
      throw UserError(fmt::format("task.vocab_size must be >= 6 for mqar; got {}", vocab_));
    }
  }
  std::string name() const override { return "mqar"; }
  int64_t vocab_size() const override { return vocab_; }

  int64_t num_kv_pairs(int64_t seq_len) const override {
    return config_.num_kv_pairs > 0 ? config_.num_kv_pairs
                                    : std::max<int64_t>(1, seq_len / config_.tokens_per_pair);
  }

  void check_seq_len(int64_t seq_len) const override {
    zoology() ? check_zoology(seq_len) : check_kimi(seq_len);
  }

  void sample_row(uint64_t seed, int64_t seq_len, Split, int32_t* inputs,
                  int32_t* labels) const override {
    Rng rng(seed);
    std::fill(labels, labels + seq_len, kIgnoreLabel);
    zoology() ? zoology_row(rng, seq_len, inputs, labels) : kimi_row(rng, seq_len, inputs, labels);
  }

 private:
  bool zoology() const { return config_.form == "zoology"; }
  bool spread() const { return config_.query_layout == "spread"; }
  int64_t num_keys() const { return (vocab_ - 2) / 2; }  // kimi form key range size
  int64_t num_queries(int64_t seq_len) const {
    return config_.num_queries > 0 ? config_.num_queries : num_kv_pairs(seq_len);
  }

  void check_kimi(int64_t seq_len) const {
    const int64_t k = num_kv_pairs(seq_len), q = num_queries(seq_len);
    if (first_query(k) + q > seq_len) {
      throw UserError(fmt::format(
          "mqar: seq_len {} cannot hold {} pairs{}{} + {} queries (task.mqar.num_kv_pairs, "
          "task.mqar.num_queries)",
          seq_len, k, config_.sep ? " + <sep>" : "",
          config_.query_offset > 0
              ? fmt::format(" + {} slot(s) of task.mqar.query_offset", config_.query_offset)
              : "",
          q));
    }
    if (spread() && q > query_slots(seq_len, k)) {
      throw UserError(fmt::format(
          "mqar (task.mqar.query_layout spread): seq_len {} has {} even slots after {} pairs{} "
          "for {} queries (task.mqar.num_kv_pairs, task.mqar.num_queries)",
          seq_len, query_slots(seq_len, k), k, config_.sep ? " + <sep>" : "", q));
    }
    if (k > num_keys() || k > vocab_ - 2 - num_keys()) {
      throw UserError(
          fmt::format("mqar: task.vocab_size {} too small for {} distinct keys and "
                      "values",
                      vocab_, k));
    }
  }

  // Zoology's own assertions, with the keys to change named.
  void check_zoology(int64_t seq_len) const {
    const int64_t k = num_kv_pairs(seq_len);
    if (seq_len % 2 != 0 || 4 * k > seq_len) {
      throw UserError(
          fmt::format("mqar (zoology form): seq_len {} must be even and >= 4 * "
                      "task.mqar.num_kv_pairs ({})",
                      seq_len, k));
    }
    if (vocab_ <= seq_len || k > vocab_ / 2 - 1) {
      throw UserError(
          fmt::format("mqar (zoology form): task.vocab_size {} must exceed seq_len "
                      "{} and hold {} keys",
                      vocab_, seq_len, k));
    }
  }

  // The first position after the pairs (and <sep>), the first query slot (query_offset filler
  // slots later), and the slots at even offsets from it where a spread query may sit.
  int64_t after_pairs(int64_t k) const { return 2 * k + (config_.sep ? 1 : 0); }
  int64_t first_query(int64_t k) const { return after_pairs(k) + config_.query_offset; }
  int64_t query_slots(int64_t seq_len, int64_t k) const {
    return (seq_len - first_query(k) + 1) / 2;
  }

  void kimi_row(Rng& rng, int64_t seq_len, int32_t* inputs, int32_t* labels) const {
    const int64_t k = num_kv_pairs(seq_len), q = num_queries(seq_len);
    const auto keys = sample_distinct(rng, 2, 2 + num_keys(), k);
    const auto values = sample_distinct(rng, 2 + num_keys(), vocab_, k);
    std::fill(inputs, inputs + seq_len, kPad);
    for (int64_t i = 0; i < k; ++i) {
      inputs[2 * i] = keys[i];
      inputs[2 * i + 1] = values[i];
    }
    if (config_.sep) inputs[2 * k] = kSep;
    // Each pair queried once in random order; queries beyond K repeat random pairs.
    const auto order = sample_distinct(rng, 0, k, k);
    std::vector<int64_t> pairs(static_cast<size_t>(q));
    for (int64_t j = 0; j < q; ++j) pairs[j] = j < k ? order[j] : rng.uniform(0, k);
    // The extra draws come after the block layout's, so its rows stay what they always were.
    // Each query's offset from the first query slot: in a row, or on even power-law gaps.
    std::vector<int64_t> slots(static_cast<size_t>(q));
    std::iota(slots.begin(), slots.end(), int64_t{0});
    if (spread()) {
      slots = power_law_gaps(rng, query_slots(seq_len, k), q, config_.power_a);
      for (auto& s : slots) s *= 2;
    }
    if (config_.filler == "random") {
      for (int64_t t = after_pairs(k); t < seq_len; ++t)
        inputs[t] = static_cast<int32_t>(rng.uniform(2, vocab_));
    }
    for (int64_t j = 0; j < q; ++j) {
      const int64_t pos = first_query(k) + slots[j];
      inputs[pos] = keys[pairs[j]];
      labels[pos] = values[pairs[j]];
    }
  }

  void zoology_row(Rng& rng, int64_t seq_len, int32_t* inputs, int32_t* labels) const {
    const int64_t k = num_kv_pairs(seq_len), context = 2 * k;
    const auto keys = sample_distinct(rng, 1, vocab_ / 2, k);
    const auto values = sample_distinct(rng, vocab_ / 2, vocab_, k);
    const auto gaps = power_law_gaps(rng, (seq_len - context) / 2, k, config_.power_a);
    for (int64_t i = 0; i < k; ++i) {
      inputs[2 * i] = keys[i];
      inputs[2 * i + 1] = values[i];
    }
    // random_non_queries=True: every non-query slot after the pairs is uniform in [0, vocab).
    for (int64_t t = context; t < seq_len; ++t)
      inputs[t] = static_cast<int32_t>(rng.uniform(0, vocab_));
    for (int64_t i = 0; i < k; ++i) {
      const int64_t pos = context + 2 * gaps[i];
      inputs[pos] = keys[i];
      labels[pos] = values[i];
    }
  }

  int64_t vocab_;
  MqarConfig config_;
};

}  // namespace

std::unique_ptr<Task> make_mqar_task(const TaskConfig& config) {
  if (config.mqar.form != "kimi" && config.mqar.form != "zoology") {
    throw UserError(
        fmt::format("task.mqar.form: expected one of kimi, zoology; got '{}'", config.mqar.form));
  }
  return std::make_unique<MqarTask>(resolved_vocab_size(config), config.mqar);
}

}  // namespace kimi::tasks
