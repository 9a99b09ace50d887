// Reading a measurement CSV (the engine's bench-infer output) for `simulate --measured`: a
// header, then one row per (model, context, batch). Required columns: model (hybrid | all-mla),
// context, batch, and at least one of prefill_ms, tpot_ms, tokens_per_s (an empty cell = not
// measured). Optional: mla_splits_per_sm (the engine's MLA split rule at that batch; bench-infer
// writes it since session 18). Other columns are ignored. Plain comma-separated cells, no quoting;
// lines starting with '#' are comments. Any fault is one UserError naming the file, the line and
// the column.
#pragma once

#include <string>
#include <vector>

#include "inference/simulator.h"

namespace kimi::inference {

std::vector<Measured> parse_measured_csv(const std::string& text, const std::string& where);
std::vector<Measured> read_measured_csv(const std::string& path);

}  // namespace kimi::inference
