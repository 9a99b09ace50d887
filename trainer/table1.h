// The tech report's Table 1 (ablations of Kimi Linear at equal training FLOPs; DESIGN.md section
// 7): which ablation a run's config is, the paper's train / validation perplexity for it, and
// the training FLOPs and tokens a config spends (models/flops.h per token, times the tokens its
// steps see), which experiments/paper/table1_ablation.yaml equalises across rows.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "trainer/config.h"

namespace kimi {

struct Table1Paper {
  double train_ppl = 0, val_ppl = 0;
};

// One Table 1 row as read from a config: the KDA:MLA ratio of its layers and what differs from
// the reference (sigmoid output gate, short conv, NoPE). key: "3:1", "0:1", ..., "no_gate",
// "swish_gate", "no_conv", "rope"; a config with several differences (or other mixers) gets a
// key joining them with "+" and no paper numbers.
struct Table1Row {
  std::string key;
  std::string label;                 // for the table: "3:1 (reference)", "no output gate", ...
  std::optional<Table1Paper> paper;  // DESIGN.md section 7; none for RoPE (not in Table 1)
  int order = 99;                    // the paper's row order
};
Table1Row table1_row(const RunConfig& config);

// The paper's numbers by key (nullopt for keys Table 1 does not have).
std::optional<Table1Paper> table1_paper(const std::string& key);

// task.vocab_size, or the prepared data's (its manifest) when that is 0 (task.lm.data).
int64_t resolved_vocab(const RunConfig& config);
// Tokens one run trains on: train.steps x batch_size x grad_accum x seq_len.
int64_t train_tokens(const RunConfig& config);
// models::model_cost(...).train_flops_per_token at train.seq_len, resolved_vocab's head.
double train_flops_per_token(const RunConfig& config);
// train_tokens x train_flops_per_token.
double train_flops(const RunConfig& config);

}  // namespace kimi
