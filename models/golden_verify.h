// Checks kimi-lab against reference tensor files (tests/golden layout): recognises the
// op prefixes (kda., gdn., deltanet., simple_gla., attention.) and the layer prefixes
// (kda_layer., gdn_layer., mamba2_layer.), runs every form, and reports ||x-ref||/||ref|| per
// tensor. Works for any file of the same layout, whatever its shapes.
#pragma once

#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace kimi::models {

struct VerifyRow {
  std::string prefix;  // "kda", "kda_layer", ...
  std::string form;    // recurrent | chunk | fused | layer form
  std::string tensor;  // "o", "dq", "grad.q_proj.weight", ...
  double rel_err = 0, tol = 0;
  bool pass = false;
};

struct VerifyReport {
  std::vector<VerifyRow> rows;
  std::vector<std::string> skipped;  // prefixes not recognised
  bool all_pass() const;
};

// compute: F32 (the tolerances of golden/README.md) or F64 (CPU only). device: where the ops
// run (inputs are moved there; CUDA at fp32 compute precision).
VerifyReport verify_golden_file(const std::string& path, DType compute = DType::kF32,
                                Device device = Device::kCPU);

double rel_err(const Tensor& x, const Tensor& ref);  // ||x - ref|| / ||ref||; NaN never passes

}  // namespace kimi::models
