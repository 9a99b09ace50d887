// `kimi-lab bench --device cuda` (tools/cli/bench_cuda.cpp).
#pragma once

#include <string>
#include <vector>

namespace kimi::cli {

struct CudaBenchArgs {
  std::vector<std::string> mixers = {"kda", "gdn", "deltanet", "mamba2", "attention"};
  std::vector<int64_t> seq_lens = {2048, 8192, 32768};
  int64_t tokens = 65536;  // B = tokens / T
  int64_t heads = 16, head_dim = 128;
  int reps = 10;
  bool decode = true;
  std::string
      json_path;  // "" = no JSON; else every figure, written atomically (peer_bench.py reads it)
};

void run_cuda_bench(const CudaBenchArgs& args);

}  // namespace kimi::cli
