// Table 1 rows, the paper's numbers and a config's training FLOPs (trainer/table1.h).
#include "trainer/table1.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "models/flops.h"
#include "tasks/lm_manifest.h"

namespace kimi {
namespace {

struct PaperRow {
  const char* key;
  const char* label;
  double train, val;  // < 0: not in Table 1
};

// DESIGN.md section 7, in the paper's order; RoPE is in its long-context table (no PPL).
constexpr PaperRow kTable1[] = {
    {"3:1", "3:1 (reference)", 9.23, 5.65},
    {"0:1", "0:1 (all MLA)", 9.45, 5.77},
    {"1:1", "1:1", 9.29, 5.66},
    {"7:1", "7:1", 9.23, 5.70},
    {"15:1", "15:1", 9.34, 5.82},
    {"no_gate", "no output gate", 9.25, 5.67},
    {"swish_gate", "swish output gate", 9.43, 5.81},
    {"no_conv", "no short conv", 9.29, 5.70},
    {"rope", "RoPE in MLA (reference: NoPE)", -1, -1},
};

// "kda:mla" counts reduced: 12 KDA + 4 MLA layers read 3:1, 16 MLA layers 0:1.
std::string ratio_key(const std::vector<std::string>& layers, bool* only_kda_mla) {
  int64_t kda = 0, mla = 0;
  for (const auto& l : layers) kda += l == "kda", mla += l == "mla";
  *only_kda_mla = kda + mla == static_cast<int64_t>(layers.size());
  const int64_t g = std::gcd(kda, mla);
  return g == 0 ? "0:0" : fmt::format("{}:{}", kda / g, mla / g);
}

}  // namespace

std::optional<Table1Paper> table1_paper(const std::string& key) {
  for (const auto& r : kTable1)
    if (key == r.key && r.train > 0) return Table1Paper{r.train, r.val};
  return std::nullopt;
}

Table1Row table1_row(const RunConfig& c) {
  const ModelConfig& m = c.model;
  bool only_kda_mla = true;
  const std::string ratio = ratio_key(layer_mixers(m), &only_kda_mla);
  std::vector<std::string> changes;  // against the reference: sigmoid gate, short conv, NoPE
  if (m.output_gate == "none") changes.push_back("no_gate");
  if (m.output_gate == "swish") changes.push_back("swish_gate");
  if (!m.short_conv) changes.push_back("no_conv");
  if (m.rope) changes.push_back("rope");
  Table1Row row;
  if (!only_kda_mla) {
    row.key = row.label = fmt::format("{} (not KDA/MLA)", fmt::join(layer_mixers(m), "+"));
    return row;
  }
  if (changes.empty()) {
    row.key = ratio;
  } else if (ratio == "3:1" && changes.size() == 1) {
    row.key = changes[0];
  } else {
    changes.insert(changes.begin(), ratio);
    row.key = row.label = fmt::format("{}", fmt::join(changes, "+"));
    return row;
  }
  row.label = row.key;
  for (size_t i = 0; i < std::size(kTable1); ++i)
    if (row.key == kTable1[i].key) row.label = kTable1[i].label, row.order = static_cast<int>(i);
  row.paper = table1_paper(row.key);
  return row;
}

int64_t train_tokens(const RunConfig& c) {
  return c.train.steps * c.train.batch_size * c.train.grad_accum * c.train.seq_len;
}

int64_t resolved_vocab(const RunConfig& c) {
  if (c.task.vocab_size == 0 && c.task.name == "lm" && !c.task.lm.data.empty())
    return tasks::read_lm_manifest(c.task.lm.data).vocab_size;
  return c.task.vocab_size;
}

double train_flops_per_token(const RunConfig& c) {
  return models::model_cost(c.model, resolved_vocab(c), c.train.seq_len).train_flops_per_token;
}

double train_flops(const RunConfig& c) {
  return static_cast<double>(train_tokens(c)) * train_flops_per_token(c);
}

}  // namespace kimi
