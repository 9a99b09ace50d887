// The flags of `kimi-lab simulate` that take text: context lengths ("4096", "128K", "1M";
// K = 1024, M = 1048576, as the paper's axis) and batches ("8", "max"). Each fault is one
// UserError naming the flag and the value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "inference/simulator.h"

namespace kimi::inference {

std::vector<int64_t> parse_contexts(const std::vector<std::string>& items);
// The inverse for tables: 1M, 128K, or the plain count when it is no whole K or M.
std::string context_label(int64_t tokens);
std::vector<BatchSpec> parse_batches(const std::vector<std::string>& items);

// The hybrid to simulate: `--preset kimi-linear-48b`, or MODEL (a folder holding config.json, or
// the config.json itself), exactly one of them. A bad or missing file is the config parser's
// one-line UserError naming the file and the key.
models::KimiLinearConfig resolve_model(const std::string& model, const std::string& preset);
// "preset kimi-linear-48b" or the config file's path, for titles and reports.
std::string model_source(const std::string& model, const std::string& preset);

// `--layers N` (0 = all): the first N decoder layers of c, each keeping its kind (KDA or MLA) and
// its MoE, for a model whose depth is cut to fit a smaller GPU (the 48B's 27 layers need ~100
// GB; 20 fit an 80 GB card). Per-layer costs are unchanged, so TPOT is predicted and measured
// on the same cut model. N outside 1..num_hidden_layers is one UserError naming --layers.
models::KimiLinearConfig first_layers(const models::KimiLinearConfig& c, int64_t n);
// model_source plus ", first N of L layers" when N cuts the model.
std::string model_source(const std::string& model, const std::string& preset,
                         const models::KimiLinearConfig& full, int64_t layers);

}  // namespace kimi::inference
